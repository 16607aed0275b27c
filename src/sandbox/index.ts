/**
 * The hermetic world the demo, the benchmarks and the integration tests run
 * the engine in: its own network namespace (so no packet reaches a real
 * NIC), its own cgroup subtree under the cgroup2 mount (so no hook lands on
 * the host's cgroups) and its own bpffs pin directory (so no other
 * instance's state is touched). `destroy()` removes all of it whatever
 * state it is in, and `sweepStale()` removes what a crashed run left.
 *
 * Every name is `<prefix>-<creator pid>-<random>` (extras append to it), so
 * a leftover is recognisable as stale once its creator pid is gone, and two
 * sandboxes never collide.
 *
 * This module depends only on the model: the front ends that drive an
 * engine inside a sandbox (the demo's CLI runner, the test harness) wrap it.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findCgroup2Mount, removeCgroupTree } from '../model/cgroup';
import { pidAlive } from '../model/process';

export const BPFFS = '/sys/fs/bpf';
export const NETNS_DIR = '/run/netns';

export interface SandboxSpec {
  /** Name prefix, one per kind of user (e.g. `l3t` for the tests). */
  prefix: string;
  /** Addresses (/32, or /128 without DAD) put on the address device. */
  addresses?: readonly string[];
  /**
   * Put the addresses on one end of a veth pair whose both ends stay in the
   * namespace, instead of on lo: a non-loopback device for tests that need
   * one (no dummy driver on the test machines).
   */
  veth?: { name: string; peer: string };
  /** `key=value` sysctls set inside the namespace. */
  sysctls?: readonly string[];
}

export interface Sandbox {
  /** `<prefix>-<pid>-<random>`: the netns name and the basename of the cgroup root and pin dir. */
  readonly name: string;
  readonly netns: string;
  readonly netnsPath: string;
  /** The cgroup2 mount point. */
  readonly cgroup2: string;
  /** The sandbox's cgroup subtree, `<cgroup2>/<name>`. */
  readonly cgroupRoot: string;
  /** An empty directory on bpffs, `/sys/fs/bpf/<name>`. */
  readonly pinDir: string;
  /**
   * argv running a command inside the netns (not in any cell). nsenter, not
   * `ip netns exec`: the latter remounts /sys and would hide the cgroup2 and
   * bpffs mounts from the command.
   */
  inNetns(argv: readonly string[]): string[];
  /** A cgroup `<cgroup2>/<name>-<suffix>` outside the subtree, removed with the sandbox. */
  extraCgroup(suffix: string): string;
  /** A directory `/sys/fs/bpf/<name>-<suffix>`, removed with the sandbox. */
  extraPinDir(suffix: string): string;
  /**
   * Removes the cgroups (killing what runs in them), the pin dirs and the
   * netns. Every step is tried even when an earlier one fails; then it
   * throws one error naming what is left (a later call tries again). Once
   * it has succeeded, calling it again is a no-op.
   */
  destroy(): void;
}

/**
 * What follows `<prefix>-` in every name a sandbox makes; a bare
 * `<prefix>-<pid>` is what the demo and bench named theirs before.
 */
const AFTER_PREFIX = /^(\d+)(?:$|-[0-9a-f]{6}(?:-|$))/;

/** Whether `name` was made by a sandbox of `prefix` whose creator process is gone. */
export function isStale(name: string, prefix: string): boolean {
  if (!name.startsWith(`${prefix}-`)) return false;
  const m = AFTER_PREFIX.exec(name.slice(prefix.length + 1));
  return !!m && !pidAlive(Number(m[1]));
}

function ip(args: readonly string[], input?: string): void {
  const r = spawnSync('ip', args, { input, encoding: 'utf8', timeout: 20_000 });
  if (r.status !== 0) {
    const why = (r.stderr || String(r.error ?? `exit ${r.status}`)).trim();
    throw new Error(`ip ${args.join(' ')} failed: ${why}`);
  }
}

function listDir(dir: string): string[] {
  return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
}

/**
 * Removes the leftovers (pin dirs, cgroups, netns) of `prefix` sandboxes
 * whose creator died without cleaning up. Never touches a live sandbox.
 */
