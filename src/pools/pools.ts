/**
 * Address pools of one host: named CIDRs a cell takes addresses from
 * without naming them. The pool says only where to look; the kernel's
 * owner map stays the arbiter of who owns what (every address is claimed
 * with BPF_NOEXIST, and one some other claimer took first is skipped). What
 * is free is read from the owner map, or from a copy of it that is only
 * used while no other write happened since (free.ts).
 */
import { L3isoError } from '../errors';
import {
  assignFrom,
  type AddressSource,
  type AssignOptions,
  type AssignResult,
} from '../cells/cells';
import { withLock } from '../dataplane/lock';
import { nonLocalAddresses } from '../dataplane/local-routes';
import type { EngineState } from '../dataplane/state';
import { parseAddress, type CellAddress } from '../model/address';
import { contains, parsePoolCidr, sizeOf, type Range } from './cidr';
import { clash, findPool, poolDef } from './defs';
import { allocating, type FreeAddresses } from './free';
import { checkPoolName, readPools, writePools, type PoolDef } from './store';

export { clash, findPool, poolDef };

export interface PoolView extends PoolDef {
  family: 4 | 6;
  /** addresses in the pool, decimal (an IPv6 pool can hold 2^64) */
  size: string;
  /** of them assigned to cells now (the owner map's count) */
  assigned: number;
}

export interface PoolAddResult {
  pool: PoolDef;
  /** false: the same pool was already there */
  added: boolean;
}

export interface PoolDelResult {
  pool: PoolDef;
  /** addresses of the pool still assigned (kept by the cells; --force) */
  assigned: number;
}

function instanceOf(state: EngineState): string {
  const id = state.config().instance;
  if (!id) throw new L3isoError('EPIN_DIR', `engine in ${state.layout.root} has no instance id`);
  return id;
}

export function addPool(
  state: EngineState,
  name: string,
  cidr: string,
  blockSize?: number,
): PoolAddResult {
  const def = poolDef(name, cidr, blockSize);
  const instance = instanceOf(state);
  return withLock(state, () => {
    const pools = readPools(state.layout, instance);
    const c = clash(def, pools);
    if (c === 'same') return { pool: def, added: false };
    if (c) throw c;
    writePools(state.layout, instance, [...pools, def]);
    return { pool: def, added: true };
  });
}

/** Assigned addresses per pool, from one read of the owner map. */
function assignedCounts(state: EngineState, pools: readonly PoolDef[]): number[] {
  const ranges = pools.map((p) => parsePoolCidr(p.cidr));
  const counts = ranges.map(() => 0);
  for (const o of state.owners()) {
    const i = ranges.findIndex((r) => contains(r, o.address));
    if (i >= 0) counts[i]! += 1;
  }
  return counts;
}

export function listPools(state: EngineState): PoolView[] {
  const pools = readPools(state.layout, instanceOf(state));
  const counts = assignedCounts(state, pools);
  return pools.map((p, i) => {
    const r = parsePoolCidr(p.cidr);
    return { ...p, family: r.family, size: sizeOf(r).toString(), assigned: counts[i]! };
  });
}

/**
 * Removes a definition. While the pool's addresses are assigned it refuses
 * (the next assign would not know they were the pool's), unless `force`:
 * then the cells keep their addresses as if assigned by name.
 */
export function deletePool(
  state: EngineState,
  name: string,
  opts: { force?: boolean } = {},
): PoolDelResult {
  checkPoolName(name);
  const instance = instanceOf(state);
  return withLock(state, () => {
    const pools = readPools(state.layout, instance);
    const pool = findPool(pools, name);
    const assigned = assignedCounts(state, [pool])[0]!;
    if (assigned > 0 && !opts.force)
      throw new L3isoError(
        'EPOOL_IN_USE',
        `pool ${name} (${pool.cidr}) still has ${assigned} assigned address${assigned > 1 ? 'es' : ''}`,
        'release them first, or pass --force (the cells keep them)',
      );
    writePools(
      state.layout,
      instance,
      pools.filter((p) => p.name !== name),
    );
    return { pool, assigned };
  });
}

/** Where an allocation takes addresses: a pool is one range; a fleet
 * host's held blocks of a pool are several. */
export interface RangesRequest {
  ranges: readonly Range[];
  /** the cell ends up with this many addresses of `within` */
  count: number;
  /** the cell's own addresses that count towards `count` (default: those
   * in one of the ranges; a fleet host counts the whole pool's) */
  within?: (a: CellAddress) => boolean;
  /** the error when the ranges have `missing` too few free addresses */
  exhausted: (missing: number) => L3isoError;
}

function sourceOf(req: RangesRequest, free: FreeAddresses): AddressSource {
  return {
    count: req.count,
    has: req.within ?? ((a) => req.ranges.some((r) => contains(r, a))),
    candidates: () => free.of(req.ranges),
    exhausted: req.exhausted,
  };
}

/** Tops the cell up to `req.count` addresses, the lowest free ones of the
 * ranges first (none taken when it has them already). */
export function assignFromRanges(
  state: EngineState,
  cgroup: string,
  req: RangesRequest,
  opts: AssignOptions = {},
): AssignResult {
  const { checkLocal, ...inner } = opts;
  const r = allocating(state, (free) => assignFrom(state, cgroup, sourceOf(req, free), inner));
  if (!checkLocal) return r;
  // After the lock, as assign does: it runs `ip`, which costs more than
  // the assignment itself.
  const addrs = [...r.added, ...r.unchanged].map((t) => parseAddress(t));
  const notLocal = (nonLocalAddresses(state, addrs) ?? []).map((a) => a.text);
  return notLocal.length ? { ...r, notLocal } : r;
}

function poolRequest(pool: PoolDef, count: number): RangesRequest {
  return {
    ranges: [parsePoolCidr(pool.cidr)],
    count,
    exhausted: (missing) =>
      new L3isoError(
        'EPOOL_EXHAUSTED',
        `pool ${pool.name} (${pool.cidr}) has no free address left (${missing} more needed)`,
        `release addresses of it, or add another pool`,
      ),
  };
}

export function readPoolsOf(state: EngineState): PoolDef[] {
  return readPools(state.layout, instanceOf(state));
}

/** `assign CGROUP --from-pool NAME --count K`: the cell ends up with K of the
 * pool's addresses (the lowest free ones are claimed for what it lacks). */
export function assignFromPool(
  state: EngineState,
  cgroup: string,
  poolName: string,
  count: number,
  opts: AssignOptions = {},
): AssignResult & { pool: string } {
  checkPoolName(poolName);
  const pool = findPool(readPoolsOf(state), poolName);
  return { ...assignFromRanges(state, cgroup, poolRequest(pool, count), opts), pool: poolName };
}
