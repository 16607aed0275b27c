/**
 * `l3iso apply`: converges the engine on a declarative state. Everything
 * is checked before anything changes (the file, the engine's settings, the
 * cgroups, addresses held elsewhere, live sockets); then, under the
 * instance lock, the changes run in the order of src/cells/cells.ts so a
 * SIGKILL at any instant leaves what reconcile/gc repair:
 *   releases (prune) -> claim owners -> allow-list entries -> cell entries
 *   -> counters -> names -> reconcile of every touched cell.
 *
 * Claims are written in batches (one bpf_map_update_batch per map per
 * chunk). The kernel's batch update accepts no BPF_NOEXIST elem flag
 * (generic_map_update_batch allows only BPF_F_LOCK: EINVAL), so the
 * per-address "only one claimer wins" of assign comes from the lock
 * instead: every writer of l3_owners holds the exclusive instance lock
 * and no BPF program writes it, so an address free in the owner map read
 * under the lock is still free when the batch writes it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { L3isoError } from '../errors';
import {
  L3_CELL_ALLOW_LIST,
  L3_CELL_ALLOW_RAW,
  L3_MAX_DEPTH,
  L3_OWNER_LOOPBACK,
  emptyCellStats,
  encodeAddr,
  encodeAllowKey,
  encodeCell,
  encodeCellKey,
  encodeCellStats,
  encodeOwner,
  type Cell,
} from '../codecs/layout';
import { loopbackCandidates, parseAddress, parsePrefix, type CellAddress } from '../model/address';
import { CGROUP2_SUPER_MAGIC, cgroupId } from '../model/cgroup';
import { derive, reconcile, releaseLocked, type OwnerEntry } from '../cells/cells';
import {
  boundAddresses,
  describeSockets,
  socketsOfProcesses,
  socketsOn,
  type LiveSocket,
} from '../cells/holders';
import { subtreeProcs } from '../cells/inventory';
import { nonLocalAddresses } from '../dataplane/local-routes';
import { drainsRunning, withLock } from '../dataplane/lock';
import { recordCellNames } from '../cells/names';
import { setAllowList } from '../dataplane/prefixes';
import { listIntentsBatch, slotCounts } from '../dataplane/cell-index';
import { forgetKeptListeners } from '../cells/kept-listeners';
import { requireRevoker } from '../dataplane/revoke';
import { EngineState } from '../dataplane/state';
import { engineConflicts, planApply, summarize, type CellChange, type Plan } from './diff';
import { groupOwners, readLive, type LiveState } from './live';
import { CHUNK, writeBatch } from './batch';
import { releaseCells } from './release';
import { mergePools, resolvePoolCells } from './pools';
import { readPools, writePools, type PoolDef } from '../pools/store';
import {
  StateFileError,
  validateState,
  type DesiredCell,
  type DesiredState,
  type StateDocument,
} from './schema';

export interface ApplyOptions {
  /** release addresses and cells the file does not list */
  prune?: boolean;
  /** compute and report, change nothing */
  dryRun?: boolean;
  /** take addresses from live sockets (prune), and make cells of cgroups whose processes hold sockets */
  force?: boolean;
  /** mkdir the cells' cgroups that do not exist */
  createCgroups?: boolean;
}

export interface ApplyResult {
  dryRun: boolean;
  prune: boolean;
  /** false: the engine already was in the state (idempotence) */
  changed: boolean;
  summary: ReturnType<typeof summarize>;
  cells: CellChange[];
  /** cgroup dirs --create-cgroups made */
  createdCgroups: string[];
  /** live sockets --force took addresses from */
  sockets: LiveSocket[];
  /** sockets the releases destroyed */
  socketsDestroyed: number;
  /** what reconcile repaired on the way */
  repaired: string[];
  /** added addresses neither local in the engine's netns nor managed (binds fail) */
  notLocal: string[];
  /** pools of the file the engine did not have, added */
  poolsAdded: string[];
}

