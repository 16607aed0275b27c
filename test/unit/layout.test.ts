/**
 * The header is the contract. src/codecs/generated.ts must be what
 * scripts/gen-layout.js makes of bpf/l3iso.h right now (from clang's BTF);
 * then, as a second opinion, the host gcc compiles the header and is asked
 * for every size, offset and constant the generated module claims, and C
 * fills each struct so the hand-written codecs must read and write the very
 * same bytes. A header change without a regeneration fails here.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { L3isoError } from '../../src/errors';
import * as generated from '../../src/codecs/generated';
import { SHARED_MAPS, SHARED_MAP_SHAPES } from '../../src/dataplane/programs';
import {
  CELL_KEY_SIZE,
  DROP_COUNTERS,
  REFUSAL_COUNTERS,
  TRAFFIC_COUNTERS,
  TRAFFIC_GROUPS,
  decodeCellDenials,
  emptyCellDenials,
  encodeCellDenials,
  L3_CELL_ALLOW_RAW,
  L3_CELL_STATS_PERCPU_STRIDE,
  L3_CELL_STATS_SIZE,
  L3_DROP_SLOTS,
  L3_LAYOUT_VERSION,
  L3_MAX_DEPTH,
  L3_OWNER_LOOPBACK,
  L3_CONFIG_COMPLETE,
  L3_CONFIG_MAGIC,
  L3_REFUSED_SLOTS,
  LAYOUT,
  REASON_MAX,
  Drop,
  DROP_MAX,
  encodePrefixKey,
  decodePrefixKey,
  encodeAllowKey,
  decodeAllowKey,
  decodeEvent,
  L3_EV_REFUSED,
  L3_EV_DROPPED,
  Reason,
  decodeAddr,
  decodeCell,
  decodeCellKey,
  decodeCellStats,
  decodeCellStatsPerCpu,
  decodeConfig,
  decodeOwner,
  decodeSockOrigin,
  emptyCellStats,
  encodeAddr,
  encodeCell,
  encodeCellKey,
  encodeCellStats,
  encodeConfig,
  encodeOwner,
  encodeSockOrigin,
  reasonName,
  sumCellStats,
  type CellStats,
  type StructLayout,
  decodeCellSlot,
  encodeCellSlot,
} from '../../src/codecs/layout';
import { addressFromBytes, parseAddress, parsePrefix } from '../../src/model/address';

const HEADER_DIR = path.resolve(__dirname, '../../bpf');
const HEADER = path.join(HEADER_DIR, 'l3iso.h');

/** C name of each enum l3_reason member, keyed by the TS Reason. */
const REASON_C = Object.fromEntries(
  REFUSAL_COUNTERS.map((r) => [r.slot, `L3_R_${r.id}`]),
) as Record<Reason, string>;

/** Every #define the generated module carries, checked against gcc below. */
const GENERATED: [string, unknown][] = Object.entries(generated);
const CONSTANTS: Record<string, number | bigint> = Object.fromEntries(
  GENERATED.filter(
    (e): e is [string, number | bigint] =>
      /^L3_/.test(e[0]) && (typeof e[1] === 'number' || typeof e[1] === 'bigint'),
  ),
);
for (const d of DROP_COUNTERS) CONSTANTS[`L3_D_${d.id}`] = d.slot;

const reasons = Object.values(Reason).filter((v): v is Reason => typeof v === 'number');

const SAMPLE_ROOT = '/sys/fs/cgroup/unified/l3iso';

/** Builds the probe from LAYOUT, so a field LAYOUT names that the header
 * lacks is a compile error, and sizes/offsets are the compiler's. */
