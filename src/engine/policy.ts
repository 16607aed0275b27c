/**
 * Per-cell policy. Raw sockets: denied by default (cgroup/sock_create
 * refuses SOCK_RAW with EPERM); allowing them still leaves every packet
 * subject to the egress anti-spoof check.
 */
import { L3isoError } from '../errors';
import { L3_CELL_ALLOW_RAW } from '../maps/layout';
import { openCellTarget } from './cells';
import { withLock } from './lock';
import { requireRoot } from './privilege';

export interface PolicyChange {
  allowRaw?: boolean;
}

export interface PolicyResult {
  cell: string;
  allowRaw: boolean;
}

export function setPolicy(pinDir: string, cgroupArg: string, change: PolicyChange): PolicyResult {
  requireRoot('policy');
  const t = openCellTarget(pinDir, cgroupArg);
  try {
    return withLock(t.state.layout, () => {
      const cell = t.state.cell(t.id);
      if (!cell) {
        throw new L3isoError('ENOT_ASSIGNED', `cgroup ${t.name} is not a cell (nothing assigned)`);
      }
      let flags = cell.flags;
      if (change.allowRaw !== undefined) {
        flags = change.allowRaw ? flags | L3_CELL_ALLOW_RAW : flags & ~L3_CELL_ALLOW_RAW;
      }
      if (flags !== cell.flags) t.state.putCell(t.id, { ...cell, flags });
      return { cell: t.name, allowRaw: (flags & L3_CELL_ALLOW_RAW) !== 0 };
    });
  } finally {
    t.state.close();
  }
}
