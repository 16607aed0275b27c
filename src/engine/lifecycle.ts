/**
 * `up` and `down`: load the programs, pin maps and links, and take them
 * away again. `up` on a live engine keeps every map (so every assignment)
 * and swaps each program in place through bpf_link_update, which is atomic:
 * there is no instant at which a cell runs unconfined.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { AttachType, BpfLink, BpfMap, MapType, inNetns, type BpfProgram } from '../../loader';
import { L3isoError } from '../errors';
import {
  L3_CELL_ALLOW_LIST,
  L3_CONFIG_COMPLETE,
  L3_CONFIG_MAGIC,
  L3_INSTANCE_LEN,
  L3_LAYOUT_VERSION,
  L3_OWNER_LOOPBACK,
  LAYOUT,
  decodeConfig,
  type Config,
} from '../codecs/layout';
import {
  cgroupId,
  cgroupLevel,
  cgroupPathsById,
  findCgroup2Mount,
  relativeCellName,
} from '../model/cgroup';
import { reconcile } from '../cells/cells';
import { pidAlive } from '../model/process';
import { requireFeatures } from '../doctor/features';
import { PinDirLock } from '../dataplane/lock';
import { bumpGeneration } from '../dataplane/generation';
import {
  TEMP_NAME,
  XDP_LINK_PREFIX,
  buildDirsOf,
  buildLayout,
  isOwnTopEntry,
  pinAtomically,
  pinLayout,
  type PinLayout,
} from '../dataplane/paths';
import { forgetCellNames } from '../cells/names';
import {
  ALL_PROGRAMS,
  ATTACHED_OBJECTS,
  DEFAULT_MAX_CELLS,
  LOOPBACK_IFINDEX,
  SHARED_MAPS,
  type ProgramAttachment,
  type SharedMapName,
} from '../dataplane/programs';
import { allowList, parsePrefixes, setManagedPrefixes } from '../dataplane/prefixes';
import { loadWithPinnedMaps } from '../dataplane/objects';
import { pinRevoker, unpinRevoker } from '../dataplane/revoke';
import { EngineState, L3_CONFIG_V1_SIZE, missingMaps, refuseOtherLayout } from '../dataplane/state';
import { rebuildIndex, type IndexedOwner } from '../dataplane/cell-index';
import { detachAllUplinks } from '../dataplane/uplink';
import { netnsInode } from '../dataplane/netns';
import { removePrefixRoutes, syncPrefixRoutes, type RouteChanges } from '../dataplane/local-routes';

export interface UpOptions {
  pinDir: string;
  cgroupRoot: string;
  maxCells?: number;
  /** network namespace for sk_lookup (default: the caller's) */
  netns?: string;
  /** prefixes whose addresses belong to cells; undefined keeps the current set */
  managedPrefixes?: string[];
  /** rebuild missing maps of a live engine from the owner map */
  repair?: boolean;
  onProgress?: (step: string) => void;
}

export interface UpResult {
  pinDir: string;
  cgroupRoot: string;
  netns: string;
  rootCgroupId: string;
  /** false when an engine was already up and its programs were replaced in place */
  fresh: boolean;
  maps: { name: string; action: 'created' | 'reused'; maxEntries: number }[];
  programs: { name: string; action: 'attached' | 'replaced' }[];
  /** maps --repair re-created (the cell map rebuilt from the owner map) */
  repaired: string[];
  /** AnyIP routes (`local CIDR dev lo`) for the managed prefixes, when given */
  routes?: RouteChanges;
}

export function up(opts: UpOptions): UpResult {
  const progress = opts.onProgress ?? (() => {});
  if (
    opts.maxCells !== undefined &&
    (!Number.isInteger(opts.maxCells) || opts.maxCells < 1 || opts.maxCells > 16_000_000)
  ) {
    throw new L3isoError(
      'EUSAGE',
      `--max-cells must be an integer between 1 and 16000000, not ${opts.maxCells}`,
    );
  }
  const mount = findCgroup2Mount();
  const root = resolveCgroupRoot(opts.cgroupRoot, mount);
  const layout = pinLayout(opts.pinDir);
  const managed = opts.managedPrefixes ? parsePrefixes(opts.managedPrefixes) : undefined;
  const netnsPath = opts.netns ?? '/proc/self/ns/net';
  const netnsIno = netnsInode(netnsPath);
  progress('checking kernel features');
  requireFeatures(layout.root);
  removeStaleBuilds(layout);
  const u: UpContext = { opts, layout, root, mount, netnsPath, netnsIno, managed, progress };
  if (isEmptyDir(layout.root)) {
    const fresh = upAside(u);
    if (fresh) return fresh;
    // Another up renamed its engine into place first: join it, in place.
  }
  return upInPlace(u);
}

