/**
 * `attach` / `detach`: the uplink programs on a network interface (XDP or
 * tc on ingress, tc on egress). XDP is a bpf_link pinned in the pin dir
 * (links/uplink-xdp-IFINDEX), like every other program; the tc filters are
 * netlink attachments. l3_uplinks records them so `detach` and `down`
 * remove exactly what l3iso put there and nothing of another tool's.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import {
  BpfError,
  BpfLink,
  MapUpdate,
  TcAttachPoint,
  XdpFlags,
  isErrno,
  tcAttach,
  tcDetach,
  tcHookCreate,
  xdpDetach,
  xdpQueryId,
  type BpfObject,
} from '../../loader';
import { L3isoError } from '../errors';
import { decodeUplink, encodeUplink, type Uplink } from '../codecs/layout';
import { loadWithPinnedMaps } from './objects';
import { XDP_LINK_PREFIX, pinAtomically, type PinLayout } from './paths';
import { withLock } from './lock';
import { UPLINK_OBJECT } from './programs';
import type { EngineState } from './state';

// How the ingress filter runs: XDP in the driver, generic XDP, or tc ingress.
export { UPLINK_MODES, type UplinkMode } from '../model/defaults';
import type { UplinkMode } from '../model/defaults';
/** @deprecated the name before tc ingress existed */
export type XdpMode = UplinkMode;

/** Our tc filters' handle and priority on clsact ingress and egress ("l3"). */
export const TC_HANDLE = 0x6c33;
export const TC_PRIORITY = 0x6c33;

export interface AttachResult {
  iface: string;
  ifindex: number;
  mode: UplinkMode;
  /** why this mode: the device kind, what the driver accepted */
  reason: string;
  /** 0 in tc mode */
  xdpProgId: number;
  /** tc egress */
  tcProgId: number;
  /** 0 in XDP modes */
  tcIngressProgId: number;
  /** what the chosen mode costs the device's offloads (explicit --mode only) */
  offloadCost?: string;
  /** set when native mode was refused and another was used instead */
  warning?: string;
}

/** ifindex in the caller's network namespace (netlink, not /sys, which
 * shows the namespace that mounted it). */
export function ifindexOf(iface: string, netns?: string): number {
  return linkOf(iface, netns).ifindex;
}

interface LinkInfo {
  ifindex: number;
  /** rtnetlink's kind ('veth', 'bridge', ...); undefined for a NIC */
  kind?: string;
}

