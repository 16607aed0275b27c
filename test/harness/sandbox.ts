/**
 * Integration-test sandbox: the hermetic world of src/sandbox (one network
 * namespace with a veth d0 carrying the test addresses, one managed cgroup
 * subtree and one bpffs pin directory) plus what tests drive in it: the
 * CLI, processes in cells, probe.py. destroy() takes the engine down, kills
 * the processes started here and removes the world (call it from
 * afterAll/afterEach; it is safe to call twice, and throws only when
 * something could not be removed after every removal was tried).
 *
 * Processes that belong to a cell are started as
 *   sh -c 'echo $$ > CG/cgroup.procs && exec nsenter --net=/run/netns/NS -- argv'
 * so the pid is in the cell's cgroup before it creates any socket, and
 * inside the test netns. `ip netns exec` is not used: it remounts /sys and
 * would hide cgroup2 and bpffs from the command.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findCgroup2Mount } from '../../src/model/cgroup';
import * as hermetic from '../../src/sandbox';

export const REPO = path.resolve(__dirname, '..', '..');
export const CLI = path.join(REPO, 'dist', 'src', 'cli', 'main.js');
export const PROBE = path.join(__dirname, 'probe.py');
export const BPFFS = hermetic.BPFFS;
/** Name prefix of every test sandbox (and of what is made for one). */
export const PREFIX = 'l3t';

/** Documentation addresses configured on d0 in every sandbox. */
export const V4 = (n: number): string => `192.0.2.${n}`;
export const V6 = (n: number): string => `2001:db8::${n}`;
export const mapped = (v4: string): string => `::ffff:${v4}`;

let pythonPath: string | undefined;
/** The real python3 binary (not a pyenv shim), resolved once. */
export function python(): string {
  if (!pythonPath) {
    const r = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], {
      encoding: 'utf8',
    });
    pythonPath = r.status === 0 && r.stdout.trim() ? r.stdout.trim() : 'python3';
  }
  return pythonPath;
}

/** The cgroup2 mount point, from /proc/mounts (hybrid mode included). */
export function cgroup2Mount(): string {
  return findCgroup2Mount();
}

export function cliBuilt(): boolean {
  return fs.existsSync(CLI);
}

export interface RunResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface CliResult extends RunResult {
  /** stdout parsed as JSON, or undefined when it is not JSON. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type ProbeLine = Record<string, any>;

export interface ProbeResult extends RunResult {
  /** Every JSON line the probe printed, in order. */
  lines: ProbeLine[];
  /** Per-operation results (lines with an "i"), indexed by operation. */
  ops: ProbeLine[];
  /** The last operation result. */
  last: ProbeLine;
}

export type Op = Record<string, unknown> & { op: string };

export interface RunOpts {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  input?: string;
}

/** Run argv to completion with a hard timeout (SIGKILL). */
export function run(argv: string[], opts: RunOpts = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), {
      env: opts.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      stderr += String(err);
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, timedOut });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

function runSync(argv: string[], timeoutMs = 20_000, input?: string): RunResult {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: timeoutMs, input });
  return {
    status: r.status,
    signal: r.signal,
    stdout: r.stdout ?? '',
    stderr: (r.stderr ?? '') + (r.error ? String(r.error) : ''),
    timedOut: r.error !== undefined && /ETIMEDOUT/.test(String(r.error)),
  };
}

export function mustSync(argv: string[], input?: string): string {
  const r = runSync(argv, 20_000, input);
  if (r.status !== 0) {
    throw new Error(`${argv.join(' ')} failed (${r.status}): ${r.stderr.trim()}`);
  }
  return r.stdout;
}

export function parseJsonLines(text: string): ProbeLine[] {
  const out: ProbeLine[] = [];
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (!t.startsWith('{')) continue;
    try {
      out.push(JSON.parse(t));
    } catch {
      /* not ours */
    }
  }
  return out;
}

function toProbeResult(r: RunResult): ProbeResult {
  const lines = parseJsonLines(r.stdout);
  const ops = lines.filter((l) => typeof l.i === 'number');
  return { ...r, lines, ops, last: ops[ops.length - 1] ?? {} };
}

function parseJson(text: string): unknown {
  const t = text.trim();
  if (!t) return undefined;
  try {
    return JSON.parse(t);
  } catch {
    // Some CLIs print log lines before the document: take the last JSON line.
    const lines = parseJsonLines(t);
    return lines.length ? lines[lines.length - 1] : undefined;
  }
}

/**
 * A background process (a server) whose stdout is read line by line as JSON.
 */
export class BgProc {
  readonly lines: ProbeLine[] = [];
  stdout = '';
  stderr = '';
  exited: Promise<{ status: number | null; signal: NodeJS.Signals | null }>;
  private waiters: Array<() => void> = [];
  private done = false;

