/**
 * What each l3iso program costs: kernel.bpf_stats_enabled run time per run
 * (bpftool prog show), verifier instruction counts, and a BPF_PROG_TEST_RUN
 * comparison of the uplink ingress filter with an empty program.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  AttachType,
  BpfLink,
  BpfObject,
  TcAttachPoint,
  inNetns,
  progTestRun,
  tcAttach,
  tcDetach,
  tcHookCreate,
} from '../loader';
import { ifindexOf } from '../src/dataplane/uplink';
import {
  L3_LAYOUT_VERSION,
  encodeAddr,
  encodeCell,
  encodeCellKey,
  encodeConfig,
  encodeOwner,
} from '../src/codecs/layout';
import { parsePrefix } from '../src/model/address';
import { bpfObjectPath, packageRoot } from '../src/dataplane/paths';
import { sh, type Cleanup } from './isolation';

export interface ProgInfo {
  id: number;
  name: string;
  type: string;
  runTimeNs: number;
  runCnt: number;
  /** instructions the verifier walked (kernel 5.16+) */
  verifiedInsns?: number;
  /** instructions after the verifier's rewrites */
  xlatedInsns: number;
  jitedBytes: number;
}

interface BpftoolProg {
  id: number;
  name?: string;
  type: string;
  run_time_ns?: number;
  run_cnt?: number;
  verified_insns?: number;
  bytes_xlated?: number;
  bytes_jited?: number;
}

export function progInfo(ids: number[]): Map<number, ProgInfo> {
  const all = JSON.parse(sh('bpftool', ['prog', 'show', '-j'])) as BpftoolProg[];
  const want = new Set(ids);
  const out = new Map<number, ProgInfo>();
  for (const p of all) {
    if (!want.has(p.id)) continue;
    out.set(p.id, {
      id: p.id,
      name: p.name ?? `#${p.id}`,
      type: p.type,
      runTimeNs: p.run_time_ns ?? 0,
      runCnt: p.run_cnt ?? 0,
      verifiedInsns: p.verified_insns,
      xlatedInsns: (p.bytes_xlated ?? 0) / 8,
      jitedBytes: p.bytes_jited ?? 0,
    });
  }
  return out;
}

/** Program ids behind an engine's pinned links (sockets, demux, packets). */
export function engineProgIds(pinDir: string): number[] {
  const dir = path.join(pinDir, 'links');
  const ids: number[] = [];
  for (const f of fs.readdirSync(dir)) {
    const j = JSON.parse(sh('bpftool', ['link', 'show', 'pinned', path.join(dir, f), '-j'])) as {
      prog_id: number;
    };
    ids.push(j.prog_id);
  }
  return ids;
}

/** Turns kernel.bpf_stats_enabled on; the returned function restores it. */
export function enableBpfStats(cleanup: Cleanup): () => void {
  const file = '/proc/sys/kernel/bpf_stats_enabled';
  const old = fs.readFileSync(file, 'utf8').trim();
  fs.writeFileSync(file, '1');
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    fs.writeFileSync(file, old);
  };
  cleanup.push('bpf_stats_enabled', restore);
  return restore;
}

export interface ProgCost {
  name: string;
  type: string;
  runs: number;
  nsPerRun: number;
}

/** Per-program ns per run between two snapshots (programs that ran). */
export function costBetween(a: Map<number, ProgInfo>, b: Map<number, ProgInfo>): ProgCost[] {
  const out: ProgCost[] = [];
  for (const [id, after] of b) {
    const before = a.get(id);
    const runs = after.runCnt - (before?.runCnt ?? 0);
    if (runs <= 0) continue;
    const ns = after.runTimeNs - (before?.runTimeNs ?? 0);
    out.push({ name: after.name, type: after.type, runs, nsPerRun: ns / runs });
  }
  return out.sort((x, y) => x.name.localeCompare(y.name));
}

// ---- BPF_PROG_TEST_RUN: the ingress filter against an empty program ------

export interface TestRunCost {
  frame: string;
  xdpNs: number;
  emptyXdpNs: number;
  tcIngressNs: number;
  emptyTcNs: number;
}

/* Empty programs of every hook l3iso uses on a packet: the floor that the
 * kernel's own cost of running a program (and bpf_stats) puts under ours.
 * empty_tc returns TC_ACT_UNSPEC, so the next filter (ours) still runs. */
const EMPTY_SRC = `#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp") int empty_xdp(struct xdp_md *ctx) { return XDP_PASS; }
SEC("tc") int empty_tc(struct __sk_buff *skb) { return -1; }
SEC("cgroup_skb/ingress") int empty_ingress(struct __sk_buff *skb) { return 1; }
SEC("cgroup_skb/egress") int empty_egress(struct __sk_buff *skb) { return 1; }
char LICENSE[] SEC("license") = "GPL";
`;

export function compileEmpty(dir: string): string {
  const src = path.join(dir, 'empty.bpf.c');
  const obj = path.join(dir, 'empty.bpf.o');
  if (fs.existsSync(obj)) return obj;
  fs.writeFileSync(src, EMPTY_SRC);
  const arch = sh('gcc', ['-dumpmachine']).trim();
  sh('clang', ['-O2', '-g', '-target', 'bpf', '-I', `/usr/include/${arch}`, '-c', src, '-o', obj]);
  return obj;
}