interface UpContext {
  opts: UpOptions;
  layout: PinLayout;
  root: string;
  mount: string;
  netnsPath: string;
  netnsIno: bigint;
  managed: ReturnType<typeof parsePrefixes> | undefined;
  progress: (step: string) => void;
}

/** No pin dir yet, or an empty one: a fresh up builds aside. */
function isEmptyDir(dir: string): boolean {
  try {
    return fs.readdirSync(dir).length === 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
}

/**
 * A fresh up: the whole engine is built in ROOT-tmp-PID (locked while it is
 * built) and renamed to ROOT only once complete, so ROOT never holds half an
 * engine: a crash leaves either nothing there or a complete engine, and
 * its build dir, which the next up removes. rename(2) keeps the flock (it
 * is on the inode), so the engine appears at ROOT already locked. Returns
 * undefined when another up's engine got to ROOT first.
 */
function upAside(u: UpContext): UpResult | undefined {
  const build = buildLayout(u.layout);
  fs.mkdirSync(build.root);
  const lock = PinDirLock.open(build.root);
  try {
    return lock.exclusive(() => {
      claimRoot(u.layout, u.root);
      let result: UpResult;
      try {
        result = buildFresh(u, build, lock);
      } catch (err) {
        discardBuild(build);
        throw err;
      }
      if (!renameInto(build.root, u.layout.root)) {
        discardBuild(build);
        return undefined;
      }
      result.pinDir = u.layout.root;
      // After the maps: a route failure is reported, never undoes a working engine.
      if (u.managed) result.routes = syncPrefixRoutes(u.layout, u.netnsPath, u.netnsIno, u.managed);
      return result;
    });
  } finally {
    lock.close();
  }
}

function buildFresh(u: UpContext, build: PinLayout, lock: PinDirLock): UpResult {
  const result = bringUp(
    {
      layout: build,
      root: u.root,
      mount: u.mount,
      netnsPath: u.netnsPath,
      netnsIno: u.netnsIno,
      maxCells: u.opts.maxCells || DEFAULT_MAX_CELLS,
      previous: undefined,
      rebuildCells: false,
      rebuildIndex: false,
    },
    [],
    u.progress,
  );
  const state = EngineState.open(build, { incomplete: true, lock });
  try {
    if (u.managed) setManagedPrefixes(state, u.managed);
    markComplete(state);
  } finally {
    state.close();
  }
  return result;
}

/** rename(2) of the build dir onto ROOT: atomic; false if ROOT is a
 * non-empty directory by now (another up's engine). */
function renameInto(from: string, to: string): boolean {
  try {
    fs.renameSync(from, to);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') return false;
    throw err;
  }
}

/** Unpins everything a build made (its links detach with their pins). */
function discardBuild(build: PinLayout): void {
  try {
    removeOwnPins(build, { pinDir: '', links: 0, maps: 0, uplinks: 0, cells: [], left: [] });
  } catch {
    /* best effort: the next up removes what is left */
  }
}

/** Build dirs of ups that died (their lock is free): the next up removes them. */
function removeStaleBuilds(layout: PinLayout): void {
  for (const dir of buildDirsOf(layout)) {
    // Its builder is alive: it may not have taken the build's lock yet
    // (one with our pid is a leftover of a reused pid).
    const pid = Number(dir.slice(dir.lastIndexOf('-') + 1));
    if (pid !== process.pid && pidAlive(pid)) continue;
    let lock: PinDirLock;
    try {
      lock = PinDirLock.open(dir);
    } catch {
      continue;
    }
    try {
      if (!lock.tryExclusive()) continue; // an up building right now
      discardBuild({ ...pinLayout(dir), tag: layout.tag, runDir: layout.runDir });
      fs.rmSync(dir, { recursive: true, force: true });
    } finally {
      lock.close();
    }
  }
}

/** An up on an existing engine (or a dir an older l3iso left half made):
 * under the pin dir's lock, keeping every map it can. */
function upInPlace(u: UpContext): UpResult {
  const { layout, root, opts } = u;
  const lock = PinDirLock.open(layout.root);
  try {
    return lock.exclusive(() => {
      try {
        const found = inspectForUp(layout, opts.repair === true);
        const previous = found.config;
        if (previous)
          checkSameEngine(layout, previous, root, u.netnsPath, u.netnsIno, opts.maxCells);
        claimRoot(layout, root);
        return replaceInPlace(u, found, lock);
      } finally {
        bumpGeneration(layout);
      }
    });
  } finally {
    lock.close();
  }
}

function replaceInPlace(u: UpContext, found: Found, lock: PinDirLock): UpResult {
  const { layout, managed } = u;
  const previous = found.config;
  const undo: (() => void)[] = [];
  try {
    const result = bringUp(
      {
        layout,
        root: u.root,
        mount: u.mount,
        netnsPath: u.netnsPath,
        netnsIno: u.netnsIno,
        maxCells: previous?.maxCells || u.opts.maxCells || DEFAULT_MAX_CELLS,
        previous,
        rebuildCells: found.missing.includes('l3_cells'),
        rebuildIndex: found.missing.includes('l3_cell_addrs'),
      },
      undo,
      u.progress,
    );
    const state = EngineState.open(layout, { incomplete: true, lock });
    try {
      if (managed) setManagedPrefixes(state, managed);
      markComplete(state);
      // After the maps: a route failure is reported, never undoes a working engine.
      if (managed) result.routes = syncPrefixRoutes(layout, u.netnsPath, u.netnsIno, managed);
    } finally {
      state.close();
    }
    result.repaired = found.missing;
    return result;
  } catch (err) {
    // Nothing half-applied: remove whatever this run created.
    for (const step of undo.reverse()) {
      try {
        step();
      } catch {
        /* best effort: the original error matters more */
      }
    }
    throw err;
  }
}

export { netnsInode };

interface Found {
  /** the live (or interrupted) engine's config; undefined: a fresh dir */
  config: Config | undefined;
  /** shared maps to create although the engine existed (--repair) */
  missing: SharedMapName[];
}

/**
 * What `up` finds in the pin dir, refusing what it must not adopt: pins
 * l3iso did not create, another layout, or a live engine with maps missing
 * (creating them empty would unconfine every cell at once) unless
 * --repair, which rebuilds the cell map from the owner map and never
 * recreates the owner map itself (the truth cannot be rebuilt).
 */
function inspectForUp(layout: PinLayout, repair: boolean): Found {
  // A newer engine may have maps this version does not know: not foreign.
  if (fs.existsSync(layout.map('l3_config'))) refuseOtherLayout(layout);
  const foreign = foreignEntries(layout);
  if (foreign.length > 0) {
    throw new L3isoError(
      'EPIN_DIR',
      `pin dir ${layout.root} holds pins l3iso did not create: ${foreign.join(', ')}`,
      'use another --pin-dir; l3iso does not adopt or remove pins it did not create',
    );
  }
  const missing = missingMaps(layout);
  const anyLinks = fs.existsSync(layout.linksDir) && fs.readdirSync(layout.linksDir).length > 0;
  if (missing.length === SHARED_MAPS.length || killedBeforeConfig(layout, missing, anyLinks)) {
    if (anyLinks) {
      throw new L3isoError(
        'EPIN_PARTIAL',
        `pin dir ${layout.root} has attached links but none of the engine's maps`,
        'run `l3iso down --force` and `up` again (the assignments are lost)',
      );
    }
    return { config: undefined, missing: [] };
  }
  const state = EngineState.open(layout.root, { incomplete: true });
  try {
    const config = missing.includes('l3_config') ? undefined : state.marker(true);
    const complete = config !== undefined && ((config.flags ?? 0) & L3_CONFIG_COMPLETE) !== 0;
    if (!complete && !missing.includes('l3_config')) return { config, missing: [] };
    if (missing.length === 0) return { config, missing: [] };
    if (!repair) {
      throw new L3isoError(
        'EPIN_PARTIAL',
        `engine in ${layout.root} is missing pinned maps: ${missing.join(', ')}; up would start with them empty`,
        'run `l3iso up --repair` to rebuild them from the owner map, or `down --force` and `up`',
      );
    }
    if (missing.includes('l3_owners')) {
      throw new L3isoError(
        'EPIN_PARTIAL',
        `engine in ${layout.root} lost its owner map (l3_owners): which cell owns which address cannot be rebuilt`,
        'run `l3iso down --force` and `up` again, then assign the cells again',
      );
    }
    return { config, missing };
  } finally {
    state.close();
  }
}

/**
 * The first up pins its maps before it writes l3_config and attaches
 * anything, and no verb runs without l3_config: maps without it, with no
 * link, no revocation iterator and no owner or cell entry, are a first up
 * killed early, which the next up finishes by reusing them. (A live engine
 * that lost its l3_config still has its links: refused below.)
 */
function killedBeforeConfig(
  layout: PinLayout,
  missing: SharedMapName[],
  anyLinks: boolean,
): boolean {
  if (!missing.includes('l3_config') || anyLinks || fs.existsSync(layout.revokeDir)) return false;
  return (['l3_owners', 'l3_cells'] as const).every((name) => {
    if (missing.includes(name)) return true;
    const m = BpfMap.openPinned(layout.map(name));
    try {
      return m.keys().next().done === true;
    } finally {
      m.close();
    }
  });
}

/** `up` on a live engine with other parameters would report success and
 * change nothing (links keep their cgroup and netns, maps their size). */
function checkSameEngine(
  layout: PinLayout,
  config: Config,
  root: string,
  netnsPath: string,
  netnsIno: bigint,
  maxCells: number | undefined,
): void {
  const refuse = (what: string): never => {
    throw new L3isoError(
      'EALREADY_UP',
      `engine in ${layout.root} is up with ${what}`,
      'run `l3iso down` first, or use another --pin-dir',
    );
  };
  if (config.cgroupRoot !== root) refuse(`cgroup root ${config.cgroupRoot}, not ${root}`);
  if (config.rootCgroup !== 0n && config.rootCgroup !== cgroupId(root))
    refuse(`cgroup root id ${config.rootCgroup}; ${root} is another cgroup now`);
  if (config.netnsIno && config.netnsIno !== netnsIno)
    refuse(`network namespace inode ${config.netnsIno}, not ${netnsPath} (inode ${netnsIno})`);
  if (maxCells !== undefined && config.maxCells && config.maxCells !== maxCells)
    refuse(`--max-cells ${config.maxCells}, not ${maxCells}`);
}

/**
 * One engine per cgroup root: two would both confine its cells, with
 * different assignments. /run/l3iso/root-<cgroup id> names the pin dir of
 * the engine managing that root; an entry whose engine is gone is stale.
 */
function claimRoot(layout: PinLayout, root: string): void {
  const file = rootClaimFile(cgroupId(root));
  let holder: string | undefined;
  try {
    holder = fs.readFileSync(file, 'utf8').trim();
  } catch {
    holder = undefined;
  }
  if (holder && holder !== layout.root && EngineState.isUp(holder)) {
    if (managesRoot(holder, cgroupId(root))) {
      throw new L3isoError(
        'EALREADY_UP',
        `cgroup root ${root} is already managed by the engine in ${holder}`,
        'one engine per cgroup root: use that --pin-dir, or bring it down first',
      );
    }
  }
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, layout.root + '\n', { mode: 0o600 });
}