/**
 * Converges the engine whose state is given on `desired`, a parsed state file or a
 * DesiredState; either is validated (and its texts made canonical) here, so
 * a caller that builds one in code gets the file's checks too
 * (StateFileError lists every problem; nothing is changed).
 */
export function applyState(
  state: EngineState,
  input: DesiredState | StateDocument,
  opts: ApplyOptions = {},
): ApplyResult {
  const desired = validateState(input);
  return withLock(state, () => applyLocked(state, desired, opts));
}

interface Prepared {
  live: LiveState;
  plan: Plan;
  root: string;
  /** cgroup dirs of listed cells that do not exist yet (--create-cgroups) */
  missing: string[];
  /** cgroup id of each listed cell whose cgroup exists */
  ids: Map<string, bigint>;
  sockets: LiveSocket[];
  /** the file's cells, pool cells resolved to addresses */
  cells: DesiredCell[];
  /** pools the file defines that the engine lacks, and the record's instance */
  pools: { added: PoolDef[]; all: PoolDef[]; instance: string };
}

/** Every check, nothing written. Problems are collected, then thrown together. */
function prepare(state: EngineState, desired: DesiredState, opts: ApplyOptions): Prepared {
  const root = state.config().cgroupRoot;
  const errs: string[] = [];
  const ids = new Map<string, bigint>();
  const missing: string[] = [];
  const rootDev = cgroup2Dev(root);
  desired.cells.forEach((d, i) => {
    const r = cellCgroup(root, d.cgroup, rootDev);
    if (typeof r === 'bigint') ids.set(d.cgroup, r);
    else if (r === undefined && opts.createCgroups) missing.push(path.join(root, d.cgroup));
    else
      errs.push(
        `cells[${i}].cgroup: ${r ?? `cgroup ${d.cgroup} does not exist (${path.join(root, d.cgroup)}; create it, or apply with --create-cgroups)`}`,
      );
  });
  const live = readLive(state, new Map([...ids].map(([name, id]) => [id, name])));
  errs.unshift(...engineConflicts(desired.engine, live.engine));
  const instance = state.config().instance ?? '';
  const pools = mergePools(readPools(state.layout, instance), desired.pools ?? [], errs);
  const cells = resolvePoolCells(desired.cells, live.cells, pools.pools, errs);
  const plan = planApply(cells, live.cells, { prune: opts.prune === true });
  errs.push(...plan.conflicts);
  if (errs.length > 0) throw new StateFileError(errs);
  const sockets = liveSockets(plan, root);
  if (sockets.length > 0 && !opts.force && !opts.dryRun)
    throw new L3isoError(
      'ESOCKETS_LIVE',
      `apply would take addresses from, or make cells of, live sockets: ${describeSockets(sockets)}`,
      'restart them, or apply with --force (connections on released addresses are reset)',
    );
  return {
    live,
    plan,
    root,
    missing,
    ids,
    sockets,
    cells,
    pools: { added: pools.added, all: pools.pools, instance },
  };
}

/**
 * The cgroup id of a listed cell, undefined when its directory does not
 * exist, or why it cannot be a cell. The schema already refused absolute
 * names and `..`, and cgroupfs has no symlinks, so the lexical path is the
 * cgroup: one stat per cell instead of resolveCellPath's realpaths
 * (100,000 cells). A dir on the root's device is on the root's cgroup2
 * filesystem, which one statfs of the root proved.
 */
function cellCgroup(root: string, name: string, rootDev: bigint): bigint | string | undefined {
  const dir = path.join(root, name);
  const st = fs.statSync(dir, { bigint: true, throwIfNoEntry: false });
  if (!st) return undefined;
  if (!st.isDirectory()) return `cgroup ${dir} is not a directory`;
  if (
    st.dev !== rootDev &&
    fs.statfsSync(dir, { bigint: true }).type !== BigInt(CGROUP2_SUPER_MAGIC)
  )
    return `${dir} is not on a cgroup2 filesystem`;
  if (name.split('/').length >= L3_MAX_DEPTH)
    return `cgroup ${name} is ${name.split('/').length} levels below the managed root; cells may be at most ${L3_MAX_DEPTH - 1} levels deep`;
  return st.ino;
}

