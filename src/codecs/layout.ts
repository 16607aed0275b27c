/**
 * Byte-level codecs for the structs of bpf/l3iso.h (x86_64: little-endian
 * host order, natural alignment). Every constant, enum, offset and counter
 * table comes from ./generated.ts, which the build generates from the
 * header (scripts/gen-layout.js); only the encode/decode logic is written
 * by hand here.
 */
import { L3isoError } from '../errors';
import {
  addressFromBytes,
  formatAddress,
  type CellAddress,
  type CellPrefix,
} from '../model/address';
import { reasonName, dropName, type TrafficName } from './counters';
import {
  L3_CONFIG_MAGIC,
  L3_DROP_SLOTS,
  L3_EV_DROPPED,
  L3_FAMILY_V4,
  L3_FAMILY_V6,
  L3_MAX_DEPTH,
  L3_REFUSED_SLOTS,
  LAYOUT,
  TRAFFIC_COUNTERS,
} from './generated';

export * from './generated';

export * from './counters';

/** Bytes of l3_config.instance. */
export const L3_INSTANCE_LEN = LAYOUT.l3_config.fields.instance.size;
/** Bytes of char cgroup_root[] in l3_config, terminating NUL included. */
export const L3_CGROUP_ROOT_LEN = LAYOUT.l3_config.fields.cgroup_root.size;

export interface FieldLayout {
  readonly offset: number;
  readonly size: number;
}
export interface StructLayout {
  readonly size: number;
  readonly fields: Readonly<Record<string, FieldLayout>>;
}

export type StructName = keyof typeof LAYOUT;

export const L3_ADDR_SIZE = LAYOUT.l3_addr.size;
export const L3_OWNER_SIZE = LAYOUT.l3_owner.size;
export const L3_CELL_SIZE = LAYOUT.l3_cell.size;
export const L3_CONFIG_SIZE = LAYOUT.l3_config.size;
export const L3_CELL_STATS_SIZE = LAYOUT.l3_cell_stats.size;
export const L3_CELL_DENIALS_SIZE = LAYOUT.l3_cell_denials.size;
export const L3_SOCK_ORIGIN_SIZE = LAYOUT.l3_sock_origin.size;
/** Cell keys (l3_cells, l3_cell_stats, l3_cell_denials) are a bare __u64 cgroup id. */
export const CELL_KEY_SIZE = 8;
/** libbpf lays per-CPU values out at 8-byte-aligned strides. */
export const L3_CELL_STATS_PERCPU_STRIDE = Math.ceil(L3_CELL_STATS_SIZE / 8) * 8;

const U32_MAX = 0xffffffff;
const U64_MAX = (1n << 64n) - 1n;

function badValue(what: string, detail: string): L3isoError {
  return new L3isoError('EUSAGE', `cannot encode ${what}: ${detail}`);
}

/** Buffers come from pinned maps that may predate this build, so a size
 * mismatch is reported as a kernel-side problem with a hint, not a crash. */
function checkSize(name: StructName, buf: Uint8Array): Buffer {
  const size = LAYOUT[name].size;
  if (buf.length !== size) {
    throw new L3isoError(
      'EKERNEL',
      `malformed ${name}: ${buf.length} bytes, expected ${size}`,
      'the pinned maps may come from another l3iso version; run `l3iso down` and `l3iso up`',
    );
  }
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
}

function u32(what: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > U32_MAX) throw badValue(what, `${v} is not a u32`);
  return v;
}

function u64(what: string, v: bigint): bigint {
  if (typeof v !== 'bigint' || v < 0n || v > U64_MAX)
    throw badValue(what, `${String(v)} is not a u64`);
  return v;
}

function requireFamily(what: string, a: CellAddress, family: 4 | 6): void {
  if (a.family !== family || a.bytes.length !== (family === 4 ? 4 : 16)) {
    throw badValue(what, `${a.text} is not an IPv${family} address`);
  }
}

// ---- cell key ----------------------------------------------------------

export function encodeCellKey(id: bigint): Buffer {
  const buf = Buffer.alloc(CELL_KEY_SIZE);
  buf.writeBigUInt64LE(u64('cell key', id));
  return buf;
}