export function sweepStale(prefix: string): void {
  const cgroup2 = findCgroup2Mount();
  const stale = (n: string): boolean => isStale(n, prefix);
  for (const n of listDir(BPFFS).filter(stale)) removeDir(path.join(BPFFS, n));
  for (const n of listDir(cgroup2).filter(stale)) removeCgroupTree(path.join(cgroup2, n));
  for (const n of listDir(NETNS_DIR).filter(stale)) removeNetns(n);
}

function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

function removeNetns(name: string): void {
  if (fs.existsSync(path.join(NETNS_DIR, name))) ip(['netns', 'del', name]);
}

/** The `ip -batch` lines that bring the namespace's devices and addresses up. */
function linkBatch(spec: SandboxSpec): string {
  const dev = spec.veth?.name ?? 'lo';
  const lines = ['link set lo up'];
  if (spec.veth) {
    lines.push(
      `link add ${spec.veth.name} type veth peer name ${spec.veth.peer}`,
      `link set ${spec.veth.name} up`,
      `link set ${spec.veth.peer} up`,
    );
  }
  for (const a of spec.addresses ?? []) {
    lines.push(
      a.includes(':') ? `address add ${a}/128 dev ${dev} nodad` : `address add ${a}/32 dev ${dev}`,
    );
  }
  return lines.join('\n') + '\n';
}

function populate(sb: Sandbox, spec: SandboxSpec): void {
  ip(['netns', 'add', sb.netns]);
  ip(['-n', sb.netns, '-batch', '-'], linkBatch(spec));
  if (spec.sysctls?.length) {
    const [cmd, ...args] = sb.inNetns(['sysctl', '-q', '-w', ...spec.sysctls]);
    const r = spawnSync(cmd!, args, { encoding: 'utf8', timeout: 20_000 });
    if (r.status !== 0) throw new Error(`sysctl in ${sb.netns} failed: ${r.stderr.trim()}`);
  }
  fs.mkdirSync(sb.cgroupRoot);
  fs.mkdirSync(sb.pinDir);
}

/** Runs every step, then throws one error listing those that failed. */
function removeAll(name: string, steps: ReadonlyArray<readonly [string, () => void]>): void {
  const failed: string[] = [];
  for (const [what, step] of steps) {
    try {
      step();
    } catch (err) {
      failed.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (failed.length) throw new Error(`sandbox ${name} not fully removed: ${failed.join('; ')}`);
}

/**
 * Creates a sandbox (after sweeping stale ones of the same prefix). If any
 * step fails, what was made is removed before the error is thrown.
 */
export function createSandbox(spec: SandboxSpec): Sandbox {
  sweepStale(spec.prefix);
  const name = `${spec.prefix}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const cgroup2 = findCgroup2Mount();
  const netnsPath = path.join(NETNS_DIR, name);
  const cgroups = [path.join(cgroup2, name)];
  const pinDirs = [path.join(BPFFS, name)];
  let destroyed = false;

  const sb: Sandbox = {
    name,
    netns: name,
    netnsPath,
    cgroup2,
    cgroupRoot: cgroups[0]!,
    pinDir: pinDirs[0]!,
    inNetns: (argv) => ['nsenter', `--net=${netnsPath}`, '--', ...argv],
    extraCgroup(suffix) {
      const p = path.join(cgroup2, `${name}-${suffix}`);
      fs.mkdirSync(p, { recursive: true });
      if (!cgroups.includes(p)) cgroups.push(p);
      return p;
    },
    extraPinDir(suffix) {
      const p = path.join(BPFFS, `${name}-${suffix}`);
      fs.mkdirSync(p, { recursive: true });
      if (!pinDirs.includes(p)) pinDirs.push(p);
      return p;
    },
    destroy() {
      if (destroyed) return;
      removeAll(name, [
        ...cgroups.map((c) => [c, () => removeCgroupTree(c)] as const),
        ...pinDirs.map((p) => [p, () => removeDir(p)] as const),
        [netnsPath, () => removeNetns(name)],
      ]);
      destroyed = true;
    },
  };

  try {
    populate(sb, spec);
  } catch (err) {
    try {
      sb.destroy();
    } catch (cleanup) {
      // Both matter: why creation failed, and what is left of it.
      throw new AggregateError([err, cleanup], `${String(err)}; ${String(cleanup)}`, {
        cause: cleanup,
      });
    }
    throw err;
  }
  return sb;
}