function managesRoot(pinDir: string, rootId: bigint): boolean {
  try {
    const other = EngineState.open(pinDir);
    try {
      return other.config().rootCgroup === rootId;
    } finally {
      other.close();
    }
  } catch {
    return false; // gone, or not an engine any more: a stale claim
  }
}

function rootClaimFile(rootId: bigint): string {
  return path.join('/run/l3iso', `root-${rootId}`);
}

function releaseRoot(layout: PinLayout, rootId: bigint | undefined): void {
  if (rootId === undefined) return;
  const file = rootClaimFile(rootId);
  try {
    if (fs.readFileSync(file, 'utf8').trim() === layout.root) fs.rmSync(file, { force: true });
  } catch {
    /* none */
  }
}

function markComplete(state: EngineState): void {
  const config = state.marker(true);
  if (!config) throw new L3isoError('EKERNEL', 'l3_config was not written');
  if ((config.flags ?? 0) & L3_CONFIG_COMPLETE) return;
  state.writeConfig({ ...config, flags: (config.flags ?? 0) | L3_CONFIG_COMPLETE });
}

interface BringUp {
  layout: PinLayout;
  root: string;
  mount: string;
  netnsPath: string;
  netnsIno: bigint;
  maxCells: number;
  previous: Config | undefined;
  rebuildCells: boolean;
  rebuildIndex: boolean;
}