export function decodeCellKey(buf: Uint8Array): bigint {
  if (buf.length !== CELL_KEY_SIZE) {
    throw new L3isoError(
      'EKERNEL',
      `malformed cell key: ${buf.length} bytes, expected ${CELL_KEY_SIZE}`,
    );
  }
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).readBigUInt64LE(0);
}

// ---- struct l3_addr ----------------------------------------------------

export function encodeAddr(a: CellAddress): Buffer {
  const F = LAYOUT.l3_addr.fields;
  const buf = Buffer.alloc(LAYOUT.l3_addr.size);
  requireFamily('l3_addr', a, a.family);
  buf.writeUInt8(a.family === 4 ? L3_FAMILY_V4 : L3_FAMILY_V6, F.family.offset);
  a.bytes.copy(buf, F.addr.offset);
  return buf;
}

export function decodeAddr(raw: Uint8Array): CellAddress {
  const F = LAYOUT.l3_addr.fields;
  const buf = checkSize('l3_addr', raw);
  const family = buf.readUInt8(F.family.offset);
  if (family === L3_FAMILY_V4) {
    return addressFromBytes(4, buf.subarray(F.addr.offset, F.addr.offset + 4));
  }
  if (family === L3_FAMILY_V6) {
    return addressFromBytes(6, buf.subarray(F.addr.offset, F.addr.offset + 16));
  }
  throw new L3isoError('EKERNEL', `malformed l3_addr: unknown family ${family}`);
}

// ---- struct l3_owner ---------------------------------------------------

export interface Owner {
  /** cgroup id of the owning cell */
  cell: bigint;
  /** L3_OWNER_* */
  flags: number;
}

export function encodeOwner(o: Owner): Buffer {
  const F = LAYOUT.l3_owner.fields;
  const buf = Buffer.alloc(LAYOUT.l3_owner.size);
  buf.writeBigUInt64LE(u64('l3_owner.cell', o.cell), F.cell.offset);
  buf.writeUInt32LE(u32('l3_owner.flags', o.flags), F.flags.offset);
  return buf;
}

export function decodeOwner(raw: Uint8Array): Owner {
  const F = LAYOUT.l3_owner.fields;
  const buf = checkSize('l3_owner', raw);
  return { cell: buf.readBigUInt64LE(F.cell.offset), flags: buf.readUInt32LE(F.flags.offset) };
}

// ---- struct l3_cell ----------------------------------------------------

export interface Cell {
  /** undefined: the cell has no IPv4 address (stored as 0) */
  primary4?: CellAddress | undefined;
  loopback4: CellAddress;
  /** undefined: the cell has no IPv6 address (stored as all zero) */
  primary6?: CellAddress | undefined;
  /** L3_CELL_* */
  flags: number;
  addrs4: number;
  addrs6: number;
}

function isZero(b: Uint8Array): boolean {
  return b.every((x) => x === 0);
}

export function encodeCell(c: Cell): Buffer {
  const F = LAYOUT.l3_cell.fields;
  const buf = Buffer.alloc(LAYOUT.l3_cell.size);
  // 0.0.0.0 and :: are the "none" markers, so they can never be a primary.
  if (c.primary4 !== undefined) {
    requireFamily('l3_cell.primary4', c.primary4, 4);
    if (isZero(c.primary4.bytes))
      throw badValue('l3_cell.primary4', '0.0.0.0 means "none"; leave it undefined');
    c.primary4.bytes.copy(buf, F.primary4.offset);
  }
  requireFamily('l3_cell.loopback4', c.loopback4, 4);
  c.loopback4.bytes.copy(buf, F.loopback4.offset);
  if (c.primary6 !== undefined) {
    requireFamily('l3_cell.primary6', c.primary6, 6);
    if (isZero(c.primary6.bytes))
      throw badValue('l3_cell.primary6', ':: means "none"; leave it undefined');
    c.primary6.bytes.copy(buf, F.primary6.offset);
  }
  buf.writeUInt32LE(u32('l3_cell.flags', c.flags), F.flags.offset);
  buf.writeUInt32LE(u32('l3_cell.addrs4', c.addrs4), F.addrs4.offset);
  buf.writeUInt32LE(u32('l3_cell.addrs6', c.addrs6), F.addrs6.offset);
  return buf;
}