function linkOf(iface: string, netns?: string): LinkInfo {
  if (!/^[^\s/]{1,15}$/.test(iface))
    throw new L3isoError('EUSAGE', `invalid interface name "${iface}"`);
  try {
    const where = netns ? ['-n', netns] : [];
    const out = execFileSync('ip', [...where, '-j', '-d', 'link', 'show', 'dev', iface], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const [link] = JSON.parse(out) as { ifindex: number; linkinfo?: { info_kind?: string } }[];
    if (link) return { ifindex: link.ifindex, kind: link.linkinfo?.info_kind };
  } catch {
    /* reported below */
  }
  throw new L3isoError(
    'EUSAGE',
    `no network interface named "${iface}" in ${netns ? `network namespace ${netns}` : 'this network namespace'}`,
  );
}

/** The kind of the device with this ifindex, for doctor (undefined: a NIC or gone). */
function kindOfIfindex(ifindex: number): string | undefined {
  try {
    const out = execFileSync('ip', ['-j', '-d', 'link', 'show'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const links = JSON.parse(out) as { ifindex: number; linkinfo?: { info_kind?: string } }[];
    return links.find((l) => l.ifindex === ifindex)?.linkinfo?.info_kind;
  } catch {
    return undefined;
  }
}

/**
 * What a mode costs a device's fast paths, or undefined when nothing. On a
 * veth, native XDP makes the kernel switch TSO off on the peer (every bulk
 * sender into the device segments in software); generic XDP linearises
 * every GSO packet before the program sees it, on any device.
 */
export function offloadCost(mode: UplinkMode, kind: string | undefined): string | undefined {
  if (mode === 'generic')
    return 'generic XDP linearises every GSO/GRO packet (a 64 KB copy each): bulk throughput falls';
  if (mode === 'native' && kind === 'veth')
    return 'native XDP on a veth switches TSO off on its peer: bulk traffic into the cells falls to a fraction';
  return undefined;
}

function uplinkKey(ifindex: number): Buffer {
  const k = Buffer.alloc(4);
  k.writeUInt32LE(ifindex);
  return k;
}

function modeFlags(mode: 'native' | 'generic'): number {
  return mode === 'native' ? XdpFlags.DRV_MODE : XdpFlags.SKB_MODE;
}

interface Choice {
  mode: UplinkMode;
  reason: string;
  warning?: string;
}

/**
 * Puts the ingress filter on in the requested mode, or chooses: tc ingress
 * on virtual devices (it keeps TSO, GRO and GSO intact), native XDP on a
 * NIC whose driver takes it, tc ingress on one whose driver does not.
 */
function attachIngress(
  layout: PinLayout,
  ifindex: number,
  iface: string,
  link: LinkInfo,
  requested: UplinkMode | undefined,
  fds: { xdp: number; tcIngress: number },
): Choice & { xdpProgId: number; tcIngressProgId: number } {
  let choice: Choice;
  if (requested) choice = { mode: requested, reason: 'requested with --mode' };
  else if (link.kind)
    choice = {
      mode: 'tc',
      reason: `${iface} is a ${link.kind} device: tc ingress keeps its TSO/GRO/GSO fast paths (native XDP on a veth switches TSO off on the peer; generic XDP linearises GSO packets)`,
    };
  else choice = { mode: 'native', reason: `${iface} is a NIC: native XDP in its driver` };
  if (choice.mode === 'tc') {
    tcHookCreate(ifindex, TcAttachPoint.INGRESS);
    const f = tcAttach(ifindex, TcAttachPoint.INGRESS, fds.tcIngress, {
      handle: TC_HANDLE,
      priority: TC_PRIORITY,
      replace: true,
    });
    return { ...choice, xdpProgId: 0, tcIngressProgId: f.progId };
  }
  try {
    attachXdpLink(layout, ifindex, fds.xdp, modeFlags(choice.mode));
  } catch (err) {
    if (requested || !(err instanceof BpfError)) throw err;
    // No native XDP in this driver: tc ingress, not generic XDP, which
    // would linearise every GSO packet.
    const tc = attachIngress(layout, ifindex, iface, link, 'tc', fds);
    return { ...tc, reason: `${iface}: the driver refused native XDP (${err.code}); tc ingress` };
  }
  return { ...choice, xdpProgId: xdpQueryId(ifindex, modeFlags(choice.mode)), tcIngressProgId: 0 };
}

export function attachUplink(
  state: EngineState,
  iface: string,
  requested?: UplinkMode,
): AttachResult {
  const link = linkOf(iface);
  const ifindex = link.ifindex;
  return withLock(state, () => {
    const previous = readUplink(state, ifindex);
    const obj = loadWithPinnedMaps(UPLINK_OBJECT, state.layout);
    try {
      refuseForeignXdp(iface, ifindex, previous);
      // An XDP mode switch cannot replace in place: take ours off first.
      // Leaving XDP for tc keeps it until tc ingress is on (no gap).
      const wanted = requested ?? (link.kind ? 'tc' : 'native');
      if (previous?.xdpProgId && wanted !== 'tc' && previous.xdpFlags !== modeFlags(wanted))
        removeXdp(state.layout, ifindex, previous.xdpFlags, previous.xdpProgId);
      const ingress = attachIngress(state.layout, ifindex, iface, link, requested, {
        xdp: obj.program('l3_xdp').fd,
        tcIngress: obj.program('l3_tc_ingress').fd,
      });
      const tcProgId = attachEgress(state.layout, ifindex, obj, ingress, previous);
      const record: Uplink = {
        xdpFlags: ingressFlags(ingress),
        xdpProgId: ingress.xdpProgId,
        tcProgId,
        tcIngressProgId: ingress.tcIngressProgId,
      };
      removeUnusedHalf(state.layout, ifindex, previous, ingress);
      state.map('l3_uplinks').update(uplinkKey(ifindex), encodeUplink(record), MapUpdate.ANY);
      const cost = requested ? offloadCost(ingress.mode, link.kind) : undefined;
      return {
        iface,
        ifindex,
        mode: ingress.mode,
        reason: ingress.reason,
        xdpProgId: ingress.xdpProgId,
        tcProgId,
        tcIngressProgId: ingress.tcIngressProgId,
        ...(cost ? { offloadCost: cost } : {}),
      };
    } finally {
      obj.close();
    }
  });
}

type Ingress = ReturnType<typeof attachIngress>;

const ingressFlags = (ingress: Ingress): number =>
  ingress.mode === 'tc' ? 0 : modeFlags(ingress.mode);

/** Another tool's XDP program stays: replacing it would silently drop its filter. */
function refuseForeignXdp(iface: string, ifindex: number, previous: Uplink | undefined): void {
  const present = xdpQueryId(ifindex);
  if (present !== 0 && present !== previous?.xdpProgId) {
    throw new L3isoError(
      'EUSAGE',
      `${iface} already has an XDP program (id ${present}) that l3iso did not attach`,
      'detach it first (ip link set dev IFACE xdp off)',
    );
  }
}

/** The tc egress filter (anti-spoofing); its program id. */
function attachEgress(
  layout: PinLayout,
  ifindex: number,
  obj: BpfObject,
  ingress: Ingress,
  previous: Uplink | undefined,
): number {
  try {
    tcHookCreate(ifindex, TcAttachPoint.EGRESS);
    return tcAttach(ifindex, TcAttachPoint.EGRESS, obj.program('l3_tc_egress').fd, {
      handle: TC_HANDLE,
      priority: TC_PRIORITY,
      replace: true,
    }).progId;
  } catch (err) {
    // Nothing half-applied: an ingress filter without its tc egress
    // half would count ingress but let spoofed frames out.
    if (!previous) removeIngress(layout, ifindex, ingressFlags(ingress), ingress);
    throw err;
  }
}

/** The half of the previous attachment the new mode does not use. */
function removeUnusedHalf(
  layout: PinLayout,
  ifindex: number,
  previous: Uplink | undefined,
  ingress: Ingress,
): void {
  if (previous?.xdpProgId && ingress.mode === 'tc')
    removeIngress(layout, ifindex, previous.xdpFlags, {
      xdpProgId: previous.xdpProgId,
      tcIngressProgId: 0,
    });
  if (previous?.tcIngressProgId && ingress.mode !== 'tc')
    removeIngress(layout, ifindex, 0, {
      xdpProgId: 0,
      tcIngressProgId: previous.tcIngressProgId,
    });
}

/** Where the XDP link of an uplink is pinned (links/uplink-xdp-IFINDEX). */
export function xdpLinkPin(layout: PinLayout, ifindex: number): string {
  return layout.link(`${XDP_LINK_PREFIX}${ifindex}`);
}

/**
 * XDP through a bpf_link (Linux 5.9+), pinned like every other program of
 * the engine: it stays attached after the CLI exits because the pin holds
 * it, and the pin is all detach and down have to remove. A re-attach in the
 * same mode swaps the program in place (bpf_link_update: no instant
 * without the filter).
 */
function attachXdpLink(layout: PinLayout, ifindex: number, progFd: number, flags: number): void {
  const pin = xdpLinkPin(layout, ifindex);
  if (fs.existsSync(pin)) {
    const link = BpfLink.openPinned(pin);
    try {
      link.update(progFd);
      return;
    } catch (err) {
      // Its device went away (a defunct link): a new one below.
      if (!isErrno(err, 'ENOLINK')) throw err;
    } finally {
      link.close();
    }
    fs.rmSync(pin, { force: true });
  }
  const link = BpfLink.xdp(progFd, ifindex, flags);
  try {
    pinAtomically(pin, (p) => link.pin(p));
  } finally {
    link.close();
  }
}

/** Takes our XDP program off: its pinned link (detached, then unpinned), or
 * one an older l3iso attached over netlink, if it is still the one there. */
function removeXdp(layout: PinLayout, ifindex: number, xdpFlags: number, progId: number): void {
  const pin = xdpLinkPin(layout, ifindex);
  if (fs.existsSync(pin)) {
    const link = BpfLink.openPinned(pin);
    try {
      link.detach();
    } catch (err) {
      if (!isErrno(err, 'ENOLINK') && !isErrno(err, 'EINVAL')) throw err;
    } finally {
      link.close();
    }
    fs.rmSync(pin, { force: true });
    return;
  }
  if (xdpQueryId(ifindex, xdpFlags) === progId) xdpDetach(ifindex, xdpFlags);
}

function readUplink(state: EngineState, ifindex: number): Uplink | undefined {
  const raw = state.map('l3_uplinks').lookup(uplinkKey(ifindex));
  return raw ? decodeUplink(raw) : undefined;
}

function detachTc(ifindex: number, point: TcAttachPoint): void {
  try {
    tcDetach(ifindex, point, { handle: TC_HANDLE, priority: TC_PRIORITY });
  } catch (err) {
    if (!isErrno(err, 'ENOENT') && !isErrno(err, 'EINVAL')) throw err;
  }
}

/** Takes our ingress filter off, XDP or tc, if it is still the one there. */
function removeIngress(
  layout: PinLayout,
  ifindex: number,
  xdpFlags: number,
  ids: { xdpProgId: number; tcIngressProgId: number },
): void {
  if (ids.xdpProgId) removeXdp(layout, ifindex, xdpFlags, ids.xdpProgId);
  if (ids.tcIngressProgId) detachTc(ifindex, TcAttachPoint.INGRESS);
}

/** Removes our ingress filter and tc egress filter, if they are still ours. */
function removeUplink(state: EngineState, ifindex: number, record: Uplink): void {
  removeIngress(state.layout, ifindex, record.xdpFlags, record);
  detachTc(ifindex, TcAttachPoint.EGRESS);
  state.map('l3_uplinks').delete(uplinkKey(ifindex));
}

/** Attached uplinks whose mode costs their device's offloads, for doctor. */
export function uplinkOffloadWarnings(
  state: EngineState,
): { ifindex: number; mode: UplinkMode; warning: string }[] {
  const out: { ifindex: number; mode: UplinkMode; warning: string }[] = [];
  for (const { ifindex, uplink } of listUplinks(state)) {
    const mode = uplinkMode(uplink);
    const cost = offloadCost(mode, kindOfIfindex(ifindex));
    if (cost) out.push({ ifindex, mode, warning: cost });
  }
  return out;
}

export function uplinkMode(u: Uplink): UplinkMode {
  if (u.tcIngressProgId && !u.xdpProgId) return 'tc';
  return u.xdpFlags === XdpFlags.DRV_MODE ? 'native' : 'generic';
}

export function detachUplink(
  state: EngineState,
  iface: string,
): { iface: string; ifindex: number } {
  const ifindex = ifindexOf(iface);
  return withLock(state, () => {
    const record = readUplink(state, ifindex);
    if (!record) throw new L3isoError('ENOT_ASSIGNED', `l3iso is not attached to ${iface}`);
    removeUplink(state, ifindex, record);
    return { iface, ifindex };
  });
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
