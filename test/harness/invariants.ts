// Issue 9's invariants, checked straight from the pinned maps by the test
// process itself (loader + layout codecs only, no engine code), so a crash
// test does not take the engine's own `gc --check` on trust: an engine
// whose checker always answered "consistent" would still fail here.
import * as path from 'node:path';
import { BpfMap } from '../../loader';
import {
  L3_OWNER_DRAINING,
  L3_OWNER_LOOPBACK,
  L3_OWNER_RELEASING,
  decodeAddr,
  decodeCell,
  decodeCellKey,
  decodeOwner,
  type Cell,
  type Owner,
} from '../../src/codecs/layout';
import type { CellAddress } from '../../src/model/address';

interface Entry {
  address: CellAddress;
  owner: Owner;
}

function readMap<T>(pinDir: string, name: string, f: (k: Buffer, v: Buffer) => T): T[] {
  const m = BpfMap.openPinned(path.join(pinDir, 'maps', name));
  try {
    const { keys, values } = m.lookupBatch();
    return keys.map((k, i) => f(k, values[i]!));
  } finally {
    m.close();
  }
}

function statsIds(pinDir: string): bigint[] {
  const m = BpfMap.openPinned(path.join(pinDir, 'maps', 'l3_cell_stats'));
  try {
    return [...m.keys()].map((k) => decodeCellKey(k));
  } finally {
    m.close();
  }
}

function checkCell(id: bigint, cell: Cell, owned: Entry[], stats: Set<bigint>): string[] {
  const out: string[] = [];
  const alias = owned.filter((e) => e.owner.flags & L3_OWNER_LOOPBACK);
  if (alias.length !== 1) out.push(`cell #${id} owns ${alias.length} loopback aliases`);
  else if (alias[0]!.address.text !== cell.loopback4.text)
    out.push(`cell #${id} records alias ${cell.loopback4.text}, owns ${alias[0]!.address.text}`);
  if (!stats.has(id)) out.push(`cell #${id} has no counters entry`);
  for (const family of [4, 6] as const) {
    const usable = owned
      .filter((e) => !(e.owner.flags & (L3_OWNER_LOOPBACK | L3_OWNER_RELEASING)))
      .filter((e) => e.address.family === family)
      .map((e) => e.address.text);
    const count = family === 4 ? cell.addrs4 : cell.addrs6;
    const primary = (family === 4 ? cell.primary4 : cell.primary6)?.text;
    if (count !== usable.length)
      out.push(`cell #${id} counts ${count} IPv${family}, owns ${usable.length}`);
    if (usable.length > 0 && primary === undefined)
      out.push(`cell #${id} owns IPv${family} but has no primary`);
    if (primary !== undefined && !usable.includes(primary))
      out.push(`cell #${id} IPv${family} primary ${primary} is not a usable address of it`);
  }
  return out;
}

/**
 * Every owner's cell has a record that lists it (one alias, counts and
 * primaries as the owner map implies), every cell has a counters entry and
 * no counters entry lacks a cell, and no owner is RELEASING or DRAINING
 * (call with no release running). Empty when all hold.
 */
export function mapInvariants(pinDir: string): string[] {
  const owners = readMap(pinDir, 'l3_owners', (k, v) => ({
    address: decodeAddr(k),
    owner: decodeOwner(v),
  }));
  const cells = new Map(readMap(pinDir, 'l3_cells', (k, v) => [decodeCellKey(k), decodeCell(v)]));
  const stats = new Set(statsIds(pinDir));
  const out: string[] = [];
  const byCell = new Map<bigint, Entry[]>();
  for (const e of owners) {
    byCell.set(e.owner.cell, [...(byCell.get(e.owner.cell) ?? []), e]);
    if (e.owner.flags & (L3_OWNER_RELEASING | L3_OWNER_DRAINING))
      out.push(`${e.address.text} of #${e.owner.cell} is left RELEASING/DRAINING`);
  }
  for (const [id, owned] of byCell)
    if (!cells.has(id)) out.push(`#${id} owns ${owned.map((e) => e.address.text)} but has no cell`);
  for (const [id, cell] of cells) out.push(...checkCell(id, cell, byCell.get(id) ?? [], stats));
  for (const id of stats) if (id !== 0n && !cells.has(id)) out.push(`counters of no cell #${id}`);
  return out;
}