function bringUp(b: BringUp, undo: (() => void)[], progress: (step: string) => void): UpResult {
  const { layout, root } = b;
  for (const dir of [layout.root, layout.mapsDir, layout.linksDir]) {
    if (!fs.existsSync(dir)) {
      fs.mkdirSync(dir);
      undo.push(() => fs.rmdirSync(dir));
    }
  }
  removeStaleTemps(layout);
  const result: UpResult = {
    pinDir: layout.root,
    cgroupRoot: root,
    netns: b.netnsPath,
    rootCgroupId: cgroupId(root).toString(),
    fresh: b.previous === undefined || !((b.previous.flags ?? 0) & L3_CONFIG_COMPLETE),
    maps: [],
    programs: [],
    repaired: [],
  };
  const targets = openTargets(root, b.netnsPath);
  try {
    for (const [i, spec] of ATTACHED_OBJECTS.entries()) {
      progress(`loading ${spec.file}`);
      const obj = loadWithPinnedMaps(spec.file, layout, { maxCells: b.maxCells, result, undo });
      try {
        if (i === 0) {
          writeConfig(b);
          // Before any program is swapped in: they would see an empty cell map.
          // The index first: rebuilding cells reads their owners through it.
          if (b.rebuildIndex || b.rebuildCells) reindex(layout);
          if (b.rebuildCells) rebuildCells(layout);
        }
        for (const p of spec.programs) {
          const prog = obj.program(p.program);
          result.programs.push(
            p.target === 'lo'
              ? attachOnLoopback(layout, prog, p, b.netnsPath, undo)
              : attachOrReplace(layout, prog, p.program, p.attach, targetFd(p, targets), undo),
          );
        }
      } finally {
        obj.close();
      }
    }
  } finally {
    fs.closeSync(targets.cgroup);
    fs.closeSync(targets.netns);
  }
  retireUnknownLinks(layout);
  progress('loading the revocation iterator');
  pinRevoker(layout);
  if (b.previous === undefined) undo.push(() => unpinRevoker(layout));
  return result;
}

