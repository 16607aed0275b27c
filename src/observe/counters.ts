/**
 * The fast read path behind `stats`, `metrics` and `serve`: every per-CPU
 * l3_cell_stats entry in one batch lookup, summed over CPUs into a flat
 * Float64Array (no object per cell or per field), plus an id -> name cache
 * so a scrape does not walk the cgroup tree each time.
 *
 * Counters are decoded as Numbers from two u32 halves: exact up to 2^53
 * (9 PB or 9e15 packets per cell), which is what Prometheus stores anyway.
 * `show` reads its one cell through the same decoder (readStatsRow).
 */
import * as os from 'node:os';
import { possibleCpus, type BpfMap } from '../../loader';
import { L3isoError } from '../errors';
import {
  CELL_KEY_SIZE,
  DROP_MAX,
  L3_CELL_STATS_PERCPU_STRIDE,
  L3_DROP_SLOTS,
  L3_REFUSED_SLOTS,
  LAYOUT,
  REASON_MAX,
  dropName,
  encodeCellKey,
  reasonName,
  type Drop,
  type Reason,
} from '../codecs/layout';

import { cgroupPathsById, relativeCellName } from '../model/cgroup';

const SF = LAYOUT.l3_cell_stats.fields;

/** u64 words in one struct l3_cell_stats. */
export const STAT_WORDS = LAYOUT.l3_cell_stats.size / 8;
/** Bytes between two CPUs' copies of a per-CPU value (libbpf rounds to 8). */
const STATS_CPU_STRIDE = L3_CELL_STATS_PERCPU_STRIDE;

/** Word index of each counter inside a row (offset / 8, from LAYOUT). */
export const W = {
  refused: SF.refused.offset / 8,
  rxPackets: SF.rx_packets.offset / 8,
  rxBytes: SF.rx_bytes.offset / 8,
  txPackets: SF.tx_packets.offset / 8,
  txBytes: SF.tx_bytes.offset / 8,
  dropped: SF.dropped.offset / 8,
  uplinkRxPackets: SF.uplink_rx_packets.offset / 8,
  uplinkRxBytes: SF.uplink_rx_bytes.offset / 8,
  uplinkTxPackets: SF.uplink_tx_packets.offset / 8,
  uplinkTxBytes: SF.uplink_tx_bytes.offset / 8,
} as const;

/** The eight traffic counters, in display / exposition order. */
export const TRAFFIC_FIELDS = [
  'rxPackets',
  'rxBytes',
  'txPackets',
  'txBytes',
  'uplinkRxPackets',
  'uplinkRxBytes',
  'uplinkTxPackets',
  'uplinkTxBytes',
] as const;
export type TrafficField = (typeof TRAFFIC_FIELDS)[number];

/** Label value of refusal slot i: the stable name, or reason-<i> for a
 * slot a newer BPF object fills that this build does not know yet. */
export function refusalLabel(slot: number): string {
  return slot < REASON_MAX ? reasonName[slot as Reason] : `reason-${slot}`;
}

export function dropLabel(slot: number): string {
  return slot < DROP_MAX ? dropName[slot as Drop] : `drop-${slot}`;
}

export const REFUSED_SLOTS = L3_REFUSED_SLOTS;
export const DROP_SLOTS = L3_DROP_SLOTS;

/** Every l3_cell_stats entry, summed over CPUs. Row i is
 * values[i * STAT_WORDS .. (i + 1) * STAT_WORDS), in struct order. */
export interface StatsTable {
  readonly length: number;
  /** cgroup id of each row; 0n is "outside every cell" */
  readonly ids: bigint[];
  readonly values: Float64Array;
}

const TWO32 = 4294967296;
const LITTLE_ENDIAN = os.endianness() === 'LE';

/**
 * Sums the per-CPU copies of each value into `out` at row `row`. Reads go
 * through a Uint32Array over the Buffer's ArrayBuffer: lookupBatch copies
 * small values into shared 8 KiB pool slabs, so one view serves many rows
 * (`views` caches the last one). Unaligned Buffers use readUInt32LE.
 */
function sumRow(
  buf: Buffer,
  cpus: number,
  out: Float64Array,
  row: number,
  views: { ab?: ArrayBufferLike; u32?: Uint32Array },
): void {
  const base = row * STAT_WORDS;
  if (LITTLE_ENDIAN && buf.byteOffset % 4 === 0) {
    if (views.ab !== buf.buffer || !views.u32) {
      views.ab = buf.buffer;
      views.u32 = new Uint32Array(buf.buffer, 0, buf.buffer.byteLength >>> 2);
    }
    const u32 = views.u32;
    for (let c = 0; c < cpus; c++) {
      const off = (buf.byteOffset + c * STATS_CPU_STRIDE) >>> 2;
      for (let w = 0; w < STAT_WORDS; w++)
        out[base + w] += u32[off + 2 * w] + u32[off + 2 * w + 1] * TWO32;
    }
    return;
  }
  for (let c = 0; c < cpus; c++) {
    const off = c * STATS_CPU_STRIDE;
    for (let w = 0; w < STAT_WORDS; w++) {
      const lo = buf.readUInt32LE(off + 8 * w);
      const hi = buf.readUInt32LE(off + 8 * w + 4);
      out[base + w] += lo + hi * TWO32;
    }
  }
}

