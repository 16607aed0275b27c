/**
 * The fast read path behind `stats`, `show`, `metrics` and `serve`: every
 * per-CPU l3_cell_stats entry (hot traffic counters) in one batch lookup,
 * summed over CPUs, and every l3_cell_denials entry (refusals and drops, one
 * shared copy, only for cells that had one) in another, merged into a flat
 * Float64Array (no object per cell or per field), plus an id -> name cache
 * so a scrape does not walk the cgroup tree each time.
 *
 * A row is the L3_TRAFFIC counters in table order, then L3_REFUSED_SLOTS
 * refusal slots, then L3_DROP_SLOTS drop slots (W gives each one's word).
 * Counters are decoded as Numbers from two u32 halves: exact up to 2^53
 * (9 PB or 9e15 packets per cell), which is what Prometheus stores anyway.
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
  TRAFFIC_COUNTERS,
  dropName,
  encodeCellKey,
  reasonName,
  type Drop,
  type Reason,
  type TrafficName,
} from '../codecs/layout';

import { cgroupPathsById, relativeCellName } from '../model/cgroup';

/** u64 words of per-CPU traffic in one l3_cell_stats value. */
const TRAFFIC_WORDS = LAYOUT.l3_cell_stats.size / 8;
/** u64 words in one l3_cell_denials value. */
const DENIAL_WORDS = LAYOUT.l3_cell_denials.size / 8;
/** Words of one row of a StatsTable. */
export const STAT_WORDS = TRAFFIC_WORDS + DENIAL_WORDS;
/** Bytes between two CPUs' copies of a per-CPU value (libbpf rounds to 8). */
const STATS_CPU_STRIDE = L3_CELL_STATS_PERCPU_STRIDE;

const DF = LAYOUT.l3_cell_denials.fields;

/** Word index in a row of each traffic counter (by L3_TRAFFIC name) and of
 * the first refusal and drop slot. */
export const W = {
  ...(Object.fromEntries(
    TRAFFIC_COUNTERS.map((c) => [c.name, LAYOUT.l3_cell_stats.fields[c.field].offset / 8]),
  ) as Record<TrafficName, number>),
  refused: TRAFFIC_WORDS + DF.refused.offset / 8,
  dropped: TRAFFIC_WORDS + DF.dropped.offset / 8,
} as const;

export { TRAFFIC_FIELDS } from '../codecs/layout';
export type TrafficField = TrafficName;

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

/** Every cell's counters. Row i is values[i * STAT_WORDS .. (i + 1) *
 * STAT_WORDS); rows are the l3_cell_stats entries, then ids that only
 * l3_cell_denials has (counters of a released cell, until gc). */
export interface StatsTable {
  readonly length: number;
  /** cgroup id of each row; 0n is "outside every cell" */
  readonly ids: bigint[];
  readonly values: Float64Array;
  /** entries read from each map (for map pressure) */
  readonly entries?: { readonly l3_cell_stats: number; readonly l3_cell_denials: number };
}

const TWO32 = 4294967296;
const LITTLE_ENDIAN = os.endianness() === 'LE';

function malformed(map: string, k: Buffer, v: Buffer, want: number): L3isoError {
  return new L3isoError(
    'EKERNEL',
    `malformed ${map} entry: key ${k.length} bytes, value ${v.length} bytes (expected ${CELL_KEY_SIZE} and ${want})`,
    'the pinned maps may come from another l3iso version; run `l3iso down` and `l3iso up`',
  );
}

/**
 * Adds `copies` consecutive u64 vectors of `words` words, `stride` bytes
 * apart, into out[at ..]. Reads go through a Uint32Array over the Buffer's
 * ArrayBuffer: lookupBatch copies small values into shared 8 KiB pool
 * slabs, so one view serves many rows (`views` caches the last one).
 * Unaligned Buffers use readUInt32LE.
 */
