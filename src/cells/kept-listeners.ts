/**
 * Listeners a `release --force` left behind. A released address keeps its
 * TCP listeners (and their exact-bind l3_listeners entries: sk_lookup
 * refuses connections to an unowned address they are bound to); the next
 * cell that claims the address must not inherit them, so its assign
 * forgets their entries. Finding them means reading the socket table
 * (/proc/net/tcp{,6}: milliseconds on a busy host), so it is done only
 * while l3_config says such listeners may exist (L3_CONFIG_KEPT_LISTENERS):
 * set before the release unclaims, cleared once no exact-bind entry is on
 * an unowned address.
 */
import { LAYOUT, L3_CONFIG_KEPT_LISTENERS, decodeAddr } from '../codecs/layout';
import type { CellAddress } from '../model/address';
import { forgetListeners } from '../dataplane/revoke';
import type { EngineState } from '../dataplane/state';
import { listenersOn } from './holders';

export function mayHaveKeptListeners(state: EngineState): boolean {
  return ((state.config().flags ?? 0) & L3_CONFIG_KEPT_LISTENERS) !== 0;
}

/** Called before a release that leaves listeners unclaims their addresses. */
export function markKeptListeners(state: EngineState): void {
  const config = state.config();
  if ((config.flags ?? 0) & L3_CONFIG_KEPT_LISTENERS) return;
  state.writeConfig({ ...config, flags: (config.flags ?? 0) | L3_CONFIG_KEPT_LISTENERS });
}

/**
 * Forgets the kept listeners on `claimed` (just claimed by a cell), if any
 * may exist, and clears the mark when none is left anywhere.
 */
export function forgetKeptListeners(state: EngineState, claimed: readonly CellAddress[]): void {
  if (!mayHaveKeptListeners(state)) return;
  if (claimed.length > 0) forgetListeners(state, listenersOn(claimed));
  clearIfNoneLeft(state);
}

/** Exact-bind entries whose address no cell owns: what a forced release kept. */
export function clearIfNoneLeft(state: EngineState): void {
  const F = LAYOUT.l3_listen_key.fields;
  for (const key of state.map('l3_listeners').keys()) {
    if (key.readBigUInt64LE(F.cell.offset) !== 0n) continue;
    const family = key.readUInt8(F.family.offset);
    const raw = Buffer.alloc(LAYOUT.l3_addr.size);
    raw.writeUInt8(family, LAYOUT.l3_addr.fields.family.offset);
    key.copy(raw, LAYOUT.l3_addr.fields.addr.offset, F.addr.offset, F.addr.offset + F.addr.size);
    if (!state.owner(decodeAddr(raw))) return;
  }
  const config = state.config();
  state.writeConfig({ ...config, flags: (config.flags ?? 0) & ~L3_CONFIG_KEPT_LISTENERS });
}
