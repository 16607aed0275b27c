import {
  existsSync,
  readFileSync,
  readdirSync,
  realpathSync,
  rmdirSync,
  statSync,
  statfsSync,
  writeFileSync,
} from 'node:fs';
import * as path from 'node:path';
import { L3isoError } from '../errors';
import { L3_MAX_DEPTH } from '../codecs/layout';
import { sleepSync } from '../sleep';

/** statfs f_type of a cgroup v2 filesystem (linux/magic.h). */
export const CGROUP2_SUPER_MAGIC = 0x63677270;

function errnoOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

/** /proc/mounts escapes space, tab, newline and backslash as \ooo octal. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * The cgroup2 mount point: /sys/fs/cgroup on unified hosts, often
 * /sys/fs/cgroup/unified on hybrid ones, so it is looked up, never assumed.
 */
export function findCgroup2Mount(mountsText?: string): string {
  if (mountsText !== undefined) return cgroup2MountIn(mountsText);
  // Remembered for the process (the agent resolves a cgroup per request),
  // and still a cgroup2 filesystem each time it is handed out.
  if (knownMount !== undefined && isCgroup2(knownMount)) return knownMount;
  knownMount = cgroup2MountIn(readFileSync('/proc/mounts', 'utf8'));
  return knownMount;
}

let knownMount: string | undefined;

function isCgroup2(dir: string): boolean {
  try {
    return statfsSync(dir).type === CGROUP2_SUPER_MAGIC;
  } catch {
    return false;
  }
}

function cgroup2MountIn(mountsText: string): string {
  for (const line of mountsText.split('\n')) {
    const fields = line.trim().split(/\s+/);
    const mountPoint = fields[1];
    if (fields[2] === 'cgroup2' && mountPoint !== undefined) return unescapeMountField(mountPoint);
  }
  throw new L3isoError(
    'ECGROUP_NOT_V2',
    'no cgroup2 filesystem is mounted',
    'mount one with `mount -t cgroup2 none /sys/fs/cgroup/unified` (hybrid hosts) or boot with systemd.unified_cgroup_hierarchy=1',
  );
}

/**
 * The kernel's cgroup id, as bpf_get_current_cgroup_id() and
 * bpf_skb_cgroup_id() report it: on cgroup2 (64-bit kernels) that is the
 * kernfs inode number of the cgroup's directory.
 */
export function cgroupId(cgroupPath: string): bigint {
  let st;
  try {
    st = statSync(cgroupPath, { bigint: true });
  } catch (err) {
    throw new L3isoError('ECGROUP_MISSING', `cgroup ${cgroupPath} does not exist`, undefined, {
      cause: err,
    });
  }
  if (!st.isDirectory()) {
    throw new L3isoError('ECGROUP_MISSING', `cgroup ${cgroupPath} is not a directory`);
  }
  // Inode numbers of any other filesystem would look like valid ids but
  // name nothing the kernel hooks ever see.
  const fsType = statfsSync(cgroupPath, { bigint: true }).type;
  if (fsType !== BigInt(CGROUP2_SUPER_MAGIC)) {
    throw new L3isoError(
      'ECGROUP_NOT_V2',
      `${cgroupPath} is not on a cgroup2 filesystem (statfs type 0x${fsType.toString(16)})`,
      'cgroup v1 hierarchies cannot carry cgroup BPF programs; use a path under the cgroup2 mount',
    );
  }
  return st.ino;
}

/** `child` relative to `parent` ('' for the same path), or undefined when
 * it is not below it. Compares whole components: "..x" is a valid name. */
function relativeInside(parent: string, child: string): string | undefined {
  const rel = path.relative(path.resolve(parent), path.resolve(child));
  if (rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) return undefined;
  return rel;
}

function isWithin(child: string, parent: string): boolean {
  return relativeInside(parent, child) !== undefined;
}

