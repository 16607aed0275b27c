/**
 * Isolation benchmark: what a container's network isolation costs with a
 * network namespace (netns + veth pair + bridge port, the usual container
 * setup) against an l3iso cell (a cgroup that owns an address, one shared
 * stack), measured side by side in one run and reported as ratios.
 *
 * It checks the claims of DESIGN.md ("about 350 KB and 10 ms of setup per
 * netns + veth + bridge port") and README.md ("assignment in microseconds",
 * "every packet pays" for the netns), on three axes:
 *
 *   1. setup and teardown time per container;
 *   2. kernel memory per container (/proc/meminfo and /proc/slabinfo deltas);
 *   3. the data path: TCP ping-pong latency, connect/request/close rate and
 *      bulk throughput, for plain loopback (baseline), two cells in one
 *      stack with the engine up, and two netns containers over a bridge.
 *
 * Nothing here touches the host's interfaces, routes or root cgroup: every
 * address lives in 198.18.0.0/15 (RFC 2544, reserved for benchmarks) inside
 * network namespaces this file creates, every cgroup lives under the
 * sandbox's subtree, and all of it is removed in `finally` and on
 * SIGINT/SIGTERM.
 *
 * Run alone:  node dist/bench/isolation.js [--containers N] [--reps R] [--json]
 * or call runIsolationBench() from another script.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createSandbox, type Sandbox } from '../src/demo/sandbox';
import { assign, release } from '../src/cells/cells';
import { showCell } from '../src/cells/inventory';
import { up } from '../src/engine/lifecycle';
import { packageRoot } from '../src/dataplane/paths';

// ------------------------------------------------------------------ options

export interface IsolationOptions {
  /** containers created each way for the setup, teardown and memory figures */
  containers: number;
  /** containers set up the "one command per step" way (process spawns included) */
  naiveContainers: number;
  /** data-path repetitions per path; the report gives medians */
  reps: number;
  pingPongRounds: number;
  pingPongBytes: number;
  crrConnections: number;
  bulkBytes: number;
  /** CPU both ends of every data-path test are pinned to */
  cpu: number;
  /** pause before memory readings, for RCU-deferred frees to land */
  settleMs: number;
  /** readings per memory sample (the median is kept) */
  memReadings: number;
  /** print progress and the table to stderr/stdout */
  verbose: boolean;
}

export const DEFAULT_OPTIONS: IsolationOptions = {
  containers: 200,
  naiveContainers: 10,
  reps: 5,
  pingPongRounds: 50_000,
  pingPongBytes: 64,
  crrConnections: 5_000,
  bulkBytes: 512 * 1024 * 1024,
  cpu: 1,
  settleMs: 1_500,
  memReadings: 5,
  verbose: true,
};

// ------------------------------------------------------------------ report

export type MemField =
  | 'kernel'
  | 'Slab'
  | 'SUnreclaim'
  | 'Percpu'
  | 'KernelStack'
  | 'PageTables'
  | 'VmallocUsed'
  | 'slabinfo'
  | 'MemAvailableDrop';

export type MemFigures = Partial<Record<MemField, number>>;

export interface MemCost {
  /** delta over all containers, KB */
  totalKB: MemFigures;
  /** delta per container, KB */
  perContainerKB: MemFigures;
  /** slab caches that grew most, KB per container */
  topSlabCaches: { cache: string; kbPerContainer: number }[];
}

export interface Ratio {
  /** netns cost divided by l3iso cost; null when the l3iso side is below the noise floor */
  value: number | null;
  /** netns cost divided by max(l3iso cost, noise floor): a lower bound; null when
   * the netns side itself is inside the noise */
  atLeast: number | null;
}

export interface PathFigures {
  usPerRoundTrip: number;
  usPerConnection: number;
  bulkGbps: number;
  samples: { usPerRoundTrip: number[]; usPerConnection: number[]; bulkGbps: number[] };
  /** addresses the client saw (local -> peer), and the server's bound address */
  client: string;
  server: string;
}

export interface Report {
  options: IsolationOptions;
  environment: {
    kernel: string;
    cpus: number;
    iproute2: string;
    /** br_netfilter's bridge-nf-call-iptables inside the bridge netns (Docker's default is 1) */
    bridgeNfCallIptables: string;
    cgroup2Controllers: string;
    /** /proc/loadavg at start and end: other jobs on the machine skew every figure */
    loadavg: { start: string; end: string };
  };
  setup: {
    netns: { msPerContainer: number; ipBatchMs: number; inNetnsConfigMs: number };
    l3iso: {
      msPerContainer: number;
      mkdirMs: number;
      assignMs: number;
      assignMsPerCell: number;
      /** one `ip -batch` of `addr add` for all cells, per cell; not in msPerContainer */
      addressOnInterfaceMsPerCell: number;
    };
    /** netns ms / l3iso ms (mkdir + assign), and against assign alone */
    ratio: number;
    ratioAssignOnly: number;
    /** one command per step, process spawns included (the way shell scripts do it) */
    naive: {
      containers: number;
      netnsMsPerContainer: number;
      l3isoCliMsPerContainer: number;
      ratio: number;
    };
  };
  teardown: {
    netns: { msPerContainer: number; syncMs: number; untilGoneMs: number };
    l3iso: { msPerContainer: number; releaseMs: number; rmdirMs: number };
    ratio: number;
  };
  memory: {
    noiseFloorKB: MemFigures;
    netns: MemCost;
    l3isoCgroup: MemCost;
    l3isoAssign: MemCost;
    /** netns kernel KB / l3iso kernel KB, cgroup included (conservative) */
    ratio: Ratio;
    /** against the assignment alone: a container has a cgroup either way */
    ratioAssignOnly: Ratio;
    /**
     * What an address per cell on an interface would add (`ip addr add`,
     * /32 on lo), for deployments without a prefix route. Not in the ratios:
     * the run itself routes the cells' prefix with one AnyIP route.
     */
    l3isoAddressOnInterface: MemCost;
    /** kernel KB left over after both teardowns, against the start */
    residualAfterTeardownKB: MemFigures;
  };
  dataPath: {
    baseline: PathFigures;
    l3iso: PathFigures;
    netns: PathFigures;
    /** value / baseline value (latency: >1 is slower; throughput: <1 is slower) */
    vsBaseline: {
      l3iso: { roundTrip: number; connection: number; bulk: number };
      netns: { roundTrip: number; connection: number; bulk: number };
    };
    /** netns / l3iso for latencies, l3iso / netns for throughput: >1 means l3iso is better */
    l3isoAdvantage: { roundTrip: number; connection: number; bulk: number };
    /** l3iso's cgroup_skb counters for the server cell: proof the BPF path carried the traffic */
    serverCellCounters: { rxPackets: number; rxBytes: number; txPackets: number; txBytes: number };
  };
  checks: string[];
  durationS: number;
}

