/**
 * The reverse index of l3_owners (l3_cell_addrs): cell -> the addresses it
 * owns, so a verb on one cell costs O(its own addresses), never a walk of
 * every owner. A cell's slots are dense from 0 (the first slot that misses
 * ends its list), and at every instant its list is a SUPERSET of its owner
 * entries:
 *   - an address is listed (an intent) before it is claimed;
 *   - it is unlisted after it is unclaimed: the list is rewritten in slot
 *     order (an entry only ever moves down, onto a slot already copied or
 *     dropped, so no kept entry is ever absent) and the tail is then
 *     deleted from the top (the list stays dense).
 * A crash leaves extra entries (an intent whose claim never ran, an address
 * unclaimed but not yet unlisted): verifiedOwners() drops them, and gc
 * rebuilds the whole index from the owner map. Writers hold the instance
 * lock; readers without it (show) only ever see a superset.
 */
import { MapUpdate, isErrno, type BpfMap } from '../../loader';
import { CHUNK, writeBatch } from './batch';
import { L3isoError } from '../errors';
import { sleepSync } from '../sleep';
import {
  decodeAddr,
  decodeCellSlot,
  encodeAddr,
  encodeCellSlot,
  LAYOUT,
  L3_CELL_SLOT_SIZE,
  type Owner,
} from '../codecs/layout';
import type { CellAddress } from '../model/address';
import type { EngineState } from './state';

export type IndexedOwner = { address: CellAddress; owner: Owner };

/** The cell's listed addresses, in slot order (duplicates possible after a crash). */
export function listed(state: EngineState, id: bigint): CellAddress[] {
  const map = state.map('l3_cell_addrs');
  const out: CellAddress[] = [];
  for (;;) {
    const raw = map.lookup(encodeCellSlot(id, out.length));
    if (!raw) return out;
    out.push(decodeAddr(raw));
  }
}

/** Lists `adds` (those not listed yet) after `list`: the intents of claims
 * about to be made. Returns the new list. One batch call. */
export function listIntents(
  state: EngineState,
  id: bigint,
  list: readonly CellAddress[],
  adds: readonly CellAddress[],
): CellAddress[] {
  const have = new Set(list.map((a) => a.text));
  const fresh = adds.filter((a) => !have.has(a.text) && (have.add(a.text), true));
  if (fresh.length === 0) return [...list];
  const keys = fresh.map((_, i) => encodeCellSlot(id, list.length + i));
  const values = fresh.map(encodeAddr);
  writeChunks(state, keys, values);
  return [...list, ...fresh];
}

/**
 * Rewrites the cell's list from `current` (what listed() read) to `next`,
 * which keeps entries of `current` in their order and may append others.
 * Only slots whose address changes are written, in slot order; then the
 * slots past the new end are deleted from the top.
 */
export function rewriteList(
  state: EngineState,
  id: bigint,
  current: readonly (CellAddress | undefined)[],
  next: readonly CellAddress[],
): void {
  const keys: Buffer[] = [];
  const values: Buffer[] = [];
  next.forEach((a, slot) => {
    if (current[slot]?.text === a.text) return;
    keys.push(encodeCellSlot(id, slot));
    values.push(encodeAddr(a));
  });
  writeChunks(state, keys, values);
  const doomed: Buffer[] = [];
  for (let slot = current.length - 1; slot >= next.length; slot--)
    if (current[slot]) doomed.push(encodeCellSlot(id, slot));
  deleteChunks(state, doomed);
}

/** Unlists every address of the cell (after a whole-cell release unclaimed them). */
export function clearList(state: EngineState, id: bigint): void {
  rewriteList(state, id, listed(state, id), []);
}

/**
 * The cell's owner entries, found through its list with one owner lookup
 * per listed address. With `repair` (under the lock), entries the cell does
 * not own (a crash's leftovers) and duplicates are unlisted.
 */
export function verifiedOwners(
  state: EngineState,
  id: bigint,
  repair: boolean,
): { owned: IndexedOwner[]; list: CellAddress[] } {
  const list = listed(state, id);
  const seen = new Set<string>();
  const owned: IndexedOwner[] = [];
  for (const address of list) {
    if (seen.has(address.text)) continue;
    seen.add(address.text);
    const owner = state.owner(address);
    if (owner && owner.cell === id) owned.push({ address, owner });
  }
  if (!repair || owned.length === list.length) return { owned, list };
  const next = owned.map((e) => e.address);
  rewriteList(state, id, list, next);
  return { owned, list: next };
}

/** The whole index, by cell: slot -> address (holes only in a damaged index). */
export function readIndex(state: EngineState): Map<bigint, (CellAddress | undefined)[]> {
  const { keys, values } = state.map('l3_cell_addrs').lookupBatch();
  const out = new Map<bigint, (CellAddress | undefined)[]>();
  keys.forEach((k, i) => {
    const { cell, slot } = decodeCellSlot(k);
    let slots = out.get(cell);
    if (!slots) out.set(cell, (slots = []));
    slots[slot] = decodeAddr(values[i]!);
  });
  return out;
}

/**
 * Makes the index list exactly what `owners` says each cell owns (gc, up
 * --repair): kept entries stay in their order, missing owners are appended,
 * the rest is unlisted. Batched across cells, in the per-cell order
 * rewriteList keeps, so a crash inside leaves a superset again.
 */
