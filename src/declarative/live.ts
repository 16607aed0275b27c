/**
 * The live state in the declarative model, read from the maps with a few
 * whole-map reads (batch lookups), never one lookup per cell.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  L3_CELL_ALLOW_LIST,
  L3_CELL_ALLOW_RAW,
  L3_OWNER_LOOPBACK,
  decodeAddr,
  decodeAllowKey,
  decodeCell,
  decodeCellKey,
  decodeOwner,
  type Cell,
} from '../codecs/layout';
import type { CellAddress } from '../model/address';
import { cgroupPathsById, relativeCellName } from '../model/cgroup';
import type { OwnerEntry } from '../cells/cells';
import { recordedCellNames } from '../cells/names';
import { managedPrefixes, prefixText } from '../dataplane/prefixes';
import type { EngineState } from '../dataplane/state';
import { listUplinks, uplinkMode } from '../dataplane/uplink';
import type { LiveCell, LiveEngine } from './diff';
import type { DesiredUplink } from './schema';

export interface LiveState {
  engine: LiveEngine;
  cells: LiveCell[];
  /** the raw reads, for apply */
  records: Map<bigint, Cell>;
  owners: OwnerEntry[];
  ownersByCell: Map<bigint, OwnerEntry[]>;
  paths: Map<bigint, string>;
}

function sameCgroup(dir: string, id: bigint): boolean {
  return fs.statSync(dir, { bigint: true, throwIfNoEntry: false })?.ino === id;
}

function cellPaths(
  state: EngineState,
  root: string,
  records: Map<bigint, Cell>,
  named: Map<bigint, string>,
): { paths: Map<bigint, string>; names: Map<bigint, string> } {
  const out = new Map<bigint, string>();
  const recorded = recordedCellNames(state.layout);
  const names = new Map<bigint, string>();
  let unknown = false;
  for (const id of records.keys()) {
    const name = named.get(id) ?? recorded.get(id);
    const dir = name !== undefined ? path.join(root, name) : undefined;
    if (dir !== undefined && (named.has(id) || sameCgroup(dir, id))) {
      out.set(id, dir);
      names.set(id, name!);
    } else unknown = true;
  }
  if (unknown) {
    const walked = cgroupPathsById(root);
    for (const id of records.keys()) {
      const p = walked.get(id);
      if (!out.has(id) && p) {
        out.set(id, p);
        names.set(id, relativeCellName(p, root));
      }
    }
  }
  return { paths: out, names };
}

function byFamilyThenBytes(a: CellAddress, b: CellAddress): number {
  return a.family - b.family || Buffer.compare(a.bytes, b.bytes);
}

/** Addresses in the order that restores the primaries: primaries first. */
function orderedAddresses(cell: Cell, owned: OwnerEntry[]): string[] {
  const primaries = [cell.primary4?.text, cell.primary6?.text].filter((t): t is string => !!t);
  const rest = owned
    .filter((e) => !(e.owner.flags & L3_OWNER_LOOPBACK))
    .map((e) => e.address)
    .filter((a) => !primaries.includes(a.text))
    .sort(byFamilyThenBytes)
    .map((a) => a.text);
  return [...primaries.filter((p) => owned.some((e) => e.address.text === p)), ...rest];
}

/** Every cell entry, decoded from the batch buffers (no Buffer copy per entry). */
function readCells(state: EngineState): Map<bigint, Cell> {
  const out = new Map<bigint, Cell>();
  const m = state.map('l3_cells');
  const ks = m.keySize;
  const vs = m.valueBufferSize;
  m.scan((keys, values, n) => {
    for (let i = 0; i < n; i++)
      out.set(
        decodeCellKey(keys.subarray(i * ks, (i + 1) * ks)),
        decodeCell(values.subarray(i * vs, (i + 1) * vs)),
      );
  });
  return out;
}

/** Every owner entry, alike (decodeAddr copies the address bytes out). */
function readOwners(state: EngineState): OwnerEntry[] {
  const out: OwnerEntry[] = [];
  const m = state.map('l3_owners');
  const ks = m.keySize;
  const vs = m.valueBufferSize;
  m.scan((keys, values, n) => {
    for (let i = 0; i < n; i++)
      out.push({
        address: decodeAddr(keys.subarray(i * ks, (i + 1) * ks)),
        owner: decodeOwner(values.subarray(i * vs, (i + 1) * vs)),
      });
  });
  return out;
}

export function groupOwners(owners: readonly OwnerEntry[]): Map<bigint, OwnerEntry[]> {
  const out = new Map<bigint, OwnerEntry[]>();
  for (const e of owners) {
    const list = out.get(e.owner.cell);
    if (list) list.push(e);
    else out.set(e.owner.cell, [e]);
  }
  return out;
}

/** Allow-lists of every cell, from one walk of the trie. */
function allowLists(state: EngineState): Map<bigint, string[]> {
  const out = new Map<bigint, string[]>();
  for (const key of state.map('l3_allow').keys()) {
    const k = decodeAllowKey(key);
    out.set(k.cell, [...(out.get(k.cell) ?? []), prefixText(k.prefix)]);
  }
  return out;
}

/** Interface names by ifindex in this network namespace (netlink via `ip`). */
function interfaceNames(): Map<number, string> {
  try {
    const out = execFileSync('ip', ['-j', 'link', 'show'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const links = JSON.parse(out) as { ifindex: number; ifname: string }[];
    return new Map(links.map((l) => [l.ifindex, l.ifname]));
  } catch {
    return new Map();
  }
}

export function liveUplinks(state: EngineState): DesiredUplink[] {
  const names = interfaceNames();
  return listUplinks(state).map(({ ifindex, uplink }) => ({
    iface: names.get(ifindex) ?? `#${ifindex}`,
    mode: uplinkMode(uplink),
  }));
}

/**
 * Live state. A cell's name is its cgroup's path below the root: `named`
 * (ids the caller resolved), else the name `assign` recorded if that path
 * still is the cell's cgroup, else found by one walk of the tree (only
 * when some cell is neither: its cgroup was moved or removed).
 */
export function readLive(state: EngineState, named: Map<bigint, string> = new Map()): LiveState {
  const root = state.config().cgroupRoot;
  const records = readCells(state);
  const { paths, names } = cellPaths(state, root, records, named);
  const owners = readOwners(state);
  const ownersByCell = groupOwners(owners);
  const allow = allowLists(state);
  const cells: LiveCell[] = [];
  for (const [id, cell] of records) {
    cells.push({
      id,
      cgroup: names.get(id) ?? `#${id}`,
      addresses: orderedAddresses(cell, ownersByCell.get(id) ?? []),
      allowRaw: (cell.flags & L3_CELL_ALLOW_RAW) !== 0,
      allowFrom: cell.flags & L3_CELL_ALLOW_LIST ? (allow.get(id) ?? []).sort() : null,
    });
  }
  cells.sort((a, b) => (a.cgroup < b.cgroup ? -1 : a.cgroup > b.cgroup ? 1 : 0));
  return {
    engine: {
      cgroupRoot: root,
      managedPrefixes: managedPrefixes(state).map(prefixText).sort(),
      uplinks: liveUplinks(state),
    },
    cells,
    records,
    owners,
    ownersByCell,
    paths,
  };
}
