/**
 * The Engine: one engine instance (one pin dir) as an object, in the spirit
 * of tubular's Dispatcher and cilium/ebpf's Collection. It owns, for its
 * lifetime, the typed opener of the pinned maps (EngineState), their fds
 * and the pin dir's lock, and every verb is a method. The CLI, the agent,
 * the OCI hooks, the demo and the bench all go through it; nothing above it
 * opens a map.
 *
 * Locking: the Engine holds an fd on the pin dir for its lifetime and takes
 * the flock per verb, exclusive for a write, shared for a read, so one
 * long-lived Engine (the agent's) never shuts the CLI out between requests.
 *
 * The verbs' modules are required on first use: a CLI process pays only
 * for the verb it runs (README "How it works").
 */
import * as fs from 'node:fs';
import type { UplinkMode } from '../model/defaults';
import type { AssignOptions, AssignResult, GcResult, ReleaseOptions } from '../cells/cells';
import type { PoolAddResult, PoolDelResult, PoolView, RangesRequest } from '../pools/pools';
import type { PoolDef } from '../pools/store';
import type { ReleaseResult } from '../cells/cells';
import type { CellDetail, CellView } from '../cells/inventory';
import type { PolicyChange, PolicyResult } from '../cells/policy';
import type { ReleaseByIdResult } from '../cells/release-id';
import type { ApplyOptions, ApplyResult } from '../declarative/apply';
import type { EngineStatus, ExportResult } from '../declarative/export';
import type { DesiredState, StateDocument } from '../declarative/schema';
import type { ExecOptions } from '../exec/exec';
import type { NamerCache } from '../observe/counters';
import type { StatsReport } from '../observe/stats';
import type { AttachResult } from '../dataplane/uplink';
import type { PreexistingSocket } from '../dataplane/preexisting';
import type { CapabilityWarning } from '../model/capabilities';
import type { PinLayout } from '../dataplane/paths';
import { MapUpdate, isErrno, type BpfMap } from '../../loader';
import { L3isoError } from '../errors';
import { sleepSync } from '../sleep';
import { withLock } from '../dataplane/lock';
import { EngineState } from '../dataplane/state';
import { pinLayout } from '../dataplane/paths';
import type { DownOptions, DownResult, UpOptions, UpResult } from './lifecycle';

const cells = (): typeof import('../cells/cells') => require('../cells/cells');
const inventory = (): typeof import('../cells/inventory') => require('../cells/inventory');
const policy = (): typeof import('../cells/policy') => require('../cells/policy');
const releaseId = (): typeof import('../cells/release-id') => require('../cells/release-id');
const uplink = (): typeof import('../dataplane/uplink') => require('../dataplane/uplink');
const preexisting = (): typeof import('../dataplane/preexisting') =>
  require('../dataplane/preexisting');
const stats = (): typeof import('../observe/stats') => require('../observe/stats');
const applyModule = (): typeof import('../declarative/apply') => require('../declarative/apply');
const exportModule = (): typeof import('../declarative/export') => require('../declarative/export');
const execModule = (): typeof import('../exec/exec') => require('../exec/exec');
const lifecycle = (): typeof import('./lifecycle') => require('./lifecycle');
const pools = (): typeof import('../pools/pools') => require('../pools/pools');

export interface EngineOpenOptions {
  /** the caller will change the engine (assign, release, apply...); a
   * read-only Engine refuses every write method */
  write?: boolean;
}

export class Engine implements Disposable {
  private constructor(
    readonly state: EngineState,
    readonly writable: boolean,
  ) {}

  /**
   * The engine pinned in pinDir. Refuses what is not an engine of this
   * layout: ENOT_UP (nothing there), EPIN_DIR (foreign pins, another
   * layout version, a map of another type or size), EPIN_PARTIAL (an
   * interrupted up, a missing pin).
   */
  static open(pinDir: string, o: EngineOpenOptions = {}): Engine {
    return new Engine(EngineState.open(pinDir), o.write === true);
  }

  /** Every shared map is pinned (open may still refuse the dir). */
  static isUp(pinDir: string): boolean {
    return EngineState.isUp(pinDir);
  }