function probeSource(): string {
  const out: string[] = [];
  const emit = (fmt: string, ...args: string[]): void => {
    out.push(`  printf(${JSON.stringify(fmt)}${args.map((a) => `, ${a}`).join('')});`);
  };
  emit('{"structs":{');
  Object.entries(LAYOUT as Record<string, StructLayout>).forEach(([name, s], i) => {
    emit(`${i ? ',' : ''}"${name}":{"size":%zu,"fields":{`, `sizeof(struct ${name})`);
    Object.keys(s.fields).forEach((field, j) => {
      emit(
        `${j ? ',' : ''}"${field}":{"offset":%zu,"size":%zu}`,
        `offsetof(struct ${name}, ${field})`,
        `sizeof(((struct ${name} *)0)->${field})`,
      );
    });
    emit('}}');
  });
  emit('},"constants":{');
  Object.keys(CONSTANTS).forEach((c, i) =>
    emit(`${i ? ',' : ''}"${c}":"%llu"`, `(unsigned long long)(${c})`),
  );
  emit('},"reasons":{');
  reasons.forEach((r, i) =>
    emit(`${i ? ',' : ''}"${REASON_C[r]}":%lld`, `(long long)(${REASON_C[r]})`),
  );
  emit('},"samples":{');
  out.push(`  struct l3_addr a4, a6; struct l3_owner o; struct l3_cell c; struct l3_config cfg;
  struct l3_cell_stats st; struct l3_cell_denials dn; struct l3_sock_origin so;
  memset(&a4, 0, sizeof a4); memset(&a6, 0, sizeof a6); memset(&o, 0, sizeof o);
  memset(&c, 0, sizeof c); memset(&cfg, 0, sizeof cfg); memset(&st, 0, sizeof st);
  memset(&dn, 0, sizeof dn); memset(&so, 0, sizeof so);
  a4.family = L3_FAMILY_V4; a4.addr[0] = htonl(0xc0000207);
  a6.family = L3_FAMILY_V6; a6.addr[0] = htonl(0x20010db8); a6.addr[3] = htonl(0x00010002);
  o.cell = 0x0102030405060708ULL; o.flags = L3_OWNER_LOOPBACK;
  c.primary4 = htonl(0x0a000001); c.loopback4 = htonl(0x7f400a01);
  c.primary6[0] = htonl(0xfd000000); c.primary6[3] = htonl(0x0000abcd);
  c.flags = L3_CELL_ALLOW_RAW; c.addrs4 = 3; c.addrs6 = 70000;
  cfg.root_cgroup = 0x1122334455667788ULL; cfg.root_level = 2; cfg.version = L3_LAYOUT_VERSION;
  strcpy(cfg.cgroup_root, ${JSON.stringify(SAMPLE_ROOT)});
  cfg.magic = L3_CONFIG_MAGIC; for (int i = 0; i < 16; i++) cfg.instance[i] = 0xa0 + i;
  cfg.netns_ino = 4026531840ULL; cfg.max_cells = 131072; cfg.flags = L3_CONFIG_COMPLETE;
  for (int i = 0; i < L3_REFUSED_SLOTS; i++) dn.refused[i] = 1000 + i;
  st.rx_packets = 1; st.rx_bytes = 0xffffffffffffffffULL; st.tx_packets = 3; st.tx_bytes = 1ULL << 40;
  for (int i = 0; i < L3_DROP_SLOTS; i++) dn.dropped[i] = 2000 + i;
  st.uplink_rx_packets = 5; st.uplink_rx_bytes = 6; st.uplink_tx_packets = 7; st.uplink_tx_bytes = 1ULL << 50;
  so.ancestors[0] = 1; so.ancestors[1] = 0x100000005ULL; so.ancestors[2] = 77; so.depth = 3;
  hex("a4", &a4, sizeof a4, 1); hex("a6", &a6, sizeof a6, 0); hex("owner", &o, sizeof o, 0);
  hex("cell", &c, sizeof c, 0); hex("config", &cfg, sizeof cfg, 0);
  hex("stats", &st, sizeof st, 0); hex("denials", &dn, sizeof dn, 0);
  hex("origin", &so, sizeof so, 0);
  struct l3_cell_slot sl; memset(&sl, 0, sizeof sl);
  sl.cell = 0x0102030405060708ULL; sl.slot = 0x0a0b0c0d; hex("slot", &sl, sizeof sl, 0);`);
  emit('}}\n');
  return `#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <arpa/inet.h>
#include "l3iso.h"

static void hex(const char *name, const void *p, size_t n, int first)
{
  const unsigned char *b = p;
  printf("%s\\"%s\\":\\"", first ? "" : ",", name);
  for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
  printf("\\"");
}

int main(void)
{
${out.join('\n')}
  return 0;
}
`;
}