export function decodeCell(raw: Uint8Array): Cell {
  const F = LAYOUT.l3_cell.fields;
  const buf = checkSize('l3_cell', raw);
  const p4 = buf.subarray(F.primary4.offset, F.primary4.offset + F.primary4.size);
  const p6 = buf.subarray(F.primary6.offset, F.primary6.offset + F.primary6.size);
  return {
    primary4: isZero(p4) ? undefined : addressFromBytes(4, p4),
    loopback4: addressFromBytes(
      4,
      buf.subarray(F.loopback4.offset, F.loopback4.offset + F.loopback4.size),
    ),
    primary6: isZero(p6) ? undefined : addressFromBytes(6, p6),
    flags: buf.readUInt32LE(F.flags.offset),
    addrs4: buf.readUInt32LE(F.addrs4.offset),
    addrs6: buf.readUInt32LE(F.addrs6.offset),
  };
}

// ---- struct l3_config --------------------------------------------------

export interface Config {
  /** cgroup id of the managed root */
  rootCgroup: bigint;
  /** depth of the managed root in the cgroup2 hierarchy (mount = 0) */
  rootLevel: number;
  /** L3_LAYOUT_VERSION of whoever created the pinned maps */
  version: number;
  /** path the engine was brought up with */
  cgroupRoot: string;
  /** L3_CONFIG_MAGIC in a dir l3iso created (0n: not ours) */
  magic?: bigint;
  /** random id of the engine instance, hex (L3_INSTANCE_LEN bytes) */
  instance?: string;
  /** inode of the network namespace sk_lookup is attached to */
  netnsIno?: bigint;
  /** --max-cells the maps were created with */
  maxCells?: number;
  /** L3_CONFIG_* */
  flags?: number;
}

export function encodeConfig(c: Config): Buffer {
  const F = LAYOUT.l3_config.fields;
  const buf = Buffer.alloc(LAYOUT.l3_config.size);
  buf.writeBigUInt64LE(u64('l3_config.root_cgroup', c.rootCgroup), F.root_cgroup.offset);
  buf.writeUInt32LE(u32('l3_config.root_level', c.rootLevel), F.root_level.offset);
  buf.writeUInt32LE(u32('l3_config.version', c.version), F.version.offset);
  const path = Buffer.from(c.cgroupRoot, 'utf8');
  if (path.includes(0)) throw badValue('l3_config.cgroup_root', 'the path contains a NUL byte');
  // One byte stays for the NUL so C readers can treat it as a string.
  if (path.length > F.cgroup_root.size - 1) {
    throw badValue(
      'l3_config.cgroup_root',
      `the cgroup root path is ${path.length} bytes; at most ${F.cgroup_root.size - 1} fit`,
    );
  }
  path.copy(buf, F.cgroup_root.offset);
  buf.writeBigUInt64LE(u64('l3_config.magic', c.magic ?? L3_CONFIG_MAGIC), F.magic.offset);
  const instance = Buffer.from(c.instance ?? '', 'hex');
  if (c.instance !== undefined && instance.length !== L3_INSTANCE_LEN)
    throw badValue('l3_config.instance', `${c.instance} is not ${L3_INSTANCE_LEN} hex bytes`);
  instance.copy(buf, F.instance.offset);
  buf.writeBigUInt64LE(u64('l3_config.netns_ino', c.netnsIno ?? 0n), F.netns_ino.offset);
  buf.writeUInt32LE(u32('l3_config.max_cells', c.maxCells ?? 0), F.max_cells.offset);
  buf.writeUInt32LE(u32('l3_config.flags', c.flags ?? 0), F.flags.offset);
  return buf;
}

export function decodeConfig(raw: Uint8Array): Config {
  const F = LAYOUT.l3_config.fields;
  const buf = checkSize('l3_config', raw);
  const field = buf.subarray(F.cgroup_root.offset, F.cgroup_root.offset + F.cgroup_root.size);
  const nul = field.indexOf(0);
  return {
    rootCgroup: buf.readBigUInt64LE(F.root_cgroup.offset),
    rootLevel: buf.readUInt32LE(F.root_level.offset),
    version: buf.readUInt32LE(F.version.offset),
    cgroupRoot: field.subarray(0, nul < 0 ? field.length : nul).toString('utf8'),
    magic: buf.readBigUInt64LE(F.magic.offset),
    instance: buf.subarray(F.instance.offset, F.instance.offset + L3_INSTANCE_LEN).toString('hex'),
    netnsIno: buf.readBigUInt64LE(F.netns_ino.offset),
    maxCells: buf.readUInt32LE(F.max_cells.offset),
    flags: buf.readUInt32LE(F.flags.offset),
  };
}