/** Depth of a cgroup below the cgroup2 mount (the mount itself is 0). */
export function cgroupLevel(cgroupPath: string, mount: string): number {
  const rel = relativeInside(mount, cgroupPath);
  if (rel === '') return 0;
  if (rel === undefined) {
    throw new L3isoError('ECGROUP_NOT_V2', `${cgroupPath} is not below the cgroup2 mount ${mount}`);
  }
  return rel.split(path.sep).length;
}

function realpathOrMissing(p: string, what: string): string {
  try {
    return realpathSync.native(p);
  } catch (err) {
    const code = errnoOf(err);
    throw new L3isoError(
      'ECGROUP_MISSING',
      code === 'ENOENT'
        ? `${what} ${p} does not exist`
        : `${what} ${p} cannot be resolved (${code ?? String(err)})`,
      code === 'ENOENT' ? `create it with mkdir ${p}` : undefined,
      { cause: err },
    );
  }
}

/**
 * Canonical absolute path of the cell cgroup named by `arg`: absolute, or
 * relative to the managed root. Containment is judged on the realpath, so
 * neither `..` nor a symlink can reach outside the root: programs attached
 * at the root only ever see cgroups below it.
 */
export function resolveCellPath(arg: string, root: string, mount: string): string {
  if (arg.length === 0) throw new L3isoError('EUSAGE', 'empty cell cgroup path');
  if (arg.includes('\0')) throw new L3isoError('EUSAGE', 'cell cgroup path contains a NUL byte');

  const realMount = realpathOrMissing(mount, 'cgroup2 mount');
  const realRoot = realpathOrMissing(root, 'cgroup root');
  if (!isWithin(realRoot, realMount)) {
    throw new L3isoError(
      'ECGROUP_NOT_V2',
      `cgroup root ${root} is not on the cgroup2 mount ${mount}`,
    );
  }

  const lexical = path.resolve(path.resolve(root), arg);
  const outside = (detail: string): L3isoError =>
    new L3isoError(
      'ECGROUP_OUTSIDE_ROOT',
      `cgroup ${detail} is outside the managed root ${realRoot}`,
      'cells must be cgroups below the root the engine was brought up with',
    );

  let real: string;
  try {
    real = realpathOrMissing(lexical, 'cgroup');
  } catch (err) {
    // Say "outside" rather than "missing" when the name could never be valid.
    if (!isWithin(lexical, path.resolve(root)) && !isWithin(lexical, realRoot))
      throw outside(lexical);
    throw err;
  }
  if (!isWithin(real, realRoot))
    throw outside(real === lexical ? real : `${lexical} (resolving to ${real})`);
  if (real === realRoot) {
    throw new L3isoError(
      'EUSAGE',
      `the managed root ${realRoot} cannot itself be a cell`,
      'create a child cgroup below it and name that one',
    );
  }
  if (!statSync(real).isDirectory()) {
    throw new L3isoError('ECGROUP_MISSING', `cgroup ${real} is not a directory`);
  }
  return real;
}

/**
 * A socket's origin records L3_MAX_DEPTH cgroups from the managed root down
 * (the root itself first), so a cell deeper than L3_MAX_DEPTH - 1 levels
 * below the root would be invisible to every hook: refuse it. `cellPath` is
 * a path resolveCellPath returned.
 */
export function assertRecordableDepth(cellPath: string, root: string): void {
  const rel = relativeInside(realpathSync.native(root), cellPath);
  const depth = rel ? rel.split(path.sep).length : 0;
  if (depth >= L3_MAX_DEPTH) {
    throw new L3isoError(
      'ECGROUP_TOO_DEEP',
      `cgroup ${cellPath} is ${depth} levels below the managed root; cells may be at most ${L3_MAX_DEPTH - 1} levels deep`,
      'assign a cgroup nearer the root (its descendants stay in the cell)',
    );
  }
}

/** Short name for display: relative to the root, or the path as given when
 * it lies outside (display must not throw on stale map entries). */
export function relativeCellName(cgroupPath: string, root: string): string {
  const rel = relativeInside(root, cgroupPath);
  if (rel === '') return '.';
  if (rel === undefined) return cgroupPath;
  return rel.split(path.sep).join('/');
}