interface Probe {
  structs: Record<
    string,
    { size: number; fields: Record<string, { offset: number; size: number }> }
  >;
  constants: Record<string, string>;
  reasons: Record<string, number>;
  samples: Record<
    'a4' | 'a6' | 'owner' | 'cell' | 'config' | 'stats' | 'denials' | 'origin' | 'slot',
    string
  >;
}

let tmp: string;
let probe: Probe;

beforeAll(() => {
  tmp = mkdtempSync(path.join(tmpdir(), 'l3iso-layout-'));
  const src = path.join(tmp, 'probe.c');
  const exe = path.join(tmp, 'probe');
  writeFileSync(src, probeSource());
  execFileSync('gcc', ['-std=gnu11', '-Wall', '-Werror', '-I', HEADER_DIR, '-o', exe, src], {
    stdio: 'pipe',
  });
  probe = JSON.parse(execFileSync(exe, { encoding: 'utf8' })) as Probe;
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof L3isoError) return err.code;
    throw err;
  }
  return undefined;
}

const hexOf = (b: Buffer): string => b.toString('hex');

describe('LAYOUT matches bpf/l3iso.h', () => {
  it('src/codecs/generated.ts is what the build generates from the header now', () => {
    // Fails after a header edit that `npm run build` did not follow.
    const script = path.resolve(__dirname, '../../scripts/gen-layout.js');
    const r = spawnSync(process.execPath, [script, '--check'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('covers every struct the header defines', () => {
    const header = readFileSync(HEADER, 'utf8');
    const defined = [...header.matchAll(/^struct\s+(\w+)\s*\{/gm)].map((m) => m[1]);
    expect(Object.keys(LAYOUT).sort()).toEqual(defined.sort());
  });

  it('has the compiler’s sizes and offsets', () => {
    expect(LAYOUT).toEqual(probe.structs);
  });

  it.each(Object.entries(LAYOUT as Record<string, StructLayout>))(
    '%s: fields tile the struct (no byte unaccounted for)',
    (_name, s) => {
      let next = 0;
      for (const f of Object.values(s.fields).sort((a, b) => a.offset - b.offset)) {
        expect(f.offset).toBe(next);
        next = f.offset + f.size;
      }
      expect(next).toBe(s.size);
    },
  );

  it('has the header’s constants and reason numbers', () => {
    const want = Object.fromEntries(Object.entries(CONSTANTS).map(([k, v]) => [k, String(v)]));
    expect(probe.constants).toEqual(want);
    expect(Object.keys(CONSTANTS)).toContain('L3_CONFIG_MAGIC');
    expect(reasons).toHaveLength(REASON_MAX);
    for (const r of reasons) expect(probe.reasons[REASON_C[r]]).toBe(r);
    expect(REASON_MAX).toBeLessThanOrEqual(L3_REFUSED_SLOTS);
  });

  it('names every reason in kebab case, uniquely', () => {
    const names = reasons.map((r) => reasonName[r]);
    for (const n of names) expect(n).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/);
    expect(new Set(names).size).toBe(REASON_MAX);
    expect(reasonName[Reason.BindForeign]).toBe('bind-foreign');
    expect(reasonName[Reason.SockRaw]).toBe('sock-raw');
  });
});

describe('codecs read and write the bytes C does', () => {
  it('l3_addr', () => {
    const v4 = parseAddress('192.0.2.7');
    const v6 = parseAddress('2001:db8::1:2');
    expect(hexOf(encodeAddr(v4))).toBe(probe.samples.a4);
    expect(hexOf(encodeAddr(v6))).toBe(probe.samples.a6);
    expect(decodeAddr(Buffer.from(probe.samples.a4, 'hex'))).toEqual(v4);
    expect(decodeAddr(Buffer.from(probe.samples.a6, 'hex'))).toEqual(v6);
  });

  it('l3_cell_slot', () => {
    expect(hexOf(encodeCellSlot(0x0102030405060708n, 0x0a0b0c0d))).toBe(probe.samples.slot);
    expect(decodeCellSlot(Buffer.from(probe.samples.slot, 'hex'))).toEqual({
      cell: 0x0102030405060708n,
      slot: 0x0a0b0c0d,
    });
  });

  it('l3_owner', () => {
    const o = { cell: 0x0102030405060708n, flags: L3_OWNER_LOOPBACK };
    expect(hexOf(encodeOwner(o))).toBe(probe.samples.owner);
    expect(decodeOwner(Buffer.from(probe.samples.owner, 'hex'))).toEqual(o);
  });

  it('l3_cell', () => {
    const c = {
      primary4: parseAddress('10.0.0.1'),
      loopback4: addressFromBytes(4, Buffer.from([127, 64, 10, 1])),
      primary6: parseAddress('fd00::abcd'),
      flags: L3_CELL_ALLOW_RAW,
      addrs4: 3,
      addrs6: 70000,
    };
    expect(hexOf(encodeCell(c))).toBe(probe.samples.cell);
    expect(decodeCell(Buffer.from(probe.samples.cell, 'hex'))).toEqual(c);
  });

  it('l3_config', () => {
    const cfg = {
      rootCgroup: 0x1122334455667788n,
      rootLevel: 2,
      version: L3_LAYOUT_VERSION,
      cgroupRoot: SAMPLE_ROOT,
      magic: L3_CONFIG_MAGIC,
      instance: 'a0a1a2a3a4a5a6a7a8a9aaabacadaeaf',
      netnsIno: 4026531840n,
      maxCells: 131072,
      flags: L3_CONFIG_COMPLETE,
    };
    expect(hexOf(encodeConfig(cfg))).toBe(probe.samples.config);
    expect(decodeConfig(Buffer.from(probe.samples.config, 'hex'))).toEqual(cfg);
  });

  it('l3_cell_stats', () => {
    const s: CellStats = {
      rxPackets: 1n,
      rxBytes: (1n << 64n) - 1n,
      txPackets: 3n,
      txBytes: 1n << 40n,
      uplinkRxPackets: 5n,
      uplinkRxBytes: 6n,
      uplinkTxPackets: 7n,
      uplinkTxBytes: 1n << 50n,
    };
    expect(hexOf(encodeCellStats(s))).toBe(probe.samples.stats);
    expect(decodeCellStats(Buffer.from(probe.samples.stats, 'hex'))).toEqual(s);
  });

  it('l3_cell_denials', () => {
    const d = {
      refused: Array.from({ length: L3_REFUSED_SLOTS }, (_, i) => BigInt(1000 + i)),
      dropped: Array.from({ length: L3_DROP_SLOTS }, (_, i) => BigInt(2000 + i)),
    };
    expect(hexOf(encodeCellDenials(d))).toBe(probe.samples.denials);
    expect(decodeCellDenials(Buffer.from(probe.samples.denials, 'hex'))).toEqual(d);
  });

  it('l3_sock_origin', () => {
    const so = { ancestors: [1n, 0x100000005n, 77n] };
    expect(hexOf(encodeSockOrigin(so))).toBe(probe.samples.origin);
    expect(decodeSockOrigin(Buffer.from(probe.samples.origin, 'hex'))).toEqual(so);
  });
});

describe('codec round trips and edge cases', () => {
  it('cell keys are little-endian u64', () => {
    for (const id of [0n, 1n, 0x0102030405060708n, (1n << 64n) - 1n]) {
      const k = encodeCellKey(id);
      expect(k.length).toBe(CELL_KEY_SIZE);
      expect(decodeCellKey(k)).toBe(id);
    }
    expect(hexOf(encodeCellKey(0x0102n))).toBe('0201000000000000');
    expect(codeOf(() => encodeCellKey(-1n))).toBe('EUSAGE');
    expect(codeOf(() => encodeCellKey(1n << 64n))).toBe('EUSAGE');
    expect(codeOf(() => decodeCellKey(Buffer.alloc(4)))).toBe('EKERNEL');
  });

  it('l3_addr: v4 sits in addr[0] with the rest zero; unknown families are refused', () => {
    const b = encodeAddr(parseAddress('10.1.2.3'));
    expect(hexOf(b)).toBe(`04000000${'0a010203'}${'00'.repeat(12)}`);
    const bad = Buffer.from(b);
    bad[0] = 5;
    expect(codeOf(() => decodeAddr(bad))).toBe('EKERNEL');
    expect(codeOf(() => decodeAddr(b.subarray(0, 19)))).toBe('EKERNEL');
  });

  it('l3_cell: zero primaries mean none', () => {
    const c = {
      loopback4: addressFromBytes(4, Buffer.from([127, 100, 1, 2])),
      flags: 0,
      addrs4: 0,
      addrs6: 0,
    };
    const b = encodeCell(c);
    expect(b.length).toBe(LAYOUT.l3_cell.size);
    expect(decodeCell(b)).toEqual({ ...c, primary4: undefined, primary6: undefined });
    const only6 = { ...c, primary6: parseAddress('2001:db8::5'), addrs6: 1 };
    expect(decodeCell(encodeCell(only6))).toEqual({ ...only6, primary4: undefined });
  });

  it('l3_cell: refuses wrong families and out-of-range counters', () => {
    const base = {
      loopback4: addressFromBytes(4, Buffer.from([127, 64, 0, 1])),
      flags: 0,
      addrs4: 0,
      addrs6: 0,
    };
    expect(codeOf(() => encodeCell({ ...base, primary4: parseAddress('2001:db8::1') }))).toBe(
      'EUSAGE',
    );
    expect(codeOf(() => encodeCell({ ...base, primary6: parseAddress('10.0.0.1') }))).toBe(
      'EUSAGE',
    );
    expect(codeOf(() => encodeCell({ ...base, loopback4: parseAddress('2001:db8::1') }))).toBe(
      'EUSAGE',
    );
    expect(
      codeOf(() => encodeCell({ ...base, primary4: addressFromBytes(4, Buffer.alloc(4)) })),
    ).toBe('EUSAGE');
    expect(codeOf(() => encodeCell({ ...base, addrs4: 2 ** 32 }))).toBe('EUSAGE');
    expect(codeOf(() => encodeCell({ ...base, flags: -1 }))).toBe('EUSAGE');
    expect(codeOf(() => encodeCell({ ...base, addrs6: 1.5 }))).toBe('EUSAGE');
  });

  it('l3_owner: refuses out-of-range values', () => {
    expect(codeOf(() => encodeOwner({ cell: -1n, flags: 0 }))).toBe('EUSAGE');
    expect(codeOf(() => encodeOwner({ cell: 1n, flags: 2 ** 32 }))).toBe('EUSAGE');
    expect(codeOf(() => decodeOwner(Buffer.alloc(8)))).toBe('EKERNEL');
  });

  it('l3_config: path must fit with its NUL and be NUL-free; non-ASCII survives', () => {
    const cfg = {
      rootCgroup: 42n,
      rootLevel: 0,
      version: 1,
      cgroupRoot: '',
      magic: L3_CONFIG_MAGIC,
      instance: '00'.repeat(16),
      netnsIno: 0n,
      maxCells: 0,
      flags: 0,
    };
    const fits = '/' + 'x'.repeat(254);
    expect(decodeConfig(encodeConfig({ ...cfg, cgroupRoot: fits })).cgroupRoot).toBe(fits);
    expect(codeOf(() => encodeConfig({ ...cfg, cgroupRoot: fits + 'y' }))).toBe('EUSAGE');
    expect(codeOf(() => encodeConfig({ ...cfg, cgroupRoot: '/a\0b' }))).toBe('EUSAGE');
    expect(
      decodeConfig(encodeConfig({ ...cfg, cgroupRoot: '/sys/fs/cgroup/zellé' })).cgroupRoot,
    ).toBe('/sys/fs/cgroup/zellé');
    expect(decodeConfig(encodeConfig(cfg))).toEqual(cfg);
  });

  it('l3_cell_stats: per-CPU slices split and sum as bigints', () => {
    const a = emptyCellStats();
    a.rxBytes = (1n << 64n) - 1n;
    a.uplinkTxBytes = 1n;
    const b = emptyCellStats();
    b.rxBytes = 10n;
    b.txPackets = 4n;
    const raw = Buffer.alloc(3 * L3_CELL_STATS_PERCPU_STRIDE);
    encodeCellStats(a).copy(raw, 0);
    encodeCellStats(b).copy(raw, 2 * L3_CELL_STATS_PERCPU_STRIDE);
    const slices = decodeCellStatsPerCpu(raw);
    expect(slices).toHaveLength(3);
    expect(slices[0]).toEqual(a);
    expect(slices[1]).toEqual(emptyCellStats());
    expect(slices[2]).toEqual(b);
    const sum = sumCellStats(slices);
    expect(sum.rxBytes).toBe((1n << 64n) + 9n);
    expect(sum.txPackets).toBe(4n);
    b.uplinkTxBytes = 3n;
    expect(sumCellStats([a, b, b]).uplinkTxBytes).toBe(7n);
    expect(sumCellStats([])).toEqual(emptyCellStats());
    expect(codeOf(() => decodeCellStatsPerCpu(Buffer.alloc(L3_CELL_STATS_SIZE + 1)))).toBe(
      'EKERNEL',
    );
    expect(codeOf(() => decodeCellStatsPerCpu(Buffer.alloc(0)))).toBe('EKERNEL');
  });

  it('l3_cell_stats holds only the per-packet counters: 8 bytes each, per CPU', () => {
    expect(L3_CELL_STATS_SIZE).toBe(8 * TRAFFIC_COUNTERS.length);
    expect(Object.keys(emptyCellStats())).toEqual(TRAFFIC_COUNTERS.map((c) => c.name));
    expect(TRAFFIC_GROUPS.map((g) => g.group)).toEqual(['rx', 'tx', 'uplink rx', 'uplink tx']);
  });

  it('l3_cell_denials: refusal and drop slots round-trip; too many entries refused', () => {
    const d = emptyCellDenials();
    d.refused[Reason.SockRaw] = 2n;
    d.dropped[DROP_MAX] = 1n;
    expect(decodeCellDenials(encodeCellDenials(d))).toEqual(d);
    expect(
      codeOf(() => encodeCellDenials({ ...d, refused: new Array(L3_REFUSED_SLOTS + 1).fill(0n) })),
    ).toBe('EUSAGE');
    expect(codeOf(() => decodeCellDenials(Buffer.alloc(8)))).toBe('EKERNEL');
  });

  it('l3_sock_origin: depth is the ancestor count, bounded by L3_MAX_DEPTH', () => {
    const full = { ancestors: Array.from({ length: L3_MAX_DEPTH }, (_, i) => BigInt(i + 1)) };
    expect(decodeSockOrigin(encodeSockOrigin(full))).toEqual(full);
    expect(decodeSockOrigin(encodeSockOrigin({ ancestors: [] }))).toEqual({ ancestors: [] });
    expect(codeOf(() => encodeSockOrigin({ ancestors: [...full.ancestors, 99n] }))).toBe('EUSAGE');
    const bad = encodeSockOrigin(full);
    bad.writeUInt32LE(L3_MAX_DEPTH + 1, LAYOUT.l3_sock_origin.fields.depth.offset);
    expect(codeOf(() => decodeSockOrigin(bad))).toBe('EKERNEL');
  });

  it('decoders accept views into larger buffers', () => {
    const o = encodeOwner({ cell: 9n, flags: 1 });
    const big = Buffer.concat([Buffer.alloc(3), o, Buffer.alloc(5)]);
    expect(decodeOwner(big.subarray(3, 3 + o.length))).toEqual({ cell: 9n, flags: 1 });
  });
});

describe('LPM keys and audit events', () => {
  it('prefix keys count the family byte and round-trip', () => {
    const p = parsePrefix('192.0.2.0/24');
    const k = encodePrefixKey(p);
    expect(k.readUInt32LE(0)).toBe(32);
    expect(decodePrefixKey(k)).toEqual(p);
    const p6 = parsePrefix('2001:db8::/32');
    expect(decodePrefixKey(encodePrefixKey(p6))).toEqual(p6);
  });

  it('allow keys put the cell first, big-endian, then the source prefix', () => {
    const p = parsePrefix('198.51.100.0/24');
    const k = encodeAllowKey(0x0102030405060708n, p);
    expect(k.readUInt32LE(0)).toBe(64 + 8 + 24);
    expect([...k.subarray(4, 12)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(decodeAllowKey(k)).toEqual({ cell: 0x0102030405060708n, prefix: p });
  });

  it('decodes an event with names for its reason', () => {
    const F = LAYOUT.l3_event.fields;
    const raw = Buffer.alloc(LAYOUT.l3_event.size);
    raw.writeBigUInt64LE(123n, F.time_ns.offset);
    raw.writeBigUInt64LE(42n, F.cell.offset);
    raw.writeUInt32LE(777, F.pid.offset);
    raw.writeUInt32LE(L3_EV_REFUSED, F.kind.offset);
    raw.writeUInt32LE(Reason.BindForeign, F.reason.offset);
    raw.writeUInt16LE(8080, F.port.offset);
    raw.writeUInt8(4, F.family.offset);
    Buffer.from([192, 0, 2, 7]).copy(raw, F.addr.offset);
    raw.write('python3', F.comm.offset);
    expect(decodeEvent(raw)).toEqual({
      timeNs: 123n,
      cell: 42n,
      pid: 777,
      kind: 'refused',
      reason: 'bind-foreign',
      port: 8080,
      address: '192.0.2.7',
      comm: 'python3',
    });
    raw.writeUInt32LE(L3_EV_DROPPED, F.kind.offset);
    raw.writeUInt32LE(Drop.Policy, F.reason.offset);
    expect(decodeEvent(raw).reason).toBe('not-allowed-source');
  });
});

// The downgrade rule (README "Crashes and gc"): a binary accepts only pin
// dirs of its own layout version, so two builds with the same version must
// agree on every shared map. Changing a map's type, key or value size, or
// the set of shared maps, therefore bumps L3_LAYOUT_VERSION; and l3_config
// only grows at its end, so any version can still read another's version
// and marker to refuse it by name.
describe('layout version', () => {
  /** sha256 of the shared maps' shapes, per layout version that shipped them. */
  const FINGERPRINTS: Record<number, string> = {
    2: '762d61aae51ee8c6',
    3: '5c02fd8c43555303', // l3_cell_stats split into traffic and l3_cell_denials
    4: 'd6586cebba8988c2', // and the reverse index l3_cell_addrs
  };
  const fingerprint = async (): Promise<string> => {
    const shapes = SHARED_MAPS.map((n) => {
      const s = SHARED_MAP_SHAPES[n];
      return [n, s.type, s.keySize, s.valueSize];
    });
    const { createHash } = await import('node:crypto');
    return createHash('sha256').update(JSON.stringify(shapes)).digest('hex').slice(0, 16);
  };

  it('is bumped whenever a shared map changes shape or the set of maps changes', async () => {
    expect(
      await fingerprint(),
      'shared map shapes changed: bump L3_LAYOUT_VERSION in bpf/l3iso.h (npm run build regenerates src/codecs/generated.ts) and add its fingerprint here',
    ).toBe(FINGERPRINTS[L3_LAYOUT_VERSION]);
  });

  it("keeps l3_config's version and marker where every version looks for them", () => {
    expect(LAYOUT.l3_config.fields.version.offset).toBe(12);
    expect(LAYOUT.l3_config.fields.magic.offset).toBe(272);
  });
});
