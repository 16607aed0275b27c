// DESIGN.md, packet layer: "XDP on the uplink: per-cell ingress allow-lists
// of source prefixes, drop of traffic to managed-but-unassigned addresses,
// per-cell rx counters" and "tc egress on the uplink: per-cell tx counters,
// anti-spoof at the wire". bpf/uplink.bpf.c header comment: parse Ethernet,
// up to two VLAN tags (802.1Q, 802.1ad), IPv4 or IPv6; "Everything else
// (ARP, ND, host traffic, non-IP, truncated frames) passes untouched and
// uncounted".
//
// No namespace, no attachment: bpf/uplink.bpf.o is loaded with fresh private
// maps, the maps are filled through the codecs of src/codecs/layout.ts, and
// the programs run on crafted frames through BPF_PROG_TEST_RUN.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BpfMap, BpfObject, isErrno, progTestRun } from '../../loader';
import {
  Drop,
  L3_CELL_ALLOW_LIST,
  L3_LAYOUT_VERSION,
  L3_OWNER_LOOPBACK,
  TRAFFIC_FIELDS,
  decodeCellDenials,
  decodeCellStatsPerCpu,
  emptyCellDenials,
  encodeAddr,
  encodeAllowKey,
  encodeCell,
  encodeCellKey,
  encodeConfig,
  encodeOwner,
  encodePrefixKey,
  sumCellStats,
  type CellTotals,
  type TrafficName,
} from '../../src/codecs/layout';
import { parsePrefix, type CellAddress } from '../../src/model/address';
import { cgroup2Mount } from '../harness/sandbox';

const OBJ = path.resolve(__dirname, '..', '..', 'bpf', 'uplink.bpf.o');

const XDP_DROP = 1;
const XDP_PASS = 2;
const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;

// Cell ids far above any kernfs id, so no real cgroup (the test runner's,
// which the test-run skb's dummy socket carries) can be mistaken for them.
const CELL_A = 0x7e57_0000_0000_00a1n; // plain cell
const CELL_B = 0x7e57_0000_0000_00b2n; // cell with an allow-list

const A4 = '192.0.2.5';
const A6 = '2001:db8::5';
const A_LO = '127.64.0.5'; // A's private loopback alias
const B4 = '192.0.2.6';
const B6 = '2001:db8::6';
const UNASSIGNED4 = '192.0.2.99';
const UNASSIGNED6 = '2001:db8::99';
const OUTSIDE4 = '203.0.113.1'; // outside every managed prefix
const OUTSIDE6 = '2001:db8:ffff::1';
const MANAGED = ['192.0.2.0/24', '2001:db8::/64'];
const B_ALLOW = ['198.51.100.0/24', '2001:db8:100::/48'];
const ALLOWED4 = '198.51.100.7';
const ALLOWED6 = '2001:db8:100::7';
const DENIED4 = '203.0.113.9';
const DENIED6 = '2001:db8:200::9';
const SRC4 = '198.51.100.1';
const SRC6 = '2001:db8:100::1';

// ---- frame builders ------------------------------------------------------

const addr = (text: string): CellAddress => parsePrefix(text).address;
const ipBytes = (text: string): Buffer => Buffer.from(addr(text).bytes);

const DST_MAC = Buffer.from('020000000001', 'hex');
const SRC_MAC = Buffer.from('020000000002', 'hex');
const ETH_IP = 0x0800;
const ETH_IP6 = 0x86dd;
const ETH_ARP = 0x0806;
const TPID_8021Q = 0x8100;
const TPID_8021AD = 0x88a8;

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** Ethernet header; `tags` are TPIDs, outermost first, each with a VID. */
function eth(type: number, tags: number[] = []): Buffer {
  const parts: Buffer[] = [DST_MAC, SRC_MAC];
  tags.forEach((tpid, i) => parts.push(u16(tpid), u16(100 + i)));
  parts.push(u16(type));
  return Buffer.concat(parts);
}

function csum(b: Buffer): number {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length % 2) s += b[b.length - 1] << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return ~s & 0xffff;
}

function udp(payload: Buffer, sport = 40000, dport = 9): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(8 + payload.length, 4);
  return Buffer.concat([h, payload]); // checksum 0: none (fine for IPv4)
}

interface V4Opts {
  src: string;
  dst: string;
  proto?: number;
  ihl?: number;
  /** fragment offset in 8-byte units, and More Fragments */
  fragOffset?: number;
  mf?: boolean;
}

function ipv4(o: V4Opts, payload: Buffer): Buffer {
  const ihl = o.ihl ?? 5;
  const h = Buffer.alloc(ihl * 4);
  h[0] = 0x40 | ihl;
  h.writeUInt16BE(h.length + payload.length, 2);
  h.writeUInt16BE(0x1234, 4);
  h.writeUInt16BE(((o.mf ? 1 : 0) << 13) | (o.fragOffset ?? 0), 6);
  h[8] = 64;
  h[9] = o.proto ?? 17;
  ipBytes(o.src).copy(h, 12);
  ipBytes(o.dst).copy(h, 16);
  // Options: NOPs, then End of Options.
  for (let i = 20; i < h.length; i++) h[i] = i === h.length - 1 ? 0 : 1;
  h.writeUInt16BE(csum(h), 10);
  return Buffer.concat([h, payload]);
}

function ipv6(src: string, dst: string, next: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h.writeUInt32BE(6 << 28, 0);
  h.writeUInt16BE(payload.length, 4);
  h[6] = next;
  h[7] = 64;
  ipBytes(src).copy(h, 8);
  ipBytes(dst).copy(h, 24);
  return Buffer.concat([h, payload]);
}

const PAYLOAD = Buffer.from('l3iso uplink test payload');

