/**
 * Assignment transactions. The owner map is the truth: ownership is claimed
 * address by address in the kernel with BPF_NOEXIST (the atomic part:
 * concurrent CLIs cannot both win), and everything else about a cell (its
 * counts, primaries, loopback alias, stats entry, stuck RELEASING flags) is
 * derived from the owner map by reconcile(), which every verb ends with and
 * gc runs over every cell.
 *
 * Each multi-map change is ordered so that any prefix of it (a SIGKILL at
 * any instant) is either invisible or repaired by reconcile/gc:
 *   assign:  claim addresses -> claim loopback alias -> cell -> stats
 *   release: flag RELEASING -> cell (primaries move off) -> destroy sockets
 *            -> unclaim -> reconcile
 *   release of the whole cell: flag the loopback alias RELEASING (the mark
 *            of a whole-cell release), then the addresses -> cell -> destroy
 *            -> unclaim addresses, then the alias -> delete cell -> stats
 */
import { L3isoError } from '../errors';
import {
  L3_OWNER_DRAINING,
  L3_OWNER_LOOPBACK,
  L3_OWNER_RELEASING,
  encodeCell,
  type Cell,
  type Owner,
} from '../codecs/layout';
import { isErrno } from '../../loader';
import { loopbackCandidates, parseAddress, type CellAddress } from '../model/address';
import {
  assertRecordableDepth,
  cgroupId,
  cgroupPathsById,
  cgroupProcs,
  findCgroup2Mount,
  findCgroupById,
  relativeCellName,
  resolveCellPath,
  unpopulated,
} from '../model/cgroup';
import { describeSockets, socketsOfProcesses, socketsOn, type LiveSocket } from './holders';
import { drainsRunning, holdDrainLock, withLock } from '../dataplane/lock';
import { nonLocalAddresses } from '../dataplane/local-routes';
import { appendCellName, pruneCellNames } from './names';
import { setAllowList } from '../dataplane/prefixes';
import { countLiveSockets, destroySockets } from '../dataplane/revoke';
import {
  clearList,
  indexProblems,
  listIntents,
  listed,
  rebuildIndex,
  rewriteList,
  verifiedOwners,
} from '../dataplane/cell-index';
import {
  clearIfNoneLeft,
  forgetKeptListeners,
  markKeptListeners,
  mayHaveKeptListeners,
} from './kept-listeners';
import { sleepSync } from '../sleep';
import { EngineState } from '../dataplane/state';

export interface AssignResult {
  cell: string;
  path: string;
  id: string;
  added: string[];
  unchanged: string[];
  primary4?: string;
  primary6?: string;
  loopback4: string;
  /** sockets the cgroup's processes held before (assign --force) */
  sockets: LiveSocket[];
  repaired: string[];
  /** assigned addresses no bind could use: neither local in the engine's
   * netns nor in a managed prefix (absent when none, or when that cannot be
   * told from here) */
  notLocal?: string[];
}

export interface ReleaseResult {
  cell: string;
  path: string;
  id: string;
  released: string[];
  /** the whole cell was removed */
  removed: boolean;
  /** sockets still bound to a released address, destroyed */
  socketsDestroyed: number;
  /** live sockets the release took the address from (with --force/--drain) */
  sockets: LiveSocket[];
  /** what reconcile found wrong in the cell and repaired */
  repaired: string[];
}

export interface AssignOptions {
  /** go on although processes of the cgroup already hold sockets */
  force?: boolean;
  /** report addresses no bind could use (notLocal): for front ends that warn */
  checkLocal?: boolean;
}

export interface ReleaseOptions {
  /** take addresses from live sockets */
  force?: boolean;
  /** refuse new connections at once, destroy what is left after this long */
  drainSeconds?: number;
}

/** Parses every address before anything changes; duplicates collapse. */
export function parseAddresses(texts: readonly string[]): CellAddress[] {
  const seen = new Map<string, CellAddress>();
  for (const t of texts) {
    const a = parseAddress(t);
    if (!seen.has(a.text)) seen.set(a.text, a);
  }
  return [...seen.values()];
}

export interface CellTarget {
  state: EngineState;
  root: string;
  path: string;
  id: bigint;
  name: string;
}

/** The cell CGROUP names in the engine whose state is given (the Engine's). */
export function openCellTarget(state: EngineState, cgroupArg: string): CellTarget {
  const root = state.config().cgroupRoot;
  const path = resolveCellPath(cgroupArg, root, findCgroup2Mount());
  return { state, root, path, id: cgroupId(path), name: relativeCellName(path, root) };
}

export function assign(
  state: EngineState,
  cgroupArg: string,
  addressTexts: readonly string[],
  opts: AssignOptions = {},
): AssignResult {
  if (addressTexts.length === 0)
    throw new L3isoError('EUSAGE', 'assign needs at least one address');
  return assignTo(state, cgroupArg, parseAddresses(addressTexts), opts);
}

/**
 * Where an assign takes addresses it is not given by name (a pool, or the
 * blocks a fleet host holds of one): the engine knows nothing of pools, only
 * that the cell must end up with `count` of the source's addresses, claimed
 * lowest first, each with BPF_NOEXIST like any other claim.
 */
