/**
 * `attach` / `detach`: the uplink programs on a network interface (XDP on
 * ingress, tc on egress). These are netlink attachments: they stay after
 * the CLI exits, and l3_uplinks records them so `detach` and `down` remove
 * exactly what l3iso put there and nothing of another tool's.
 */
import { execFileSync } from 'node:child_process';
import {
  BpfError,
  MapUpdate,
  TcAttachPoint,
  XdpFlags,
  isErrno,
  tcAttach,
  tcDetach,
  tcHookCreate,
  xdpAttach,
  xdpDetach,
  xdpQueryId,
} from '../../loader';
import { L3isoError } from '../errors';
import { decodeUplink, encodeUplink, type Uplink } from '../maps/layout';
import { loadWithPinnedMaps } from './objects';
import { withLock } from './lock';
import { requireRoot } from './privilege';
import { UPLINK_OBJECT } from './programs';
import { EngineState } from './state';

export type XdpMode = 'native' | 'generic';

/** Our tc filter's handle and priority on clsact egress ("l3"). */
export const TC_HANDLE = 0x6c33;
export const TC_PRIORITY = 0x6c33;

export interface AttachResult {
  iface: string;
  ifindex: number;
  mode: XdpMode;
  xdpProgId: number;
  tcProgId: number;
  /** set when native mode was refused and generic was used instead */
  warning?: string;
}

/** ifindex in the caller's network namespace (netlink, not /sys, which
 * shows the namespace that mounted it). */
export function ifindexOf(iface: string, netns?: string): number {
  if (!/^[^\s/]{1,15}$/.test(iface))
    throw new L3isoError('EUSAGE', `invalid interface name "${iface}"`);
  try {
    const where = netns ? ['-n', netns] : [];
    const out = execFileSync('ip', [...where, '-j', 'link', 'show', 'dev', iface], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const [link] = JSON.parse(out) as { ifindex: number }[];
    if (link) return link.ifindex;
  } catch {
    /* reported below */
  }
  throw new L3isoError(
    'EUSAGE',
    `no network interface named "${iface}" in ${netns ? `network namespace ${netns}` : 'this network namespace'}`,
  );
}

function uplinkKey(ifindex: number): Buffer {
  const k = Buffer.alloc(4);
  k.writeUInt32LE(ifindex);
  return k;
}

function modeFlags(mode: XdpMode): number {
  return mode === 'native' ? XdpFlags.DRV_MODE : XdpFlags.SKB_MODE;
}

export function attachUplink(pinDir: string, iface: string, requested?: XdpMode): AttachResult {
  requireRoot('attach');
  const ifindex = ifindexOf(iface);
  const state = EngineState.open(pinDir);
  try {
    return withLock(state.layout, () => {
      const previous = readUplink(state, ifindex);
      const obj = loadWithPinnedMaps(UPLINK_OBJECT, state.layout);
      try {
        const xdpFd = obj.program('l3_xdp').fd;
        const present = xdpQueryId(ifindex);
        if (present !== 0 && present !== previous?.xdpProgId) {
          throw new L3isoError(
            'EUSAGE',
            `${iface} already has an XDP program (id ${present}) that l3iso did not attach`,
            'detach it first (ip link set dev IFACE xdp off)',
          );
        }
        let mode: XdpMode = requested ?? 'native';
        let warning: string | undefined;
        // A mode switch cannot replace in place: take ours off first.
        if (previous && previous.xdpFlags !== modeFlags(mode))
          xdpDetach(ifindex, previous.xdpFlags);
        try {
          xdpAttach(ifindex, xdpFd, modeFlags(mode));
        } catch (err) {
          if (requested === 'native' || !(err instanceof BpfError)) throw err;
          warning = `${iface}: native XDP refused (${err.code}); using generic mode, which is slower`;
          mode = 'generic';
          xdpAttach(ifindex, xdpFd, modeFlags(mode));
        }
        const xdpProgId = xdpQueryId(ifindex, modeFlags(mode));
        let tcProgId: number;
        try {
          tcHookCreate(ifindex, TcAttachPoint.EGRESS);
          tcProgId = tcAttach(ifindex, TcAttachPoint.EGRESS, obj.program('l3_tc_egress').fd, {
            handle: TC_HANDLE,
            priority: TC_PRIORITY,
            replace: true,
          }).progId;
        } catch (err) {
          // Nothing half-applied: an XDP without its tc half would count
          // ingress but let spoofed frames out.
          if (!previous) xdpDetach(ifindex, modeFlags(mode));
          throw err;
        }
        const record: Uplink = { xdpFlags: modeFlags(mode), xdpProgId, tcProgId };
        state.map('l3_uplinks').update(uplinkKey(ifindex), encodeUplink(record), MapUpdate.ANY);
        return { iface, ifindex, mode, xdpProgId, tcProgId, ...(warning ? { warning } : {}) };
      } finally {
        obj.close();
      }
    });
  } finally {
    state.close();
  }
}

function readUplink(state: EngineState, ifindex: number): Uplink | undefined {
  const raw = state.map('l3_uplinks').lookup(uplinkKey(ifindex));
  return raw ? decodeUplink(raw) : undefined;
}

/** Removes our XDP program and tc filter, if they are still the ones there. */
function removeUplink(state: EngineState, ifindex: number, record: Uplink): void {
  if (xdpQueryId(ifindex, record.xdpFlags) === record.xdpProgId)
    xdpDetach(ifindex, record.xdpFlags);
  try {
    tcDetach(ifindex, TcAttachPoint.EGRESS, { handle: TC_HANDLE, priority: TC_PRIORITY });
  } catch (err) {
    if (!isErrno(err, 'ENOENT') && !isErrno(err, 'EINVAL')) throw err;
  }
  state.map('l3_uplinks').delete(uplinkKey(ifindex));
}

export function detachUplink(pinDir: string, iface: string): { iface: string; ifindex: number } {
  requireRoot('detach');
  const ifindex = ifindexOf(iface);
  const state = EngineState.open(pinDir);
  try {
    return withLock(state.layout, () => {
      const record = readUplink(state, ifindex);
      if (!record) throw new L3isoError('ENOT_ASSIGNED', `l3iso is not attached to ${iface}`);
      removeUplink(state, ifindex, record);
      return { iface, ifindex };
    });
  } finally {
    state.close();
  }
}

/** For `down`: every interface this instance is attached to, best effort
 * (an interface may have gone away with its attachments). */
export function detachAllUplinks(state: EngineState): number {
  const map = state.map('l3_uplinks');
  let n = 0;
  for (const key of [...map.keys()]) {
    const raw = map.lookup(key);
    if (!raw) continue;
    try {
      removeUplink(state, key.readUInt32LE(), decodeUplink(raw));
      n++;
    } catch {
      map.delete(key);
    }
  }
  return n;
}

export function listUplinks(state: EngineState): { ifindex: number; uplink: Uplink }[] {
  const map = state.map('l3_uplinks');
  const out: { ifindex: number; uplink: Uplink }[] = [];
  for (const key of map.keys()) {
    const raw = map.lookup(key);
    if (raw) out.push({ ifindex: key.readUInt32LE(), uplink: decodeUplink(raw) });
  }
  return out;
}
