/**
 * Typed access to an engine's pinned maps. The kernel maps are the only
 * state: nothing here caches across calls, so concurrent CLIs and a crashed
 * one never leave a stale copy behind.
 */
import * as fs from 'node:fs';
import { BpfMap, MapType, MapUpdate, isErrno } from '../../loader';
import { L3isoError } from '../errors';
import { sleepSync } from '../sleep';
import {
  CELL_KEY_SIZE,
  decodeCell,
  decodeCellKey,
  decodeCellDenials,
  decodeCellStatsPerCpu,
  decodeConfig,
  decodeOwner,
  decodeAddr,
  emptyCellDenials,
  emptyCellStats,
  encodeAddr,
  encodeCell,
  encodeCellKey,
  encodeCellStats,
  encodeConfig,
  encodeOwner,
  sumCellStats,
  L3_CONFIG_COMPLETE,
  L3_CONFIG_MAGIC,
  L3_LAYOUT_VERSION,
  LAYOUT,
  type Cell,
  type CellTotals,
  type Config,
  type Owner,
} from '../codecs/layout';
import type { CellAddress } from '../model/address';
import { pinLayout, type PinLayout } from './paths';
import { PinDirLock } from './lock';
import { Revoker, revokerReady, revokerSet } from './revoke';
import { bumpGenerationIn } from './generation';
import { SHARED_MAPS, SHARED_MAP_SHAPES, type SharedMapName } from './programs';

export type ClaimResult = { claimed: true } | { claimed: false; owner: Owner };

export interface OpenOptions {
  /** `up` only: accept an interrupted first up (no COMPLETE flag) and
   * missing maps, which it is about to create */
  incomplete?: boolean;
  /** the pin dir's lock, already open (by `up`, which holds it); the
   * state then does not close it. Default: a lock of its own. */
  lock?: PinDirLock;
}

export class EngineState implements Disposable {
  /** Maps are opened on first use: a verb that touches two maps should
   * not pay the FFI round trips of opening all of them. */
  private readonly opened = new Map<SharedMapName, BpfMap>();
  private revokerOpen: Revoker | undefined;

  private constructor(
    readonly layout: PinLayout,
    /** the pin dir's flock (see lock.ts); withLock takes it */
    readonly lock: PinDirLock,
    private readonly ownsLock: boolean,
  ) {}

  /**
   * An engine whose maps are pinned in pinDir. Every verb goes through
   * here, so every verb refuses a dir that is not the engine's: ENOT_UP
   * (nothing there), EPIN_DIR (no l3iso marker, another layout version, a
   * map of another shape), EPIN_PARTIAL (an interrupted up, a missing pin).
   */
  static open(pinDir: string | PinLayout, opts: OpenOptions = {}): EngineState {
    const layout = typeof pinDir === 'string' ? pinLayout(pinDir) : pinDir;
    const missing = missingMaps(layout);
    if (missing.length === SHARED_MAPS.length) {
      throw new L3isoError(
        'ENOT_UP',
        `engine is not up in ${layout.root} (no pinned maps)`,
        'run `l3iso up --cgroup-root PATH` first',
      );
    }
    // First, before the set of maps and their shapes: another layout
    // version may have other maps, or other sizes, l3_config's included.
    if (!missing.includes('l3_config')) refuseOtherLayout(layout);
    const lock = opts.lock ?? PinDirLock.open(layout.root);
    const state = new EngineState(layout, lock, opts.lock === undefined);
    try {
      if (missing.includes('l3_config')) {
        if (!opts.incomplete)
          throw new L3isoError(
            'EPIN_PARTIAL',
            `pin dir ${layout.root} lacks maps/l3_config, the engine's marker`,
            'if it is an l3iso engine, run `l3iso up --repair --cgroup-root PATH`',
          );
      } else {
        state.marker(opts.incomplete === true);
      }
      if (missing.length === 0 && !opts.incomplete && !revokerReady(layout)) {
        throw new L3isoError(
          'EPIN_PARTIAL',
          `engine in ${layout.root} is missing its revocation iterator (revoke/)`,
          'run `l3iso up --repair --cgroup-root PATH`',
        );
      }
      if (missing.length > 0 && !opts.incomplete) {
        throw new L3isoError(
          'EPIN_PARTIAL',
          `engine in ${layout.root} is missing pinned maps: ${missing.join(', ')}`,
          'run `l3iso up --repair --cgroup-root PATH` (it rebuilds what the owner map proves)',
        );
      }
      return state;
    } catch (err) {
      state.close();
      throw err;
    }
  }