  constructor(readonly child: ChildProcess) {
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      this.stdout += d;
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line.startsWith('{')) {
          try {
            this.lines.push(JSON.parse(line));
          } catch {
            /* ignore */
          }
        }
      }
      this.wake();
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    child.stdin?.on('error', () => undefined);
    this.exited = new Promise((resolve) => {
      child.on('close', (status, signal) => {
        this.done = true;
        this.wake();
        resolve({ status, signal });
      });
      child.on('error', (err) => {
        this.stderr += String(err);
        this.done = true;
        this.wake();
        resolve({ status: null, signal: null });
      });
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Wait for a line matching pred; rejects on timeout or exit. */
  async waitFor(pred: (l: ProbeLine) => boolean, timeoutMs = 10_000): Promise<ProbeLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit) return hit;
      const failed = this.lines.find((l) => l.ok === false);
      if (failed) {
        throw new Error(`background probe failed: ${JSON.stringify(failed)} ${this.stderr}`);
      }
      if (this.done) {
        throw new Error(`background process exited: ${this.stdout} ${this.stderr}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`timeout waiting for a line; got ${this.stdout} ${this.stderr}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 250));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Wait for the server's readiness line ({"ready": true, addr, port}). */
  ready(timeoutMs = 10_000): Promise<ProbeLine> {
    return this.waitFor((l) => l.ready === true, timeoutMs);
  }

  /** Events (lines without an operation index), e.g. {"event":"conn"}. */
  events(): ProbeLine[] {
    return this.lines.filter((l) => typeof l.event === 'string');
  }

  async kill(): Promise<void> {
    if (!this.done) {
      try {
        this.child.kill('SIGKILL');
      } catch {
        /* gone */
      }
    }
    await Promise.race([this.exited, new Promise((r) => setTimeout(r, 5000))]);
  }
}

export interface SandboxOptions {
  /** Addresses on d0: host numbers n of 192.0.2.n and 2001:db8::n. */
  hosts?: number[];
}

export interface CliOpts extends RunOpts {
  json?: boolean;
  /** Prefix argv, e.g. ['setpriv', '--reuid=65534', ...]. */
  wrap?: string[];
  /** Override the pin dir (default: the sandbox's). */
  pinDir?: string;
}

export interface Sandbox {
  readonly id: string;
  readonly netns: string;
  readonly nsPath: string;
  readonly cgroup2: string;
  /** The managed cgroup root (<cgroup2>/l3t-...). */
  readonly root: string;
  readonly pinDir: string;
  /** Absolute path of rel under the root, created (mkdir -p). */
  cg(rel: string): string;
  /** An extra cgroup outside the managed root (removed by destroy). */
  outsideCg(name: string): string;
  /** A fresh empty directory on bpffs (removed by destroy). */
  extraPinDir(): string;
  cli(args: string[], opts?: CliOpts): Promise<CliResult>;
  /** cli() that throws unless the status is 0. */
  cliOk(args: string[], opts?: CliOpts): Promise<CliResult>;
  up(extra?: string[]): Promise<CliResult>;
  assign(cgroup: string, ...addrs: string[]): Promise<CliResult>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  list(): Promise<any[]>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  show(cgroup: string): Promise<any>;
  /** argv prefix that runs a command in cgroup cg inside the netns. */
  cellArgv(cg: string, argv: string[]): string[];
  /** argv prefix that runs a command in the netns (optionally in cgroup cg). */
  hostArgv(argv: string[], cg?: string): string[];
  inCell(cg: string, argv: string[], opts?: RunOpts): Promise<RunResult>;
  spawnInCell(cg: string, argv: string[]): BgProc;
  onHost(argv: string[], opts?: RunOpts & { cgroup?: string }): Promise<RunResult>;
  spawnOnHost(argv: string[], cgroup?: string): BgProc;
  /** Run probe.py in cell cgroup cg (null: on the host, outside the root). */
  probe(
    cg: string | null,
    ops: Op[],
    opts?: RunOpts & { keepGoing?: boolean },
  ): Promise<ProbeResult>;
  spawnProbe(cg: string | null, ops: Op[]): BgProc;
  destroy(): Promise<void>;
}

/**
 * Remove leftovers of earlier runs that died without cleaning up (their
 * creator pid, embedded in the name, is gone). Never touches live sandboxes.
 */
export async function sweepStale(): Promise<void> {
  hermetic.sweepStale(PREFIX);
}