  /**
   * Which pins pinDir holds now. Pins are replaced only by a down and up
   * (a new dir) and by an `up` in place (`--repair` re-creates lost maps),
   * and every up ends by pinning the revocation iterator into a new
   * revoke-* set that the `revoke` symlink is renamed to (dataplane/revoke.ts).
   * So the dir's inode and the symlink's target change whenever the maps an
   * Engine holds fds of may no longer be the engine's: a long-lived holder
   * compares this before each use and opens a new Engine when it changed.
   */
  static pinsIdentity(pinDir: string | PinLayout): string {
    const layout = typeof pinDir === 'string' ? pinLayout(pinDir) : pinDir;
    const ino = fs.statSync(layout.root, { throwIfNoEntry: false })?.ino ?? '-';
    let up = '-';
    try {
      up = fs.readlinkSync(layout.revokeDir);
    } catch {
      /* none (or an older l3iso's dir): an open refuses it */
    }
    return `${ino} ${up}`;
  }

  /** Brings an engine up (fresh: built aside and renamed into place), or
   * replaces the programs of a live one in place. */
  static up(opts: UpOptions): UpResult {
    return lifecycle().up(opts);
  }

  /** Takes the engine in pinDir down, whatever state it is in (also one
   * open would refuse: partial, of layout version 1). */
  static down(pinDir: string, opts: DownOptions = {}): DownResult {
    return lifecycle().down(pinDir, opts);
  }

  get layout(): PinLayout {
    return this.state.layout;
  }

  get pinDir(): string {
    return this.state.layout.root;
  }

  /** False once `down` (or down and up) replaced the dir this Engine holds:
   * a long-lived holder (the agent) then opens a new one. */
  get current(): boolean {
    return this.state.lock.current;
  }

  /** Closes this Engine, then takes the instance down. */
  down(opts: DownOptions = {}): DownResult {
    this.writes();
    const pinDir = this.pinDir;
    this.close();
    return Engine.down(pinDir, opts);
  }

