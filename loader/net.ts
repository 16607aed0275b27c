// Netlink attachments. Unlike bpf_links these stay attached after the
// process exits without any pin: detach them explicitly.

import { TcAttachPoint, XdpFlags } from './constants';
import { check } from './errors';
import { NULL, libbpf } from './libbpf';

const EEXIST = 17;

// struct bpf_xdp_attach_opts.
const XDP_OPTS_SIZE = 16;
const XDP_OPTS = { oldProgFd: 8 };
// struct bpf_tc_hook.
const TC_HOOK_SIZE = 24;
const TC_HOOK = { ifindex: 8, attachPoint: 12, parent: 16 };
// struct bpf_tc_opts.
const TC_OPTS_SIZE = 32;
const TC_OPTS = { progFd: 8, flags: 12, progId: 16, handle: 20, priority: 24 };
const BPF_TC_F_REPLACE = 1;

function xdpOpts(oldProgFd?: number): Buffer {
  if (oldProgFd === undefined) return NULL;
  const o = Buffer.alloc(XDP_OPTS_SIZE);
  o.writeBigUInt64LE(BigInt(XDP_OPTS_SIZE), 0);
  o.writeInt32LE(oldProgFd, XDP_OPTS.oldProgFd);
  return o;
}

/**
 * Attaches an XDP program to `ifindex` (bpf_xdp_attach). Pass
 * XdpFlags.SKB_MODE or DRV_MODE to force a mode; with `oldProgFd` add
 * XdpFlags.REPLACE to swap atomically only if that program is attached.
 */
export function xdpAttach(
  ifindex: number,
  progFd: number,
  flags: XdpFlags | number = XdpFlags.NONE,
  opts: { oldProgFd?: number } = {},
): void {
  check(
    'bpf_xdp_attach',
    libbpf.bpf_xdp_attach(ifindex, progFd, flags, xdpOpts(opts.oldProgFd)),
    `ifindex ${ifindex}`,
  );
}

/** Removes the XDP program of the given mode from `ifindex`. */
export function xdpDetach(
  ifindex: number,
  flags: XdpFlags | number = XdpFlags.NONE,
  opts: { oldProgFd?: number } = {},
): void {
  check(
    'bpf_xdp_detach',
    libbpf.bpf_xdp_detach(ifindex, flags, xdpOpts(opts.oldProgFd)),
    `ifindex ${ifindex}`,
  );
}

/**
 * Id of the XDP program attached to `ifindex` in the mode selected by
 * `flags` (SKB_MODE / DRV_MODE / HW_MODE, or 0 for the only one), 0 when
 * none. An unknown ifindex also yields 0: libbpf filters a netlink dump.
 */
export function xdpQueryId(ifindex: number, flags: XdpFlags | number = XdpFlags.NONE): number {
  const id = Buffer.alloc(4);
  check('bpf_xdp_query_id', libbpf.bpf_xdp_query_id(ifindex, flags, id), `ifindex ${ifindex}`);
  return id.readUInt32LE();
}

function tcHook(ifindex: number, attachPoint: TcAttachPoint, parent = 0): Buffer {
  const h = Buffer.alloc(TC_HOOK_SIZE);
  h.writeBigUInt64LE(BigInt(TC_HOOK_SIZE), 0);
  h.writeInt32LE(ifindex, TC_HOOK.ifindex);
  h.writeUInt32LE(attachPoint, TC_HOOK.attachPoint);
  h.writeUInt32LE(parent, TC_HOOK.parent);
  return h;
}

/**
 * Ensures the clsact qdisc exists on `ifindex`. Returns false when it
 * already existed (not an error: several tools share it).
 */
export function tcHookCreate(ifindex: number, attachPoint: TcAttachPoint): boolean {
  const ret = libbpf.bpf_tc_hook_create(tcHook(ifindex, attachPoint));
  if (ret === -EEXIST) return false;
  check('bpf_tc_hook_create', ret, `ifindex ${ifindex}`);
  return true;
}

/**
 * Removes the clsact qdisc when `attachPoint` is INGRESS|EGRESS, which drops
 * every tc filter of every tool on the device; with only INGRESS or EGRESS,
 * flushes all filters of that direction. Prefer `tcDetach` of our own filter.
 */
export function tcHookDestroy(ifindex: number, attachPoint: TcAttachPoint | number): void {
  check(
    'bpf_tc_hook_destroy',
    libbpf.bpf_tc_hook_destroy(tcHook(ifindex, attachPoint)),
    `ifindex ${ifindex}`,
  );
}

export interface TcFilter {
  /** Filter handle (chosen by the kernel when 0 was asked). */
  handle: number;
  /** Filter priority (chosen by the kernel when 0 was asked). */
  priority: number;
  /** Kernel id of the attached program. */
  progId: number;
}

/**
 * Attaches a SCHED_CLS program as a direct-action filter on the hook
 * (`tcHookCreate` first). A filter with the same handle/priority exists:
 * BpfError 'EEXIST' unless `replace`.
 */
export function tcAttach(
  ifindex: number,
  attachPoint: TcAttachPoint,
  progFd: number,
  opts: { handle?: number; priority?: number; replace?: boolean } = {},
): TcFilter {
  const o = Buffer.alloc(TC_OPTS_SIZE);
  o.writeBigUInt64LE(BigInt(TC_OPTS_SIZE), 0);
  o.writeInt32LE(progFd, TC_OPTS.progFd);
  o.writeUInt32LE(opts.replace ? BPF_TC_F_REPLACE : 0, TC_OPTS.flags);
  o.writeUInt32LE(opts.handle ?? 0, TC_OPTS.handle);
  o.writeUInt32LE(opts.priority ?? 0, TC_OPTS.priority);
  check(
    'bpf_tc_attach',
    libbpf.bpf_tc_attach(tcHook(ifindex, attachPoint), o),
    `ifindex ${ifindex}`,
  );
  return {
    handle: o.readUInt32LE(TC_OPTS.handle),
    priority: o.readUInt32LE(TC_OPTS.priority),
    progId: o.readUInt32LE(TC_OPTS.progId),
  };
}

/** Removes the filter `tcAttach` returned; gone already: BpfError 'ENOENT'. */
export function tcDetach(
  ifindex: number,
  attachPoint: TcAttachPoint,
  filter: { handle: number; priority: number },
): void {
  // libbpf insists that prog_fd, prog_id and flags are zero here.
  const o = Buffer.alloc(TC_OPTS_SIZE);
  o.writeBigUInt64LE(BigInt(TC_OPTS_SIZE), 0);
  o.writeUInt32LE(filter.handle, TC_OPTS.handle);
  o.writeUInt32LE(filter.priority, TC_OPTS.priority);
  check(
    'bpf_tc_detach',
    libbpf.bpf_tc_detach(tcHook(ifindex, attachPoint), o),
    `ifindex ${ifindex}`,
  );
}