function addWords(
  buf: Buffer,
  copies: number,
  stride: number,
  words: number,
  out: Float64Array,
  at: number,
  views: { ab?: ArrayBufferLike; u32?: Uint32Array },
): void {
  if (LITTLE_ENDIAN && buf.byteOffset % 4 === 0) {
    if (views.ab !== buf.buffer || !views.u32) {
      views.ab = buf.buffer;
      views.u32 = new Uint32Array(buf.buffer, 0, buf.buffer.byteLength >>> 2);
    }
    const u32 = views.u32;
    for (let c = 0; c < copies; c++) {
      const off = (buf.byteOffset + c * stride) >>> 2;
      for (let w = 0; w < words; w++)
        out[at + w] += u32[off + 2 * w] + u32[off + 2 * w + 1] * TWO32;
    }
    return;
  }
  for (let c = 0; c < copies; c++) {
    const off = c * stride;
    for (let w = 0; w < words; w++) {
      const lo = buf.readUInt32LE(off + 8 * w);
      const hi = buf.readUInt32LE(off + 8 * w + 4);
      out[at + w] += lo + hi * TWO32;
    }
  }
}

type Entries = { keys: readonly Buffer[]; values: readonly Buffer[] };

/**
 * Decodes batch-lookup output of l3_cell_stats (8-byte keys, per-CPU values
 * of `cpus * stride` bytes) and, if given, of l3_cell_denials (8-byte keys,
 * one value each), merged by cell id.
 */
export function decodeStatsTable(
  keys: readonly Buffer[],
  values: readonly Buffer[],
  cpus: number = possibleCpus(),
  denials: Entries = { keys: [], values: [] },
): StatsTable {
  const ids: bigint[] = keys.map((k) => (k.length === CELL_KEY_SIZE ? k.readBigUInt64LE(0) : -1n));
  const rowOf = denials.keys.length > 0 ? new Map(ids.map((id, i) => [id, i])) : undefined;
  for (const k of denials.keys) {
    const id = k.length === CELL_KEY_SIZE ? k.readBigUInt64LE(0) : -1n;
    if (rowOf!.has(id)) continue;
    rowOf!.set(id, ids.length);
    ids.push(id);
  }
  const out = new Float64Array(ids.length * STAT_WORDS);
  const want = cpus * STATS_CPU_STRIDE;
  const views = {};
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const v = values[i]!;
    if (k.length !== CELL_KEY_SIZE || v.length !== want)
      throw malformed('l3_cell_stats', k, v, want);
    addWords(v, cpus, STATS_CPU_STRIDE, TRAFFIC_WORDS, out, i * STAT_WORDS, views);
  }
  for (let i = 0; i < denials.keys.length; i++) {
    const k = denials.keys[i]!;
    const v = denials.values[i]!;
    const size = LAYOUT.l3_cell_denials.size;
    if (k.length !== CELL_KEY_SIZE || v.length !== size)
      throw malformed('l3_cell_denials', k, v, size);
    const row = rowOf!.get(k.readBigUInt64LE(0))!;
    addWords(v, 1, size, DENIAL_WORDS, out, row * STAT_WORDS + TRAFFIC_WORDS, views);
  }
  return {
    length: ids.length,
    ids,
    values: out,
    entries: { l3_cell_stats: keys.length, l3_cell_denials: denials.keys.length },
  };
}

/** One batch lookup of each counter map. */
export function readStatsTable(stats: BpfMap, denials: BpfMap): StatsTable {
  const { keys, values } = stats.lookupBatch(8192);
  return decodeStatsTable(keys, values, possibleCpus(), denials.lookupBatch(8192));
}

/** One cell's counters as a one-row table (all zeros when it has none). */
export function readStatsRow(stats: BpfMap, denials: BpfMap, id: bigint): StatsTable {
  const key = encodeCellKey(id);
  const hot = stats.lookup(key);
  const rare = denials.lookup(key);
  const table = decodeStatsTable(hot ? [key] : [], hot ? [hot] : [], possibleCpus(), {
    keys: rare ? [key] : [],
    values: rare ? [rare] : [],
  });
  if (table.length > 0) return table;
  return { length: 1, ids: [id], values: new Float64Array(STAT_WORDS) };
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