export interface AddressSource {
  count: number;
  /** the address is one of the source's (the cell's own count towards `count`) */
  has(a: CellAddress): boolean;
  /** free candidates, lowest first (called under the lock; src/pools/free.ts
   * knows which are free without a walk of the owner map per call) */
  candidates(): Iterable<CellAddress>;
  /** the error when the candidates run out `missing` short */
  exhausted(missing: number): L3isoError;
}

/** Tops the cell up to `source.count` addresses of the source (none taken
 * when it has them already: re-running is harmless, as with addresses). */
export function assignFrom(
  state: EngineState,
  cgroupArg: string,
  source: AddressSource,
  opts: AssignOptions = {},
): AssignResult {
  if (!Number.isInteger(source.count) || source.count < 1)
    throw new L3isoError('EUSAGE', 'the address count must be a positive integer');
  return assignTo(state, cgroupArg, source, opts);
}

function assignTo(
  state: EngineState,
  cgroupArg: string,
  what: CellAddress[] | AddressSource,
  opts: AssignOptions,
): AssignResult {
  const target = openCellTarget(state, cgroupArg);
  assertRecordableDepth(target.path, target.root);
  const r = withLock(target.state, () => assignLocked(target, what, opts));
  if (!opts.checkLocal) return r;
  // Outside the lock, and only where asked (the CLI and the agent): it asks
  // the kernel's routing tables, an `ip` per family, which costs more than
  // the assignment itself.
  const addrs = [...r.added, ...r.unchanged].map((t) => parseAddress(t));
  const notLocal = (nonLocalAddresses(target.state, addrs) ?? []).map((a) => a.text);
  return notLocal.length ? { ...r, notLocal } : r;
}

/**
 * Claims `source.count` minus what the cell holds of it; a candidate some
 * other claimer took first is skipped, never an error. Each batch of
 * candidates is listed in the cell's index before it is claimed (a
 * candidate lost to another claimer leaves an extra entry, which the index
 * allows and reconcile drops). Returns the cell's list.
 */
function claimFromSource(
  state: EngineState,
  id: bigint,
  source: AddressSource,
  list: CellAddress[],
  claimed: CellAddress[],
  unchanged: CellAddress[],
): CellAddress[] {
  // The cell's own through its index: a walk of the owner map costs its
  // capacity (every bucket), whatever it holds.
  for (const o of ownersOf(state, id))
    if (isUsable(o) && source.has(o.address)) unchanged.push(o.address);
  let need = source.count - unchanged.length;
  const candidates = source.candidates()[Symbol.iterator]();
  while (need > 0) {
    const batch: CellAddress[] = [];
    while (batch.length < need) {
      const n = candidates.next();
      if (n.done) break;
      batch.push(n.value);
    }
    if (batch.length === 0) throw source.exhausted(need);
    list = listIntents(state, id, list, batch);
    for (const a of batch)
      if (state.claim(a, { cell: id, flags: 0 }).claimed) {
        claimed.push(a);
        need--;
      }
  }
  return list;
}

/** Sockets made before the cgroup was a cell keep what they are bound to:
 * refused unless --force, which adopts them. */
function socketsBeforeCell(t: CellTarget, opts: AssignOptions): LiveSocket[] {
  const sockets = socketsOfProcesses(processesBelow(t.path));
  if (sockets.length > 0 && !opts.force) {
    throw new L3isoError(
      'ESOCKETS_LIVE',
      `cgroup ${t.name} already has sockets: ${describeSockets(sockets)}; they would become the cell's and lose every address outside it`,
      `restart them after assign, or pass --force (see \`l3iso doctor\`)`,
    );
  }
  return sockets;
}

/** Claims the addresses an assign names, each at most once in the kernel
 * (BPF_NOEXIST): one the cell has already is unchanged, another owner's
 * refuses the assign. Returns the index list with their intents. */
function claimNamed(
  t: CellTarget,
  what: CellAddress[],
  list: CellAddress[],
  claimed: CellAddress[],
  unchanged: CellAddress[],
): CellAddress[] {
  const { state, id } = t;
  const next = listIntents(state, id, list, what);
  for (const a of what) {
    const r = state.claim(a, { cell: id, flags: 0 });
    if (r.claimed) claimed.push(a);
    else if (r.owner.cell === id && !(r.owner.flags & (L3_OWNER_LOOPBACK | GONE)))
      unchanged.push(a);
    else throw ownedError(a, r.owner, t.root, id);
  }
  return next;
}