// ------------------------------------------------------------------ small helpers

const PORT = 7000;
/** 198.18.0.0/16 for cells (and the baseline), 198.19.0.0/16 for the netns containers */
const CELL_NET = ip4('198.18.0.0');
const NETNS_NET = ip4('198.19.0.0');

function ip4(text: string): number {
  return text.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

function ip4Text(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Host i of a /16: skips the network address. */
function hostAddr(net: number, i: number): string {
  return ip4Text(net + 1 + i);
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function sh(cmd: string, args: string[], input?: string): string {
  try {
    return execFileSync(cmd, args, {
      encoding: 'utf8',
      input,
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ').slice(0, 200)}: ${(e.stderr || e.message).trim()}`, {
      cause: err,
    });
  }
}

/** Ratios keep three significant digits: 0.028 and 112 both stay readable. */
function sig(x: number): number {
  return Number(x.toPrecision(3));
}

function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

// ------------------------------------------------------------------ cleanup

/**
 * Undo actions, run last-in first-out, once. They are synchronous so that a
 * signal handler can run them before the process exits.
 */
export class Cleanup {
  private actions: { what: string; fn: () => void }[] = [];
  readonly children = new Set<ChildProcess>();
  private done = false;

  push(what: string, fn: () => void): void {
    this.actions.push({ what, fn });
  }

  track(child: ChildProcess): ChildProcess {
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  run(): string[] {
    if (this.done) return [];
    this.done = true;
    const errors: string[] = [];
    // Our own children only, by pid: a cell cgroup cannot be removed while
    // they live, and a netns stays alive while a process is in it.
    for (const c of this.children) {
      if (c.pid !== undefined && c.exitCode === null) {
        try {
          process.kill(c.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    for (const a of this.actions.reverse()) {
      try {
        a.fn();
      } catch (err) {
        errors.push(`${a.what}: ${(err as Error).message}`);
      }
    }
    return errors;
  }
}

// ------------------------------------------------------------------ memory

const MEMINFO_FIELDS = [
  'MemAvailable',
  'Slab',
  'SUnreclaim',
  'Percpu',
  'KernelStack',
  'PageTables',
  'VmallocUsed',
] as const;

interface MemSample {
  figures: Record<string, number>;
  caches: Map<string, number>;
}

function readMeminfo(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of fs.readFileSync('/proc/meminfo', 'utf8').split('\n')) {
    const m = /^(\w+):\s+(\d+)/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

/** KB per slab cache (whole slabs, as the page allocator sees them); empty if unreadable. */
function readSlabinfo(): Map<string, number> {
  const caches = new Map<string, number>();
  let text: string;
  try {
    text = fs.readFileSync('/proc/slabinfo', 'utf8');
  } catch {
    return caches;
  }
  const pageKB = 4;
  for (const line of text.split('\n').slice(2)) {
    const f = line.trim().split(/\s+/);
    // name active num objsize objperslab pagesperslab : tunables l b s : slabdata active num shared
    if (f.length < 16) continue;
    const pagesPerSlab = Number(f[5]);
    const numSlabs = Number(f[14]);
    caches.set(f[0], (caches.get(f[0]) ?? 0) + numSlabs * pagesPerSlab * pageKB);
  }
  return caches;
}

function figuresOf(
  mi: Record<string, number>,
  caches: Map<string, number>,
): Record<string, number> {
  const f: Record<string, number> = {};
  for (const k of MEMINFO_FIELDS) f[k] = mi[k] ?? 0;
  // Where a container's network state lives. KernelStack and PageTables
  // belong to processes, and neither way starts any here: they only carry
  // the noise of whatever else runs (node's GC, other jobs), so they are
  // shown but not summed.
  f.kernel = f.Slab + f.Percpu + f.VmallocUsed;
  if (caches.size > 0) f.slabinfo = [...caches.values()].reduce((a, b) => a + b, 0);
  return f;
}

/** Median of a few readings after a pause: one reading is at the mercy of RCU and per-CPU caches. */
async function sampleMemory(opts: IsolationOptions): Promise<MemSample> {
  await sleep(opts.settleMs);
  const readings: Record<string, number>[] = [];
  let caches = new Map<string, number>();
  for (let i = 0; i < opts.memReadings; i++) {
    if (i > 0) await sleep(150);
    caches = readSlabinfo();
    readings.push(figuresOf(readMeminfo(), caches));
  }
  const figures: Record<string, number> = {};
  for (const k of Object.keys(readings[0])) figures[k] = median(readings.map((r) => r[k]));
  return { figures, caches };
}

function memCost(before: MemSample, after: MemSample, n: number): MemCost {
  const totalKB: MemFigures = {};
  const perContainerKB: MemFigures = {};
  const fields: MemField[] = [
    'kernel',
    'Slab',
    'SUnreclaim',
    'Percpu',
    'KernelStack',
    'PageTables',
    'VmallocUsed',
    'slabinfo',
  ];
  for (const k of fields) {
    if (before.figures[k] === undefined || after.figures[k] === undefined) continue;
    totalKB[k] = after.figures[k] - before.figures[k];
    perContainerKB[k] = round(totalKB[k] / n, 2);
  }
  totalKB.MemAvailableDrop = before.figures.MemAvailable - after.figures.MemAvailable;
  perContainerKB.MemAvailableDrop = round(totalKB.MemAvailableDrop / n, 2);
  const topSlabCaches = [...after.caches.entries()]
    .map(([cache, kb]) => ({
      cache,
      kbPerContainer: round((kb - (before.caches.get(cache) ?? 0)) / n, 2),
    }))
    .filter((c) => c.kbPerContainer > 0)
    .sort((a, b) => b.kbPerContainer - a.kbPerContainer)
    .slice(0, 6);
  return { totalKB, perContainerKB, topSlabCaches };
}

function ratio(netns: number, l3iso: number, noise: number): Ratio {
  const floor = Math.max(noise, 0.01);
  // A ratio of two figures inside the noise says nothing: keep it null.
  if (netns <= floor) return { value: null, atLeast: null };
  return {
    value: l3iso > floor ? sig(netns / l3iso) : null,
    atLeast: sig(netns / Math.max(l3iso, floor)),
  };
}

// ------------------------------------------------------------------ the world

interface World {
  opts: IsolationOptions;
  cleanup: Cleanup;
  pp: string;
  sb: Sandbox;
  /** plain netns for the baseline: same addresses, no BPF */
  baseNetns: string;
  /** the "host" side of the netns way: the bridge and every veth host end */
  brNetns: string;
  containers: string[];
  cells: string[];
  checks: string[];
  log: (msg: string) => void;
}

export function netnsPath(name: string): string {
  return `/run/netns/${name}`;
}

function addNetns(w: Pick<World, 'cleanup'>, name: string): void {
  sh('ip', ['netns', 'add', name]);
  w.cleanup.push(`netns ${name}`, () => {
    if (fs.existsSync(netnsPath(name))) sh('ip', ['netns', 'del', name]);
  });
}

export function compilePingpong(cleanup: Cleanup): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l3iso-bench-'));
  cleanup.push('temp dir', () => fs.rmSync(dir, { recursive: true, force: true }));
  const bin = path.join(dir, 'pingpong');
  sh('gcc', ['-O2', '-Wall', '-o', bin, path.join(packageRoot(), 'bench', 'pingpong.c')]);
  return bin;
}

function buildWorld(opts: IsolationOptions, cleanup: Cleanup, log: (m: string) => void): World {
  if (!fs.existsSync('/sys/fs/bpf')) throw new Error('bpffs is not mounted at /sys/fs/bpf');
  const pp = compilePingpong(cleanup);

  // The sandbox: its own netns, cgroup subtree and pin dir. Cell addresses
  // come from one AnyIP route (local 198.18.0.0/16 on lo), so a cell needs
  // no per-address interface configuration: the map entry is the whole cost.
  const sb = createSandbox('l3ib', []);
  cleanup.push('sandbox', () => sb.destroy());
  sh('ip', ['-n', sb.netns, 'route', 'add', 'local', '198.18.0.0/16', 'dev', 'lo']);
  // sk_lookup goes on the sandbox's netns, never on ours (the host's).
  up({
    pinDir: sb.pinDir,
    cgroupRoot: sb.cgroupRoot,
    netns: sb.netnsPath,
    maxCells: Math.max(1024, 2 * (opts.containers + opts.naiveContainers)),
  });

  const baseNetns = `l3ib-base-${process.pid}`;
  addNetns({ cleanup }, baseNetns);
  sh('ip', ['-n', baseNetns, 'link', 'set', 'lo', 'up']);
  sh('ip', ['-n', baseNetns, 'route', 'add', 'local', '198.18.0.0/16', 'dev', 'lo']);

  const brNetns = `l3ib-br-${process.pid}`;
  addNetns({ cleanup }, brNetns);
  sh('ip', ['-n', brNetns, 'link', 'add', 'br0', 'type', 'bridge']);
  sh('ip', ['-n', brNetns, 'link', 'set', 'br0', 'up']);
  sh('ip', ['-n', brNetns, 'link', 'set', 'lo', 'up']);

  const w: World = {
    opts,
    cleanup,
    pp,
    sb,
    baseNetns,
    brNetns,
    containers: [],
    cells: [],
    checks: [],
    log,
  };
  // Container netns are removed in one `ip -batch -force`, not one spawn each.
  cleanup.push('container netns', () => {
    const live = w.containers.filter((n) => fs.existsSync(netnsPath(n)));
    if (live.length > 0)
      sh('ip', ['-force', '-batch', '-'], live.map((n) => `netns del ${n}\n`).join(''));
  });
  return w;
}

// ------------------------------------------------------------------ setup and teardown

function setupNetns(w: World): Report['setup']['netns'] {
  const n = w.opts.containers;
  const names = Array.from({ length: n }, (_, i) => `l3ib-c-${process.pid}-${i}`);
  w.containers.push(...names);
  // Host side in one ip process: `ip -batch` restores its own netns after
  // each `netns add`, so every line runs in the bridge netns.
  const batch = names
    .map(
      (ns, i) =>
        `netns add ${ns}\n` +
        `link add v${i} type veth peer name eth0 netns ${ns}\n` +
        `link set v${i} master br0 up\n`,
    )
    .join('');
  let t = nowMs();
  sh('nsenter', [`--net=${netnsPath(w.brNetns)}`, '--', 'ip', '-batch', '-'], batch);
  const ipBatchMs = nowMs() - t;
  // Container side: lo up, address, eth0 up, by one helper that setns()es
  // into each container (ip -batch cannot switch netns between lines).
  const conf = names
    .map((ns, i) => `${netnsPath(ns)} eth0 ${hostAddr(NETNS_NET, i)} 16\n`)
    .join('');
  t = nowMs();
  const done = Number(sh(w.pp, ['nsconf'], conf).trim());
  const inNetnsConfigMs = nowMs() - t;
  if (done !== n) throw new Error(`nsconf configured ${done} of ${n} containers`);
  return {
    msPerContainer: round((ipBatchMs + inNetnsConfigMs) / n, 3),
    ipBatchMs: round(ipBatchMs, 1),
    inNetnsConfigMs: round(inNetnsConfigMs, 1),
  };
}

function mkdirCells(w: World): number {
  const n = w.opts.containers;
  const paths = Array.from({ length: n }, (_, i) => path.join(w.sb.cgroupRoot, `c${i}`));
  const t = nowMs();
  for (const p of paths) {
    fs.mkdirSync(p);
    w.cells.push(p);
  }
  return nowMs() - t;
}

function assignCells(w: World): number {
  const t = nowMs();
  w.cells.forEach((p, i) => assign(w.sb.pinDir, p, [hostAddr(CELL_NET, i)]));
  return nowMs() - t;
}

/**
 * The cost a deployment without a routed prefix would add: each cell's
 * address configured on an interface of the engine's netns (lo here), all
 * in one ip process. Measured for the record, kept out of the ratios.
 */
function addressesOnLo(w: World): number {
  const batch = w.cells.map((_, i) => `addr add ${hostAddr(CELL_NET, i)}/32 dev lo\n`).join('');
  const t = nowMs();
  sh('ip', ['-n', w.sb.netns, '-batch', '-'], batch);
  return nowMs() - t;
}

function teardownNetns(w: World): Promise<Report['teardown']['netns']> {
  const n = w.containers.length;
  const batch = w.containers.map((ns) => `netns del ${ns}\n`).join('');
  const t = nowMs();
  sh('ip', ['-batch', '-'], batch);
  const syncMs = nowMs() - t;
  // The kernel dismantles a netns later, in a workqueue; the veth host ends
  // vanish from the bridge netns only when that is done.
  return (async () => {
    for (;;) {
      const left = sh('ip', ['-n', w.brNetns, '-o', 'link', 'show', 'type', 'veth']).trim();
      if (left === '') break;
      if (nowMs() - t > 60_000) throw new Error('netns teardown still running after 60 s');
      await sleep(10);
    }
    const untilGoneMs = nowMs() - t;
    return {
      msPerContainer: round(untilGoneMs / n, 3),
      syncMs: round(syncMs, 1),
      untilGoneMs: round(untilGoneMs, 1),
    };
  })();
}

/**
 * Release runs in a child inside the sandbox's netns: revocation walks the
 * sockets of the caller's netns (where the engine's sockets are), and the
 * bench's own netns is the host's. The child times itself, so node's
 * start-up is not counted.
 */
function releaseCells(w: World): { releaseMs: number; rmdirMs: number } {
  const out = sh(
    'nsenter',
    [`--net=${w.sb.netnsPath}`, '--', process.execPath, __filename, RELEASE_WORKER_FLAG],
    JSON.stringify({ pinDir: w.sb.pinDir, cells: w.cells }),
  );
  const { ms } = JSON.parse(out) as { ms: number };
  const t = nowMs();
  for (const p of w.cells) fs.rmdirSync(p);
  const rmdirMs = nowMs() - t;
  w.cells.length = 0;
  return { releaseMs: ms, rmdirMs };
}

/** One command per step, as a shell script would: process spawns included. */
function naiveSetup(w: World): Report['setup']['naive'] {
  const k = w.opts.naiveContainers;
  const base = w.opts.containers;
  let t = nowMs();
  for (let i = 0; i < k; i++) {
    const ns = `l3ib-n-${process.pid}-${i}`;
    w.containers.push(ns);
    const addr = `${hostAddr(NETNS_NET, base + i)}/16`;
    sh('ip', ['netns', 'add', ns]);
    sh('ip', [
      '-n',
      w.brNetns,
      'link',
      'add',
      `n${i}`,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns,
    ]);
    sh('ip', ['-n', w.brNetns, 'link', 'set', `n${i}`, 'master', 'br0', 'up']);
    sh('ip', ['-n', ns, 'addr', 'add', addr, 'dev', 'eth0']);
    sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  }
  const netnsMs = (nowMs() - t) / k;
  t = nowMs();
  for (let i = 0; i < k; i++) {
    const cg = path.join(w.sb.cgroupRoot, `n${i}`);
    fs.mkdirSync(cg);
    const r = w.sb.cli(['assign', cg, hostAddr(CELL_NET, base + i)]);
    if (r.status !== 0) throw new Error(`l3iso assign failed: ${r.stderr.trim()}`);
  }
  const l3isoMs = (nowMs() - t) / k;
  return {
    containers: k,
    netnsMsPerContainer: round(netnsMs, 2),
    l3isoCliMsPerContainer: round(l3isoMs, 2),
    ratio: sig(netnsMs / l3isoMs),
  };
}

// ------------------------------------------------------------------ data path

interface Endpoint {
  netns: string;
  /** cgroup.procs of the cell to join before any socket exists */
  procs?: string;
}

/** argv for pingpong inside an endpoint, pinned to one CPU. */
function commandIn(w: World, ep: Endpoint, args: string[]): [string, string[]] {
  const inner = [
    'taskset',
    '-c',
    String(w.opts.cpu),
    'nsenter',
    `--net=${netnsPath(ep.netns)}`,
    '--',
    w.pp,
    ...args,
  ];
  if (!ep.procs) return [inner[0], inner.slice(1)];
  // Join the cell first, then exec: the sockets are created in the cell.
  // nsenter, not `ip netns exec`, which would remount /sys.
  return ['sh', ['-c', 'echo $$ > "$0" && exec "$@"', ep.procs, ...inner]];
}

function startServer(w: World, ep: Endpoint): Promise<{ child: ChildProcess; bound: string }> {
  const [cmd, args] = commandIn(w, ep, ['server', '0.0.0.0', String(PORT)]);
  const child = w.cleanup.track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(
      () => reject(new Error(`server in ${ep.netns} not ready: ${err}`)),
      5_000,
    );
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^ready (\S+)/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, bound: m[1] });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server in ${ep.netns} exited (${code}): ${err}`));
    });
  });
}

interface ClientResult {
  value: number;
  local: string;
  peer: string;
}

function runClient(w: World, ep: Endpoint, args: string[]): Promise<ClientResult> {
  const [cmd, argv] = commandIn(w, ep, ['client', ...args]);
  const child = w.cleanup.track(spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] }));
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0)
        return reject(new Error(`client ${args.join(' ')} failed (${code}): ${err.trim()}`));
      const r = JSON.parse(out) as Record<string, number | string>;
      const key = Object.keys(r).find((k) => typeof r[k] === 'number');
      if (!key) return reject(new Error(`client printed no figure: ${out}`));
      resolve({ value: r[key] as number, local: String(r.local), peer: String(r.peer) });
    });
  });
}

interface PathSpec {
  name: 'baseline' | 'l3iso' | 'netns';
  server: Endpoint;
  client: Endpoint;
  dst: string;
  /** source to bind before connect ("-": none). The baseline binds the
   * address the engine would give a cell, so both paths look alike. */
  src: string;
}

async function dataPath(w: World): Promise<Report['dataPath']> {
  const o = w.opts;
  const cellA = w.cells[0];
  const cellB = w.cells[1];
  const addrA = hostAddr(CELL_NET, 0);
  const addrB = hostAddr(CELL_NET, 1);
  const specs: PathSpec[] = [
    {
      name: 'baseline',
      server: { netns: w.baseNetns },
      client: { netns: w.baseNetns },
      dst: addrA,
      src: addrB,
    },
    {
      name: 'l3iso',
      server: { netns: w.sb.netns, procs: path.join(cellA, 'cgroup.procs') },
      client: { netns: w.sb.netns, procs: path.join(cellB, 'cgroup.procs') },
      dst: addrA,
      src: '-',
    },
    {
      name: 'netns',
      server: { netns: w.containers[0] },
      client: { netns: w.containers[1] },
      dst: hostAddr(NETNS_NET, 0),
      src: '-',
    },
  ];
  const servers = new Map<string, { child: ChildProcess; bound: string }>();
  const samples = new Map<
    string,
    { rt: number[]; conn: number[]; bulk: number[]; client: string }
  >();
  try {
    for (const s of specs) {
      servers.set(s.name, await startServer(w, s.server));
      samples.set(s.name, { rt: [], conn: [], bulk: [], client: '' });
    }
    // The engine must have rewritten the cell's wildcard bind to its address.
    const boundA = servers.get('l3iso')?.bound;
    if (boundA !== `${addrA}:${PORT}`)
      throw new Error(
        `l3iso server bound ${boundA}, expected ${addrA}:${PORT}: the cell is not confined`,
      );
    w.checks.push(`l3iso: cell server's 0.0.0.0:${PORT} rewritten to ${boundA}`);

    for (let rep = 0; rep < o.reps; rep++) {
      // Rotate the order each repetition so drift (thermal, other load)
      // does not always hit the same path.
      const order = specs.map((_, i) => specs[(i + rep) % specs.length]);
      for (const s of order) {
        const sm = samples.get(s.name);
        if (!sm) continue;
        const common = [s.dst, String(PORT), s.src];
        const rt = await runClient(w, s.client, [
          ...common,
          'pp',
          String(o.pingPongBytes),
          String(o.pingPongRounds),
        ]);
        const conn = await runClient(w, s.client, [...common, 'crr', String(o.crrConnections)]);
        const bulk = await runClient(w, s.client, [...common, 'bulk', String(o.bulkBytes)]);
        sm.rt.push(rt.value);
        sm.conn.push(conn.value);
        sm.bulk.push(bulk.value);
        sm.client = `${rt.local} -> ${rt.peer}`;
        if (s.name === 'l3iso' && !rt.local.startsWith(`${addrB}:`))
          throw new Error(`l3iso client's source is ${rt.local}, expected cell B's ${addrB}`);
      }
      w.log(`  data path repetition ${rep + 1}/${o.reps} done`);
    }
    w.checks.push(`l3iso: cell client's source rewritten to ${addrB} (no bind in the client)`);
  } finally {
    for (const { child } of servers.values()) child.kill('SIGKILL');
    await Promise.all(
      [...servers.values()].map(
        ({ child }) =>
          new Promise<void>((r) => (child.exitCode !== null ? r() : child.once('exit', () => r()))),
      ),
    );
  }

  const t = showCell(w.sb.pinDir, cellA).traffic;
  const counters = {
    rxPackets: t.rxPackets,
    rxBytes: t.rxBytes,
    txPackets: t.txPackets,
    txBytes: t.txBytes,
  };
  if (counters.rxBytes < o.bulkBytes * o.reps)
    throw new Error(
      `cell A counted ${counters.rxBytes} B received, expected at least ${o.bulkBytes * o.reps}`,
    );
  w.checks.push(
    `l3iso: cell A's cgroup_skb counters saw ${(counters.rxBytes / 2 ** 30).toFixed(2)} GiB in`,
  );

  const fig = (name: string): PathFigures => {
    const sm = samples.get(name);
    const srv = servers.get(name);
    if (!sm || !srv) throw new Error(`no samples for ${name}`);
    return {
      usPerRoundTrip: round(median(sm.rt), 2),
      usPerConnection: round(median(sm.conn), 2),
      bulkGbps: round(median(sm.bulk), 2),
      samples: {
        usPerRoundTrip: sm.rt.map((x) => round(x, 2)),
        usPerConnection: sm.conn.map((x) => round(x, 2)),
        bulkGbps: sm.bulk.map((x) => round(x, 2)),
      },
      client: sm.client,
      server: srv.bound,
    };
  };
  const baseline = fig('baseline');
  const l3iso = fig('l3iso');
  const netns = fig('netns');
  const vs = (p: PathFigures) => ({
    roundTrip: sig(p.usPerRoundTrip / baseline.usPerRoundTrip),
    connection: sig(p.usPerConnection / baseline.usPerConnection),
    bulk: sig(p.bulkGbps / baseline.bulkGbps),
  });
  return {
    baseline,
    l3iso,
    netns,
    vsBaseline: { l3iso: vs(l3iso), netns: vs(netns) },
    l3isoAdvantage: {
      roundTrip: sig(netns.usPerRoundTrip / l3iso.usPerRoundTrip),
      connection: sig(netns.usPerConnection / l3iso.usPerConnection),
      bulk: sig(l3iso.bulkGbps / netns.bulkGbps),
    },
    serverCellCounters: counters,
  };
}

// ------------------------------------------------------------------ the run

function loadavg(): string {
  return fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

function environment(w: World, loadStart: string): Report['environment'] {
  const read = (cmd: string, args: string[]): string => {
    try {
      return sh(cmd, args).trim();
    } catch {
      return 'unknown';
    }
  };
  let controllers = 'unknown';
  try {
    controllers =
      fs
        .readFileSync(path.join(path.dirname(w.sb.cgroupRoot), 'cgroup.subtree_control'), 'utf8')
        .trim() || '(none)';
  } catch {
    /* keep unknown */
  }
  return {
    kernel: os.release(),
    cpus: os.cpus().length,
    iproute2: read('ip', ['-V']),
    bridgeNfCallIptables: read('nsenter', [
      `--net=${netnsPath(w.brNetns)}`,
      '--',
      'cat',
      '/proc/sys/net/bridge/bridge-nf-call-iptables',
    ]),
    cgroup2Controllers: controllers,
    loadavg: { start: loadStart, end: loadavg() },
  };
}

export async function runIsolationBench(options: Partial<IsolationOptions> = {}): Promise<Report> {
  const opts: IsolationOptions = { ...DEFAULT_OPTIONS, ...options };
  if (
    !Number.isInteger(opts.containers) ||
    opts.containers < 2 ||
    opts.containers + opts.naiveContainers > 60_000
  )
    throw new Error('containers must be an integer from 2 to 60000 (naive ones included)');
  if (typeof process.getuid === 'function' && process.getuid() !== 0)
    throw new Error('the isolation benchmark needs root');
  const log = (m: string) => {
    if (opts.verbose) process.stderr.write(`[isolation] ${m}\n`);
  };
  const started = nowMs();
  const loadStart = loadavg();
  const cleanup = new Cleanup();
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`[isolation] ${sig}: cleaning up\n`);
    for (const e of cleanup.run()) process.stderr.write(`[isolation] cleanup: ${e}\n`);
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    log('building the world: pingpong, sandbox + engine, baseline netns, bridge netns');
    const w = buildWorld(opts, cleanup, log);
    const n = opts.containers;

    log('memory noise floor');
    const m0 = await sampleMemory(opts);
    const m0b = await sampleMemory(opts);
    const noise = memCost(m0, m0b, n);
    const noiseFloorKB: MemFigures = {};
    for (const [k, v] of Object.entries(noise.perContainerKB))
      noiseFloorKB[k as MemField] = Math.abs(v);

    log(`netns way: ${n} containers`);
    const netnsSetup = setupNetns(w);
    const m1 = await sampleMemory(opts);

    log(`l3iso way: ${n} cells`);
    const mkdirMs = mkdirCells(w);
    const m2 = await sampleMemory(opts);
    const assignMs = assignCells(w);
    const m3 = await sampleMemory(opts);
    const addrMs = addressesOnLo(w);
    const m3b = await sampleMemory(opts);
    const addrMem = memCost(m3, m3b, n);

    const netnsMem = memCost(m0b, m1, n);
    const cgroupMem = memCost(m1, m2, n);
    const assignMem = memCost(m2, m3, n);
    const bothMem = memCost(m1, m3, n);
    const pick = (c: MemCost, k: MemField) => c.perContainerKB[k] ?? 0;

    log('data path');
    const dp = await dataPath(w);

    log('teardown');
    const rel = releaseCells(w);
    const netnsDown = await teardownNetns(w);
    const m4 = await sampleMemory(opts);
    const residual = memCost(m0b, m4, 1).totalKB;
    w.containers.length = 0;

    log(`naive way: ${opts.naiveContainers} containers, one command per step`);
    const naive = naiveSetup(w);

    const l3isoSetupMs = mkdirMs + assignMs;
    const l3isoDownMs = rel.releaseMs + rel.rmdirMs;
    const report: Report = {
      options: opts,
      environment: environment(w, loadStart),
      setup: {
        netns: netnsSetup,
        l3iso: {
          msPerContainer: round(l3isoSetupMs / n, 4),
          mkdirMs: round(mkdirMs, 2),
          assignMs: round(assignMs, 2),
          assignMsPerCell: round(assignMs / n, 4),
          addressOnInterfaceMsPerCell: round(addrMs / n, 4),
        },
        ratio: sig((netnsSetup.msPerContainer * n) / l3isoSetupMs),
        ratioAssignOnly: sig((netnsSetup.msPerContainer * n) / assignMs),
        naive,
      },
      teardown: {
        netns: netnsDown,
        l3iso: {
          msPerContainer: round(l3isoDownMs / n, 4),
          releaseMs: round(rel.releaseMs, 1),
          rmdirMs: round(rel.rmdirMs, 1),
        },
        ratio: sig(netnsDown.untilGoneMs / l3isoDownMs),
      },
      memory: {
        noiseFloorKB,
        netns: netnsMem,
        l3isoCgroup: cgroupMem,
        l3isoAssign: assignMem,
        ratio: ratio(pick(netnsMem, 'kernel'), pick(bothMem, 'kernel'), noiseFloorKB.kernel ?? 0),
        ratioAssignOnly: ratio(
          pick(netnsMem, 'kernel'),
          pick(assignMem, 'kernel'),
          noiseFloorKB.kernel ?? 0,
        ),
        l3isoAddressOnInterface: addrMem,
        residualAfterTeardownKB: residual,
      },
      dataPath: dp,
      checks: w.checks,
      durationS: 0,
    };
    report.durationS = round((nowMs() - started) / 1000, 1);
    return report;
  } finally {
    log('cleaning up');
    const errors = cleanup.run();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const e of errors) process.stderr.write(`[isolation] cleanup: ${e}\n`);
  }
}

// ------------------------------------------------------------------ printing

function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [
    line(cells[0]),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...cells.slice(1).map(line),
  ].join('\n');
}

function x(r: number | null): string {
  return r === null ? 'n/a' : `${r}x`;
}

function ratioText(r: Ratio): string {
  if (r.atLeast === null) return 'n/a (inside the noise)';
  return r.value === null ? `>= ${r.atLeast}x (l3iso below noise)` : `${r.value}x`;
}

export function formatReport(r: Report): string {
  const n = r.options.containers;
  const m = r.memory;
  const kb = (c: MemCost, k: MemField) => (c.perContainerKB[k] ?? 0).toFixed(1);
  const memRow = (k: MemField) => [
    k === 'MemAvailableDrop' ? 'MemAvailable drop' : k,
    kb(m.netns, k),
    kb(m.l3isoCgroup, k),
    kb(m.l3isoAssign, k),
    (m.noiseFloorKB[k] ?? 0).toFixed(1),
  ];
  const d = r.dataPath;
  const out: string[] = [];
  out.push(
    `l3iso isolation benchmark: ${n} containers each way, kernel ${r.environment.kernel}, ${r.environment.cpus} CPUs, ${r.durationS} s`,
    `load average ${r.environment.loadavg.start} at start, ${r.environment.loadavg.end} at end; bridge-nf-call-iptables=${r.environment.bridgeNfCallIptables}; cgroup2 controllers: ${r.environment.cgroup2Controllers}`,
    '',
    'Setup and teardown, ms per container',
    table(
      ['', 'netns+veth+bridge', 'l3iso cell', 'netns / l3iso'],
      [
        ['setup', r.setup.netns.msPerContainer, r.setup.l3iso.msPerContainer, x(r.setup.ratio)],
        ['  of which assign()', '', r.setup.l3iso.assignMsPerCell, x(r.setup.ratioAssignOnly)],
        [
          'teardown (until gone)',
          r.teardown.netns.msPerContainer,
          r.teardown.l3iso.msPerContainer,
          x(r.teardown.ratio),
        ],
        [
          `setup, one command per step (${r.setup.naive.containers})`,
          r.setup.naive.netnsMsPerContainer,
          r.setup.naive.l3isoCliMsPerContainer,
          x(r.setup.naive.ratio),
        ],
      ],
    ),
    `  netns: ip -batch ${r.setup.netns.ipBatchMs} ms + in-netns config ${r.setup.netns.inNetnsConfigMs} ms; ` +
      `teardown: ip -batch ${r.teardown.netns.syncMs} ms, gone after ${r.teardown.netns.untilGoneMs} ms`,
    `  l3iso: mkdir ${r.setup.l3iso.mkdirMs} ms + assign ${r.setup.l3iso.assignMs} ms; ` +
      `teardown: release ${r.teardown.l3iso.releaseMs} ms + rmdir ${r.teardown.l3iso.rmdirMs} ms`,
    '',
    'Kernel memory, KB per container',
    table(
      ['', 'netns+veth+bridge', 'cell cgroup', 'cell assign', 'noise'],
      (
        [
          'kernel',
          'Slab',
          'SUnreclaim',
          'Percpu',
          'KernelStack',
          'PageTables',
          'VmallocUsed',
          'slabinfo',
          'MemAvailableDrop',
        ] as MemField[]
      )
        .filter((k) => m.netns.perContainerKB[k] !== undefined)
        .map(memRow),
    ),
    `  kernel = Slab + Percpu + VmallocUsed (KernelStack, PageTables: process memory, noise here)`,
    `  netns / l3iso (cgroup + assign): ${ratioText(m.ratio)}; against assign alone: ${ratioText(m.ratioAssignOnly)}`,
    `  MemAvailable moves by MBs with page cache and other jobs: shown, not used for ratios`,
    `  if each cell's address were also put on an interface (ip addr add, not done for the ratios): ` +
      `+${kb(m.l3isoAddressOnInterface, 'kernel')} KB and +${r.setup.l3iso.addressOnInterfaceMsPerCell} ms per cell`,
    `  netns top slab caches: ${m.netns.topSlabCaches.map((c) => `${c.cache} ${c.kbPerContainer}`).join(', ')}`,
    `  l3iso top slab caches: ${[...m.l3isoCgroup.topSlabCaches, ...m.l3isoAssign.topSlabCaches]
      .slice(0, 6)
      .map((c) => `${c.cache} ${c.kbPerContainer}`)
      .join(', ')}`,
    `  left after both teardowns, whole machine (other jobs count too): kernel ${m.residualAfterTeardownKB.kernel ?? 0} KB`,
    '',
    `Data path (medians of ${r.options.reps}; both ends pinned to CPU ${r.options.cpu})`,
    table(
      [
        '',
        `ping-pong ${r.options.pingPongBytes} B, us/RT`,
        'connect+req+close, us',
        'bulk, Gbit/s',
      ],
      [
        [
          'baseline (one netns, no BPF)',
          d.baseline.usPerRoundTrip,
          d.baseline.usPerConnection,
          d.baseline.bulkGbps,
        ],
        [
          'l3iso (two cells, one stack)',
          d.l3iso.usPerRoundTrip,
          d.l3iso.usPerConnection,
          d.l3iso.bulkGbps,
        ],
        [
          'netns (veth + bridge)',
          d.netns.usPerRoundTrip,
          d.netns.usPerConnection,
          d.netns.bulkGbps,
        ],
        [
          'l3iso / baseline',
          x(d.vsBaseline.l3iso.roundTrip),
          x(d.vsBaseline.l3iso.connection),
          x(d.vsBaseline.l3iso.bulk),
        ],
        [
          'netns / baseline',
          x(d.vsBaseline.netns.roundTrip),
          x(d.vsBaseline.netns.connection),
          x(d.vsBaseline.netns.bulk),
        ],
        [
          'l3iso advantage over netns',
          x(d.l3isoAdvantage.roundTrip),
          x(d.l3isoAdvantage.connection),
          x(d.l3isoAdvantage.bulk),
        ],
      ],
    ),
    '',
    'Checks',
    ...r.checks.map((c) => `  ok  ${c}`),
  );
  return out.join('\n');
}

// ------------------------------------------------------------------ entry points

const RELEASE_WORKER_FLAG = '--l3iso-release-worker';

/** The child side of releaseCells(): releases every cell, times only that. */
function releaseWorker(): void {
  const input = JSON.parse(fs.readFileSync(0, 'utf8')) as { pinDir: string; cells: string[] };
  const t = nowMs();
  let destroyed = 0;
  for (const c of input.cells) destroyed += release(input.pinDir, c, []).socketsDestroyed;
  process.stdout.write(JSON.stringify({ ms: nowMs() - t, destroyed }) + '\n');
}

function parseArgs(argv: string[]): { opts: Partial<IsolationOptions>; json: boolean } {
  const opts: Partial<IsolationOptions> = {};
  let json = false;
  const numeric: Record<string, keyof IsolationOptions> = {
    '--containers': 'containers',
    '--naive': 'naiveContainers',
    '--reps': 'reps',
    '--rounds': 'pingPongRounds',
    '--size': 'pingPongBytes',
    '--crr': 'crrConnections',
    '--bulk-mib': 'bulkBytes',
    '--cpu': 'cpu',
    '--settle-ms': 'settleMs',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') json = true;
    else if (a === '--quiet') opts.verbose = false;
    else if (numeric[a] !== undefined && argv[i + 1] !== undefined) {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v < 0) throw new Error(`${a} needs a number`);
      const key = numeric[a];
      (opts as unknown as Record<string, number>)[key] = key === 'bulkBytes' ? v * 1024 * 1024 : v;
    } else throw new Error(`unknown argument ${a}`);
  }
  return { opts, json };
}

if (require.main === module) {
  if (process.argv[2] === RELEASE_WORKER_FLAG) {
    releaseWorker();
  } else {
    // Environment defaults so that `node dist/bench/isolation.js` alone is enough.
    const env = Number(process.env.L3ISO_BENCH_CONTAINERS);
    const { opts, json } = parseArgs(process.argv.slice(2));
    if (Number.isInteger(env) && env > 0 && opts.containers === undefined) opts.containers = env;
    runIsolationBench(opts).then(
      (r) => {
        process.stdout.write(json ? JSON.stringify(r, null, 2) + '\n' : formatReport(r) + '\n');
      },
      (err: unknown) => {
        process.stderr.write(
          `isolation benchmark failed: ${(err as Error).stack ?? String(err)}\n`,
        );
        process.exit(1);
      },
    );
  }
}