// ---- struct l3_cell_stats / l3_cell_denials ----------------------------

/** One CPU's hot counters (struct l3_cell_stats), by L3_TRAFFIC name. */
export type CellStats = Record<TrafficName, bigint>;

/** A cell's rare counters (struct l3_cell_denials, one shared copy). */
export interface CellDenials {
  /** L3_REFUSED_SLOTS counters, indexed by Reason */
  refused: bigint[];
  /** L3_DROP_SLOTS packet-layer drop counters, indexed by Drop */
  dropped: bigint[];
}

/** Everything counted for a cell: its hot counters summed over CPUs and its
 * denials (zero when it has no l3_cell_denials entry). */
export type CellTotals = CellStats & CellDenials;

export function emptyCellStats(): CellStats {
  return Object.fromEntries(TRAFFIC_COUNTERS.map((c) => [c.name, 0n])) as CellStats;
}

export function emptyCellDenials(): CellDenials {
  return {
    refused: new Array<bigint>(L3_REFUSED_SLOTS).fill(0n),
    dropped: new Array<bigint>(L3_DROP_SLOTS).fill(0n),
  };
}

function readU64Array(buf: Buffer, f: FieldLayout): bigint[] {
  const out: bigint[] = [];
  for (let off = f.offset; off < f.offset + f.size; off += 8) out.push(buf.readBigUInt64LE(off));
  return out;
}

function writeU64Array(what: string, buf: Buffer, f: FieldLayout, values: readonly bigint[]): void {
  if (values.length > f.size / 8)
    throw badValue(what, `${values.length} entries, at most ${f.size / 8} fit`);
  values.forEach((v, i) => buf.writeBigUInt64LE(u64(what, v), f.offset + 8 * i));
}

export function encodeCellStats(s: CellStats): Buffer {
  const F = LAYOUT.l3_cell_stats.fields;
  const buf = Buffer.alloc(LAYOUT.l3_cell_stats.size);
  for (const c of TRAFFIC_COUNTERS)
    buf.writeBigUInt64LE(u64(`l3_cell_stats.${c.field}`, s[c.name]), F[c.field].offset);
  return buf;
}

/** Decodes one CPU's slice of a per-CPU l3_cell_stats value. */
export function decodeCellStats(raw: Uint8Array): CellStats {
  const F = LAYOUT.l3_cell_stats.fields;
  const buf = checkSize('l3_cell_stats', raw);
  const out = emptyCellStats();
  for (const c of TRAFFIC_COUNTERS) out[c.name] = buf.readBigUInt64LE(F[c.field].offset);
  return out;
}

/** Splits a whole per-CPU lookup result (possible CPUs x stride) into slices. */
export function decodeCellStatsPerCpu(raw: Uint8Array): CellStats[] {
  const stride = L3_CELL_STATS_PERCPU_STRIDE;
  if (raw.length === 0 || raw.length % stride !== 0) {
    throw new L3isoError(
      'EKERNEL',
      `malformed per-CPU l3_cell_stats: ${raw.length} bytes is not a multiple of ${stride}`,
    );
  }
  const out: CellStats[] = [];
  for (let off = 0; off < raw.length; off += stride) {
    out.push(decodeCellStats(raw.subarray(off, off + L3_CELL_STATS_SIZE)));
  }
  return out;
}

/** Totals over CPUs; bigints because u64 sums can exceed 2^53. */
export function sumCellStats(slices: readonly CellStats[]): CellStats {
  const total = emptyCellStats();
  for (const s of slices) for (const c of TRAFFIC_COUNTERS) total[c.name] += s[c.name];
  return total;
}

export function encodeCellDenials(d: CellDenials): Buffer {
  const F = LAYOUT.l3_cell_denials.fields;
  const buf = Buffer.alloc(LAYOUT.l3_cell_denials.size);
  writeU64Array('l3_cell_denials.refused', buf, F.refused, d.refused);
  writeU64Array('l3_cell_denials.dropped', buf, F.dropped, d.dropped);
  return buf;
}

