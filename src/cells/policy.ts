/**
 * Per-cell policy. Raw sockets: denied by default (cgroup/sock_create
 * refuses SOCK_RAW with EPERM); allowing them still leaves every packet
 * subject to the egress anti-spoof check.
 */
import { L3isoError } from '../errors';
import { L3_CELL_ALLOW_LIST, L3_CELL_ALLOW_RAW } from '../codecs/layout';
import { allowList, parsePrefixes, prefixText, setAllowList } from '../dataplane/prefixes';
import { openCellTarget } from './cells';
import { withLock } from '../dataplane/lock';
import { requireRoot } from '../dataplane/privilege';

export interface PolicyChange {
  allowRaw?: boolean;
  /** uplink ingress admits only these source prefixes; [] is invalid */
  allowFrom?: string[];
  /** drop the allow-list: every source is admitted again */
  clearAllowList?: boolean;
}

export interface PolicyResult {
  cell: string;
  allowRaw: boolean;
  /** null: no allow-list, every source is admitted */
  allowFrom: string[] | null;
}

export function setPolicy(pinDir: string, cgroupArg: string, change: PolicyChange): PolicyResult {
  requireRoot('policy');
  if (change.allowFrom !== undefined && change.clearAllowList) {
    throw new L3isoError('EUSAGE', '--allow-from and --clear exclude each other');
  }
  if (change.allowFrom !== undefined && change.allowFrom.length === 0) {
    throw new L3isoError(
      'EUSAGE',
      '--allow-from needs at least one prefix (use --clear to admit all)',
    );
  }
  const allowFrom = change.allowFrom ? parsePrefixes(change.allowFrom) : undefined;
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
      if (allowFrom) {
        // Entries first, then the flag that makes XDP consult them.
        setAllowList(t.state, t.id, allowFrom);
        flags |= L3_CELL_ALLOW_LIST;
      }
      if (change.clearAllowList) flags &= ~L3_CELL_ALLOW_LIST;
      if (flags !== cell.flags) t.state.putCell(t.id, { ...cell, flags });
      if (change.clearAllowList) setAllowList(t.state, t.id, []);
      return {
        cell: t.name,
        allowRaw: (flags & L3_CELL_ALLOW_RAW) !== 0,
        allowFrom: flags & L3_CELL_ALLOW_LIST ? allowList(t.state, t.id).map(prefixText) : null,
      };
    });
  } finally {
    t.state.close();
  }
}