/** --repair: the reverse index of l3_owners, from the owner map. */
function reindex(layout: PinLayout): void {
  const state = EngineState.open(layout, { incomplete: true });
  try {
    const byCell = new Map<bigint, IndexedOwner[]>();
    for (const e of state.owners()) {
      const list = byCell.get(e.owner.cell);
      if (list) list.push(e);
      else byCell.set(e.owner.cell, [e]);
    }
    rebuildIndex(state, byCell);
  } finally {
    state.close();
  }
}

/** --repair: every cell the owner map proves (it owns a loopback alias)
 * gets its record back; policy flags fall back to the defaults (raw
 * denied), except an allow-list that still has entries stays enforced. */
function rebuildCells(layout: PinLayout): void {
  const state = EngineState.open(layout, { incomplete: true });
  try {
    const ids = new Set(
      state
        .owners()
        .filter((o) => o.owner.flags & L3_OWNER_LOOPBACK)
        .map((o) => o.owner.cell),
    );
    for (const id of ids) {
      reconcile(state, id, { create: true });
      const cell = state.cell(id);
      if (cell && allowList(state, id).length > 0)
        state.putCell(id, { ...cell, flags: cell.flags | L3_CELL_ALLOW_LIST });
    }
  } finally {
    state.close();
  }
}