/** The device of the root, if it is on cgroup2 (else -1n: every cell is statfs'd). */
function cgroup2Dev(root: string): bigint {
  const st = fs.statSync(root, { bigint: true, throwIfNoEntry: false });
  if (!st || fs.statfsSync(root, { bigint: true }).type !== BigInt(CGROUP2_SUPER_MAGIC)) return -1n;
  return st.dev;
}

/** Sockets on addresses prune releases, and sockets of cgroups that become cells. */
function liveSockets(plan: Plan, root: string): LiveSocket[] {
  const removed = plan.changes.flatMap((c) => c.removed);
  // The socket tables are read only when something is released.
  const bound = removed.length > 0 ? boundAddresses() : new Set<string>();
  const releasing = removed.filter((a) => bound.has(a)).map(parseAddress);
  const newbies = plan.changes
    .filter((c) => c.action === 'create')
    .map((c) => path.join(root, c.cgroup));
  const populated = populatedCache(root);
  const pids = newbies.filter(populated).flatMap((d) => subtreeProcs(d));
  return [...socketsOn(releasing), ...socketsOfProcesses(pids)];
}

/**
 * Whether some process is in a cgroup's subtree (cgroup.events; false when
 * it does not exist). An unpopulated parent answers for all its children,
 * so the cgroups of a fresh host's new cells cost one read per parent, not
 * one per cell.
 */
