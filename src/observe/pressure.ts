/**
 * Fill of the bounded maps (entries ÷ max_entries), shared by `metrics`
 * (l3iso_map_pressure) and `status`. Kept apart from metrics.ts so a verb
 * that reports pressure does not load prom-client.
 */
import type { EngineState } from '../dataplane/state';

export interface MapFill {
  map: string;
  entries: number;
  maxEntries: number;
}

/** Maps whose filling up refuses assigns, binds or allow-list entries.
 * l3_sock_origin (socket storage) has no userspace iteration and no limit. */
export const PRESSURE_MAPS = [
  'l3_cells',
  'l3_owners',
  'l3_cell_stats',
  'l3_cell_denials',
  'l3_listeners',
  'l3_allow',
  'l3_managed',
  'l3_uplinks',
] as const;

/** `known` supplies counts the caller already has (a map it just read whole). */
export function mapFills(
  state: EngineState,
  known: Partial<Record<(typeof PRESSURE_MAPS)[number], number>> = {},
): MapFill[] {
  return PRESSURE_MAPS.map((name) => {
    const m = state.map(name);
    return { map: name, entries: known[name] ?? m.count(), maxEntries: m.maxEntries };
  });
}