function assignLocked(
  t: CellTarget,
  what: CellAddress[] | AddressSource,
  opts: AssignOptions,
): AssignResult {
  const { state, id } = t;
  const claimed: CellAddress[] = [];
  const unchanged: CellAddress[] = [];
  let aliasClaimed: CellAddress | undefined;
  let sockets: LiveSocket[] = [];
  try {
    const drains = drainsRunning(state.layout);
    const seen: Seen = {};
    const repaired = reconcile(state, id, { drains, seen }); // a killed earlier run's leftovers first
    const before = seen.owned;
    const existing = before ? seen.cell : state.cell(id);
    if (!existing) sockets = socketsBeforeCell(t, opts);
    // Listed before claimed: the index stays a superset of what the cell owns.
    let list = seen.list ?? listed(state, id);
    list = Array.isArray(what)
      ? claimNamed(t, what, list, claimed, unchanged)
      : claimFromSource(state, id, what, list, claimed, unchanged);
    const addrs = Array.isArray(what) ? what : [...unchanged, ...claimed];
    // A listener an earlier owner kept (release --force) must not catch the
    // new cell's connections through its exact-bind sk_lookup entry.
    forgetKeptListeners(state, claimed);
    let loopback4 = existing?.loopback4;
    if (!loopback4 || !ownsAliasNow(t, before, loopback4)) {
      const r = claimLoopbackAlias(state, id, list);
      loopback4 = r.alias;
      list = r.list;
      aliasClaimed = loopback4;
    }
    const firstOf = (family: 4 | 6) => addrs.find((a) => a.family === family);
    if (!existing) appendCellName(state.layout, id, t.name);
    const done: Seen = {};
    reconcile(state, id, {
      create: true,
      drains,
      prefer: { 4: firstOf(4), 6: firstOf(6) },
      owned: ownedAfterClaims(id, before, list, claimed, aliasClaimed),
      seen: done,
    });
    return {
      cell: t.name,
      path: t.path,
      id: id.toString(),
      added: claimed.map((a) => a.text),
      unchanged: unchanged.map((a) => a.text),
      primary4: done.cell?.primary4?.text,
      primary6: done.cell?.primary6?.text,
      loopback4: loopback4.text,
      sockets,
      repaired,
    };
  } catch (err) {
    undoClaims(t, claimed, aliasClaimed);
    throw err;
  }
}

/** Whether the cell owns `alias` (its record's loopback alias): from the
 * owners reconcile saw, else one lookup. */
function ownsAliasNow(
  t: CellTarget,
  before: OwnerEntry[] | undefined,
  alias: CellAddress,
): boolean {
  return before
    ? before.some((e) => isAlias(e) && e.address.text === alias.text)
    : ownsAlias(t.state, t.id, alias);
}

/** A failed assign gives back what it claimed (the alias only when no
 * cell record came to name it), then reconciles what is left. */
function undoClaims(t: CellTarget, claimed: CellAddress[], alias: CellAddress | undefined): void {
  const { state, id } = t;
  for (const a of claimed) state.unclaim(a);
  if (alias && !state.cell(id)) state.unclaim(alias);
  try {
    reconcile(state, id);
  } catch {
    /* the original error matters more */
  }
}

/**
 * The cell's owner entries after assign's claims, known without reading
 * them back (under the lock nobody else changes this cell's owners):
 * what reconcile saw, plus the new claims. Undefined, so reconcile reads
 * and repairs the index itself, when the list holds more than that (a
 * candidate lost to another claimer left an intent) or the alias was one
 * the cell already held.
 */
function ownedAfterClaims(
  id: bigint,
  before: OwnerEntry[] | undefined,
  list: readonly CellAddress[],
  claimed: readonly CellAddress[],
  alias: CellAddress | undefined,
): OwnerEntry[] | undefined {
  if (!before) return undefined;
  const had = new Set(before.map((e) => e.address.text));
  if (alias && had.has(alias.text)) return undefined;
  const owned = [
    ...before,
    ...claimed.map((address) => ({ address, owner: { cell: id, flags: 0 } })),
    ...(alias ? [{ address: alias, owner: { cell: id, flags: L3_OWNER_LOOPBACK } }] : []),
  ];
  return list.length === owned.length ? owned : undefined;
}

function ownsAlias(state: EngineState, id: bigint, alias: CellAddress): boolean {
  const o = state.owner(alias);
  return o !== undefined && o.cell === id && (o.flags & L3_OWNER_LOOPBACK) !== 0;
}

/** Every process of the cgroup's subtree. */
function processesBelow(cgroupPath: string): number[] {
  // A subtree the kernel says is empty needs no walk (one read, not a
  // readdir and a cgroup.procs per cgroup); anything else is walked.
  if (unpopulated(cgroupPath)) return [];
  const out: number[] = [];
  for (const dir of cgroupPathsById(cgroupPath).values()) {
    try {
      out.push(...cgroupProcs(dir));
    } catch {
      /* removed while walking */
    }
  }
  return out;
}

/** Each cell gets its own 127/8 alias; probing a deterministic sequence
 * means a crashed assign finds the alias it already claimed. */
function claimLoopbackAlias(
  state: EngineState,
  id: bigint,
  listedNow: CellAddress[],
): { alias: CellAddress; list: CellAddress[] } {
  let tries = 0;
  let list = listedNow;
  for (const candidate of loopbackCandidates(id)) {
    // Each candidate is listed before its claim; the losers' intents go at
    // the reconcile that ends the assign.
    list = listIntents(state, id, list, [candidate]);
    const r = state.claim(candidate, { cell: id, flags: L3_OWNER_LOOPBACK });
    if (r.claimed) return { alias: candidate, list };
    if (r.owner.cell === id && r.owner.flags & L3_OWNER_LOOPBACK) {
      // Stuck RELEASING from an interrupted release: the alias is ours again.
      if (r.owner.flags & GONE) state.claimFlags(candidate, { cell: id, flags: L3_OWNER_LOOPBACK });
      return { alias: candidate, list };
    }
    if (++tries >= 4096) break;
  }
  throw new L3isoError('EMAP_FULL', 'no free loopback alias in 127.64.0.0/10');
}