/** Pins a crashed run left under a temporary name (see pinAtomically). */
function removeStaleTemps(layout: PinLayout): void {
  for (const dir of [layout.root, layout.mapsDir, layout.linksDir]) {
    if (!fs.existsSync(dir)) continue;
    for (const entry of fs.readdirSync(dir)) {
      if (TEMP_NAME.test(entry)) fs.rmSync(path.join(dir, entry), { recursive: true, force: true });
    }
  }
}

function openTargets(root: string, netnsPath: string): { cgroup: number; netns: number } {
  const cgroup = fs.openSync(root, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    return { cgroup, netns: fs.openSync(netnsPath, fs.constants.O_RDONLY) };
  } catch (err) {
    fs.closeSync(cgroup);
    throw new L3isoError(
      'EUSAGE',
      `cannot open network namespace ${netnsPath}: ${(err as Error).message}`,
    );
  }
}

// Before any link: sock_create reads the root level from it. A live
// engine keeps its instance id and COMPLETE flag (verbs running meanwhile
// must not see an interrupted up); a first up sets COMPLETE only at the end.
function writeConfig(b: BringUp): void {
  const state = EngineState.open(b.layout, { incomplete: true });
  try {
    state.writeConfig({
      rootCgroup: cgroupId(b.root),
      rootLevel: cgroupLevel(b.root, b.mount),
      version: L3_LAYOUT_VERSION,
      cgroupRoot: b.root,
      magic: L3_CONFIG_MAGIC,
      instance: b.previous?.instance || randomBytes(L3_INSTANCE_LEN).toString('hex'),
      netnsIno: b.netnsIno,
      maxCells: b.maxCells,
      flags: b.previous?.flags ?? 0,
    });
    state.ensureStats(0n);
  } finally {
    state.close();
  }
}

function targetFd(p: ProgramAttachment, targets: { cgroup: number; netns: number }): number {
  return p.target === 'cgroup' ? targets.cgroup : targets.netns;
}

/** A tcx link on the engine netns's `lo`: a bpf_link like the others, so
 * its pin is all `down` has to remove, and a crash leaves no tc filter
 * behind that no pin accounts for (an unpinned link dies with its fd). The
 * ifindex is resolved in the calling thread's netns, hence the switch. */
function attachOnLoopback(
  layout: PinLayout,
  prog: BpfProgram,
  p: ProgramAttachment,
  netnsPath: string,
  undo: (() => void)[],
): { name: string; action: 'attached' | 'replaced' } {
  return inNetns(netnsPath, () =>
    attachOrReplace(layout, prog, p.program, p.attach, LOOPBACK_IFINDEX, undo),
  );
}

function attachOrReplace(
  layout: PinLayout,
  prog: BpfProgram,
  name: string,
  attach: AttachType,
  targetFd: number,
  undo: (() => void)[],
): { name: string; action: 'attached' | 'replaced' } {
  const pinned = layout.link(name);
  if (fs.existsSync(pinned)) {
    const link = BpfLink.openPinned(pinned);
    try {
      link.update(prog.fd);
    } finally {
      link.close();
    }
    return { name, action: 'replaced' };
  }
  const link = BpfLink.create(prog.fd, targetFd, attach);
  try {
    pinAtomically(pinned, (p) => link.pin(p));
    undo.push(() => fs.unlinkSync(pinned));
  } finally {
    link.close();
  }
  return { name, action: 'attached' };
}

/** A link pinned by an older version for a program this one no longer has. */
function retireUnknownLinks(layout: PinLayout): void {
  const known = new Set(ALL_PROGRAMS.map((p) => p.program));
  for (const entry of fs.readdirSync(layout.linksDir)) {
    if (entry.startsWith(XDP_LINK_PREFIX)) continue; // attach's, not up's
    if (!known.has(entry)) fs.unlinkSync(path.join(layout.linksDir, entry));
  }
}