export async function createSandbox(opts: SandboxOptions = {}): Promise<Sandbox> {
  const hosts = opts.hosts ?? [1, 2, 3, 4, 5, 6, 7, 8, 9];
  const world = hermetic.createSandbox({
    prefix: PREFIX,
    veth: { name: 'd0', peer: 'd0p' },
    addresses: [...hosts.map(V4), ...hosts.map(V6)],
    sysctls: ['net.ipv6.bindv6only=0', 'net.ipv4.ping_group_range=0 2147483647'],
  });
  const { name: id, netns, netnsPath: nsPath, cgroup2, cgroupRoot: root, pinDir } = world;
  const procs: BgProc[] = [];
  let extraPins = 0;
  let stopped = false;
  let wentUp = false;

  const sb: Sandbox = {
    id,
    netns,
    nsPath,
    cgroup2,
    root,
    pinDir,

    cg(rel) {
      const p = path.isAbsolute(rel) ? rel : path.join(root, rel);
      fs.mkdirSync(p, { recursive: true });
      return p;
    },

    outsideCg(name) {
      return world.extraCgroup(name);
    },

    extraPinDir() {
      return world.extraPinDir(`x${extraPins++}`);
    },

    async cli(args, o = {}) {
      const argv = [
        ...(o.wrap ?? []),
        process.execPath,
        CLI,
        '--pin-dir',
        o.pinDir ?? pinDir,
        ...(o.json ? ['--json'] : []),
        ...args,
      ];
      // The CLI runs in the test netns too, so nothing it might configure
      // (or a command it execs) ever touches the host's network.
      const r = await run(world.inNetns(argv), {
        timeoutMs: o.timeoutMs ?? 30_000,
        env: { ...process.env, ...(o.env ?? {}), L3ISO_PIN_DIR: o.pinDir ?? pinDir },
        input: o.input,
      });
      return { ...r, json: parseJson(r.stdout) };
    },

    async cliOk(args, o = {}) {
      const r = await sb.cli(args, o);
      if (r.status !== 0) {
        throw new Error(
          `l3iso ${args.join(' ')} exited ${r.status}${r.timedOut ? ' (timeout)' : ''}: ` +
            `${r.stderr.trim()} ${r.stdout.trim()}`,
        );
      }
      return r;
    },

    async up(extra = []) {
      const r = await sb.cliOk(['up', '--cgroup-root', root, ...extra]);
      wentUp = true;
      return r;
    },

    async assign(cgroup, ...addrs) {
      return sb.cliOk(['assign', cgroup, ...addrs]);
    },

    async list() {
      const r = await sb.cliOk(['list', '--json']);
      return r.json.cells;
    },

    async show(cgroup) {
      const r = await sb.cliOk(['show', cgroup, '--json']);
      return r.json;
    },

    cellArgv(cg, argv) {
      const p = path.isAbsolute(cg) ? cg : path.join(root, cg);
      return [
        'sh',
        '-c',
        'cg=$1; ns=$2; shift 2; echo $$ > "$cg/cgroup.procs" && exec nsenter --net="$ns" -- "$@"',
        'sh',
        p,
        nsPath,
        ...argv,
      ];
    },

    hostArgv(argv, cg) {
      return cg ? sb.cellArgv(cg, argv) : world.inNetns(argv);
    },

    inCell(cg, argv, o = {}) {
      return run(sb.cellArgv(cg, argv), o);
    },

    spawnInCell(cg, argv) {
      const argvFull = sb.cellArgv(cg, argv);
      const child = spawn(argvFull[0], argvFull.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
      const p = new BgProc(child);
      procs.push(p);
      return p;
    },

    onHost(argv, o = {}) {
      return run(sb.hostArgv(argv, o.cgroup), o);
    },

    spawnOnHost(argv, cgroup) {
      const argvFull = sb.hostArgv(argv, cgroup);
      const child = spawn(argvFull[0], argvFull.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
      const p = new BgProc(child);
      procs.push(p);
      return p;
    },

    async probe(cg, ops, o = {}) {
      const spec = JSON.stringify({ ops, keep_going: !!o.keepGoing });
      const argv = [python(), PROBE, spec];
      const r = cg === null ? await sb.onHost(argv, o) : await sb.inCell(cg, argv, o);
      return toProbeResult(r);
    },

    spawnProbe(cg, ops) {
      const argv = [python(), PROBE, JSON.stringify({ ops })];
      return cg === null ? sb.spawnOnHost(argv) : sb.spawnInCell(cg, argv);
    },

    async destroy() {
      if (!stopped) {
        stopped = true;
        if (wentUp && cliBuilt()) {
          await run([process.execPath, CLI, '--pin-dir', pinDir, 'down', '--force'], {
            timeoutMs: 20_000,
          }).catch(() => undefined);
        }
        await Promise.all(procs.map((p) => p.kill()));
      }
      world.destroy();
    },
  };
  return sb;
}
