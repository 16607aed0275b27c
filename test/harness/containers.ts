/**
 * Container runtimes in a sandbox: a rootfs made of the host's /usr (no
 * image, no pull), OCI bundles for runc, and a podman whose storage, run
 * state and hooks live in a private temp dir. Containers run in the
 * sandbox's netns and below its managed cgroup root; everything is removed
 * by the returned cleanup.
 *
 * A missing runtime is an error, never a skip: the tests must fail loudly on
 * a machine that cannot run them.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { removeCgroupTree } from '../../src/model/cgroup';
import { recordsDir } from '../../src/runtime/records';
import { isStale } from '../../src/sandbox';
import {
  CLI,
  PREFIX,
  V4,
  createSandbox,
  type BgProc,
  type Op,
  type ProbeLine,
  type ProbeResult,
  type Sandbox,
} from './sandbox';

/** The interpreter inside the container: the distribution's, under /usr. */
export const CONTAINER_PYTHON = '/usr/bin/python3';
export const CONTAINER_PROBE = '/probe/probe.py';

export function requireTool(argv: string[], why: string): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 20_000 });
  if (r.status !== 0)
    throw new Error(
      `${argv.join(' ')} does not run on this machine (${r.error ? String(r.error) : r.stderr.trim()}): ${why}`,
    );
  return r.stdout.trim();
}

/** A read-only rootfs: /usr bind-mounted from the host, the usual merged-/usr symlinks. */
export function makeRootfs(dir: string): string {
  if (!fs.existsSync(CONTAINER_PYTHON))
    throw new Error(`${CONTAINER_PYTHON} is missing: install the Debian python3 package`);
  const rootfs = path.join(dir, 'rootfs');
  for (const d of ['usr', 'proc', 'dev', 'sys', 'tmp', 'etc', 'probe', 'run'])
    fs.mkdirSync(path.join(rootfs, d), { recursive: true });
  for (const l of ['bin', 'lib', 'lib64', 'sbin']) {
    if (fs.existsSync(path.join('/usr', l))) fs.symlinkSync(`usr/${l}`, path.join(rootfs, l));
  }
  return rootfs;
}

/** Bind mounts every container needs: the host's /usr and the probe. */
export function hostMounts(): { source: string; destination: string }[] {
  return [
    { source: '/usr', destination: '/usr' },
    { source: path.join(__dirname), destination: '/probe' },
  ];
}

export interface BundleOptions {
  name: string;
  args: string[];
  annotations?: Record<string, string>;
  /** cgroup path relative to the sandbox root */
  cgroup: string;
  /** hook stages in config.json (default both) */
  stages?: ('createRuntime' | 'poststop')[];
  /** the hooks' environment (runc gives a hook none of its own) */
  hookEnv?: string[];
}

/** An OCI bundle for runc whose hooks run this checkout's CLI on the sandbox's pin dir. */
export function makeBundle(sb: Sandbox, dir: string, rootfs: string, o: BundleOptions): string {
  const bundle = path.join(dir, `bundle-${o.name}`);
  fs.mkdirSync(bundle, { recursive: true });
  const r = spawnSync('runc', ['spec', '--bundle', bundle], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`runc spec failed: ${r.stderr}`);
  const file = path.join(bundle, 'config.json');
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const spec: any = JSON.parse(fs.readFileSync(file, 'utf8'));
  const hook = (stage: string) => ({
    path: process.execPath,
    args: [process.execPath, CLI, '--pin-dir', sb.pinDir, 'oci-hook', stage],
    ...(o.hookEnv ? { env: o.hookEnv } : {}),
  });
  spec.root = { path: rootfs, readonly: true };
  spec.process.terminal = false;
  spec.process.args = o.args;
  spec.mounts.push(...hostMounts().map((m) => ({ ...m, type: 'bind', options: ['rbind', 'ro'] })));
  spec.linux.namespaces = spec.linux.namespaces.map((n: { type: string }) =>
    n.type === 'network' ? { type: 'network', path: sb.nsPath } : n,
  );
  spec.linux.cgroupsPath = '/' + path.relative(sb.cgroup2, path.join(sb.root, o.cgroup));
  spec.hooks = Object.fromEntries(
    (o.stages ?? ['createRuntime', 'poststop']).map((stage) => [stage, [hook(stage)]]),
  );
  spec.annotations = o.annotations ?? {};
  fs.writeFileSync(file, JSON.stringify(spec, null, 2));
  return bundle;
}

/** cgroup v1 hierarchies (hybrid hosts): runc creates the container's path in each. */
function v1Mounts(): string[] {
  return fs
    .readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f[2] === 'cgroup')
    .map((f) => f[1]!);
}

/** Removes what a runtime made for the sandbox in the v1 hierarchies. */
export function removeV1Cgroups(sb: Sandbox): void {
  for (const m of v1Mounts()) removeCgroupTree(path.join(m, sb.id));
}