export function rebuildIndex(
  state: EngineState,
  owners: ReadonlyMap<bigint, readonly IndexedOwner[]>,
): { added: number; dropped: number } {
  const index = readIndex(state);
  const keys: Buffer[] = [];
  const values: Buffer[] = [];
  const doomed: Buffer[] = [];
  let added = 0;
  let dropped = 0;
  for (const id of new Set([...index.keys(), ...owners.keys()])) {
    const current = index.get(id) ?? [];
    const mine = new Map((owners.get(id) ?? []).map((e) => [e.address.text, e.address]));
    const next: CellAddress[] = [];
    for (const a of current) {
      if (a && mine.has(a.text)) {
        next.push(a);
        mine.delete(a.text);
      } else if (a) dropped++;
    }
    added += mine.size;
    next.push(...mine.values());
    next.forEach((a, slot) => {
      if (current[slot]?.text === a.text) return;
      keys.push(encodeCellSlot(id, slot));
      values.push(encodeAddr(a));
    });
    for (let slot = current.length - 1; slot >= next.length; slot--)
      if (current[slot]) doomed.push(encodeCellSlot(id, slot));
  }
  writeChunks(state, keys, values);
  deleteChunks(state, doomed);
  return { added, dropped };
}

/** Slots of every cell (one past its highest slot), from the keys alone. */
export function slotCounts(state: EngineState): Map<bigint, number> {
  const out = new Map<bigint, number>();
  const size = L3_CELL_SLOT_SIZE;
  const F = LAYOUT.l3_cell_slot.fields;
  state.map('l3_cell_addrs').scan((keys, _values, n) => {
    for (let i = 0; i < n; i++) {
      const cell = keys.readBigUInt64LE(i * size + F.cell.offset);
      const slot = keys.readUInt32LE(i * size + F.slot.offset);
      if (slot >= (out.get(cell) ?? 0)) out.set(cell, slot + 1);
    }
  });
  return out;
}

/** listIntents for many cells at once (apply): `adds` are appended after
 * each cell's `counts` slots. One batch call per CHUNK entries. */
export function listIntentsBatch(
  state: EngineState,
  counts: ReadonlyMap<bigint, number>,
  adds: readonly IndexedOwner[],
): void {
  const next = new Map<bigint, number>();
  const keys: Buffer[] = [];
  const values: Buffer[] = [];
  for (const e of adds) {
    const id = e.owner.cell;
    const slot = next.get(id) ?? counts.get(id) ?? 0;
    next.set(id, slot + 1);
    keys.push(encodeCellSlot(id, slot));
    values.push(encodeAddr(e.address));
  }
  writeChunks(state, keys, values);
}

/** clearList for many cells at once (after their addresses were unclaimed). */
export function clearLists(
  state: EngineState,
  ids: readonly bigint[],
  counts: ReadonlyMap<bigint, number>,
): void {
  const doomed: Buffer[] = [];
  for (const id of ids)
    for (let slot = (counts.get(id) ?? 0) - 1; slot >= 0; slot--)
      doomed.push(encodeCellSlot(id, slot));
  deleteChunks(state, doomed);
}

/** What is wrong with the index against `owners` (gc --check), one line each. */
export function indexProblems(
  state: EngineState,
  owners: ReadonlyMap<bigint, readonly IndexedOwner[]>,
): string[] {
  const out: string[] = [];
  const index = readIndex(state);
  for (const [id, slots] of index) {
    const hole = slots.findIndex((a) => a === undefined);
    if (hole >= 0) out.push(`index of #${id} has a hole at slot ${hole} of ${slots.length}`);
    const mine = new Set((owners.get(id) ?? []).map((e) => e.address.text));
    for (const a of slots)
      if (a && !mine.has(a.text))
        out.push(`index of #${id} lists ${a.text}, which it does not own`);
  }
  for (const [id, owned] of owners) {
    const slots = index.get(id) ?? [];
    const dense = new Set<string>();
    for (const a of slots) {
      if (!a) break;
      dense.add(a.text);
    }
    for (const e of owned)
      if (!dense.has(e.address.text))
        out.push(`#${id} owns ${e.address.text}, which its index does not list`);
  }
  return out;
}

function writeChunks(state: EngineState, keys: Buffer[], values: Buffer[]): void {
  if (keys.length === 0) return;
  const map = state.map('l3_cell_addrs');
  if (keys.length === 1) writeOne(map, keys[0]!, values[0]!);
  else writeBatch(map, keys, values, 'l3_cell_addrs');
}

function writeOne(map: BpfMap, key: Buffer, value: Buffer): void {
  for (let attempt = 1; ; attempt++) {
    try {
      map.update(key, value, MapUpdate.ANY);
      return;
    } catch (err) {
      if (isErrno(err, 'E2BIG') || isErrno(err, 'ENOSPC'))
        throw new L3isoError(
          'EMAP_FULL',
          'map l3_cell_addrs is full',
          'bring the engine up with a larger --max-cells (run `down` first)',
          { cause: err },
        );
      // Maps without preallocation refill a per-CPU cache asynchronously.
      if (!(isErrno(err, 'ENOMEM') && attempt < 20)) throw err;
      sleepSync(attempt);
    }
  }
}

function deleteChunks(state: EngineState, keys: Buffer[]): void {
  const map = state.map('l3_cell_addrs');
  if (keys.length === 1) {
    map.delete(keys[0]!);
    return;
  }
  for (let i = 0; i < keys.length; i += CHUNK) map.deleteBatch(keys.slice(i, i + CHUNK));
}