export function resolveCgroupRoot(arg: string, mount: string): string {
  let real: string;
  try {
    real = fs.realpathSync(arg);
  } catch {
    throw new L3isoError('ECGROUP_MISSING', `cgroup root ${arg} does not exist`);
  }
  if (!fs.statSync(real).isDirectory()) {
    throw new L3isoError('ECGROUP_MISSING', `cgroup root ${arg} is not a directory`);
  }
  if (real !== mount && !real.startsWith(mount + '/')) {
    throw new L3isoError(
      'ECGROUP_NOT_V2',
      `cgroup root ${arg} is not on the cgroup2 hierarchy (${mount})`,
    );
  }
  return real;
}

export interface DownResult {
  pinDir: string;
  links: number;
  maps: number;
  uplinks: number;
  /** cells whose isolation went with the engine (down --force) */
  cells: string[];
  /** what was in the pin dir that l3iso did not create: left in place */
  left: string[];
  /** the AnyIP routes `up --managed-prefix` had added (absent: none) */
  routes?: RouteChanges;
}

export interface DownOptions {
  /** go down although cells exist (they become ordinary cgroups) */
  force?: boolean;
}

/**
 * Detaches (unpinning a link whose only reference is the pin detaches it)
 * and removes the pins l3iso created, and only those: a dir that is not an
 * l3iso engine's (no marker, a newer layout) is refused whole.
 */
export function down(pinDir: string, opts: DownOptions = {}): DownResult {
  const layout = pinLayout(pinDir);
  // What a killed fresh up left beside the pin dir, attached programs included.
  removeStaleBuilds(layout);
  if (!fs.existsSync(layout.root)) {
    throw new L3isoError('ENOT_UP', `engine is not up in ${layout.root}`);
  }
  let rootId: bigint | undefined;
  const lock = PinDirLock.open(layout.root);
  let result: DownResult;
  try {
    result = lock.exclusive(() => downLocked(layout, opts, (id) => (rootId = id)));
  } finally {
    lock.close();
  }
  releaseRoot(layout, rootId);
  // The pin dir is gone: waiters on its lock find their fd names no pin dir
  // any more (ENOT_UP); the names it kept go with it.
  if (!fs.existsSync(layout.root)) {
    fs.rmSync(layout.poolsFile, { force: true });
    forgetCellNames(layout);
  }
  return result;
}

function downLocked(
  layout: PinLayout,
  opts: DownOptions,
  setRootId: (id: bigint | undefined) => void,
): DownResult {
  const result: DownResult = {
    pinDir: layout.root,
    links: 0,
    maps: 0,
    uplinks: 0,
    cells: [],
    left: [],
  };
  const engine = openForDown(layout);
  if (engine) {
    try {
      setRootId(engine.rootId);
      const cells = engine.state ? liveCellNames(engine.state) : [];
      if (cells.length > 0 && !opts.force) {
        throw new L3isoError(
          'ECELLS_LIVE',
          `engine in ${layout.root} still has ${cells.length} cells (${cells.slice(0, 8).join(', ')}${cells.length > 8 ? ', ...' : ''}): down would leave them unconfined`,
          'release them first, or pass --force',
        );
      }
      result.cells = cells;
      // Netlink attachments do not go away with the pins: remove them first.
      if (engine.state) result.uplinks = detachAllUplinks(engine.state);
    } finally {
      engine.state?.close();
    }
  }
  removeOwnPins(layout, result);
  const routes = removePrefixRoutes(layout);
  if (routes.removed.length || routes.warnings.length) result.routes = routes;
  return result;
}

/**
 * The engine in the dir, as far as down needs it: undefined when there is
 * nothing of an engine left to talk to (maps gone: only pins to remove);
 * refuses a dir whose marker says it is not ours, or not of a layout this
 * l3iso understands (version 1, the previous one, is still taken down).
 */