/**
 * Finds the cgroup directory whose id is `id`, below (or at) `root`. The
 * kernel offers no id-to-path lookup to userspace short of
 * open_by_handle_at, so the tree is walked; cgroups removed during the walk
 * are skipped rather than reported.
 */
export function findCgroupById(root: string, id: bigint): string | undefined {
  const queue: string[] = [path.resolve(root)];
  for (let dir = queue.shift(); dir !== undefined; dir = queue.shift()) {
    try {
      if (statSync(dir, { bigint: true }).ino === id) return dir;
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        if (entry.isDirectory()) queue.push(path.join(dir, entry.name));
      }
    } catch (err) {
      const code = errnoOf(err);
      if (code !== 'ENOENT' && code !== 'ENOTDIR' && code !== 'EACCES') throw err;
    }
  }
  return undefined;
}

/** PIDs of the processes directly in this cgroup (not its descendants). */
export function cgroupProcs(cgroupPath: string): number[] {
  let text: string;
  try {
    text = readFileSync(path.join(cgroupPath, 'cgroup.procs'), 'utf8');
  } catch (err) {
    throw new L3isoError(
      'ECGROUP_MISSING',
      `cannot read ${path.join(cgroupPath, 'cgroup.procs')}: ${errnoOf(err) ?? String(err)}`,
      undefined,
      { cause: err },
    );
  }
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => Number.parseInt(l, 10))
    .filter((n) => Number.isSafeInteger(n) && n > 0);
}

/** cgroup id -> path for every cgroup at or below root, in one walk. */
export function cgroupPathsById(root: string): Map<bigint, string> {
  const out = new Map<bigint, string>();
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    try {
      out.set(statSync(dir, { bigint: true }).ino, dir);
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.isDirectory()) stack.push(path.join(dir, e.name));
      }
    } catch {
      /* removed while walking */
    }
  }
  return out;
}

/** The kernel says the subtree holds no process (cgroup.events
 * "populated 0"); false when it holds some or cgroup.events cannot be read. */
export function unpopulated(dir: string): boolean {
  try {
    return /^populated 0$/m.test(readFileSync(path.join(dir, 'cgroup.events'), 'utf8'));
  } catch {
    return false;
  }
}

/** The subtree still holds processes (cgroup.events "populated 1"). */
function populated(dir: string): boolean {
  try {
    return /populated 1/.test(readFileSync(path.join(dir, 'cgroup.events'), 'utf8'));
  } catch {
    return false;
  }
}

/**
 * Kills every process below `dir` (cgroup.kill, Linux 5.14+; pid by pid
 * before that) and waits until the subtree is empty, at most `timeoutMs`.
 */
export function killCgroupTree(dir: string, timeoutMs = 5000): void {
  if (!existsSync(dir)) return;
  try {
    writeFileSync(path.join(dir, 'cgroup.kill'), '1');
  } catch {
    for (const d of cgroupPathsById(dir).values()) {
      for (const pid of safeProcs(d)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* exited meanwhile */
        }
      }
    }
  }
  const deadline = Date.now() + timeoutMs;
  while (populated(dir) && Date.now() < deadline) sleepSync(10);
}

/**
 * killCgroupTree, then removes the cgroups deepest first (rmdir needs empty
 * children). A missing dir is fine; a cgroup that will not go within
 * `timeoutMs` is an error.
 */
export function removeCgroupTree(dir: string, timeoutMs = 5000): void {
  if (!existsSync(dir)) return;
  const deadline = Date.now() + timeoutMs;
  killCgroupTree(dir, timeoutMs);
  const dirs = [...cgroupPathsById(dir).values()].sort((a, b) => b.length - a.length);
  for (const d of dirs) {
    for (;;) {
      try {
        rmdirSync(d);
        break;
      } catch (err) {
        const code = errnoOf(err);
        if (code === 'ENOENT') break;
        if (Date.now() >= deadline) throw err;
        sleepSync(10);
      }
    }
  }
}

function safeProcs(dir: string): number[] {
  try {
    return cgroupProcs(dir);
  } catch {
    return [];
  }
}
