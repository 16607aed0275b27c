/**
 * Whole-cell release of many cells at once (apply --prune, bench), in the
 * order of finishCellRelease (src/cells/cells.ts) but with one batch call
 * per map per step: flag every alias RELEASING (the mark of a whole-cell
 * release, so reconcile/gc finish it after a crash), then every address;
 * re-derive the cells (no usable address left); destroy the sockets;
 * unclaim addresses, then aliases; delete cells, counters, allow-lists.
 */
import {
  L3_OWNER_LOOPBACK,
  L3_OWNER_RELEASING,
  decodeAllowKey,
  decodeCellKey,
  encodeAddr,
  encodeCell,
  encodeCellKey,
  encodeOwner,
  type Cell,
} from '../codecs/layout';
import { derive, type OwnerEntry } from '../cells/cells';
import { pruneCellNames } from '../cells/names';
import { destroySockets } from '../dataplane/revoke';
import { boundAddresses } from '../cells/holders';
import { clearLists, slotCounts } from '../dataplane/cell-index';
import { markKeptListeners } from '../cells/kept-listeners';
import type { EngineState } from '../dataplane/state';
import { CHUNK, writeBatch } from './batch';

function deleteAll(
  state: EngineState,
  name: 'l3_owners' | 'l3_cells' | 'l3_cell_stats' | 'l3_cell_denials' | 'l3_allow',
  keys: Buffer[],
): void {
  for (let i = 0; i < keys.length; i += CHUNK)
    state.map(name).deleteBatch(keys.slice(i, i + CHUNK));
}

function flagAll(state: EngineState, entries: OwnerEntry[]): void {
  writeBatch(
    state.map('l3_owners'),
    entries.map((e) => encodeAddr(e.address)),
    entries.map((e) =>
      encodeOwner({ cell: e.owner.cell, flags: e.owner.flags | L3_OWNER_RELEASING }),
    ),
    'l3_owners',
  );
}

/** Releases the cells `ids` whose owners are `owners` and whose cell
 * entries are `records` (all of them: read under the caller's lock). */
export function releaseCells(
  state: EngineState,
  ids: readonly bigint[],
  owners: Map<bigint, OwnerEntry[]>,
  records: ReadonlyMap<bigint, Cell>,
): number {
  const owned = ids.flatMap((id) => owners.get(id) ?? []);
  const aliases = owned.filter((e) => e.owner.flags & L3_OWNER_LOOPBACK);
  const rest = owned.filter((e) => !(e.owner.flags & L3_OWNER_LOOPBACK));
  flagAll(state, aliases);
  flagAll(state, rest);
  const cellKeys: Buffer[] = [];
  const cellValues: Buffer[] = [];
  for (const id of ids) {
    const cell = records.get(id);
    if (!cell) continue;
    const flagged = (owners.get(id) ?? []).map((e) => ({
      address: e.address,
      owner: { ...e.owner, flags: e.owner.flags | L3_OWNER_RELEASING },
    }));
    cellKeys.push(encodeCellKey(id));
    cellValues.push(encodeCell(derive(cell, flagged, cell.loopback4)));
  }
  writeBatch(state.map('l3_cells'), cellKeys, cellValues, 'l3_cells');
  // After the flags (no new bind can take these addresses): one read of the
  // socket table says which addresses some socket is on; only those go to
  // the iterator (100,000s of cells, mostly without sockets).
  const bound = boundAddresses();
  const busy = owned.filter((e) => bound.has(e.address.text)).map((e) => e.address);
  // Listeners stay (see finishRelease): the next claimers must forget them.
  if (busy.length > 0) markKeptListeners(state);
  const destroyed = destroySockets(state.layout, busy);
  deleteAll(
    state,
    'l3_owners',
    rest.map((e) => encodeAddr(e.address)),
  );
  deleteAll(
    state,
    'l3_owners',
    aliases.map((e) => encodeAddr(e.address)),
  );
  clearLists(state, ids, slotCounts(state)); // after the unclaims

  const keys = ids.map((id) => encodeCellKey(id));
  deleteAll(state, 'l3_cells', keys);
  deleteAll(state, 'l3_cell_stats', keys);
  const doomed = new Set(ids);
  // Sparse (only cells that had a denial): delete what is there, not every key.
  const denied = [...state.map('l3_cell_denials').keys()].filter((k) =>
    doomed.has(decodeCellKey(k)),
  );
  deleteAll(state, 'l3_cell_denials', denied);
  const allow = [...state.map('l3_allow').keys()].filter((k) => doomed.has(decodeAllowKey(k).cell));
  deleteAll(state, 'l3_allow', allow);
  // What is left: the caller's read less these (no one else writes cells
  // under the lock).
  pruneCellNames(state.layout, new Set([...records.keys()].filter((id) => !doomed.has(id))));
  return destroyed;
}
