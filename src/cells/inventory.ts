/**
 * Read-only views of an engine: which cells exist, what they own, what they
 * were refused. Built from the maps on every call (they are the state).
 */
import { verifiedOwners } from '../dataplane/cell-index';
import { L3isoError } from '../errors';
import {
  L3_CELL_ALLOW_LIST,
  L3_CELL_ALLOW_RAW,
  L3_OWNER_LOOPBACK,
  type Cell,
} from '../codecs/layout';
import type { CellAddress } from '../model/address';
import { dangerousCapabilities, type CapabilityWarning } from '../model/capabilities';
import { cgroupPathsById, cgroupProcs, relativeCellName } from '../model/cgroup';
import { openCellTarget } from './cells';
import { readStatsRow } from '../observe/counters';
import { EngineState } from '../dataplane/state';
import { countersOf, trafficOf, type TrafficCounters } from '../observe/stats';

export type { TrafficCounters };

export interface CellView {
  cell: string;
  /** null when the cell's cgroup was removed without `release` (see `gc`) */
  path: string | null;
  id: string;
  addresses: string[];
  primary4?: string;
  primary6?: string;
  loopback4: string;
  allowRaw: boolean;
  /** uplink ingress admits only allow-listed sources */
  allowList: boolean;
}

export interface CellDetail extends CellView {
  processes: number[];
  refused: Record<string, number>;
  /** packets seen at the cell's sockets (cgroup_skb), GSO segments counted */
  traffic: TrafficCounters;
  dropped: Record<string, number>;
  /** processes of the cell holding a capability that defeats confinement */
  capabilityWarnings: CapabilityWarning[];
}

function compareAddresses(a: CellAddress, b: CellAddress): number {
  return a.family - b.family || Buffer.compare(a.bytes, b.bytes);
}

function view(
  id: bigint,
  cell: Cell,
  addresses: CellAddress[],
  cgroupPath: string | undefined,
  root: string,
): CellView {
  const primaries = [cell.primary4?.text, cell.primary6?.text].filter(
    (t): t is string => t !== undefined,
  );
  const rest = addresses
    .filter((a) => !primaries.includes(a.text))
    .sort(compareAddresses)
    .map((a) => a.text);
  return {
    cell: cgroupPath ? relativeCellName(cgroupPath, root) : `#${id}`,
    path: cgroupPath ?? null,
    id: id.toString(),
    addresses: [...primaries, ...rest],
    ...(cell.primary4 ? { primary4: cell.primary4.text } : {}),
    ...(cell.primary6 ? { primary6: cell.primary6.text } : {}),
    loopback4: cell.loopback4.text,
    allowRaw: (cell.flags & L3_CELL_ALLOW_RAW) !== 0,
    allowList: (cell.flags & L3_CELL_ALLOW_LIST) !== 0,
  };
}

function addressesByCell(state: EngineState): Map<bigint, CellAddress[]> {
  const out = new Map<bigint, CellAddress[]>();
  for (const { address, owner } of state.owners()) {
    if (owner.flags & L3_OWNER_LOOPBACK) continue;
    const list = out.get(owner.cell) ?? [];
    list.push(address);
    out.set(owner.cell, list);
  }
  return out;
}

export function listCells(pinDir: string): { root: string; cells: CellView[] } {
  const state = EngineState.open(pinDir);
  try {
    const root = state.config().cgroupRoot;
    const paths = cgroupPathsById(root);
    const addrs = addressesByCell(state);
    const cells = [...state.cells()].map(([id, cell]) =>
      view(id, cell, addrs.get(id) ?? [], paths.get(id), root),
    );
    cells.sort((a, b) => a.cell.localeCompare(b.cell));
    return { root, cells };
  } finally {
    state.close();
  }
}

export function showCell(pinDir: string, cgroupArg: string): CellDetail {
  const t = openCellTarget(pinDir, cgroupArg);
  try {
    const cell = t.state.cell(t.id);
    if (!cell) {
      throw new L3isoError(
        'ENOT_ASSIGNED',
        `cgroup ${t.name} is not a cell (nothing assigned)`,
        `assign it: l3iso assign ${t.name} ADDR`,
      );
    }
    // Through the cell's index, not a walk of every owner; without the
    // lock, so only what the owner map confirms is shown.
    const addrs = verifiedOwners(t.state, t.id, false)
      .owned.filter((e) => !(e.owner.flags & L3_OWNER_LOOPBACK))
      .map((e) => e.address);
    const row = readStatsRow(t.state.map('l3_cell_stats'), t.state.map('l3_cell_denials'), t.id);
    const c = countersOf(row, 0, t.name);
    const processes = subtreeProcs(t.path);
    return {
      ...view(t.id, cell, addrs, t.path, t.root),
      processes,
      refused: c.refused,
      traffic: trafficOf(c),
      dropped: c.dropped,
      capabilityWarnings: dangerousCapabilities(processes),
    };
  } finally {
    t.state.close();
  }
}

/** Every process of the cell, nested cgroups included. */
export function subtreeProcs(cgroupPath: string): number[] {
  const out: number[] = [];
  for (const dir of cgroupPathsById(cgroupPath).values()) {
    try {
      out.push(...cgroupProcs(dir));
    } catch {
      /* removed while walking */
    }
  }
  return out.sort((a, b) => a - b);
}

/** Every process, in every cell, that holds a confinement-breaking
 * capability (for doctor). */
export function allCapabilityWarnings(pinDir: string): (CapabilityWarning & { cell: string })[] {
  const out: (CapabilityWarning & { cell: string })[] = [];
  for (const c of listCells(pinDir).cells) {
    if (!c.path) continue;
    for (const w of dangerousCapabilities(subtreeProcs(c.path))) out.push({ ...w, cell: c.cell });
  }
  return out;
}