function populatedCache(root: string): (dir: string) => boolean {
  const known = new Map<string, boolean>();
  const read = (dir: string): boolean => {
    let v = known.get(dir);
    if (v !== undefined) return v;
    const parent = path.dirname(dir);
    if (dir !== root && parent.startsWith(root) && !read(parent)) v = false;
    else {
      try {
        v = !/^populated 0$/m.test(fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8'));
      } catch {
        v = false;
      }
    }
    known.set(dir, v);
    return v;
  };
  return read;
}

function applyLocked(state: EngineState, desired: DesiredState, opts: ApplyOptions): ApplyResult {
  const p = prepare(state, desired, opts);
  const summary = summarize(p.plan.changes);
  const changed =
    p.pools.added.length > 0 ||
    p.plan.changes.some((c) => c.action !== 'unchanged' && c.action !== 'kept');
  const result: ApplyResult = {
    dryRun: opts.dryRun === true,
    prune: opts.prune === true,
    changed,
    summary,
    cells: p.plan.changes,
    createdCgroups: opts.dryRun ? [] : p.missing,
    sockets: p.sockets,
    socketsDestroyed: 0,
    repaired: [],
    notLocal: [],
    poolsAdded: p.pools.added.map((d) => d.name),
  };
  const added = p.plan.changes.flatMap((c) => c.added).map(parseAddress);
  if (added.length > 0)
    result.notLocal = (nonLocalAddresses(state, added) ?? []).map((a) => a.text);
  if (opts.dryRun || !changed) return result;
  for (const dir of p.missing) fs.mkdirSync(dir, { recursive: true });
  if (p.pools.added.length) writePools(state.layout, p.pools.instance, p.pools.all);
  const wanted = new Map(p.cells.map((d) => [d.cgroup, d]));
  runReleases(state, p, result);
  converge(state, p, wanted, result);
  return result;
}

/** Prune: whole cells in one batched release, then addresses of kept cells. */
function runReleases(state: EngineState, p: Prepared, result: ApplyResult): void {
  const byName = new Map(p.live.cells.map((c) => [c.cgroup, c]));
  const doomed = p.plan.changes
    .filter((c) => c.action === 'remove')
    .map((c) => byName.get(c.cgroup)!.id);
  if (doomed.length > 0) {
    requireRevoker(state.layout);
    result.socketsDestroyed += releaseCells(state, doomed, p.live.ownersByCell, p.live.records);
  }
  for (const c of p.plan.changes) {
    if (c.action !== 'update' || c.removed.length === 0) continue;
    const l = byName.get(c.cgroup)!;
    const target = {
      state,
      root: p.root,
      path: path.join(p.root, c.cgroup),
      id: l.id,
      name: c.cgroup,
    };
    // Sockets were checked (and --force given) for the whole apply above.
    const r = releaseLocked(target, c.removed.map(parseAddress), { force: true });
    result.socketsDestroyed += r.socketsDestroyed;
    result.repaired.push(...r.repaired.map((w) => `${c.cgroup}: ${w}`));
  }
}

interface NewCell {
  id: bigint;
  desired: DesiredCell;
  alias: CellAddress;
}

function converge(
  state: EngineState,
  p: Prepared,
  wanted: Map<string, DesiredCell>,
  result: ApplyResult,
): void {
  // What prepare read under this lock: a superset of what is owned now
  // (the releases before this only took addresses away).
  const taken = new Set(p.live.owners.map((e) => e.address.text));
  // An apply killed after its claims left new cells' aliases claimed but
  // no cell entry: the re-run takes the same alias, not a second one.
  const aliasOf = new Map(
    p.live.owners
      .filter((e) => e.owner.flags & L3_OWNER_LOOPBACK)
      .map((e) => [e.owner.cell, e.address]),
  );
  const liveIds = new Map(p.live.cells.map((c) => [c.cgroup, c.id]));
  const claims: OwnerEntry[] = [];
  const fresh: NewCell[] = [];
  const updated: { id: bigint; change: CellChange }[] = [];
  for (const c of p.plan.changes) {
    if (c.action !== 'create' && c.action !== 'update') continue;
    const d = wanted.get(c.cgroup)!;
    const id =
      c.action === 'create'
        ? (p.ids.get(c.cgroup) ?? cgroupId(path.join(p.root, c.cgroup)))
        : liveIds.get(c.cgroup)!;
    for (const a of c.added)
      claims.push({ address: parseAddress(a), owner: { cell: id, flags: 0 } });
    if (c.action === 'create') {
      const alias = aliasOf.get(id) ?? pickAlias(id, taken);
      claims.push({ address: alias, owner: { cell: id, flags: L3_OWNER_LOOPBACK } });
      fresh.push({ id, desired: d, alias });
    } else updated.push({ id, change: c });
  }
  // A prune that only released: nothing to claim, no index to read.
  if (claims.length === 0 && updated.length === 0) return;
  const claimedKeys = claims.map((e) => encodeAddr(e.address));
  const listedBefore = slotCounts(state);
  try {
    // Listed before claimed, as assign does (src/dataplane/cell-index.ts).
    listIntentsBatch(state, listedBefore, claims);
    writeBatch(
      state.map('l3_owners'),
      claimedKeys,
      claims.map((e) => encodeOwner(e.owner)),
      'l3_owners',
    );
    forgetKeptListeners(
      state,
      claims.map((e) => e.address),
    );
    writeNewCells(state, fresh, groupOwners(claims));
    for (const u of updated) setCellPolicy(state, u.id, u.change);
  } catch (err) {
    rollback(state, claimedKeys, [...fresh.map((f) => f.id), ...updated.map((u) => u.id)]);
    throw err;
  }
  reconcileTouched(
    state,
    fresh,
    updated.map((u) => u.id),
    listedBefore,
    result,
  );
}

/**
 * reconcile() of every touched cell. A new cell is reconciled only when its
 * index listed something before this apply (a killed assign's claims for
 * the same cgroup): otherwise the batch wrote exactly what its owners imply,
 * and checking it again would cost a read of every owner and cell.
 */
function reconcileTouched(
  state: EngineState,
  fresh: NewCell[],
  updated: bigint[],
  listedBefore: ReadonlyMap<bigint, number>,
  result: ApplyResult,
): void {
  const drains = drainsRunning(state.layout);
  const todo = [...updated, ...fresh.filter((f) => listedBefore.has(f.id)).map((f) => f.id)];
  for (const id of todo) {
    const what = reconcile(state, id, { drains });
    result.repaired.push(...what.map((w) => `#${id}: ${w}`));
  }
}

/** The first free alias of the cell's deterministic sequence (as assign probes it). */
function pickAlias(id: bigint, taken: Set<string>): CellAddress {
  let tries = 0;
  for (const c of loopbackCandidates(id)) {
    if (!taken.has(c.text)) {
      taken.add(c.text);
      return c;
    }
    if (++tries >= 4096) break;
  }
  throw new L3isoError('EMAP_FULL', 'no free loopback alias in 127.64.0.0/10');
}

function policyFlags(d: { allowRaw: boolean; allowFrom: string[] | null }, flags = 0): number {
  let f = d.allowRaw ? flags | L3_CELL_ALLOW_RAW : flags & ~L3_CELL_ALLOW_RAW;
  f = d.allowFrom ? f | L3_CELL_ALLOW_LIST : f & ~L3_CELL_ALLOW_LIST;
  return f;
}

/** New cells after their owners: allow-list entries, then cell entries
 * (whose flag makes XDP consult them), then counters, then names. */
function writeNewCells(
  state: EngineState,
  fresh: NewCell[],
  owned: Map<bigint, OwnerEntry[]>,
): void {
  if (fresh.length === 0) return;
  const allowKeys: Buffer[] = [];
  for (const f of fresh)
    for (const t of f.desired.allowFrom ?? []) allowKeys.push(encodeAllowKey(f.id, parsePrefix(t)));
  writeBatch(
    state.map('l3_allow'),
    allowKeys,
    allowKeys.map(() => Buffer.from([1])),
    'l3_allow',
  );
  const keys: Buffer[] = [];
  const values: Buffer[] = [];
  for (const f of fresh) {
    // The cell's own claims, parsed once, in file order (the alias last).
    const mine = (owned.get(f.id) ?? []).map((e) => e.address);
    const first = (family: 4 | 6) => mine.find((a) => a.family === family && a !== f.alias);
    const base: Cell = derive(undefined, owned.get(f.id) ?? [], f.alias, {
      4: first(4),
      6: first(6),
    });
    keys.push(encodeCellKey(f.id));
    values.push(encodeCell({ ...base, flags: policyFlags(f.desired) }));
  }
  writeBatch(state.map('l3_cells'), keys, values, 'l3_cells');
  const zero = zeroStats(state);
  writeBatch(
    state.map('l3_cell_stats'),
    keys,
    keys.map(() => zero),
    'l3_cell_stats',
  );
  recordCellNames(
    state.layout,
    fresh.map((f) => [f.id, f.desired.cgroup] as const),
  );
}

function zeroStats(state: EngineState): Buffer {
  const m = state.map('l3_cell_stats');
  const zero = encodeCellStats(emptyCellStats());
  const perCpu = Buffer.alloc(m.valueBufferSize);
  const stride = Math.ceil(m.valueSize / 8) * 8;
  for (let off = 0; off + zero.length <= perCpu.length; off += stride) zero.copy(perCpu, off);
  return perCpu;
}

/** An existing cell's policy, in policy.ts's order: entries before the flag, flag off before entries go. */
function setCellPolicy(state: EngineState, id: bigint, c: CellChange): void {
  if (!c.policy) return;
  const cell = state.cell(id);
  if (!cell) return;
  const allow = c.policy.allowFrom?.map(parsePrefix);
  if (allow) setAllowList(state, id, allow);
  const flags = policyFlags(c.policy, cell.flags);
  if (flags !== cell.flags) state.putCell(id, { ...cell, flags });
  if (!allow) setAllowList(state, id, []);
}

/** Undoes the claims of a failed apply; reconcile clears what came after them. */
function rollback(state: EngineState, claimedKeys: Buffer[], ids: bigint[]): void {
  try {
    for (let i = 0; i < claimedKeys.length; i += CHUNK)
      state.map('l3_owners').deleteBatch(claimedKeys.slice(i, i + CHUNK));
    // Through each cell's index: its intents of the undone claims go too.
    for (const id of ids) reconcile(state, id);
  } catch {
    /* the original error matters more; gc finishes the rest */
  }
}