function ownedError(a: CellAddress, owner: Owner, root: string, id: bigint): L3isoError {
  if (owner.cell === id) {
    return new L3isoError(
      'EADDR_OWNED',
      `address ${a.text} is being released from this cell`,
      'wait for the release to finish, or run `l3iso gc` if it was interrupted',
    );
  }
  const path = findCgroupById(root, owner.cell);
  const who = path
    ? `cell ${relativeCellName(path, root)} (${path})`
    : `a cell whose cgroup (id ${owner.cell}) no longer exists`;
  const what = owner.flags & L3_OWNER_LOOPBACK ? 'the private loopback alias of' : 'owned by';
  return new L3isoError(
    'EADDR_OWNED',
    `address ${a.text} is ${what} ${who}`,
    path
      ? `release it first: l3iso release ${relativeCellName(path, root)} ${a.text}`
      : 'run `l3iso gc`',
  );
}

// ---- derivation from the owner map ---------------------------------------

export type OwnerEntry = { address: CellAddress; owner: Owner };

/** Flags of an address on its way out: no new socket may use it. */
export const GONE = L3_OWNER_RELEASING | L3_OWNER_DRAINING;

/** The cell's owners through its index: O(its own addresses). */
function ownersOf(state: EngineState, id: bigint): OwnerEntry[] {
  return verifiedOwners(state, id, false).owned;
}

const isUsable = (o: OwnerEntry): boolean => !(o.owner.flags & (L3_OWNER_LOOPBACK | GONE));
const isAlias = (o: OwnerEntry): boolean => (o.owner.flags & L3_OWNER_LOOPBACK) !== 0;

export interface Preferred {
  4?: CellAddress | undefined;
  6?: CellAddress | undefined;
}

/**
 * The cell record the owner map implies. Counts and primaries cover only
 * usable addresses (not the alias, not ones being released), so a wildcard
 * bind never lands on an address on its way out. A primary stays while it
 * is usable; else the preferred one (assign's first of the family), else
 * the lowest (maps keep no order).
 */
export function derive(
  existing: Cell | undefined,
  owned: OwnerEntry[],
  loopback: CellAddress,
  prefer: Preferred = {},
): Cell {
  const usable = (family: 4 | 6) =>
    owned.filter((o) => isUsable(o) && o.address.family === family).map((o) => o.address);
  const pick = (family: 4 | 6, current: CellAddress | undefined) => {
    const list = usable(family);
    for (const c of [current, prefer[family]])
      if (c && list.some((a) => a.text === c.text)) return c;
    return list.sort((a, b) => Buffer.compare(a.bytes, b.bytes))[0];
  };
  return {
    primary4: pick(4, existing?.primary4),
    primary6: pick(6, existing?.primary6),
    loopback4: loopback,
    flags: existing?.flags ?? 0,
    addrs4: usable(4).length,
    addrs6: usable(6).length,
  };
}

function sameCell(a: Cell, b: Cell): boolean {
  return encodeCell(a).equals(encodeCell(b));
}

export interface ReconcileOptions {
  /** write the cell entry if it is missing (assign) */
  create?: boolean;
  prefer?: Preferred;
  /** the cell's owners, when the caller already read them */
  owned?: OwnerEntry[];
  /** whether a `release --drain` is waiting (else: asked under the lock) */
  drains?: boolean;
  /** collects the addresses whose interrupted release this finished */
  finished?: Set<string>;
  /** filled with what the cell is once reconcile is done, so the caller
   * need not read it again (left empty when it released the whole cell) */
  seen?: Seen;
}

/** A cell as reconcile left it, under the lock: its owner entries, its
 * index slots (absent when the caller passed `owned`) and its record. */
export interface Seen {
  owned?: OwnerEntry[];
  list?: CellAddress[];
  cell?: Cell;
}

/**
 * Makes everything derived about cell `id` match the owner map, and says
 * what it had to repair. Call under the instance lock: then no release is
 * halfway except a waiting `--drain`, so any other RELEASING owner is left
 * by a killed release, which this finishes.
 */