export function decodeCellDenials(raw: Uint8Array): CellDenials {
  const F = LAYOUT.l3_cell_denials.fields;
  const buf = checkSize('l3_cell_denials', raw);
  return { refused: readU64Array(buf, F.refused), dropped: readU64Array(buf, F.dropped) };
}

// ---- struct l3_sock_origin ---------------------------------------------

export interface SockOrigin {
  /** cgroup ids from the managed root ([0]) down; length is `depth` */
  ancestors: bigint[];
}

export function encodeSockOrigin(o: SockOrigin): Buffer {
  const F = LAYOUT.l3_sock_origin.fields;
  const buf = Buffer.alloc(LAYOUT.l3_sock_origin.size);
  writeU64Array('l3_sock_origin.ancestors', buf, F.ancestors, o.ancestors);
  buf.writeUInt32LE(o.ancestors.length, F.depth.offset);
  return buf;
}

export function decodeSockOrigin(raw: Uint8Array): SockOrigin {
  const F = LAYOUT.l3_sock_origin.fields;
  const buf = checkSize('l3_sock_origin', raw);
  const depth = buf.readUInt32LE(F.depth.offset);
  if (depth > L3_MAX_DEPTH) {
    throw new L3isoError(
      'EKERNEL',
      `malformed l3_sock_origin: depth ${depth} exceeds ${L3_MAX_DEPTH}`,
    );
  }
  return { ancestors: readU64Array(buf, F.ancestors).slice(0, depth) };
}

// ---- struct l3_prefix_key / l3_allow_key (LPM tries) --------------------

/** Key of l3_managed: prefixlen counts the family byte (8 + prefix length). */
export function encodePrefixKey(p: CellPrefix): Buffer {
  const F = LAYOUT.l3_prefix_key.fields;
  const buf = Buffer.alloc(LAYOUT.l3_prefix_key.size);
  buf.writeUInt32LE(8 + p.prefixLength, F.prefixlen.offset);
  buf.writeUInt8(p.address.family, F.family.offset);
  p.address.bytes.copy(buf, F.addr.offset);
  return buf;
}

export function decodePrefixKey(raw: Uint8Array): CellPrefix {
  const F = LAYOUT.l3_prefix_key.fields;
  const buf = checkSize('l3_prefix_key', raw);
  const family = buf.readUInt8(F.family.offset) === L3_FAMILY_V6 ? 6 : 4;
  const len = family === 4 ? 4 : 16;
  return {
    address: addressFromBytes(family, buf.subarray(F.addr.offset, F.addr.offset + len)),
    prefixLength: buf.readUInt32LE(F.prefixlen.offset) - 8,
  };
}

/** Key of l3_allow: the cell id big-endian, so the trie matches it whole
 * before it looks at the source prefix (prefixlen = 64 + 8 + length). */
export function encodeAllowKey(cell: bigint, p: CellPrefix): Buffer {
  const F = LAYOUT.l3_allow_key.fields;
  const buf = Buffer.alloc(LAYOUT.l3_allow_key.size);
  buf.writeUInt32LE(64 + 8 + p.prefixLength, F.prefixlen.offset);
  buf.writeBigUInt64BE(u64('l3_allow_key.cell', cell), F.cell.offset);
  buf.writeUInt8(p.address.family, F.family.offset);
  p.address.bytes.copy(buf, F.addr.offset);
  return buf;
}

export function decodeAllowKey(raw: Uint8Array): { cell: bigint; prefix: CellPrefix } {
  const F = LAYOUT.l3_allow_key.fields;
  const buf = checkSize('l3_allow_key', raw);
  const family = buf.readUInt8(F.family.offset) === L3_FAMILY_V6 ? 6 : 4;
  const len = family === 4 ? 4 : 16;
  return {
    cell: buf.readBigUInt64BE(F.cell.offset),
    prefix: {
      address: addressFromBytes(family, buf.subarray(F.addr.offset, F.addr.offset + len)),
      prefixLength: buf.readUInt32LE(F.prefixlen.offset) - 72,
    },
  };
}

// ---- struct l3_event ----------------------------------------------------

