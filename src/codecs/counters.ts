/**
 * What the counter tables of bpf/l3iso.h (L3_TRAFFIC, L3_REFUSALS,
 * L3_DROPS, generated into ./generated.ts) mean to the front ends: names,
 * labels, `stats` columns. Imports nothing but the generated tables, so the
 * CLI can format counters without loading the codecs.
 */
import {
  DROP_COUNTERS,
  L3_D_MAX,
  L3_R_MAX,
  REFUSAL_COUNTERS,
  TRAFFIC_COUNTERS,
  type Drop,
  type Reason,
} from './generated';

/** camelCase name of each L3_TRAFFIC counter (rx_packets -> rxPackets). */
export type TrafficName = (typeof TRAFFIC_COUNTERS)[number]['name'];

/** The traffic counters' names, in display / exposition order. */
export const TRAFFIC_FIELDS: readonly TrafficName[] = TRAFFIC_COUNTERS.map((c) => c.name);

/** L3_R_MAX: number of defined refusal reasons. */
export const REASON_MAX = L3_R_MAX;
/** L3_D_MAX: number of defined drop reasons. */
export const DROP_MAX = L3_D_MAX;

/** Stable label values for metrics, `stats` and audit output (L3_REFUSALS). */
export const reasonName = Object.fromEntries(
  REFUSAL_COUNTERS.map((r) => [r.slot, r.label]),
) as Readonly<Record<Reason, string>>;
/** Stable label values of the packet-layer drops (L3_DROPS). */
export const dropName = Object.fromEntries(DROP_COUNTERS.map((d) => [d.slot, d.label])) as Readonly<
  Record<Drop, string>
>;

/** A column of `stats` / a line of `show`: the L3_TRAFFIC counters of one
 * group (its packets and bytes counters), in table order. */
export interface TrafficGroup {
  group: string;
  fields: { name: TrafficName; bytes: boolean }[];
}

export const TRAFFIC_GROUPS: readonly TrafficGroup[] = (() => {
  const out: TrafficGroup[] = [];
  for (const c of TRAFFIC_COUNTERS) {
    let g = out.find((x) => x.group === c.group);
    if (!g) out.push((g = { group: c.group, fields: [] }));
    g.fields.push({ name: c.name, bytes: c.field.endsWith('_bytes') });
  }
  return out;
})();