export function reconcile(state: EngineState, id: bigint, o: ReconcileOptions = {}): string[] {
  const repaired: string[] = [];
  // Under the lock: the index's leftovers of a killed run are dropped here.
  const index = o.owned ? undefined : verifiedOwners(state, id, true);
  let owned = o.owned ?? index!.owned;
  const drains = o.drains ?? drainsRunning(state.layout);
  const stale = owned.filter(
    (e) => e.owner.flags & L3_OWNER_RELEASING && !(drains && e.owner.flags & L3_OWNER_DRAINING),
  );
  const alias = owned.find(isAlias);
  const cell = state.cell(id);
  if ((alias && stale.includes(alias)) || (cell && !alias)) {
    // The alias is flagged first and freed last by a whole-cell release.
    finishCellRelease(state, id, owned);
    for (const e of owned) o.finished?.add(e.address.text);
    return ['finished an interrupted release of the whole cell'];
  }
  if (stale.length > 0) {
    owned = releaseOwned(state, id, index, owned, stale);
    repaired.push(
      `finished the interrupted release of ${stale.map((e) => e.address.text).join(', ')}`,
    );
    for (const e of stale) o.finished?.add(e.address.text);
  }
  // The index as it stands: verifiedOwners and every rewrite above leave it
  // listing exactly the owned addresses, in order.
  const listNow = () => (index ? owned.map((e) => e.address) : undefined);
  if (!cell && !o.create) {
    repaired.push(...forgetCounters(state, id, owned));
    if (o.seen) Object.assign(o.seen, { owned, list: listNow(), cell: undefined });
    return repaired;
  }
  if (!alias) throw new L3isoError('EKERNEL', `cell ${id} has no loopback alias in l3_owners`);
  // One alias per cell: the one its record names (a second one cost a
  // slot of 127.64.0.0/10 and was in no record, so no socket is on it).
  const keep = owned.find((e) => isAlias(e) && e.address.text === cell?.loopback4.text) ?? alias;
  const extra = owned.filter((e) => isAlias(e) && e !== keep);
  if (extra.length > 0) {
    owned = releaseOwned(state, id, index, owned, extra);
    repaired.push(`released extra loopback aliases ${extra.map((e) => e.address.text).join(', ')}`);
  }
  const next = derive(cell, owned, keep.address, o.prefer);
  if (!cell || !sameCell(cell, next)) {
    state.putCell(id, next);
    if (cell) repaired.push(...differences(cell, next));
  }
  const list = listNow();
  // A new cell's counters are usually missing, an existing one's there.
  if (state.ensureStats(id, !cell) && cell) repaired.push('created the missing counters entry');
  if (o.seen) Object.assign(o.seen, { owned, list, cell: next });
  return repaired;
}

/** Finishes the release of `drop` (some of cell `id`'s owners) and keeps
 * the index listing exactly the owners left, which it returns. */
function releaseOwned(
  state: EngineState,
  id: bigint,
  index: { list: CellAddress[] } | undefined,
  owned: OwnerEntry[],
  drop: OwnerEntry[],
): OwnerEntry[] {
  finishRelease(
    state,
    drop.map((e) => e.address),
  );
  const left = owned.filter((e) => !drop.includes(e));
  if (index)
    rewriteList(
      state,
      id,
      index.list,
      left.map((e) => e.address),
    );
  return left;
}

/** A cell id with no cell record: owners without one are gc's (claims of
 * an assign that died); once it owns nothing, its counters go too. */
function forgetCounters(state: EngineState, id: bigint, owned: OwnerEntry[]): string[] {
  if (owned.length > 0 || id === 0n || !state.hasStats(id)) return [];
  state.deleteStats(id);
  setAllowList(state, id, []);
  return ['removed the counters of a cell that no longer exists'];
}

function differences(was: Cell, now: Cell): string[] {
  const out: string[] = [];
  if (was.addrs4 !== now.addrs4) out.push(`IPv4 count ${was.addrs4} -> ${now.addrs4}`);
  if (was.addrs6 !== now.addrs6) out.push(`IPv6 count ${was.addrs6} -> ${now.addrs6}`);
  if (was.primary4?.text !== now.primary4?.text)
    out.push(`IPv4 primary ${was.primary4?.text ?? '-'} -> ${now.primary4?.text ?? '-'}`);
  if (was.primary6?.text !== now.primary6?.text)
    out.push(`IPv6 primary ${was.primary6?.text ?? '-'} -> ${now.primary6?.text ?? '-'}`);
  if (was.loopback4.text !== now.loopback4.text)
    out.push(`loopback alias ${was.loopback4.text} -> ${now.loopback4.text}`);
  return out;
}

/** Writes the derived cell right after flags changed (no repair pass).
 * `known`: the owners with their new flags and the cell record, when the
 * caller has them (under the lock they are what a read would return). */
function rederive(
  state: EngineState,
  id: bigint,
  known?: { owned: OwnerEntry[]; cell?: Cell },
): void {
  const owned = known?.owned ?? ownersOf(state, id);
  const alias = owned.find(isAlias);
  const cell = known ? known.cell : state.cell(id);
  if (!cell || !alias) return;
  const next = derive(cell, owned, alias.address);
  if (!sameCell(cell, next)) state.putCell(id, next);
}