  /** Every shared map is pinned (the engine may still be refused by open). */
  static isUp(pinDir: string): boolean {
    return missingMaps(pinLayout(pinDir)).length === 0;
  }

  /**
   * The checked l3_config: l3iso's marker and this layout version, and the
   * COMPLETE flag of a finished first up. An all-zero entry is what a map
   * the first up created but never wrote holds: returned only to `up`.
   */
  marker(incompleteOk = false): Config | undefined {
    const raw = this.map('l3_config').lookup(configKey());
    if (!raw) throw new L3isoError('EPIN_DIR', `${this.layout.root}: l3_config has no entry`);
    if (raw.every((b) => b === 0)) {
      if (incompleteOk) return undefined;
      throw interrupted(this.layout.root);
    }
    const config = decodeConfig(raw);
    if (config.magic !== L3_CONFIG_MAGIC) {
      throw new L3isoError(
        'EPIN_DIR',
        `pin dir ${this.layout.root} is not an l3iso engine's (its l3_config has no l3iso marker)`,
        'use another --pin-dir; l3iso leaves pins it did not create alone',
      );
    }
    if (config.version !== L3_LAYOUT_VERSION) throw otherLayout(this.layout, config.version);
    if (!((config.flags ?? 0) & L3_CONFIG_COMPLETE) && !incompleteOk)
      throw interrupted(this.layout.root);
    return config;
  }

  map(name: SharedMapName): BpfMap {
    let m = this.opened.get(name);
    if (!m) {
      try {
        m = BpfMap.openPinned(this.layout.map(name));
        checkShape(this.layout, name, m);
      } catch (err) {
        m?.close();
        if (isErrno(err, 'ENOENT')) {
          throw new L3isoError('ENOT_UP', `engine in ${this.layout.root} went down`, undefined, {
            cause: err,
          });
        }
        throw err;
      }
      this.opened.set(name, m);
    }
    return m;
  }

  /**
   * The revocation iterator, opened once and kept while the `revoke`
   * symlink names the set it was opened from (an `up` re-pins a new set;
   * a `down` removes the symlink first, and then this refuses as
   * requireRevoker does).
   */
  revoker(): Revoker {
    const set = revokerSet(this.layout);
    if (this.revokerOpen && set !== undefined && this.revokerOpen.set === set)
      return this.revokerOpen;
    this.revokerOpen?.close();
    this.revokerOpen = undefined;
    this.revokerOpen = Revoker.open(this.layout);
    return this.revokerOpen;
  }

  /** Invalidates what every socket cached (l3_generation), through the
   * map this state keeps open. */
  bumpGeneration(): void {
    let map: BpfMap;
    try {
      map = this.map('l3_generation');
    } catch (err) {
      // Before `up` pinned it nothing can have cached anything.
      if (err instanceof L3isoError && err.code === 'ENOT_UP') return;
      throw err;
    }
    bumpGenerationIn(map);
  }

