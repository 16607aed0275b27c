/**
 * `up` and `down`: load the programs, pin maps and links, and take them
 * away again. `up` on a live engine keeps every map (so every assignment)
 * and swaps each program in place through bpf_link_update, which is atomic:
 * there is no instant at which a cell runs unconfined.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AttachType, BpfLink, type BpfProgram } from '../../loader';
import { L3isoError } from '../errors';
import { L3_LAYOUT_VERSION } from '../maps/layout';
import { cgroupId, cgroupLevel, findCgroup2Mount } from '../model/cgroup';
import { requireFeatures } from './features';
import { withLock } from './lock';
import { pinLayout, type PinLayout } from './paths';
import { requireRoot } from './privilege';
import { ALL_PROGRAMS, ATTACHED_OBJECTS, DEFAULT_MAX_CELLS } from './programs';
import { parsePrefixes, setManagedPrefixes } from './prefixes';
import { loadWithPinnedMaps } from './objects';
import { pinRevoker, unpinRevoker } from './revoke';
import { EngineState } from './state';
import { detachAllUplinks } from './uplink';

export interface UpOptions {
  pinDir: string;
  cgroupRoot: string;
  maxCells?: number;
  /** network namespace for sk_lookup (default: the caller's) */
  netns?: string;
  /** prefixes whose addresses belong to cells; undefined keeps the current set */
  managedPrefixes?: string[];
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
}

export function up(opts: UpOptions): UpResult {
  requireRoot('up');
  const progress = opts.onProgress ?? (() => {});
  const maxCells = opts.maxCells ?? DEFAULT_MAX_CELLS;
  if (!Number.isInteger(maxCells) || maxCells < 1 || maxCells > 16_000_000) {
    throw new L3isoError(
      'EUSAGE',
      `--max-cells must be an integer between 1 and 16000000, not ${maxCells}`,
    );
  }
  const mount = findCgroup2Mount();
  const root = resolveCgroupRoot(opts.cgroupRoot, mount);
  const layout = pinLayout(opts.pinDir);
  const managed = opts.managedPrefixes ? parsePrefixes(opts.managedPrefixes) : undefined;
  progress('checking kernel features');
  requireFeatures(layout.root);

  return withLock(layout, () => {
    const previous = existingRoot(layout);
    if (previous !== undefined && previous !== root) {
      throw new L3isoError(
        'EALREADY_UP',
        `engine in ${layout.root} is up for cgroup root ${previous}, not ${root}`,
        'run `l3iso down` first, or use another --pin-dir',
      );
    }
    const undo: (() => void)[] = [];
    try {
      const result = bringUp(
        layout,
        root,
        mount,
        opts.netns ?? '/proc/self/ns/net',
        maxCells,
        previous === undefined,
        undo,
        progress,
      );
      if (managed) {
        const state = EngineState.open(layout.root);
        try {
          setManagedPrefixes(state, managed);
        } finally {
          state.close();
        }
      }
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
  });
}

function bringUp(
  layout: PinLayout,
  root: string,
  mount: string,
  netnsPath: string,
  maxCells: number,
  fresh: boolean,
  undo: (() => void)[],
  progress: (step: string) => void,
): UpResult {
  for (const dir of [layout.root, layout.mapsDir, layout.linksDir]) {
    if (!fs.existsSync(dir)) {
      fs.mkdirSync(dir);
      undo.push(() => fs.rmdirSync(dir));
    }
  }
  const result: UpResult = {
    pinDir: layout.root,
    cgroupRoot: root,
    netns: netnsPath,
    rootCgroupId: cgroupId(root).toString(),
    fresh,
    maps: [],
    programs: [],
  };
  const targets = openTargets(root, netnsPath);
  try {
    for (const [i, spec] of ATTACHED_OBJECTS.entries()) {
      progress(`loading ${spec.file}`);
      const obj = loadWithPinnedMaps(spec.file, layout, { maxCells, result, undo });
      try {
        if (i === 0) writeConfig(layout, root, mount);
        for (const p of spec.programs) {
          const targetFd = p.target === 'cgroup' ? targets.cgroup : targets.netns;
          result.programs.push(
            attachOrReplace(layout, obj.program(p.program), p.program, p.attach, targetFd, undo),
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
  if (fresh) undo.push(() => unpinRevoker(layout));
  return result;
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

// Before any link: sock_create reads the root level from it.
function writeConfig(layout: PinLayout, root: string, mount: string): void {
  const state = EngineState.open(layout.root);
  try {
    state.writeConfig({
      rootCgroup: cgroupId(root),
      rootLevel: cgroupLevel(root, mount),
      version: L3_LAYOUT_VERSION,
      cgroupRoot: root,
    });
    state.ensureStats(0n);
  } finally {
    state.close();
  }
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
    link.pin(pinned);
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
    if (!known.has(entry)) fs.unlinkSync(path.join(layout.linksDir, entry));
  }
}

function existingRoot(layout: PinLayout): string | undefined {
  if (!EngineState.isUp(layout.root)) return undefined;
  const state = EngineState.open(layout.root);
  try {
    return state.config().cgroupRoot;
  } catch {
    return undefined;
  } finally {
    state.close();
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
}

/** Detaches (unpinning a link whose only reference is the pin detaches it)
 * and forgets every map of the instance. */
export function down(pinDir: string): DownResult {
  requireRoot('down');
  const layout = pinLayout(pinDir);
  if (!fs.existsSync(layout.root)) {
    throw new L3isoError('ENOT_UP', `engine is not up in ${layout.root}`);
  }
  const result = withLock(layout, () => {
    const result: DownResult = { pinDir: layout.root, links: 0, maps: 0, uplinks: 0 };
    // Netlink attachments do not go away with the pins: remove them first.
    if (EngineState.isUp(layout.root)) {
      const state = EngineState.open(layout.root);
      try {
        result.uplinks = detachAllUplinks(state);
      } finally {
        state.close();
      }
    }
    unpinRevoker(layout);
    for (const [dir, key] of [
      [layout.linksDir, 'links'],
      [layout.mapsDir, 'maps'],
    ] as const) {
      if (!fs.existsSync(dir)) continue;
      for (const entry of fs.readdirSync(dir)) {
        fs.unlinkSync(path.join(dir, entry));
        result[key]++;
      }
      fs.rmdirSync(dir);
    }
    fs.rmdirSync(layout.root);
    return result;
  });
  // After the lock is released: a writer waiting on it finds ENOT_UP.
  fs.rmSync(layout.lockFile, { force: true });
  return result;
}