/** Sets flag bits on addresses the cell holds (an address already gone is skipped). */
function flag(state: EngineState, id: bigint, entries: OwnerEntry[], bits: number): void {
  for (const e of entries) {
    try {
      state.claimFlags(e.address, { cell: id, flags: e.owner.flags | bits });
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
  }
}

/** destroy -> unclaim: the tail of a release. Listeners stay, and so do
 * their l3_listeners entries: sk_lookup refuses connections to an unowned
 * address that one of them is bound to (bpf/demux.bpf.c). */
function finishRelease(state: EngineState, addrs: CellAddress[]): number {
  const destroyed = destroySockets(state, addrs);
  for (const a of addrs) state.unclaim(a);
  return destroyed;
}

/** The whole-cell release, from wherever an earlier run stopped. `seen`:
 * the cell's record and index slots as the caller just read them. */
function finishCellRelease(
  state: EngineState,
  id: bigint,
  owned: OwnerEntry[],
  seen?: { cell?: Cell; list?: CellAddress[] },
): number {
  const alias = owned.filter(isAlias);
  const rest = owned.filter((e) => !isAlias(e));
  flag(state, id, alias, L3_OWNER_RELEASING);
  flag(state, id, rest, L3_OWNER_RELEASING);
  rederive(
    state,
    id,
    seen && {
      owned: owned.map((e) => ({
        address: e.address,
        owner: { ...e.owner, flags: e.owner.flags | L3_OWNER_RELEASING },
      })),
      cell: seen.cell,
    },
  );
  const destroyed = destroySockets(
    state,
    owned.map((e) => e.address),
  );
  for (const e of rest) state.unclaim(e.address);
  for (const e of alias) state.unclaim(e.address);
  // After the unclaims: the index stays a superset.
  if (seen?.list) rewriteList(state, id, seen.list, []);
  else clearList(state, id);
  state.deleteCell(id);
  state.deleteStats(id);
  setAllowList(state, id, []);
  return destroyed;
}

/**
 * Whole-cell release by id, under the caller's lock, for callers whose
 * cgroup is already gone (a runtime's poststop hook): no process can hold
 * the cell's sockets any more, and no path names it.
 */
export function forgetCell(
  state: EngineState,
  id: bigint,
): { released: string[]; socketsDestroyed: number } {
  const owned = ownersOf(state, id);
  const socketsDestroyed = finishCellRelease(state, id, owned);
  return { released: publicTexts(owned), socketsDestroyed };
}

// ---- release ---------------------------------------------------------------

export function release(
  state: EngineState,
  cgroupArg: string,
  addressTexts: readonly string[],
  opts: ReleaseOptions = {},
): ReleaseResult {
  const addrs = parseAddresses(addressTexts);
  const target = openCellTarget(state, cgroupArg);
  if (opts.drainSeconds !== undefined) return drainRelease(target, addrs, opts.drainSeconds);
  return withLock(target.state, () => releaseLocked(target, addrs, opts));
}

interface ReleasePlan {
  whole: boolean;
  /** what reconcile repaired first (a killed earlier release's leftovers) */
  repaired: string[];
  /** addresses that repair already released (a re-run of a killed release) */
  done: string[];
  /** every owner the release takes (for a whole cell: the alias too) */
  entries: OwnerEntry[];
  sockets: LiveSocket[];
  /** the cell's record and index slots as planned (whole releases under
   * one lock hold only: nothing changes them before the release) */
  seen?: { cell?: Cell; list?: CellAddress[] };
}

/** Checks what the release would take, before anything changes. */
function planRelease(t: CellTarget, addrs: CellAddress[]): ReleasePlan {
  const { state, id } = t;
  state.revoker(); // refuses before anything changes when it is not pinned
  const finished = new Set<string>();
  const seen: Seen = {};
  const repaired = reconcile(state, id, { finished, seen });
  const whole = addrs.length === 0;
  const cell = seen.owned ? seen.cell : state.cell(id);
  if (!cell) {
    if (whole && finished.size > 0) return { whole, repaired, done: [], entries: [], sockets: [] };
    throw new L3isoError('ENOT_ASSIGNED', `cgroup ${t.name} is not a cell (nothing assigned)`);
  }
  let entries: OwnerEntry[] = [];
  const done: string[] = [];
  if (whole) {
    entries = seen.owned ?? ownersOf(state, id);
  } else {
    // Point lookups: the owner map can hold 500k entries on a dense host.
    for (const a of addrs) {
      const owner = state.owner(a);
      if (!owner && finished.has(a.text)) {
        done.push(a.text);
        continue;
      }
      if (!owner || owner.cell !== id || owner.flags & L3_OWNER_LOOPBACK) {
        throw new L3isoError(
          'ENOT_ASSIGNED',
          `address ${a.text} is not assigned to cell ${t.name}`,
        );
      }
      entries.push({ address: a, owner });
    }
  }
  return {
    whole,
    repaired,
    done,
    entries,
    sockets: liveSocketsOn(t, entries),
    ...(seen.owned ? { seen: { cell, list: seen.list } } : {}),
  };
}

/** Live sockets on the entries' addresses. Counted in the kernel first
 * (one walk for all of them): only when some exist is the socket table
 * read and parsed to say whose they are. */
function liveSocketsOn(t: CellTarget, entries: OwnerEntry[]): LiveSocket[] {
  const addresses = entries.map((e) => e.address);
  if (countLiveSockets(t.state, addresses) === 0) return [];
  return socketsOn(addresses, processesBelow(t.path));
}

function liveError(t: CellTarget, plan: ReleasePlan): L3isoError {
  const what = plan.whole ? `cell ${t.name}` : plan.entries.map((e) => e.address.text).join(', ');
  return new L3isoError(
    'ESOCKETS_LIVE',
    `${what} has live sockets: ${describeSockets(plan.sockets)}`,
    '--drain SECONDS lets connections finish first; --force takes the addresses now (connections are reset)',
  );
}

export function releaseLocked(
  t: CellTarget,
  addrs: CellAddress[],
  opts: ReleaseOptions,
): ReleaseResult {
  const { state, id } = t;
  const plan = planRelease(t, addrs);
  if (plan.sockets.length > 0 && !opts.force) throw liveError(t, plan);
  if (plan.sockets.some((s) => s.kind === 'tcp-listen')) markKeptListeners(state);
  const base = {
    cell: t.name,
    path: t.path,
    id: id.toString(),
    sockets: plan.sockets,
    repaired: plan.repaired,
  };
  if (plan.whole) {
    const socketsDestroyed =
      plan.entries.length > 0 || (plan.seen ? plan.seen.cell : state.cell(id))
        ? finishCellRelease(state, id, plan.entries, plan.seen)
        : 0;
    return { ...base, released: publicTexts(plan.entries), removed: true, socketsDestroyed };
  }
  // Marked first, so no new bind or explicit source takes the address, and
  // the primaries move off it; still owned while its sockets die, so their
  // RSTs pass egress anti-spoof.
  flag(state, id, plan.entries, L3_OWNER_RELEASING);
  rederive(state, id);
  const socketsDestroyed = finishRelease(
    state,
    plan.entries.map((e) => e.address),
  );
  reconcile(state, id);
  return {
    ...base,
    released: [...plan.done, ...publicTexts(plan.entries)],
    removed: false,
    socketsDestroyed,
  };
}

function publicTexts(entries: OwnerEntry[]): string[] {
  return entries.filter((e) => !isAlias(e)).map((e) => e.address.text);
}

/**
 * `release --drain`: marks the addresses DRAINING (sk_lookup refuses new
 * connections, binds are refused, established connections go on), waits
 * until they are gone or the deadline passes, then finishes the release.
 * The instance lock is not held while waiting; the drain lock tells gc
 * the DRAINING owners are not stale.
 */
function drainRelease(t: CellTarget, addrs: CellAddress[], seconds: number): ReleaseResult {
  const { state, id } = t;
  const layout = state.layout;
  const { plan, letGo } = withLock(state, () => {
    const plan = planRelease(t, addrs);
    const letGo = holdDrainLock(layout);
    // Listeners outlive the drain (only connections are waited for).
    if (plan.sockets.some((s) => s.kind === 'tcp-listen')) markKeptListeners(state);
    const alias = plan.entries.filter(isAlias);
    flag(state, id, alias, L3_OWNER_RELEASING | L3_OWNER_DRAINING);
    flag(
      state,
      id,
      plan.entries.filter((e) => !isAlias(e)),
      L3_OWNER_RELEASING | L3_OWNER_DRAINING,
    );
    rederive(state, id);
    return { plan, letGo };
  });
  try {
    const addresses = plan.entries.map((e) => e.address);
    const deadline = Date.now() + seconds * 1000;
    while (Date.now() < deadline) {
      if (!socketsOn(addresses).some((s) => s.kind !== 'tcp-listen')) break;
      sleepSync(Math.min(200, Math.max(1, deadline - Date.now())));
    }
    return withLock(state, () => {
      const owned = ownersOf(state, id);
      const base = {
        cell: t.name,
        path: t.path,
        id: id.toString(),
        sockets: plan.sockets,
        repaired: plan.repaired,
      };
      if (plan.whole) {
        const socketsDestroyed = state.cell(id) ? finishCellRelease(state, id, owned) : 0;
        return { ...base, released: publicTexts(plan.entries), removed: true, socketsDestroyed };
      }
      const texts = new Set(addresses.map((a) => a.text));
      const still = owned.filter((e) => texts.has(e.address.text) && e.owner.flags & GONE);
      const socketsDestroyed = finishRelease(
        state,
        still.map((e) => e.address),
      );
      reconcile(state, id, { drains: false });
      return { ...base, released: publicTexts(plan.entries), removed: false, socketsDestroyed };
    });
  } finally {
    letGo();
  }
}

// ---- gc ----------------------------------------------------------------------

export interface GcResult {
  /** cells whose cgroup was removed without `release` */
  cells: { id: string; addresses: string[] }[];
  /** addresses claimed by an assign that died before it wrote its cell */
  orphanedAddresses: string[];
  /** cells whose derived fields reconcile repaired */
  repaired: { cell: string; what: string[] }[];
  /** counter entries of cells that no longer exist, removed */
  staleCounters: string[];
}

/**
 * Releases what nobody can release by name any more (cells whose cgroup is
 * gone; claims whose cell entry never got written, an assign that crashed),
 * finishes interrupted releases and reconciles every other cell. Under the
 * lock no assign is halfway, so such claims are stale.
 */
export function gc(state: EngineState): GcResult {
  const config = state.config();
  return withLock(state, () => gcLocked(state, liveCgroups(config.cgroupRoot, config.rootCgroup)));
}

/**
 * Every cgroup id below the root. gc decides from this which cells are dead,
 * so a root it cannot resolve, or that is not the cgroup the engine was
 * brought up on, stops it: it never releases a cell because it looked in
 * the wrong place.
 */
function liveCgroups(root: string, rootId: bigint): Set<bigint> {
  let id: bigint | undefined;
  try {
    id = cgroupId(root);
  } catch {
    id = undefined;
  }
  if (id !== rootId) {
    throw new L3isoError(
      'ECGROUP_MISSING',
      `gc cannot resolve the engine's cgroup root ${JSON.stringify(root)} (cgroup id ${rootId}${id === undefined ? ': no such cgroup' : `: that path is cgroup ${id} now`}); nothing was released`,
      'gc only releases cells it can prove dead',
    );
  }
  return new Set(cgroupPathsById(root).keys());
}

function gcLocked(state: EngineState, live: Set<bigint>): GcResult {
  state.revoker();
  const drains = drainsRunning(state.layout);
  const cells = state.cells();
  const byCell = byOwner(state.owners());
  const result: GcResult = { cells: [], orphanedAddresses: [], repaired: [], staleCounters: [] };
  for (const [id, owned] of byCell) {
    if (cells.has(id)) continue;
    const doomed = owned.filter((e) => !(drains && e.owner.flags & L3_OWNER_DRAINING));
    finishRelease(
      state,
      doomed.map((e) => e.address),
    );
    result.orphanedAddresses.push(...doomed.map((e) => e.address.text));
  }
  for (const id of cells.keys()) {
    const owned = byCell.get(id) ?? [];
    if (!live.has(id)) {
      finishCellRelease(state, id, owned);
      result.cells.push({ id: id.toString(), addresses: publicTexts(owned) });
      continue;
    }
    const what = reconcile(state, id, { owned, drains });
    if (what.length > 0) result.repaired.push({ cell: id.toString(), what });
  }
  const reindexed = rebuildIndex(state, byOwner(state.owners()));
  const what = [
    reindexed.added ? `listed ${reindexed.added} owned addresses the index lacked` : '',
    reindexed.dropped ? `unlisted ${reindexed.dropped} addresses their cell does not own` : '',
  ].filter((w) => w);
  if (what.length > 0) result.repaired.push({ cell: 'l3_cell_addrs', what });
  if (mayHaveKeptListeners(state)) clearIfNoneLeft(state);
  const remaining = state.cells();
  for (const id of new Set([...state.statsIds(), ...state.denialIds()])) {
    if (id === 0n || remaining.has(id)) continue;
    state.deleteStats(id);
    setAllowList(state, id, []);
    result.staleCounters.push(id.toString());
  }
  pruneCellNames(state.layout, new Set(remaining.keys()));
  return result;
}

/** Owner entries grouped by cell (one pass). */
function byOwner(owners: readonly OwnerEntry[]): Map<bigint, OwnerEntry[]> {
  const out = new Map<bigint, OwnerEntry[]>();
  for (const e of owners) {
    const list = out.get(e.owner.cell);
    if (list) list.push(e);
    else out.set(e.owner.cell, [e]);
  }
  return out;
}

// ---- invariants ----------------------------------------------------------------

/**
 * What is inconsistent in the maps right now, straight from them (one line
 * each; empty when every invariant holds). With no CLI running, this must
 * be empty after any verb, gc, or a re-run of a killed verb.
 */
export function inconsistencies(state: EngineState, drains = false): string[] {
  const out: string[] = [];
  const cells = state.cells();
  const byCell = byOwner(state.owners());
  out.push(...indexProblems(state, byCell));
  for (const [id, owned] of byCell) {
    if (!cells.has(id))
      out.push(`owners without a cell #${id}: ${owned.map((e) => e.address.text).join(', ')}`);
    for (const e of owned) {
      if (e.owner.flags & L3_OWNER_RELEASING && !(drains && e.owner.flags & L3_OWNER_DRAINING))
        out.push(`${e.address.text} of #${id} is stuck RELEASING`);
    }
  }
  const stats = new Set(state.statsIds());
  for (const [id, cell] of cells) {
    const owned = byCell.get(id) ?? [];
    const alias = owned.find(isAlias);
    const aliases = owned.filter(isAlias).length;
    if (aliases > 1) out.push(`cell #${id} owns ${aliases} loopback aliases`);
    if (!alias) out.push(`cell #${id} has no loopback alias owner`);
    else if (alias.address.text !== cell.loopback4.text)
      out.push(`cell #${id} records alias ${cell.loopback4.text}, owns ${alias.address.text}`);
    if (!stats.has(id)) out.push(`cell #${id} has no counters entry`);
    for (const family of [4, 6] as const) {
      const usable = owned.filter((e) => isUsable(e) && e.address.family === family);
      const count = family === 4 ? cell.addrs4 : cell.addrs6;
      const primary = family === 4 ? cell.primary4 : cell.primary6;
      if (count !== usable.length)
        out.push(`cell #${id} counts ${count} IPv${family} addresses, owns ${usable.length}`);
      if (usable.length > 0 && !primary) out.push(`cell #${id} has IPv${family} but no primary`);
      if (primary && !usable.some((e) => e.address.text === primary.text))
        out.push(`cell #${id} IPv${family} primary ${primary.text} is not a usable address of it`);
    }
  }
  for (const id of stats) if (id !== 0n && !cells.has(id)) out.push(`counters of no cell: #${id}`);
  for (const id of state.denialIds())
    if (id !== 0n && !cells.has(id)) out.push(`denial counters of no cell: #${id}`);
  return out;
}

/** `gc --check`: the inconsistencies, changing nothing. */
export function checkState(state: EngineState): string[] {
  return withLock(state, () => inconsistencies(state, drainsRunning(state.layout)));
}