/** A 64-byte-payload UDP frame from src to dst (Ethernet + IPv4). */
function udpFrame(src: string, dst: string): Buffer {
  const eth = Buffer.from('020000000001020000000002' + '0800', 'hex');
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + 8 + 64, 2);
  ip[8] = 64;
  ip[9] = 17;
  Buffer.from(parsePrefix(src).address.bytes).copy(ip, 12);
  Buffer.from(parsePrefix(dst).address.bytes).copy(ip, 16);
  const udp = Buffer.alloc(8 + 64);
  udp.writeUInt16BE(40000, 0);
  udp.writeUInt16BE(9, 2);
  udp.writeUInt16BE(8 + 64, 4);
  return Buffer.concat([eth, ip, udp]);
}

/** Mean ns per run of each program on the same frames, private maps only. */
export function testRunCosts(tmp: string, repeat: number): TestRunCost[] {
  const uplink = BpfObject.open(bpfObjectPath('uplink.bpf.o'));
  const empty = BpfObject.open(compileEmpty(tmp));
  try {
    uplink.load();
    empty.load();
    const cell = 0x7e57_0000_0000_00a1n;
    const owned = '192.0.2.5';
    uplink
      .map('l3_config')
      .update(
        Buffer.alloc(4),
        encodeConfig({ rootCgroup: 1n, rootLevel: 0, version: L3_LAYOUT_VERSION, cgroupRoot: '/' }),
      );
    uplink.map('l3_cells').update(
      encodeCellKey(cell),
      encodeCell({
        primary4: parsePrefix(owned).address,
        loopback4: parsePrefix('127.64.0.5').address,
        flags: 0,
        addrs4: 1,
        addrs6: 0,
      }),
    );
    uplink
      .map('l3_owners')
      .update(encodeAddr(parsePrefix(owned).address), encodeOwner({ cell, flags: 0 }));
    const stats = uplink.map('l3_cell_stats');
    stats.update(encodeCellKey(cell), Buffer.alloc(stats.valueBufferSize));
    const frames: [string, Buffer][] = [
      ['to a cell (owner hit)', udpFrame('198.51.100.1', owned)],
      ['host traffic (no owner, no managed prefix)', udpFrame('198.51.100.1', '203.0.113.1')],
    ];
    const run = (fd: number, f: Buffer) => progTestRun(fd, f, { repeat }).duration;
    return frames.map(([frame, f]) => ({
      frame,
      xdpNs: run(uplink.program('l3_xdp').fd, f),
      emptyXdpNs: run(empty.program('empty_xdp').fd, f),
      tcIngressNs: run(uplink.program('l3_tc_ingress').fd, f),
      emptyTcNs: run(empty.program('empty_tc').fd, f),
    }));
  } finally {
    uplink.close();
    empty.close();
  }
}

export function benchRoot(): string {
  return path.join(packageRoot(), 'bench');
}

/**
 * Attaches the empty programs next to ours for the profile pass: cgroup_skb
 * ingress and egress on the cell, tc ingress and egress on the uplink
 * (before ours, passing on). Returns their ids and how to take them off.
 */
export function attachEmpty(
  tmp: string,
  cellPath: string,
  netnsPath: string,
  iface: string,
): { ids: number[]; detach: () => void } {
  const obj = BpfObject.open(compileEmpty(tmp));
  const undo: (() => void)[] = [() => obj.close()];
  let done = false;
  const detach = () => {
    if (done) return;
    done = true;
    for (const u of undo.reverse()) {
      try {
        u();
      } catch {
        /* best effort */
      }
    }
  };
  try {
    obj.load();
    const cg = fs.openSync(cellPath, 'r');
    undo.push(() => fs.closeSync(cg));
    for (const [prog, type] of [
      ['empty_ingress', AttachType.CGROUP_INET_INGRESS],
      ['empty_egress', AttachType.CGROUP_INET_EGRESS],
    ] as const) {
      const link = BpfLink.create(obj.program(prog), cg, type);
      undo.push(() => link.close());
    }
    const tcFd = obj.program('empty_tc').fd;
    inNetns(netnsPath, () => {
      const ifindex = ifindexOf(iface);
      for (const point of [TcAttachPoint.INGRESS, TcAttachPoint.EGRESS]) {
        tcHookCreate(ifindex, point);
        tcAttach(ifindex, point, tcFd, { handle: EMPTY_TC, priority: EMPTY_TC, replace: true });
        undo.push(() =>
          inNetns(netnsPath, () =>
            tcDetach(ifindex, point, { handle: EMPTY_TC, priority: EMPTY_TC }),
          ),
        );
      }
    });
    const ids = ['empty_ingress', 'empty_egress', 'empty_tc'].map((p) => obj.program(p).id);
    return { ids, detach };
  } catch (err) {
    detach();
    throw err;
  }
}

/** Before our filters (0x6c33): a lower priority number runs first. */
const EMPTY_TC = 0x6c32;