const frame4 = (src: string, dst: string, tags: number[] = []): Buffer =>
  Buffer.concat([eth(ETH_IP, tags), ipv4({ src, dst }, udp(PAYLOAD))]);
const frame6 = (src: string, dst: string, tags: number[] = []): Buffer =>
  Buffer.concat([eth(ETH_IP6, tags), ipv6(src, dst, 17, udp(PAYLOAD))]);

/** ARP request "who has `target`?" from `sender`. */
function arp(sender: string, target: string): Buffer {
  const a = Buffer.alloc(28);
  a.writeUInt16BE(1, 0); // Ethernet
  a.writeUInt16BE(ETH_IP, 2);
  a[4] = 6;
  a[5] = 4;
  a.writeUInt16BE(1, 6); // request
  SRC_MAC.copy(a, 8);
  ipBytes(sender).copy(a, 14);
  ipBytes(target).copy(a, 24);
  return Buffer.concat([eth(ETH_ARP), a]);
}

// ---- a reference model of the contract, for the randomised frames --------

interface Expect {
  ret: number;
  /** cell whose uplink rx counters grow by one frame */
  rx?: bigint;
  /** [cell, reason] of a counted drop */
  drop?: [bigint, Drop];
}

interface Parsed {
  family: 4 | 6;
  src: Buffer;
  dst: Buffer;
}

/** What bpf/uplink.bpf.c promises to parse: Ethernet, <= 2 VLAN tags, a
 * complete IPv4 header (options included) or IPv6 fixed header. */
function parseModel(f: Buffer): Parsed | undefined {
  if (f.length < 14) return undefined;
  let off = 14;
  let proto = f.readUInt16BE(12);
  for (let i = 0; i < 2; i++) {
    if (proto !== TPID_8021Q && proto !== TPID_8021AD) break;
    if (f.length < off + 4) return undefined;
    proto = f.readUInt16BE(off + 2);
    off += 4;
  }
  if (proto === ETH_IP) {
    if (f.length < off + 20) return undefined;
    const vi = f[off];
    if (vi >> 4 !== 4 || (vi & 0xf) < 5) return undefined;
    if (f.length < off + (vi & 0xf) * 4) return undefined;
    return { family: 4, src: f.subarray(off + 12, off + 16), dst: f.subarray(off + 16, off + 20) };
  }
  if (proto === ETH_IP6) {
    if (f.length < off + 40) return undefined;
    if (f[off] >> 4 !== 6) return undefined;
    return { family: 6, src: f.subarray(off + 8, off + 24), dst: f.subarray(off + 24, off + 40) };
  }
  return undefined;
}

function inPrefix(a: Buffer, family: 4 | 6, prefix: string): boolean {
  const p = parsePrefix(prefix);
  if (p.address.family !== family) return false;
  for (let bit = 0; bit < p.prefixLength; bit++) {
    const m = 0x80 >> (bit % 8);
    if ((a[bit >> 3] & m) !== (p.address.bytes[bit >> 3] & m)) return false;
  }
  return true;
}

interface ModelOwner {
  cell: bigint;
  loopback: boolean;
}

const OWNERS: Record<string, ModelOwner> = {
  [addr(A4).bytes.toString('hex')]: { cell: CELL_A, loopback: false },
  [addr(A6).bytes.toString('hex')]: { cell: CELL_A, loopback: false },
  [addr(A_LO).bytes.toString('hex')]: { cell: CELL_A, loopback: true },
  [addr(B4).bytes.toString('hex')]: { cell: CELL_B, loopback: false },
  [addr(B6).bytes.toString('hex')]: { cell: CELL_B, loopback: false },
};

function xdpModel(f: Buffer): Expect {
  const p = parseModel(f);
  if (!p) return { ret: XDP_PASS };
  const owner = OWNERS[p.dst.toString('hex')];
  if (!owner) {
    if (MANAGED.some((m) => inPrefix(p.dst, p.family, m)))
      return { ret: XDP_DROP, drop: [0n, Drop.Unassigned] };
    return { ret: XDP_PASS };
  }
  if (owner.loopback) return { ret: XDP_DROP, drop: [owner.cell, Drop.Policy] };
  if (owner.cell === CELL_B && !B_ALLOW.some((m) => inPrefix(p.src, p.family, m)))
    return { ret: XDP_DROP, drop: [CELL_B, Drop.Policy] };
  return { ret: XDP_PASS, rx: owner.cell };
}

/** Deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- the test ------------------------------------------------------------

interface IngressVariant {
  name: string;
  /** the program's verdict on the frame, as an XDP action */
  run: (f: Buffer) => number;
  /** BPF_PROG_TEST_RUN may refuse this frame (EINVAL) before the program runs */
  mayRefuse: (f: Buffer) => boolean;
}

