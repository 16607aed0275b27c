/**
 * The two LPM tries the uplink consults: managed prefixes (addresses that
 * belong to cells, so unowned ones are dropped at the wire) and per-cell
 * allow-lists of source prefixes.
 */
import { MapUpdate } from '../../loader';
import { decodeAllowKey, decodePrefixKey, encodeAllowKey, encodePrefixKey } from '../codecs/layout';
import { parsePrefix, type CellPrefix } from '../model/address';
import type { EngineState } from './state';

export function prefixText(p: CellPrefix): string {
  return `${p.address.text}/${p.prefixLength}`;
}

export function parsePrefixes(texts: readonly string[]): CellPrefix[] {
  const seen = new Map<string, CellPrefix>();
  for (const t of texts) {
    const p = parsePrefix(t);
    seen.set(prefixText(p), p);
  }
  return [...seen.values()];
}

export function managedPrefixes(state: EngineState): CellPrefix[] {
  return [...state.map('l3_managed').keys()].map((k) => decodePrefixKey(k));
}

/** Makes the managed set exactly `prefixes`: new ones first, then the
 * stale ones go, so no address is unmanaged in between. */
export function setManagedPrefixes(state: EngineState, prefixes: readonly CellPrefix[]): void {
  const map = state.map('l3_managed');
  const wanted = new Set(prefixes.map(prefixText));
  for (const p of prefixes) map.update(encodePrefixKey(p), Buffer.from([1]), MapUpdate.ANY);
  for (const key of [...map.keys()]) {
    if (!wanted.has(prefixText(decodePrefixKey(key)))) map.delete(key);
  }
}

export function allowList(state: EngineState, cell: bigint): CellPrefix[] {
  const out: CellPrefix[] = [];
  for (const key of state.map('l3_allow').keys()) {
    const k = decodeAllowKey(key);
    if (k.cell === cell) out.push(k.prefix);
  }
  return out;
}

/** Makes the cell's allow-list exactly `prefixes` (adds before removing). */
export function setAllowList(
  state: EngineState,
  cell: bigint,
  prefixes: readonly CellPrefix[],
): void {
  const map = state.map('l3_allow');
  const wanted = new Set(prefixes.map(prefixText));
  for (const p of prefixes) map.update(encodeAllowKey(cell, p), Buffer.from([1]), MapUpdate.ANY);
  for (const p of allowList(state, cell)) {
    if (!wanted.has(prefixText(p))) map.delete(encodeAllowKey(cell, p));
  }
}