  close(): void {
    this.state.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  // ---- cells -------------------------------------------------------------

  assign(cgroup: string, addresses: readonly string[], o: AssignOptions = {}): AssignResult {
    this.writes();
    return cells().assign(this.state, cgroup, addresses, o);
  }

  /** Tops the cell up to `req.count` addresses of the ranges (a fleet
   * host's blocks of a pool), the lowest free ones first. */
  assignFromRanges(cgroup: string, req: RangesRequest, o: AssignOptions = {}): AssignResult {
    this.writes();
    return pools().assignFromRanges(this.state, cgroup, req, o);
  }

  assignFromPool(
    cgroup: string,
    pool: string,
    count: number,
    o: AssignOptions = {},
  ): AssignResult & { pool: string } {
    this.writes();
    return pools().assignFromPool(this.state, cgroup, pool, count, o);
  }

  // ---- pools -------------------------------------------------------------

  poolAdd(name: string, cidr: string, blockSize?: number): PoolAddResult {
    this.writes();
    return pools().addPool(this.state, name, cidr, blockSize);
  }

  poolDel(name: string, o: { force?: boolean } = {}): PoolDelResult {
    this.writes();
    return pools().deletePool(this.state, name, o);
  }

  poolList(): PoolView[] {
    return pools().listPools(this.state);
  }

  /** The pool definitions of this instance. */
  poolDefs(): PoolDef[] {
    return pools().readPoolsOf(this.state);
  }

  release(cgroup: string, addresses: readonly string[], o: ReleaseOptions = {}): ReleaseResult {
    this.writes();
    return cells().release(this.state, cgroup, addresses, o);
  }

  /** The whole cell whose cgroup id is `id` (its cgroup may be gone). */
  releaseById(id: bigint): ReleaseByIdResult {
    this.writes();
    return releaseId().releaseCellById(this.state, id);
  }

  policy(cgroup: string, change: PolicyChange): PolicyResult {
    this.writes();
    return policy().setPolicy(this.state, cgroup, change);
  }

  gc(): GcResult {
    this.writes();
    return cells().gc(this.state);
  }

  /** What gc would repair, changing nothing (under the lock: no writer is halfway). */
  check(): string[] {
    return cells().checkState(this.state);
  }

  list(): { root: string; cells: CellView[] } {
    return this.read(() => inventory().listCells(this.state));
  }

  show(cgroup: string): CellDetail {
    return this.read(() => inventory().showCell(this.state, cgroup));
  }

  /** Ids of every cell (the maps' keys). */
  cellIds(): Set<bigint> {
    return this.read(() => new Set(this.state.cells().keys()));
  }

  /** The recorded cgroup root and the ids of its cells, read together. */
  cellsAndRoot(): { root: string; ids: bigint[] } {
    return this.read(() => ({
      root: this.state.config().cgroupRoot,
      ids: [...this.state.cells().keys()],
    }));
  }

  isCell(id: bigint): boolean {
    return this.read(() => this.state.cell(id) !== undefined);
  }

  cgroupRoot(): string {
    return this.state.config().cgroupRoot;
  }

  /** Runs a command in a new cell of this engine (the Engine outlives it). */
  exec(o: Omit<ExecOptions, 'state'>): Promise<number> {
    this.writes();
    return execModule().execInCell({ ...o, state: this.state });
  }

  // ---- observe -------------------------------------------------------------

  stats(namers?: NamerCache): StatsReport {
    return this.read(() => stats().readStats(this.state, namers));
  }

  // ---- uplinks -------------------------------------------------------------

  attach(iface: string, mode?: UplinkMode): AttachResult {
    this.writes();
    return uplink().attachUplink(this.state, iface, mode);
  }

  detach(iface: string): { iface: string; ifindex: number } {
    this.writes();
    return uplink().detachUplink(this.state, iface);
  }

  // ---- declarative ---------------------------------------------------------

  apply(desired: DesiredState | StateDocument, o: ApplyOptions = {}): ApplyResult {
    if (!o.dryRun) this.writes();
    return applyModule().applyState(this.state, desired, o);
  }

  export(): ExportResult {
    return exportModule().exportState(this.state);
  }

  status(): EngineStatus {
    return exportModule().engineStatus(this.state);
  }

  // ---- doctor --------------------------------------------------------------

  capabilityWarnings(): (CapabilityWarning & { cell: string })[] {
    return this.read(() => inventory().allCapabilityWarnings(this.state));
  }

  preexistingSockets(): PreexistingSocket[] {
    return this.read(() => preexisting().preexistingSockets(this.state));
  }

  uplinkWarnings(): { ifindex: number; mode: UplinkMode; warning: string }[] {
    return this.read(() => uplink().uplinkOffloadWarnings(this.state));
  }

  // ---- bulk ----------------------------------------------------------------

  /**
   * Writes prepared entries with batch updates, under the lock: how the
   * bench fills an engine with synthetic cells (no cgroups behind them). The
   * per-CPU allocator of maps without preallocation refills in the
   * background: a chunk that outruns it (ENOMEM) is written again after a
   * pause (ANY: rewriting is harmless). Returns how many pauses it took.
   */
  writeEntries(
    name: 'l3_cells' | 'l3_owners' | 'l3_cell_stats' | 'l3_cell_denials',
    keys: readonly Buffer[],
    values: readonly Buffer[],
  ): number {
    this.writes();
    return withLock(this.state, () => writeChunks(this.state.map(name), keys, values));
  }

  // ---- internals -----------------------------------------------------------

  private read<T>(fn: () => T): T {
    return this.state.lock.shared(fn);
  }

  private writes(): void {
    if (!this.writable)
      throw new L3isoError(
        'EKERNEL',
        `internal: a write to the engine in ${this.pinDir} through a read-only Engine`,
      );
  }
}

const CHUNK = 1000;

function writeChunks(map: BpfMap, keys: readonly Buffer[], values: readonly Buffer[]): number {
  let retries = 0;
  for (let i = 0; i < keys.length; i += CHUNK) {
    for (let attempt = 0; ; attempt++) {
      try {
        map.updateBatch(keys.slice(i, i + CHUNK), values.slice(i, i + CHUNK), MapUpdate.ANY);
        break;
      } catch (err) {
        if (!isErrno(err, 'ENOMEM') || attempt > 500) throw err;
        retries++;
        sleepSync(20);
      }
    }
  }
  return retries;
}