export interface AuditEvent {
  /** CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns) */
  timeNs: bigint;
  cell: bigint;
  pid: number;
  kind: 'refused' | 'dropped';
  /** reason name from reasonName / dropName */
  reason: string;
  port: number;
  address?: string | undefined;
  comm: string;
}

export function decodeEvent(raw: Uint8Array): AuditEvent {
  const F = LAYOUT.l3_event.fields;
  const buf = checkSize('l3_event', raw);
  const kindNum = buf.readUInt32LE(F.kind.offset);
  const reasonNum = buf.readUInt32LE(F.reason.offset);
  const family = buf.readUInt8(F.family.offset);
  const kind = kindNum === L3_EV_DROPPED ? 'dropped' : 'refused';
  const names: Readonly<Record<number, string>> = kind === 'dropped' ? dropName : reasonName;
  const addrBytes = buf.subarray(F.addr.offset, F.addr.offset + (family === L3_FAMILY_V6 ? 16 : 4));
  const comm = buf.subarray(F.comm.offset, F.comm.offset + F.comm.size);
  const nul = comm.indexOf(0);
  return {
    timeNs: buf.readBigUInt64LE(F.time_ns.offset),
    cell: buf.readBigUInt64LE(F.cell.offset),
    pid: buf.readUInt32LE(F.pid.offset),
    kind,
    reason: names[reasonNum] ?? `reason-${reasonNum}`,
    port: buf.readUInt16LE(F.port.offset),
    address:
      family === L3_FAMILY_V4 || family === L3_FAMILY_V6
        ? formatAddress(family === L3_FAMILY_V4 ? 4 : 6, addrBytes)
        : undefined,
    comm: comm.subarray(0, nul < 0 ? comm.length : nul).toString('utf8'),
  };
}

// ---- struct l3_uplink ---------------------------------------------------

export interface Uplink {
  /** 0 when ingress is filtered by tc */
  xdpFlags: number;
  xdpProgId: number;
  /** tc egress */
  tcProgId: number;
  /** 0 when ingress is filtered by XDP */
  tcIngressProgId: number;
}

export function encodeUplink(u: Uplink): Buffer {
  const F = LAYOUT.l3_uplink.fields;
  const buf = Buffer.alloc(LAYOUT.l3_uplink.size);
  buf.writeUInt32LE(u32('l3_uplink.xdp_flags', u.xdpFlags), F.xdp_flags.offset);
  buf.writeUInt32LE(u32('l3_uplink.xdp_prog_id', u.xdpProgId), F.xdp_prog_id.offset);
  buf.writeUInt32LE(u32('l3_uplink.tc_prog_id', u.tcProgId), F.tc_prog_id.offset);
  buf.writeUInt32LE(
    u32('l3_uplink.tc_ingress_prog_id', u.tcIngressProgId),
    F.tc_ingress_prog_id.offset,
  );
  return buf;
}

export function decodeUplink(raw: Uint8Array): Uplink {
  const F = LAYOUT.l3_uplink.fields;
  const buf = checkSize('l3_uplink', raw);
  return {
    xdpFlags: buf.readUInt32LE(F.xdp_flags.offset),
    xdpProgId: buf.readUInt32LE(F.xdp_prog_id.offset),
    tcProgId: buf.readUInt32LE(F.tc_prog_id.offset),
    tcIngressProgId: buf.readUInt32LE(F.tc_ingress_prog_id.offset),
  };
}

// ---- struct l3_cell_slot (key of l3_cell_addrs, the reverse index) -------

export const L3_CELL_SLOT_SIZE = LAYOUT.l3_cell_slot.size;

export function encodeCellSlot(cell: bigint, slot: number): Buffer {
  const F = LAYOUT.l3_cell_slot.fields;
  const buf = Buffer.alloc(L3_CELL_SLOT_SIZE);
  buf.writeBigUInt64LE(cell, F.cell.offset);
  buf.writeUInt32LE(slot, F.slot.offset);
  return buf;
}

export function decodeCellSlot(raw: Uint8Array): { cell: bigint; slot: number } {
  const F = LAYOUT.l3_cell_slot.fields;
  const buf = checkSize('l3_cell_slot', raw);
  return { cell: buf.readBigUInt64LE(F.cell.offset), slot: buf.readUInt32LE(F.slot.offset) };
}