export function tempDir(sb: Sandbox): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `${sb.id}-`));
}

/** Leftovers of crashed runs (creator pid in the name is gone): v1 cgroups, temp dirs. */
export function sweepStaleContainers(): void {
  const stale = (name: string): boolean => isStale(name, PREFIX);
  for (const m of v1Mounts()) {
    for (const n of fs.readdirSync(m)) if (stale(n)) removeCgroupTree(path.join(m, n));
  }
  for (const n of fs.readdirSync(os.tmpdir())) {
    if (stale(n)) removeTempDir(path.join(os.tmpdir(), n));
  }
}

/** Unmounts whatever a runtime left mounted below dir (podman's shm), then removes it. */
export function removeTempDir(dir: string): void {
  const below = fs
    .readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1]?.replace(/\\040/g, ' '))
    .filter((m): m is string => !!m && m.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length);
  for (const m of below) spawnSync('umount', ['-l', m]);
  fs.rmSync(dir, { recursive: true, force: true });
}

export interface RuntimeWorld {
  sb: Sandbox;
  /** the test's temp dir (bundles, runtime state) */
  dir: string;
  rootfs: string;
}

/**
 * A sandbox that is up, a temp dir and a rootfs, once each tool runs
 * (argv and the hint that says how to install it).
 */
export async function runtimeWorld(tools: [string[], string][]): Promise<RuntimeWorld> {
  for (const [argv, why] of tools) requireTool(argv, why);
  sweepStaleContainers();
  const sb = await createSandbox();
  let dir: string | undefined;
  try {
    await sb.up();
    dir = tempDir(sb);
    return { sb, dir, rootfs: makeRootfs(dir) };
  } catch (err) {
    await removeRuntimeWorld({ sb, ...(dir ? { dir } : {}) });
    throw err;
  }
}

/** Undoes runtimeWorld (what of it was made), with the OCI records the hook wrote. */
export async function removeRuntimeWorld(w: Partial<RuntimeWorld>): Promise<void> {
  const records = w.sb ? recordsDir(w.sb.pinDir) : undefined;
  await w.sb?.destroy();
  if (records) fs.rmSync(records, { recursive: true, force: true });
  if (w.sb) removeV1Cgroups(w.sb);
  if (w.dir) removeTempDir(w.dir);
}

/** Result indexes of confinementProbe's steps. */
export interface ConfinementSteps {
  cgroup: number;
  /** bind of an address the container was not given: refused */
  foreignBind: number;
  /** connect to its own 127.0.0.1:7002 listener: its loopback is its own */
  ownLoopback: number;
  /** bind 0.0.0.0:8080: gets the container's address */
  wildcardBind: number;
}

/**
 * What a confined container's probe tries; `inside` runs after the foreign
 * bind. Its server answers banner once on the wildcard port 8080.
 */
export function confinementProbe(
  banner: string,
  inside: Op[] = [],
): { ops: Op[]; at: ConfinementSteps } {
  const ops: Op[] = [
    { op: 'cgroup' },
    // 192.0.2.9 is on d0, and no cell's
    { op: 'bind_new', fam: 4, addr: V4(9) },
    ...inside,
    { op: 'socket', id: 'l', fam: 4 },
    { op: 'bind', id: 'l', addr: '127.0.0.1', port: 7002 },
    { op: 'listen', id: 'l' },
    { op: 'socket', id: 'c', fam: 4 },
    { op: 'connect', id: 'c', addr: '127.0.0.1', port: 7002 },
    { op: 'socket', fam: 4 },
    { op: 'bind', addr: '0.0.0.0', port: 8080 },
    { op: 'listen' },
    { op: 'serve_banner', banner, count: 1 },
  ];
  const n = inside.length;
  return { ops, at: { cgroup: 0, foreignBind: 1, ownLoopback: 6 + n, wildcardBind: 8 + n } };
}

/** From the host: the container's loopback listener (must be refused) and its server at addr. */
export async function outsideView(sb: Sandbox, addr: string): Promise<ProbeResult> {
  return sb.probe(
    null,
    [
      { op: 'fetch', fam: 4, addr: '127.0.0.1', port: 7002 },
      { op: 'fetch', fam: 4, addr, port: 8080 },
    ],
    { keepGoing: true },
  );
}

/** The ready line of a container's probe whose earlier ops were meant to fail. */
export async function readyDespiteRefusals(c: BgProc, boundMs = 60_000): Promise<ProbeLine> {
  for (let waited = 0; waited < boundMs; waited += 50) {
    const hit = c.lines.find((l) => l.ready === true);
    if (hit) return hit;
    if (c.child.exitCode !== null) break;
    await sleep(50);
  }
  throw new Error(`container never served: ${c.stdout} ${c.stderr}`);
}