  close(): void {
    this.revokerOpen?.close();
    this.revokerOpen = undefined;
    for (const m of this.opened.values()) m.close();
    this.opened.clear();
    if (this.ownsLock) this.lock.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  // ---- config ----------------------------------------------------------

  /** The engine's configuration (checked as open() checks it). */
  config(): Config {
    const config = this.marker();
    if (!config) throw interrupted(this.layout.root);
    return config;
  }

  writeConfig(config: Config): void {
    this.map('l3_config').update(configKey(), encodeConfig(config), MapUpdate.ANY);
  }

  // ---- cells -----------------------------------------------------------

  cell(id: bigint): Cell | undefined {
    const raw = this.map('l3_cells').lookup(encodeCellKey(id));
    return raw ? decodeCell(raw) : undefined;
  }

  putCell(id: bigint, cell: Cell): void {
    mapFull(
      () => this.map('l3_cells').update(encodeCellKey(id), encodeCell(cell), MapUpdate.ANY),
      'l3_cells',
    );
  }

  deleteCell(id: bigint): boolean {
    return this.map('l3_cells').delete(encodeCellKey(id));
  }

  cells(): Map<bigint, Cell> {
    const { keys, values } = this.map('l3_cells').lookupBatch();
    const out = new Map<bigint, Cell>();
    keys.forEach((k, i) => out.set(decodeCellKey(k), decodeCell(values[i]!)));
    return out;
  }

  // ---- owners ----------------------------------------------------------

  /** Atomic claim (BPF_NOEXIST): of two concurrent claimers exactly one wins. */
  claim(addr: CellAddress, owner: Owner): ClaimResult {
    const key = encodeAddr(addr);
    try {
      mapFull(
        () => this.map('l3_owners').update(key, encodeOwner(owner), MapUpdate.NOEXIST),
        'l3_owners',
      );
      return { claimed: true };
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
      const existing = this.owner(addr);
      // Released between our claim and our look: claim again.
      if (!existing) return this.claim(addr, owner);
      return { claimed: false, owner: existing };
    }
  }

  /** Rewrites the flags of an address the cell already holds (BPF_EXIST:
   * never resurrects a released one). */
  claimFlags(addr: CellAddress, owner: Owner): void {
    this.map('l3_owners').update(encodeAddr(addr), encodeOwner(owner), MapUpdate.EXIST);
  }

  owner(addr: CellAddress): Owner | undefined {
    const raw = this.map('l3_owners').lookup(encodeAddr(addr));
    return raw ? decodeOwner(raw) : undefined;
  }

  unclaim(addr: CellAddress): boolean {
    return this.map('l3_owners').delete(encodeAddr(addr));
  }

  owners(): { address: CellAddress; owner: Owner }[] {
    const { keys, values } = this.map('l3_owners').lookupBatch();
    return keys.map((k, i) => ({ address: decodeAddr(k), owner: decodeOwner(values[i]!) }));
  }

  // ---- counters --------------------------------------------------------

  /** Creates the zeroed counter entry the BPF programs increment; true if
   * it was missing. */
  ensureStats(id: bigint, likelyMissing = false): boolean {
    // A lookup first where the usual answer is "exists": a refused
    // NOEXIST update costs an exception.
    if (!likelyMissing && this.hasStats(id)) return false;
    const zero = encodeCellStats(emptyCellStats());
    const perCpu = Buffer.alloc(this.map('l3_cell_stats').valueBufferSize);
    for (let off = 0; off + zero.length <= perCpu.length; off += this.statsStride())
      zero.copy(perCpu, off);
    try {
      mapFull(
        () => this.map('l3_cell_stats').update(encodeCellKey(id), perCpu, MapUpdate.NOEXIST),
        'l3_cell_stats',
      );
      return true;
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
      return false;
    }
  }

  hasStats(id: bigint): boolean {
    return this.map('l3_cell_stats').lookupPerCpu(encodeCellKey(id)) !== undefined;
  }

  /** Keys of l3_cell_stats (no values: they are per-CPU and large). */
  statsIds(): bigint[] {
    return [...this.map('l3_cell_stats').keys()].map((k) => decodeCellKey(k));
  }

  /** Keys of l3_cell_denials: cells that had a refusal or a drop. */
  denialIds(): bigint[] {
    return [...this.map('l3_cell_denials').keys()].map((k) => decodeCellKey(k));
  }

  /** Both counter entries of the cell (after its l3_cells entry: a denial
   * the BPF programs count meanwhile finds no cell and creates nothing). */
  deleteStats(id: bigint): void {
    this.map('l3_cell_stats').delete(encodeCellKey(id));
    this.map('l3_cell_denials').delete(encodeCellKey(id));
  }

  /** Exact (bigint) counters of every cell with an l3_cell_stats entry. */
  allStats(): Map<bigint, CellTotals> {
    const { keys, values } = this.map('l3_cell_stats').lookupBatch();
    const rare = this.map('l3_cell_denials').lookupBatch();
    const denials = new Map(rare.keys.map((k, i) => [decodeCellKey(k), rare.values[i]!]));
    const out = new Map<bigint, CellTotals>();
    keys.forEach((k, i) => {
      const id = decodeCellKey(k);
      const d = denials.get(id);
      out.set(id, {
        ...sumCellStats(decodeCellStatsPerCpu(values[i]!)),
        ...(d ? decodeCellDenials(d) : emptyCellDenials()),
      });
    });
    return out;
  }

  private statsStride(): number {
    return Math.ceil(this.map('l3_cell_stats').valueSize / 8) * 8;
  }
}

function otherLayout(layout: PinLayout, version: number): L3isoError {
  const newer = version > L3_LAYOUT_VERSION;
  return new L3isoError(
    'EPIN_DIR',
    `engine in ${layout.root} has layout version ${version}, made by ${newer ? 'a newer' : 'an older'} l3iso; this one uses version ${L3_LAYOUT_VERSION}`,
    newer
      ? 'use the l3iso that brought it up (README "Crashes and gc": downgrades)'
      : 'an engine of an older layout cannot be reused: run `l3iso down`, then `l3iso up` (this drops the assignments)',
  );
}

/** Where every layout version keeps its identity in l3_config: the struct
 * only ever grows at its end, so `version` stays at byte 12 and, from
 * version 2 on, `magic` at byte 272 (bpf/l3iso.h). */
const VERSION_AT = LAYOUT.l3_config.fields.version.offset;
const MAGIC_AT = LAYOUT.l3_config.fields.magic.offset;

/**
 * The layout version in a pinned l3_config of any size, when it is an
 * l3iso marker (magic at its place) or layout 1's (272 bytes, no magic);
 * undefined when it is neither (refused later as not the engine's).
 */
export function pinnedLayoutVersion(layout: PinLayout): number | undefined {
  const m = BpfMap.openPinned(layout.map('l3_config'));
  try {
    if (m.type !== MapType.ARRAY || m.keySize !== 4) return undefined;
    if (m.valueSize !== L3_CONFIG_V1_SIZE && m.valueSize < MAGIC_AT + 8) return undefined;
    const raw = m.lookup(configKey());
    if (!raw) return undefined;
    if (m.valueSize === L3_CONFIG_V1_SIZE)
      return raw.readUInt32LE(VERSION_AT) === 1 ? 1 : undefined;
    if (raw.readBigUInt64LE(MAGIC_AT) !== L3_CONFIG_MAGIC) return undefined;
    return raw.readUInt32LE(VERSION_AT);
  } finally {
    m.close();
  }
}

/** EPIN_DIR naming the version when the dir is an engine of another layout. */
export function refuseOtherLayout(layout: PinLayout): void {
  const version = pinnedLayoutVersion(layout);
  if (version !== undefined && version !== L3_LAYOUT_VERSION) throw otherLayout(layout, version);
}

function interrupted(root: string): L3isoError {
  return new L3isoError(
    'EPIN_PARTIAL',
    `the first \`up\` in ${root} did not finish`,
    'run `l3iso up --cgroup-root PATH` again to finish it, or `l3iso down`',
  );
}

/** Shared maps with no pin in the layout's maps dir. */
export function missingMaps(layout: PinLayout): SharedMapName[] {
  return SHARED_MAPS.filter((name) => !fs.existsSync(layout.map(name)));
}

function checkShape(layout: PinLayout, name: SharedMapName, m: BpfMap): void {
  const want = SHARED_MAP_SHAPES[name];
  if (m.type === want.type && m.keySize === want.keySize && m.valueSize === want.valueSize) return;
  const v1 = name === 'l3_config' && m.type === want.type && m.valueSize === L3_CONFIG_V1_SIZE;
  throw new L3isoError(
    'EPIN_DIR',
    v1
      ? `engine in ${layout.root} has layout version 1, made by an older l3iso; this one uses version ${L3_LAYOUT_VERSION}`
      : `pinned map ${layout.map(name)} is not the engine's: type ${m.type}, key ${m.keySize} B, value ${m.valueSize} B; expected type ${want.type}, key ${want.keySize} B, value ${want.valueSize} B`,
    v1
      ? 'run `l3iso down` and `up` again (this drops the assignments)'
      : 'use another --pin-dir; l3iso does not adopt pins it did not create',
  );
}

/** sizeof(struct l3_config) in layout version 1, which `down` still removes. */
export const L3_CONFIG_V1_SIZE = 272;

function configKey(): Buffer {
  return Buffer.alloc(4);
}

/** A hash map at max_entries answers E2BIG; say which limit was hit. */
function mapFull(fn: () => void, name: string): void {
  for (let attempt = 1; ; attempt++) {
    try {
      fn();
      return;
    } catch (err) {
      if (isErrno(err, 'E2BIG') || isErrno(err, 'ENOSPC')) {
        throw new L3isoError(
          'EMAP_FULL',
          `map ${name} is full`,
          'bring the engine up with a larger --max-cells (run `down` first)',
          { cause: err },
        );
      }
      // Maps without preallocation draw on a per-CPU cache the kernel
      // refills asynchronously; a burst of inserts can outrun it briefly.
      if (isErrno(err, 'ENOMEM') && attempt < ENOMEM_RETRIES) {
        sleepSync(attempt);
        continue;
      }
      if (isErrno(err, 'ENOMEM')) {
        throw new L3isoError(
          'EKERNEL',
          `the kernel has no memory for another ${name} entry`,
          undefined,
          {
            cause: err,
          },
        );
      }
      throw err;
    }
  }
}

const ENOMEM_RETRIES = 20;

export { CELL_KEY_SIZE };