describe('uplink programs under BPF_PROG_TEST_RUN', () => {
  let obj: BpfObject | undefined;
  const maps: Record<string, BpfMap> = {};
  let xdpFd = -1;
  let tcFd = -1;
  let tcInFd = -1;

  const map = (name: string): BpfMap => {
    const m = maps[name];
    if (!m) throw new Error(`map ${name} not opened`);
    return m;
  };

  const zeroStats = (id: bigint): void => {
    const m = map('l3_cell_stats');
    m.update(encodeCellKey(id), Buffer.alloc(m.valueBufferSize));
  };

  /** Per-CPU traffic plus the shared denials (none yet: all zero). */
  const stats = (id: bigint): CellTotals => {
    const raw = map('l3_cell_stats').lookup(encodeCellKey(id));
    if (!raw) throw new Error(`no l3_cell_stats entry for ${id}`);
    const rare = map('l3_cell_denials').lookup(encodeCellKey(id));
    return {
      ...sumCellStats(decodeCellStatsPerCpu(raw)),
      ...(rare ? decodeCellDenials(rare) : emptyCellDenials()),
    };
  };

  const own = (text: string, cell: bigint, flags = 0): void =>
    map('l3_owners').update(encodeAddr(addr(text)), encodeOwner({ cell, flags }));

  const tc = (f: Buffer): number => progTestRun(tcFd, f).retval;

  /** Runs fn and returns how the counters of every cell of interest moved. */
  const deltas = (cells: bigint[], fn: () => void): Map<bigint, CellTotals> => {
    const before = cells.map(stats);
    fn();
    const out = new Map<bigint, CellTotals>();
    cells.forEach((c, i) => {
      const a = before[i];
      const b = stats(c);
      const traffic = Object.fromEntries(TRAFFIC_FIELDS.map((f) => [f, b[f] - a[f]]));
      out.set(c, {
        ...(traffic as Record<TrafficName, bigint>),
        refused: b.refused.map((v, j) => v - (a.refused[j] ?? 0n)),
        dropped: b.dropped.map((v, j) => v - (a.dropped[j] ?? 0n)),
      });
    });
    return out;
  };
  const ALL = [0n, CELL_A, CELL_B];
  const d = (m: Map<bigint, CellTotals>, c: bigint): CellTotals => m.get(c) as CellTotals;
  const droppedTotal = (s: CellTotals): bigint => s.dropped.reduce((x, y) => x + y, 0n);
  const untouched = (s: CellTotals): boolean =>
    s.uplinkRxPackets === 0n &&
    s.uplinkRxBytes === 0n &&
    s.uplinkTxPackets === 0n &&
    s.uplinkTxBytes === 0n &&
    droppedTotal(s) === 0n &&
    s.rxPackets === 0n &&
    s.txPackets === 0n;

  beforeAll(() => {
    obj = BpfObject.open(OBJ);
    obj.load();
    for (const n of [
      'l3_config',
      'l3_cells',
      'l3_owners',
      'l3_cell_stats',
      'l3_cell_denials',
      'l3_managed',
      'l3_allow',
    ]) {
      maps[n] = obj.map(n);
    }
    xdpFd = obj.program('l3_xdp').fd;
    tcFd = obj.program('l3_tc_egress').fd;
    tcInFd = obj.program('l3_tc_ingress').fd;

    map('l3_config').update(
      Buffer.alloc(4),
      encodeConfig({ rootCgroup: 1n, rootLevel: 0, version: L3_LAYOUT_VERSION, cgroupRoot: '/' }),
    );
    map('l3_cells').update(
      encodeCellKey(CELL_A),
      encodeCell({
        primary4: addr(A4),
        loopback4: addr(A_LO),
        primary6: addr(A6),
        flags: 0,
        addrs4: 1,
        addrs6: 1,
      }),
    );
    map('l3_cells').update(
      encodeCellKey(CELL_B),
      encodeCell({
        primary4: addr(B4),
        loopback4: addr('127.64.0.6'),
        primary6: addr(B6),
        flags: L3_CELL_ALLOW_LIST,
        addrs4: 1,
        addrs6: 1,
      }),
    );
    own(A4, CELL_A);
    own(A6, CELL_A);
    own(A_LO, CELL_A, L3_OWNER_LOOPBACK);
    own(B4, CELL_B);
    own(B6, CELL_B);
    own('127.64.0.6', CELL_B, L3_OWNER_LOOPBACK);
    for (const id of ALL) zeroStats(id);
    const one = Buffer.from([1]);
    for (const p of MANAGED) map('l3_managed').update(encodePrefixKey(parsePrefix(p)), one);
    for (const p of B_ALLOW) map('l3_allow').update(encodeAllowKey(CELL_B, parsePrefix(p)), one);
  });

  afterAll(() => {
    for (const m of Object.values(maps)) m.close();
    obj?.close();
  });

  // The ingress filter runs as XDP or as tc ingress (attach chooses); both
  // must give the same verdicts and counts on the same frames.
  const TC_VERDICT: Record<number, number> = { [TC_ACT_OK]: XDP_PASS, [TC_ACT_SHOT]: XDP_DROP };
  const INGRESS: IngressVariant[] = [
    {
      name: 'XDP',
      run: (f) => progTestRun(xdpFd, f).retval,
      mayRefuse: (f) => f.length < 14,
    },
    {
      name: 'tc ingress',
      // any other tc verdict fails every comparison with an XDP one
      run: (f) => {
        const r = progTestRun(tcInFd, f).retval;
        return TC_VERDICT[r] ?? 100 + r;
      },
      mayRefuse: (f) => {
        if (f.length < 14) return true;
        const type = f.readUInt16BE(12);
        return (type === ETH_IP && f.length < 14 + 20) || (type === ETH_IP6 && f.length < 14 + 40);
      },
    },
  ];

  for (const v of INGRESS) {
    const xdp = v.run;
    /** undefined: the kernel refused to run the program on a short frame. */
    const tryRun = (f: Buffer): number | undefined => {
      try {
        return v.run(f);
      } catch (err) {
        if (v.mayRefuse(f) && isErrno(err, 'EINVAL')) return undefined;
        throw err;
      }
    };

    describe(`${v.name}: what is parsed and counted`, () => {
      it('plain IPv4 to a cell: XDP_PASS, uplink rx +1 frame, +frame length bytes', () => {
        const f = frame4(SRC4, A4);
        const m = deltas(ALL, () => expect(xdp(f)).toBe(XDP_PASS));
        expect(d(m, CELL_A).uplinkRxPackets).toBe(1n);
        expect(d(m, CELL_A).uplinkRxBytes).toBe(BigInt(f.length));
        expect(droppedTotal(d(m, CELL_A))).toBe(0n);
        expect(untouched(d(m, CELL_B))).toBe(true);
        expect(untouched(d(m, 0n))).toBe(true);
      });

      it('a bigger frame counts its own length (bytes are the whole frame)', () => {
        const f = Buffer.concat([
          eth(ETH_IP),
          ipv4({ src: SRC4, dst: A4 }, udp(Buffer.alloc(1400))),
        ]);
        const m = deltas([CELL_A], () => expect(xdp(f)).toBe(XDP_PASS));
        expect(d(m, CELL_A).uplinkRxPackets).toBe(1n);
        expect(d(m, CELL_A).uplinkRxBytes).toBe(BigInt(f.length));
      });

      it('IPv4 with options (ihl 6..15): passes, each frame counted exactly once', () => {
        for (let ihl = 6; ihl <= 15; ihl++) {
          const f = Buffer.concat([eth(ETH_IP), ipv4({ src: SRC4, dst: A4, ihl }, udp(PAYLOAD))]);
          const m = deltas(ALL, () => expect(xdp(f), `ihl ${ihl}`).toBe(XDP_PASS));
          expect(d(m, CELL_A).uplinkRxPackets, `ihl ${ihl}`).toBe(1n);
          expect(d(m, CELL_A).uplinkRxBytes, `ihl ${ihl}`).toBe(BigInt(f.length));
          expect(untouched(d(m, 0n))).toBe(true);
        }
      });

      it('IPv4 with ihl < 5 is not IPv4: passes uncounted', () => {
        for (let ihl = 0; ihl < 5; ihl++) {
          const f = frame4(SRC4, A4);
          f[14] = 0x40 | ihl;
          const m = deltas(ALL, () => expect(xdp(f), `ihl ${ihl}`).toBe(XDP_PASS));
          for (const c of ALL) expect(untouched(d(m, c)), `ihl ${ihl}`).toBe(true);
        }
      });

      it('802.1Q and 802.1ad tags: single and QinQ frames are parsed and counted', () => {
        const cases: [string, number[]][] = [
          ['802.1Q', [TPID_8021Q]],
          ['802.1ad', [TPID_8021AD]],
          ['QinQ 802.1ad+802.1Q', [TPID_8021AD, TPID_8021Q]],
          ['double 802.1Q', [TPID_8021Q, TPID_8021Q]],
        ];
        for (const [name, tags] of cases) {
          for (const f of [frame4(SRC4, A4, tags), frame6(SRC6, A6, tags)]) {
            const m = deltas(ALL, () => expect(xdp(f), name).toBe(XDP_PASS));
            expect(d(m, CELL_A).uplinkRxPackets, name).toBe(1n);
            expect(d(m, CELL_A).uplinkRxBytes, name).toBe(BigInt(f.length));
          }
        }
      });

      it('VLAN-tagged frames obey the policy too (unassigned dst dropped, denied src dropped)', () => {
        const tags = [TPID_8021AD, TPID_8021Q];
        let m = deltas(ALL, () => expect(xdp(frame4(SRC4, UNASSIGNED4, tags))).toBe(XDP_DROP));
        expect(d(m, 0n).dropped[Drop.Unassigned]).toBe(1n);
        m = deltas(ALL, () => expect(xdp(frame6(DENIED6, B6, [TPID_8021Q]))).toBe(XDP_DROP));
        expect(d(m, CELL_B).dropped[Drop.Policy]).toBe(1n);
        expect(d(m, CELL_B).uplinkRxPackets).toBe(0n);
      });

      it('three VLAN tags are not parsed: XDP_PASS, nothing counted (even to unassigned)', () => {
        const tags = [TPID_8021AD, TPID_8021Q, TPID_8021Q];
        for (const f of [
          frame4(SRC4, A4, tags),
          frame6(SRC6, A6, tags),
          frame4(SRC4, UNASSIGNED4, tags),
          frame4(DENIED4, B4, tags),
        ]) {
          const m = deltas(ALL, () => expect(xdp(f)).toBe(XDP_PASS));
          for (const c of ALL) expect(untouched(d(m, c))).toBe(true);
        }
      });

      it('IPv6 to a cell: XDP_PASS, counted with the frame length', () => {
        const f = frame6(SRC6, A6);
        const m = deltas(ALL, () => expect(xdp(f)).toBe(XDP_PASS));
        expect(d(m, CELL_A).uplinkRxPackets).toBe(1n);
        expect(d(m, CELL_A).uplinkRxBytes).toBe(BigInt(f.length));
        expect(untouched(d(m, 0n))).toBe(true);
        expect(untouched(d(m, CELL_B))).toBe(true);
      });

      it('IPv6 with hop-by-hop + routing + fragment extension headers: still counted', () => {
        const frag = Buffer.alloc(8);
        frag[0] = 17; // next: UDP
        frag.writeUInt16BE(0x0001, 2); // offset 0, M=1
        frag.writeUInt32BE(0xabcdef, 4);
        const routing = Buffer.alloc(8);
        routing[0] = 44; // next: fragment
        routing[1] = 0; // 8 bytes
        routing[2] = 0; // type 0
        routing[3] = 0; // segments left 0
        const hbh = Buffer.alloc(8);
        hbh[0] = 43; // next: routing
        hbh[1] = 0;
        hbh[2] = 1; // PadN
        hbh[3] = 4;
        const body = Buffer.concat([hbh, routing, frag, udp(PAYLOAD)]);
        const f = Buffer.concat([eth(ETH_IP6), ipv6(SRC6, A6, 0, body)]);
        const m = deltas(ALL, () => expect(xdp(f)).toBe(XDP_PASS));
        expect(d(m, CELL_A).uplinkRxPackets).toBe(1n);
        expect(d(m, CELL_A).uplinkRxBytes).toBe(BigInt(f.length));
        // ... and the destination is still policed through the chain
        const g = Buffer.concat([eth(ETH_IP6), ipv6(SRC6, UNASSIGNED6, 0, body)]);
        const n = deltas(ALL, () => expect(xdp(g)).toBe(XDP_DROP));
        expect(d(n, 0n).dropped[Drop.Unassigned]).toBe(1n);
      });

      it('IPv4 fragments, first and non-first: each frame counted', () => {
        const first = Buffer.concat([
          eth(ETH_IP),
          ipv4({ src: SRC4, dst: A4, mf: true, fragOffset: 0 }, udp(Buffer.alloc(64))),
        ]);
        const middle = Buffer.concat([
          eth(ETH_IP),
          ipv4({ src: SRC4, dst: A4, mf: true, fragOffset: 9 }, Buffer.alloc(72)),
        ]);
        const last = Buffer.concat([
          eth(ETH_IP),
          ipv4({ src: SRC4, dst: A4, mf: false, fragOffset: 18 }, Buffer.alloc(10)),
        ]);
        const m = deltas(ALL, () => {
          for (const f of [first, middle, last]) expect(xdp(f)).toBe(XDP_PASS);
        });
        expect(d(m, CELL_A).uplinkRxPackets).toBe(3n);
        expect(d(m, CELL_A).uplinkRxBytes).toBe(BigInt(first.length + middle.length + last.length));
        // A non-first fragment to an unassigned address is dropped like any other.
        const lost = Buffer.concat([
          eth(ETH_IP),
          ipv4({ src: SRC4, dst: UNASSIGNED4, fragOffset: 9 }, Buffer.alloc(10)),
        ]);
        const n = deltas(ALL, () => expect(xdp(lost)).toBe(XDP_DROP));
        expect(d(n, 0n).dropped[Drop.Unassigned]).toBe(1n);
      });

      it('truncated frames, every length up to the full header: pass, never counted', () => {
        const cases: [string, Buffer, number][] = [
          ['IPv4', frame4(SRC4, A4), 14 + 20],
          [
            'IPv4 ihl=15',
            Buffer.concat([eth(ETH_IP), ipv4({ src: SRC4, dst: A4, ihl: 15 }, udp(PAYLOAD))]),
            14 + 60,
          ],
          ['IPv6', frame6(SRC6, A6), 14 + 40],
          ['QinQ IPv4', frame4(SRC4, A4, [TPID_8021AD, TPID_8021Q]), 22 + 20],
          ['802.1Q IPv6', frame6(SRC6, A6, [TPID_8021Q]), 18 + 40],
          // truncated frames to an unassigned address are not dropped either
          ['IPv4 unassigned', frame4(SRC4, UNASSIGNED4), 14 + 20],
          ['IPv6 unassigned', frame6(SRC6, UNASSIGNED6), 14 + 40],
          ['IPv4 denied source', frame4(DENIED4, B4), 14 + 20],
        ];
        for (const [name, full, header] of cases) {
          const m = deltas(ALL, () => {
            for (let len = 0; len < header; len++) {
              const f = Buffer.from(full.subarray(0, len));
              let ret: number;
              try {
                ret = xdp(f);
              } catch (err) {
                // BPF_PROG_TEST_RUN refuses input shorter than an Ethernet
                // header (and skbs shorter than their IP header): EINVAL, the
                // program never sees it.
                expect(v.mayRefuse(f), `${name} len ${len}: ${String(err)}`).toBe(true);
                expect(isErrno(err, 'EINVAL'), `${name} len ${len}`).toBe(true);
                continue;
              }
              expect(ret, `${name} truncated at ${len}`).toBe(XDP_PASS);
            }
          });
          for (const c of ALL) expect(untouched(d(m, c)), name).toBe(true);
          // the full header is what makes it count (sanity of the cut-off)
          const exact = Buffer.from(full.subarray(0, header));
          expect(xdpModel(exact).ret).toBe(xdpModel(full).ret);
          const n = deltas(ALL, () => expect(xdp(exact)).toBe(xdpModel(full).ret));
          const want = xdpModel(full);
          if (want.rx !== undefined) expect(d(n, want.rx).uplinkRxPackets, name).toBe(1n);
          if (want.drop) expect(d(n, want.drop[0]).dropped[want.drop[1]], name).toBe(1n);
        }
      });

      it('ARP and non-IP ethertypes: pass, uncounted', () => {
        const frames = [
          arp(SRC4, A4),
          arp(SRC4, UNASSIGNED4),
          Buffer.concat([eth(ETH_ARP, [TPID_8021Q]), arp(SRC4, A4).subarray(14)]),
          Buffer.concat([eth(0x88cc), Buffer.alloc(46, 7)]), // LLDP
          Buffer.concat([eth(0x8847), frame4(SRC4, A4).subarray(14)]), // MPLS
          Buffer.concat([eth(0x0806), frame4(SRC4, A4).subarray(14)]), // IP bytes, ARP type
          // version nibble does not match the ethertype
          Buffer.concat([eth(ETH_IP), frame6(SRC6, A6).subarray(14)]),
          Buffer.concat([eth(ETH_IP6), frame4(SRC4, A4).subarray(14), Buffer.alloc(40)]),
        ];
        for (const f of frames) {
          const m = deltas(ALL, () => expect(xdp(f)).toBe(XDP_PASS));
          for (const c of ALL) expect(untouched(d(m, c))).toBe(true);
        }
      });
    });

    describe(`${v.name}: policy`, () => {
      it('to an unassigned address inside a managed prefix: XDP_DROP, key-0 unassigned-address +1', () => {
        for (const f of [frame4(SRC4, UNASSIGNED4), frame6(SRC6, UNASSIGNED6)]) {
          const m = deltas(ALL, () => expect(xdp(f)).toBe(XDP_DROP));
          expect(d(m, 0n).dropped[Drop.Unassigned]).toBe(1n);
          expect(droppedTotal(d(m, 0n))).toBe(1n);
          expect(d(m, 0n).uplinkRxPackets).toBe(0n);
          expect(untouched(d(m, CELL_A))).toBe(true);
          expect(untouched(d(m, CELL_B))).toBe(true);
        }
      });

      it('to an address outside every managed prefix: XDP_PASS, uncounted', () => {
        for (const f of [frame4(SRC4, OUTSIDE4), frame6(SRC6, OUTSIDE6), frame4(A4, OUTSIDE4)]) {
          const m = deltas(ALL, () => expect(xdp(f)).toBe(XDP_PASS));
          for (const c of ALL) expect(untouched(d(m, c))).toBe(true);
        }
      });

      it('allow-list (v4): an admitted source passes and counts, another is dropped and counted', () => {
        const ok = frame4(ALLOWED4, B4);
        let m = deltas(ALL, () => expect(xdp(ok)).toBe(XDP_PASS));
        expect(d(m, CELL_B).uplinkRxPackets).toBe(1n);
        expect(d(m, CELL_B).uplinkRxBytes).toBe(BigInt(ok.length));
        expect(droppedTotal(d(m, CELL_B))).toBe(0n);

        m = deltas(ALL, () => expect(xdp(frame4(DENIED4, B4))).toBe(XDP_DROP));
        expect(d(m, CELL_B).dropped[Drop.Policy]).toBe(1n);
        expect(droppedTotal(d(m, CELL_B))).toBe(1n);
        expect(d(m, CELL_B).uplinkRxPackets).toBe(0n);
        expect(untouched(d(m, CELL_A))).toBe(true);
        expect(untouched(d(m, 0n))).toBe(true);

        // an IPv6 source does not match a v4 allow entry's bytes, even
        // when its leading bytes would
        m = deltas(ALL, () => expect(xdp(frame6('c633:6407::1', B6))).toBe(XDP_DROP));
        expect(d(m, CELL_B).dropped[Drop.Policy]).toBe(1n);
      });

      it('allow-list (v6): an admitted source passes and counts, another is dropped and counted', () => {
        const ok = frame6(ALLOWED6, B6);
        let m = deltas(ALL, () => expect(xdp(ok)).toBe(XDP_PASS));
        expect(d(m, CELL_B).uplinkRxPackets).toBe(1n);
        expect(d(m, CELL_B).uplinkRxBytes).toBe(BigInt(ok.length));
        m = deltas(ALL, () => expect(xdp(frame6(DENIED6, B6))).toBe(XDP_DROP));
        expect(d(m, CELL_B).dropped[Drop.Policy]).toBe(1n);
        expect(d(m, CELL_B).uplinkRxPackets).toBe(0n);
      });

      it("the allow-list is per cell: another cell's traffic is untouched by B's list", () => {
        const f = frame4(DENIED4, A4);
        const m = deltas(ALL, () => expect(xdp(f)).toBe(XDP_PASS));
        expect(d(m, CELL_A).uplinkRxPackets).toBe(1n);
        expect(untouched(d(m, CELL_B))).toBe(true);
      });

      it('without the L3_CELL_ALLOW_LIST flag the entries are ignored (every source admitted)', () => {
        const key = encodeCellKey(CELL_B);
        const saved = map('l3_cells').lookup(key) as Buffer;
        try {
          map('l3_cells').update(
            key,
            encodeCell({
              primary4: addr(B4),
              loopback4: addr('127.64.0.6'),
              primary6: addr(B6),
              flags: 0,
              addrs4: 1,
              addrs6: 1,
            }),
          );
          const m = deltas(ALL, () => expect(xdp(frame4(DENIED4, B4))).toBe(XDP_PASS));
          expect(d(m, CELL_B).uplinkRxPackets).toBe(1n);
          expect(droppedTotal(d(m, CELL_B))).toBe(0n);
        } finally {
          map('l3_cells').update(key, saved);
        }
        expect(xdp(frame4(DENIED4, B4))).toBe(XDP_DROP);
      });

      it("a frame to a cell's loopback alias is dropped, not counted as rx", () => {
        const f = frame4(SRC4, A_LO);
        const m = deltas(ALL, () => expect(xdp(f)).toBe(XDP_DROP));
        expect(d(m, CELL_A).uplinkRxPackets).toBe(0n);
        // counted as a drop of the cell that owns the alias (the program uses
        // the not-allowed-source slot for it)
        expect(droppedTotal(d(m, CELL_A))).toBe(1n);
        expect(d(m, CELL_A).dropped[Drop.Policy]).toBe(1n);
        expect(untouched(d(m, 0n))).toBe(true);
      });
    });

    describe(`${v.name}: random frames (seeded)`, () => {
      it('pure garbage: whatever the verdict, no cell counter moves', () => {
        const rnd = prng(0x13579);
        const m = deltas(ALL, () => {
          for (let i = 0; i < 400; i++) {
            const len = 14 + Math.floor(rnd() * 200);
            const f = Buffer.alloc(len);
            for (let j = 0; j < len; j++) f[j] = Math.floor(rnd() * 256);
            const want = xdpModel(f);
            // the seed was chosen so that no frame parses to a cell's address
            expect(want.rx, `frame ${i}`).toBeUndefined();
            const ret = tryRun(f);
            if (ret === undefined) continue;
            expect([XDP_PASS, XDP_DROP]).toContain(ret);
            expect(ret, `frame ${i} ${f.toString('hex')}`).toBe(want.ret);
          }
        });
        for (const c of [CELL_A, CELL_B]) {
          expect(d(m, c).uplinkRxPackets).toBe(0n);
          expect(droppedTotal(d(m, c))).toBe(0n);
        }
      });

      it('IP-shaped garbage against a reference model: verdicts and counters match exactly', () => {
        const rnd = prng(0x2468ace);
        const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];
        const dsts4 = [A4, B4, A_LO, UNASSIGNED4, OUTSIDE4, '192.0.2.200', '10.1.2.3'];
        const dsts6 = [A6, B6, UNASSIGNED6, OUTSIDE6, '2001:db8::abcd', 'fe80::1'];
        const srcs4 = [ALLOWED4, DENIED4, SRC4, '198.51.101.1', '0.0.0.0'];
        const srcs6 = [ALLOWED6, DENIED6, SRC6, '2001:db8:101::1', '::'];
        const want = new Map<bigint, { rxP: bigint; rxB: bigint; drops: bigint[] }>();
        for (const c of ALL) want.set(c, { rxP: 0n, rxB: 0n, drops: new Array(8).fill(0n) });
        const m = deltas(ALL, () => {
          for (let i = 0; i < 600; i++) {
            const nTags = pick([0, 0, 0, 1, 2, 3]);
            const tags = Array.from({ length: nTags }, () => pick([TPID_8021Q, TPID_8021AD]));
            const v6 = rnd() < 0.4;
            let f = v6
              ? frame6(pick(srcs6), pick(dsts6), tags)
              : Buffer.concat([
                  eth(ETH_IP, tags),
                  ipv4(
                    { src: pick(srcs4), dst: pick(dsts4), ihl: pick([5, 5, 6, 15]) },
                    udp(PAYLOAD),
                  ),
                ]);
            // random damage: flip a few bytes, or cut the frame short
            const damage = rnd();
            if (damage < 0.3) {
              const k = 1 + Math.floor(rnd() * 3);
              for (let j = 0; j < k; j++) f[Math.floor(rnd() * f.length)] = Math.floor(rnd() * 256);
            } else if (damage < 0.5) {
              f = Buffer.from(f.subarray(0, 14 + Math.floor(rnd() * (f.length - 14))));
            }
            const w = xdpModel(f);
            const ret = tryRun(f);
            if (ret === undefined) continue;
            expect(ret, `frame ${i} ${f.toString('hex')}`).toBe(w.ret);
            if (w.rx !== undefined) {
              const e = want.get(w.rx)!;
              e.rxP += 1n;
              e.rxB += BigInt(f.length);
            }
            if (w.drop) want.get(w.drop[0])!.drops[w.drop[1]] += 1n;
          }
        });
        for (const c of ALL) {
          const got = d(m, c);
          const e = want.get(c)!;
          expect(got.uplinkRxPackets, `cell ${c}`).toBe(e.rxP);
          expect(got.uplinkRxBytes, `cell ${c}`).toBe(e.rxB);
          expect(got.dropped, `cell ${c}`).toEqual(e.drops);
        }
        // the mix really exercised every path
        expect(want.get(CELL_A)!.rxP).toBeGreaterThan(10n);
        expect(want.get(CELL_B)!.drops[Drop.Policy]).toBeGreaterThan(5n);
        expect(want.get(0n)!.drops[Drop.Unassigned]).toBeGreaterThan(5n);
      });
    });
  }

  describe('tc ingress: GSO packets', () => {
    it('a GSO skb counts the wire packets it stands for, and its whole length', () => {
      const f = Buffer.concat([eth(ETH_IP), ipv4({ src: SRC4, dst: A4 }, udp(Buffer.alloc(1400)))]);
      const ctx = Buffer.alloc(192); // struct __sk_buff
      ctx.writeUInt32LE(7, 164); // gso_segs
      ctx.writeUInt32LE(200, 176); // gso_size
      const m = deltas(ALL, () =>
        expect(progTestRun(tcInFd, f, { ctxIn: ctx }).retval).toBe(TC_ACT_OK),
      );
      expect(d(m, CELL_A).uplinkRxPackets).toBe(7n);
      expect(d(m, CELL_A).uplinkRxBytes).toBe(BigInt(f.length));
    });
  });

  describe('tc egress', () => {
    it('a frame whose socket is in no cell: unowned managed source SHOT, others OK', () => {
      // source inside a managed prefix that nobody owns: forged at the wire
      for (const f of [frame4(UNASSIGNED4, OUTSIDE4), frame6(UNASSIGNED6, OUTSIDE6)]) {
        const m = deltas(ALL, () => expect(tc(f)).toBe(TC_ACT_SHOT));
        expect(d(m, 0n).dropped[Drop.WireSpoof]).toBe(1n);
        expect(droppedTotal(d(m, 0n))).toBe(1n);
        expect(untouched(d(m, CELL_A))).toBe(true);
      }
      // owned source, no cell socket (e.g. a kernel-made reply): passes
      // and is attributed to nobody
      for (const f of [frame4(A4, OUTSIDE4), frame6(A6, OUTSIDE6), frame4(B4, SRC4)]) {
        const m = deltas(ALL, () => expect(tc(f)).toBe(TC_ACT_OK));
        for (const c of ALL) expect(untouched(d(m, c))).toBe(true);
      }
      // host traffic, non-IP, truncated, three tags: untouched
      for (const f of [
        frame4(OUTSIDE4, SRC4),
        frame6(OUTSIDE6, SRC6),
        arp(UNASSIGNED4, SRC4),
        frame4(UNASSIGNED4, OUTSIDE4, [TPID_8021Q, TPID_8021Q, TPID_8021Q]),
      ]) {
        const m = deltas(ALL, () => expect(tc(f)).toBe(TC_ACT_OK));
        for (const c of ALL) expect(untouched(d(m, c))).toBe(true);
      }
      // Truncated forgeries pass uncounted. BPF_PROG_TEST_RUN refuses an
      // untagged IPv4/IPv6 skb shorter than its IP header (EINVAL), so cut
      // tagged frames, whose ethertype the kernel does not look behind.
      for (const full of [
        frame4(UNASSIGNED4, OUTSIDE4, [TPID_8021Q]),
        frame6(UNASSIGNED6, OUTSIDE6, [TPID_8021AD, TPID_8021Q]),
      ]) {
        const header = full.length - 8 - PAYLOAD.length; // up to the end of the IP header
        const m = deltas(ALL, () => {
          for (let len = 14; len < header; len++) {
            const f = Buffer.from(full.subarray(0, len));
            let ret: number;
            try {
              ret = tc(f);
            } catch (err) {
              expect(isErrno(err, 'EINVAL'), `len ${len}: ${String(err)}`).toBe(true);
              continue;
            }
            expect(ret, `truncated at ${len}`).toBe(TC_ACT_OK);
          }
        });
        for (const c of ALL) expect(untouched(d(m, c))).toBe(true);
        const n = deltas(ALL, () =>
          expect(tc(Buffer.from(full.subarray(0, header)))).toBe(TC_ACT_SHOT),
        );
        expect(d(n, 0n).dropped[Drop.WireSpoof]).toBe(1n);
      }
      // VLAN-tagged forgery is still seen
      const m = deltas(ALL, () =>
        expect(tc(frame4(UNASSIGNED4, OUTSIDE4, [TPID_8021AD, TPID_8021Q]))).toBe(TC_ACT_SHOT),
      );
      expect(d(m, 0n).dropped[Drop.WireSpoof]).toBe(1n);
    });

    // BPF_PROG_TEST_RUN gives the skb a dummy socket allocated in the
    // caller's context, so it carries this test process's cgroup: making
    // that cgroup a cell exercises the attribution path of frame_cell().
    it("a frame attributed to a cell: own source OK and counted, anyone else's SHOT", () => {
      const line = fs
        .readFileSync('/proc/self/cgroup', 'utf8')
        .split('\n')
        .find((l) => l.startsWith('0::'));
      expect(line).toBeDefined();
      const rel = (line as string).slice(3).trim();
      const mount = cgroup2Mount();
      const me = path.join(mount, rel);
      const level = rel === '/' ? 0 : rel.split('/').filter(Boolean).length;
      const CELL_C = fs.statSync(me, { bigint: true }).ino;
      const C4 = '192.0.2.50';
      const C6 = '2001:db8::50';
      const cfgKey = Buffer.alloc(4);
      const savedCfg = map('l3_config').lookup(cfgKey) as Buffer;
      map('l3_config').update(
        cfgKey,
        encodeConfig({
          rootCgroup: CELL_C,
          rootLevel: level,
          version: L3_LAYOUT_VERSION,
          cgroupRoot: me,
        }),
      );
      map('l3_cells').update(
        encodeCellKey(CELL_C),
        encodeCell({
          primary4: addr(C4),
          loopback4: addr('127.64.0.50'),
          primary6: addr(C6),
          flags: 0,
          addrs4: 1,
          addrs6: 1,
        }),
      );
      own(C4, CELL_C);
      own(C6, CELL_C);
      own('127.64.0.50', CELL_C, L3_OWNER_LOOPBACK);
      zeroStats(CELL_C);
      const CELLS = [...ALL, CELL_C];
      try {
        for (const f of [
          frame4(C4, OUTSIDE4),
          frame6(C6, OUTSIDE6),
          frame4(C4, SRC4, [TPID_8021Q]),
        ]) {
          const m = deltas(CELLS, () => expect(tc(f)).toBe(TC_ACT_OK));
          expect(d(m, CELL_C).uplinkTxPackets).toBe(1n);
          expect(d(m, CELL_C).uplinkTxBytes).toBe(BigInt(f.length));
          expect(droppedTotal(d(m, CELL_C))).toBe(0n);
          expect(untouched(d(m, CELL_A))).toBe(true);
        }
        // forged: another cell's address, an unowned managed one, an
        // unmanaged one, and the cell's own loopback alias
        for (const f of [
          frame4(A4, OUTSIDE4),
          frame6(A6, OUTSIDE6),
          frame4(UNASSIGNED4, OUTSIDE4),
          frame4(OUTSIDE4, SRC4),
          frame4('127.64.0.50', OUTSIDE4),
        ]) {
          const m = deltas(CELLS, () => expect(tc(f)).toBe(TC_ACT_SHOT));
          expect(d(m, CELL_C).dropped[Drop.WireSpoof]).toBe(1n);
          expect(droppedTotal(d(m, CELL_C))).toBe(1n);
          expect(d(m, CELL_C).uplinkTxPackets).toBe(0n);
          expect(untouched(d(m, CELL_A))).toBe(true);
          expect(untouched(d(m, 0n))).toBe(true);
        }
        // non-IP frames of a cell pass uncounted
        const m = deltas(CELLS, () => expect(tc(arp(C4, SRC4))).toBe(TC_ACT_OK));
        for (const c of CELLS) expect(untouched(d(m, c))).toBe(true);
      } finally {
        map('l3_cells').delete(encodeCellKey(CELL_C));
        for (const a of [C4, C6, '127.64.0.50']) map('l3_owners').delete(encodeAddr(addr(a)));
        map('l3_cell_stats').delete(encodeCellKey(CELL_C));
        map('l3_cell_denials').delete(encodeCellKey(CELL_C));
        map('l3_config').update(cfgKey, savedCfg);
      }
    });
  });
});