function openForDown(
  layout: PinLayout,
): { state: EngineState | undefined; rootId: bigint | undefined } | undefined {
  const foreign = foreignEntries(layout);
  const entries = fs.readdirSync(layout.root);
  // An empty dir is a down killed before its last step (the rmdir): finish it.
  if (entries.length === 0) return undefined;
  const ours = entries.filter(isOwnTopEntry);
  if (ours.length === 0) {
    throw new L3isoError(
      'EPIN_DIR',
      `pin dir ${layout.root} holds no l3iso engine${foreign.length ? ` (only ${foreign.join(', ')})` : ''}; nothing was removed`,
    );
  }
  if (!fs.existsSync(layout.map('l3_config'))) return undefined;
  const legacy = legacyVersion(layout);
  if (legacy !== undefined) return { state: undefined, rootId: undefined };
  let state: EngineState;
  try {
    state = EngineState.open(layout.root, { incomplete: true });
  } catch (err) {
    if (err instanceof L3isoError && err.code === 'EPIN_PARTIAL') return undefined;
    throw err;
  }
  try {
    const config = state.marker(true);
    const complete = missingMaps(layout).length === 0;
    if (!complete) {
      state.close();
      return { state: undefined, rootId: config?.rootCgroup };
    }
    return { state, rootId: config?.rootCgroup };
  } catch (err) {
    state.close();
    throw err;
  }
}

/** The layout version of an engine an older l3iso brought up (1: l3_config
 * of its size; 2: this l3_config with an older version and l3iso's
 * marker), which `down` takes down without reading its other maps. */
function legacyVersion(layout: PinLayout): number | undefined {
  const map = BpfMap.openPinned(layout.map('l3_config'));
  try {
    if (map.type !== MapType.ARRAY) return undefined;
    const raw = map.lookup(Buffer.alloc(4));
    if (!raw) return undefined;
    if (map.valueSize === L3_CONFIG_V1_SIZE) return raw.readUInt32LE(12) === 1 ? 1 : undefined;
    if (map.valueSize !== LAYOUT.l3_config.size) return undefined;
    const config = decodeConfig(raw);
    const older = config.magic === L3_CONFIG_MAGIC && config.version < L3_LAYOUT_VERSION;
    return older && config.version > 1 ? config.version : undefined;
  } finally {
    map.close();
  }
}

function liveCellNames(state: EngineState): string[] {
  const cells = [...state.cells().keys()];
  if (cells.length === 0) return [];
  let names = new Map<bigint, string>();
  try {
    const root = state.config().cgroupRoot;
    names = new Map([...cgroupPathsById(root)].map(([id, p]) => [id, relativeCellName(p, root)]));
  } catch {
    /* names are a courtesy */
  }
  return cells.map((id) => names.get(id) ?? `#${id}`).sort();
}

/** Entries of the dir l3iso would not have created. */
function foreignEntries(layout: PinLayout): string[] {
  if (!fs.existsSync(layout.root)) return [];
  const out = fs.readdirSync(layout.root).filter((e) => !isOwnTopEntry(e));
  if (fs.existsSync(layout.mapsDir) && fs.statSync(layout.mapsDir).isDirectory()) {
    for (const e of fs.readdirSync(layout.mapsDir)) {
      if (!(SHARED_MAPS as readonly string[]).includes(e) && !TEMP_NAME.test(e))
        out.push(`maps/${e}`);
    }
  }
  return out;
}

function removeOwnPins(layout: PinLayout, result: DownResult): void {
  unpinRevoker(layout);
  if (fs.existsSync(layout.linksDir)) {
    for (const entry of fs.readdirSync(layout.linksDir)) {
      fs.rmSync(path.join(layout.linksDir, entry), { recursive: true, force: true });
      if (!TEMP_NAME.test(entry)) result.links++;
    }
    fs.rmdirSync(layout.linksDir);
  }
  if (fs.existsSync(layout.mapsDir)) {
    for (const entry of fs.readdirSync(layout.mapsDir)) {
      const own = (SHARED_MAPS as readonly string[]).includes(entry) || TEMP_NAME.test(entry);
      if (!own) {
        result.left.push(`maps/${entry}`);
        continue;
      }
      fs.rmSync(path.join(layout.mapsDir, entry), { force: true });
      if (!TEMP_NAME.test(entry)) result.maps++;
    }
    if (fs.readdirSync(layout.mapsDir).length === 0) fs.rmdirSync(layout.mapsDir);
  }
  for (const entry of fs.readdirSync(layout.root)) {
    if (TEMP_NAME.test(entry)) fs.rmSync(path.join(layout.root, entry), { force: true });
    else if (!isOwnTopEntry(entry)) result.left.push(entry);
  }
  if (fs.readdirSync(layout.root).length === 0) fs.rmdirSync(layout.root);
}