/**
 * Decodes batch-lookup output of l3_cell_stats: 8-byte keys and per-CPU
 * values of `cpus * stride` bytes.
 */
export function decodeStatsTable(
  keys: readonly Buffer[],
  values: readonly Buffer[],
  cpus: number = possibleCpus(),
): StatsTable {
  const n = keys.length;
  const out = new Float64Array(n * STAT_WORDS);
  const ids = new Array<bigint>(n);
  const want = cpus * STATS_CPU_STRIDE;
  const views = {};
  for (let i = 0; i < n; i++) {
    const k = keys[i]!;
    const v = values[i]!;
    if (k.length !== CELL_KEY_SIZE || v.length !== want) {
      throw new L3isoError(
        'EKERNEL',
        `malformed l3_cell_stats entry: key ${k.length} bytes, value ${v.length} bytes (expected ${CELL_KEY_SIZE} and ${want})`,
        'the pinned maps may come from another l3iso version; run `l3iso down` and `l3iso up`',
      );
    }
    ids[i] = k.readBigUInt64LE(0);
    sumRow(v, cpus, out, i, views);
  }
  return { length: n, ids, values: out };
}

/** One batch lookup of the whole per-CPU stats map. */
export function readStatsTable(map: BpfMap): StatsTable {
  const { keys, values } = map.lookupBatch(8192);
  return decodeStatsTable(keys, values);
}

/** One cell's entry as a one-row table (all zeros when it has none). */
export function readStatsRow(map: BpfMap, id: bigint): StatsTable {
  const key = encodeCellKey(id);
  const raw = map.lookup(key);
  if (!raw) return { length: 1, ids: [id], values: new Float64Array(STAT_WORDS) };
  return decodeStatsTable([key], [raw]);
}

const BF = LAYOUT.l3_event_budget.fields;
const BUDGET_CPU_STRIDE = Math.ceil(LAYOUT.l3_event_budget.size / 8) * 8;

/** Events the kernel rate limit dropped, ever, summed over CPUs. */
export function readSuppressed(budget: BpfMap): number {
  const raw = budget.lookup(Buffer.alloc(4));
  if (!raw) return 0;
  let total = 0;
  for (let off = 0; off + BUDGET_CPU_STRIDE <= raw.length; off += BUDGET_CPU_STRIDE) {
    const at = off + BF.suppressed.offset;
    total += raw.readUInt32LE(at) + raw.readUInt32LE(at + 4) * TWO32;
  }
  return total;
}

export interface CellNamerOptions {
  /** Least time between two walks caused by ids the cache does not know. */
  rewalkMs?: number;
  /** Walk again after this long regardless (catches renamed cgroups). */
  maxAgeMs?: number;
  now?: () => number;
}

/**
 * cgroup id -> cell name (path relative to the cgroup root, as `list`
 * prints it). The kernel has no id -> path lookup, so names come from one
 * walk of the cgroup tree, cached: a scrape of 100k cells must not stat
 * 100k directories. Ids with no cgroup (removed without `release`) are
 * named `#<id>`, like `list` does.
 */
export class CellNamer {
  private named = new Map<bigint, string>();
  /** ids the last walk did not find, with their `#<id>` name */
  private unnamed = new Map<bigint, string>();
  private walkedAt = -Infinity;
  private walks = 0;
  private readonly rewalkMs: number;
  private readonly maxAgeMs: number;
  private readonly now: () => number;

  constructor(
    readonly root: string,
    opts: CellNamerOptions = {},
  ) {
    this.rewalkMs = opts.rewalkMs ?? 10_000;
    this.maxAgeMs = opts.maxAgeMs ?? 300_000;
    this.now = opts.now ?? Date.now;
  }

  /** How many times the tree was walked (for tests and the benchmark). */
  get walkCount(): number {
    return this.walks;
  }

  private walk(): void {
    const named = new Map<bigint, string>();
    for (const [id, p] of cgroupPathsById(this.root)) named.set(id, relativeCellName(p, this.root));
    this.named = named;
    this.unnamed = new Map();
    this.walkedAt = this.now();
    this.walks++;
  }

  /** Names of `ids` in order; '' for id 0 (outside every cell). */
  resolve(ids: readonly bigint[]): string[] {
    const age = this.now() - this.walkedAt;
    let walk = age >= this.maxAgeMs;
    if (!walk && age >= this.rewalkMs) {
      for (const id of ids) {
        if (id !== 0n && !this.named.has(id) && !this.unnamed.has(id)) {
          walk = true;
          break;
        }
      }
    }
    if (walk) this.walk();
    const out = new Array<string>(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (id === 0n) {
        out[i] = '';
        continue;
      }
      let name = this.named.get(id) ?? this.unnamed.get(id);
      if (name === undefined) {
        name = `#${id}`;
        this.unnamed.set(id, name);
      }
      out[i] = name;
    }
    return out;
  }
}

/** One CellNamer per cgroup root, so a long-running reader survives a
 * `down` and an `up` with another root. */
export class NamerCache {
  private namer: CellNamer | undefined;

  constructor(private readonly opts: CellNamerOptions = {}) {}

  for(root: string): CellNamer {
    if (!this.namer || this.namer.root !== root) this.namer = new CellNamer(root, this.opts);
    return this.namer;
  }
}
