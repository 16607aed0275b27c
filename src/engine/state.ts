/**
 * Typed access to an engine's pinned maps. The kernel maps are the only
 * state: nothing here caches across calls, so concurrent CLIs and a crashed
 * one never leave a stale copy behind.
 */
import * as fs from 'node:fs';
import { BpfMap, MapUpdate, isErrno } from '../../loader';
import { L3isoError } from '../errors';
import { sleepSync } from '../sleep';
import {
  CELL_KEY_SIZE,
  decodeCell,
  decodeCellKey,
  decodeCellStatsPerCpu,
  decodeConfig,
  decodeOwner,
  decodeAddr,
  emptyCellStats,
  encodeAddr,
  encodeCell,
  encodeCellKey,
  encodeCellStats,
  encodeConfig,
  encodeOwner,
  sumCellStats,
  type Cell,
  type CellStats,
  type Config,
  type Owner,
} from '../maps/layout';
import type { CellAddress } from '../model/address';
import { pinLayout, type PinLayout } from './paths';
import { SHARED_MAPS, type SharedMapName } from './programs';

export type ClaimResult = { claimed: true } | { claimed: false; owner: Owner };

export class EngineState {
  /** Maps are opened on first use: a verb that touches two maps should
   * not pay the FFI round trips of opening all of them. */
  private readonly opened = new Map<SharedMapName, BpfMap>();

  private constructor(readonly layout: PinLayout) {}

  /** An engine whose maps are pinned in pinDir, or ENOT_UP. */
  static open(pinDir: string): EngineState {
    const layout = pinLayout(pinDir);
    for (const name of SHARED_MAPS) {
      if (!fs.existsSync(layout.map(name))) {
        throw new L3isoError(
          'ENOT_UP',
          `engine is not up in ${layout.root} (no pinned map ${name})`,
          'run `l3iso up --cgroup-root PATH` first',
        );
      }
    }
    return new EngineState(layout);
  }

  static isUp(pinDir: string): boolean {
    const layout = pinLayout(pinDir);
    return SHARED_MAPS.every((name) => fs.existsSync(layout.map(name)));
  }

  map(name: SharedMapName): BpfMap {
    let m = this.opened.get(name);
    if (!m) {
      try {
        m = BpfMap.openPinned(this.layout.map(name));
      } catch (err) {
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

  close(): void {
    for (const m of this.opened.values()) m.close();
    this.opened.clear();
  }

  // ---- config ----------------------------------------------------------

  config(): Config {
    const raw = this.map('l3_config').lookup(configKey());
    if (!raw) throw new L3isoError('EKERNEL', 'l3_config has no entry');
    const config = decodeConfig(raw);
    if (config.rootCgroup === 0n) {
      throw new L3isoError('ENOT_UP', `engine in ${this.layout.root} was never configured`);
    }
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

  /** Creates the zeroed counter entry the BPF programs increment. */
  ensureStats(id: bigint): void {
    const zero = encodeCellStats(emptyCellStats());
    const perCpu = Buffer.alloc(this.map('l3_cell_stats').valueBufferSize);
    for (let off = 0; off + zero.length <= perCpu.length; off += this.statsStride())
      zero.copy(perCpu, off);
    try {
      mapFull(
        () => this.map('l3_cell_stats').update(encodeCellKey(id), perCpu, MapUpdate.NOEXIST),
        'l3_cell_stats',
      );
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
    }
  }

  deleteStats(id: bigint): void {
    this.map('l3_cell_stats').delete(encodeCellKey(id));
  }

  allStats(): Map<bigint, CellStats> {
    const { keys, values } = this.map('l3_cell_stats').lookupBatch();
    const out = new Map<bigint, CellStats>();
    keys.forEach((k, i) =>
      out.set(decodeCellKey(k), sumCellStats(decodeCellStatsPerCpu(values[i]!))),
    );
    return out;
  }

  private statsStride(): number {
    return Math.ceil(this.map('l3_cell_stats').valueSize / 8) * 8;
  }
}

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
