/**
 * Assignment transactions. Ownership is claimed address by address in the
 * kernel with BPF_NOEXIST (the atomic part: concurrent CLIs cannot both
 * win); a failure anywhere undoes this run's claims, so nothing is ever
 * half-applied; a re-run after a crash finds its own claims and converges.
 *
 * Order matters for safety: on assign, owners are claimed before the cell
 * entry exists (in between, nobody can bind the addresses); on release, the
 * cell entry changes before the owners are freed.
 */
import { L3isoError } from '../errors';
import { L3_OWNER_LOOPBACK, L3_OWNER_RELEASING, type Cell, type Owner } from '../maps/layout';
import { loopbackCandidates, parseAddress, type CellAddress } from '../model/address';
import {
  assertRecordableDepth,
  cgroupId,
  cgroupPathsById,
  findCgroup2Mount,
  findCgroupById,
  relativeCellName,
  resolveCellPath,
} from '../model/cgroup';
import { withLock } from './lock';
import { setAllowList } from './prefixes';
import { destroySockets } from './revoke';
import { requireRoot } from './privilege';
import { EngineState } from './state';

export interface AssignResult {
  cell: string;
  path: string;
  id: string;
  added: string[];
  unchanged: string[];
  primary4?: string;
  primary6?: string;
  loopback4: string;
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

export function openCellTarget(pinDir: string, cgroupArg: string): CellTarget {
  const state = EngineState.open(pinDir);
  try {
    const root = state.config().cgroupRoot;
    const path = resolveCellPath(cgroupArg, root, findCgroup2Mount());
    return { state, root, path, id: cgroupId(path), name: relativeCellName(path, root) };
  } catch (err) {
    state.close();
    throw err;
  }
}

export function assign(
  pinDir: string,
  cgroupArg: string,
  addressTexts: readonly string[],
): AssignResult {
  requireRoot('assign');
  if (addressTexts.length === 0)
    throw new L3isoError('EUSAGE', 'assign needs at least one address');
  const addrs = parseAddresses(addressTexts);
  const target = openCellTarget(pinDir, cgroupArg);
  try {
    assertRecordableDepth(target.path, target.root);
    return withLock(target.state.layout, () => assignLocked(target, addrs));
  } finally {
    target.state.close();
  }
}

function assignLocked(t: CellTarget, addrs: CellAddress[]): AssignResult {
  const { state, id } = t;
  const claimed: CellAddress[] = [];
  const unchanged: CellAddress[] = [];
  let aliasClaimed: CellAddress | undefined;
  try {
    const existing = state.cell(id);
    for (const a of addrs) {
      const r = state.claim(a, { cell: id, flags: 0 });
      if (r.claimed) claimed.push(a);
      else if (r.owner.cell === id && !(r.owner.flags & L3_OWNER_LOOPBACK)) unchanged.push(a);
      else throw ownedError(a, r.owner, t.root);
    }
    let loopback4 = existing?.loopback4;
    if (!loopback4) {
      loopback4 = claimLoopbackAlias(state, id);
      aliasClaimed = loopback4;
    }
    state.ensureStats(id);
    const firstOf = (family: 4 | 6) => addrs.find((a) => a.family === family);
    const cell: Cell = {
      primary4: existing?.primary4 ?? firstOf(4),
      primary6: existing?.primary6 ?? firstOf(6),
      loopback4,
      flags: existing?.flags ?? 0,
      addrs4: (existing?.addrs4 ?? 0) + claimed.filter((a) => a.family === 4).length,
      addrs6: (existing?.addrs6 ?? 0) + claimed.filter((a) => a.family === 6).length,
    };
    state.putCell(id, cell);
    return {
      cell: t.name,
      path: t.path,
      id: id.toString(),
      added: claimed.map((a) => a.text),
      unchanged: unchanged.map((a) => a.text),
      primary4: cell.primary4?.text,
      primary6: cell.primary6?.text,
      loopback4: loopback4.text,
    };
  } catch (err) {
    for (const a of claimed) state.unclaim(a);
    if (aliasClaimed) state.unclaim(aliasClaimed);
    throw err;
  }
}

/** Each cell gets its own 127/8 alias; probing a deterministic sequence
 * means a crashed assign finds the alias it already claimed. */
function claimLoopbackAlias(state: EngineState, id: bigint): CellAddress {
  let tries = 0;
  for (const candidate of loopbackCandidates(id)) {
    const r = state.claim(candidate, { cell: id, flags: L3_OWNER_LOOPBACK });
    if (r.claimed || (r.owner.cell === id && r.owner.flags & L3_OWNER_LOOPBACK)) return candidate;
    if (++tries >= 4096) break;
  }
  throw new L3isoError('EMAP_FULL', 'no free loopback alias in 127.64.0.0/10');
}

function ownedError(a: CellAddress, owner: Owner, root: string): L3isoError {
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

export function release(
  pinDir: string,
  cgroupArg: string,
  addressTexts: readonly string[],
): ReleaseResult {
  requireRoot('release');
  const addrs = parseAddresses(addressTexts);
  const target = openCellTarget(pinDir, cgroupArg);
  try {
    return withLock(target.state.layout, () => releaseLocked(target, addrs));
  } finally {
    target.state.close();
  }
}

function releaseLocked(t: CellTarget, addrs: CellAddress[]): ReleaseResult {
  const { state, id } = t;
  const cell = state.cell(id);
  if (!cell)
    throw new L3isoError('ENOT_ASSIGNED', `cgroup ${t.name} is not a cell (nothing assigned)`);
  const base = { cell: t.name, path: t.path, id: id.toString() };

  if (addrs.length === 0) {
    const owned = state.owners().filter((o) => o.owner.cell === id);
    return { ...base, ...forgetCell(state, id, owned), removed: true };
  }

  // Point lookups: the owner map can hold 500k entries on a dense host.
  for (const a of addrs) {
    const owner = state.owner(a);
    if (!owner || owner.cell !== id || owner.flags & L3_OWNER_LOOPBACK) {
      throw new L3isoError('ENOT_ASSIGNED', `address ${a.text} is not assigned to cell ${t.name}`);
    }
  }
  const releasing = new Set(addrs.map((a) => a.text));
  const gone = (family: 4 | 6) => addrs.filter((a) => a.family === family).length;
  const next: Cell = {
    ...cell,
    primary4: successor(state, id, cell.primary4, releasing, 4, cell.addrs4 - gone(4)),
    primary6: successor(state, id, cell.primary6, releasing, 6, cell.addrs6 - gone(6)),
    addrs4: cell.addrs4 - gone(4),
    addrs6: cell.addrs6 - gone(6),
  };
  state.putCell(id, next);
  // Marked first, so no new bind or explicit source takes the address;
  // still owned while its sockets die, so their RSTs pass egress anti-spoof.
  for (const a of addrs) state.claimFlags(a, { cell: id, flags: L3_OWNER_RELEASING });
  const socketsDestroyed = destroySockets(state.layout, addrs);
  for (const a of addrs) state.unclaim(a);
  return { ...base, released: addrs.map((a) => a.text), removed: false, socketsDestroyed };
}

/**
 * Removes a cell and everything it holds. The cell entry goes first: its
 * sockets become host sockets, which egress does not police, so the RSTs of
 * their destruction leave; the addresses stay claimed (unbindable by anyone)
 * until the sockets are gone.
 */
export function forgetCell(
  state: EngineState,
  id: bigint,
  owned: { address: CellAddress; owner: Owner }[],
): { released: string[]; socketsDestroyed: number } {
  state.deleteCell(id);
  const socketsDestroyed = destroySockets(
    state.layout,
    owned.map((o) => o.address),
  );
  for (const o of owned) state.unclaim(o.address);
  state.deleteStats(id);
  setAllowList(state, id, []);
  return {
    released: owned.filter((o) => !(o.owner.flags & L3_OWNER_LOOPBACK)).map((o) => o.address.text),
    socketsDestroyed,
  };
}

/** The primary stays unless it is being released; then the lowest
 * remaining address of the family takes over (maps keep no order). Only
 * then, and only if one remains, is the owner map scanned. */
function successor(
  state: EngineState,
  id: bigint,
  current: CellAddress | undefined,
  releasing: Set<string>,
  family: 4 | 6,
  remaining: number,
): CellAddress | undefined {
  if (current && !releasing.has(current.text)) return current;
  if (remaining <= 0) return undefined;
  return state
    .owners()
    .filter(
      (o) =>
        o.owner.cell === id &&
        !(o.owner.flags & L3_OWNER_LOOPBACK) &&
        o.address.family === family &&
        !releasing.has(o.address.text),
    )
    .map((o) => o.address)
    .sort((a, b) => Buffer.compare(a.bytes, b.bytes))[0];
}

export interface GcResult {
  /** cells whose cgroup was removed without `release` */
  cells: { id: string; addresses: string[] }[];
  /** addresses claimed by an assign that died before it wrote its cell */
  orphanedAddresses: string[];
}

/**
 * Releases what nobody can release by name any more: cells whose cgroup is
 * gone, and claims whose cell entry never got written (an assign that
 * crashed). Under the lock no assign is halfway, so such claims are stale.
 */
export function gc(pinDir: string): GcResult {
  requireRoot('gc');
  const state = EngineState.open(pinDir);
  try {
    const root = state.config().cgroupRoot;
    return withLock(state.layout, () => {
      const live = new Set(cgroupPathsById(root).keys());
      const cells = state.cells();
      const owners = state.owners();
      const result: GcResult = { cells: [], orphanedAddresses: [] };
      for (const id of cells.keys()) {
        if (live.has(id)) continue;
        const { released } = forgetCell(
          state,
          id,
          owners.filter((o) => o.owner.cell === id),
        );
        result.cells.push({ id: id.toString(), addresses: released });
      }
      for (const o of owners) {
        if (!cells.has(o.owner.cell)) {
          state.unclaim(o.address);
          result.orphanedAddresses.push(o.address.text);
        }
      }
      return result;
    });
  } finally {
    state.close();
  }
}
