/**
 * Data-path benchmark: one client netns, and behind a veth pair each of
 *
 *   bare        a server in a plain netns (no BPF anywhere);
 *   cell        a server in an l3iso cell, every program up and the uplink
 *               attached on the server side of the veth (attach's own choice);
 *   cell-hooks  the same cell without the uplink (socket and cgroup_skb hooks);
 *   bridge      a server in a container netns behind veth + bridge;
 *   routed      a server in a container netns behind a routed veth;
 *
 * measured with iperf3, sockperf, wrk + nginx and bench/pingpong.c, the
 * modes interleaved (rotating order), every metric R times; each ratio is
 * taken within one repetition, then the median of those is reported. A
 * last pass with kernel.bpf_stats_enabled gives each program's ns per run
 * (kept out of the ratios: the accounting itself costs). Writes
 * BENCHMARKS.md and bench/datapath.png.
 *
 * Everything lives in namespaces, a cgroup subtree and a pin dir it
 * creates (198.18.0.0/15 and 10.201.0.0/16 inside them), removed at the end
 * and on SIGINT/SIGTERM.
 *
 *   node dist/bench/datapath.js [--quick] [--reps R] [--seconds S] [--cpu N] [--no-write]
 *   node dist/bench/datapath.js --report-only   (rewrite BENCHMARKS.md from bench/datapath.json)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createSandbox, type Sandbox } from '../src/demo/sandbox';
import { packageRoot } from '../src/dataplane/paths';
import {
  attachEmpty,
  costBetween,
  enableBpfStats,
  engineProgIds,
  progInfo,
  testRunCosts,
  type ProgCost,
  type TestRunCost,
} from './bpfstats';
import { Cleanup, compilePingpong, median, nowMs, sh, sleep } from './isolation';
import { writeReport } from './report';
import {
  METRICS,
  PORTS,
  argvIn,
  clientFor,
  listening,
  nginxConfig,
  runTo,
  serverCommands,
  startServers,
  type Metric,
  type Place,
  type Sample,
} from './tools';

export type Mode = 'bare' | 'cell' | 'cell-hooks' | 'bridge' | 'routed';
export const MODES: readonly Mode[] = ['bare', 'cell', 'cell-hooks', 'bridge', 'routed'];

export interface DatapathOptions {
  quick: boolean;
  reps: number;
  seconds: number;
  crrCount: number;
  cpu: number;
  testRunRepeat: number;
  write: boolean;
}

export function optionsFor(quick: boolean): DatapathOptions {
  return quick
    ? { quick, reps: 3, seconds: 1, crrCount: 2000, cpu: 1, testRunRepeat: 200_000, write: true }
    : { quick, reps: 3, seconds: 4, crrCount: 8000, cpu: 1, testRunRepeat: 2_000_000, write: true };
}

export interface VethOffloads {
  /** where: "client end", "server end", with the namespace */
  where: string;
  iface: string;
  features: Record<string, boolean>;
}

export interface DatapathReport {
  options: DatapathOptions;
  machine: {
    cpu: string;
    cpus: number;
    memGiB: number;
    kernel: string;
    tools: Record<string, string>;
  };
  loadavg: { start: string; end: string };
  uplink: { mode: string; reason: string };
  offloads: VethOffloads[];
  /** samples[mode][metric]: one per repetition */
  samples: Record<Mode, Record<Metric, Sample[]>>;
  /** per-program ns per run, per profiled workload (cell mode, stats on) */
  programCosts: { workload: Metric; costs: ProgCost[] }[];
  programs: {
    name: string;
    type: string;
    verifiedInsns?: number;
    xlatedInsns: number;
    jitedBytes: number;
  }[];
  testRun: TestRunCost[];
  checks: string[];
  durationS: number;
}

const SUBNET: Record<Exclude<Mode, 'cell-hooks'>, number> = {
  bare: 1,
  cell: 2,
  bridge: 3,
  routed: 4,
};
const SERVER_ADDR: Record<Mode, string> = {
  bare: '198.18.1.10',
  cell: '198.18.2.10',
  'cell-hooks': '198.18.2.10',
  bridge: '198.19.3.10',
  routed: '198.19.4.10',
};

interface World {
  o: DatapathOptions;
  cleanup: Cleanup;
  tag: string;
  tmp: string;
  pingpong: string;
  sb: Sandbox;
  client: string;
  /** where each mode's servers run */
  places: Record<Mode, Place>;
  /** the namespace holding the server end of each mode's client veth */
  hosts: Record<Exclude<Mode, 'cell-hooks'>, string>;
  cellPath: string;
  checks: string[];
  log: (m: string) => void;
}

const ip = (args: string[]) => sh('ip', args);
const inNs = (ns: string, cmd: string[]) => sh('nsenter', [`--net=/run/netns/${ns}`, '--', ...cmd]);

function addNetns(w: Pick<World, 'cleanup'>, name: string): string {
  ip(['netns', 'add', name]);
  w.cleanup.push(`netns ${name}`, () => {
    if (fs.existsSync(`/run/netns/${name}`)) ip(['netns', 'del', name]);
  });
  ip(['-n', name, 'link', 'set', 'lo', 'up']);
  return name;
}

/** The client's veth to one host: 10.201.k.2 on the client, .1 on the host. */
function linkClient(w: World, k: number, host: string, routes: string[]): void {
  const cif = `to${k}`;
  ip(['-n', w.client, 'link', 'add', cif, 'type', 'veth', 'peer', 'name', 'up0', 'netns', host]);
  ip(['-n', w.client, 'addr', 'add', `10.201.${k}.2/24`, 'dev', cif]);
  ip(['-n', host, 'addr', 'add', `10.201.${k}.1/24`, 'dev', 'up0']);
  ip(['-n', w.client, 'link', 'set', cif, 'up']);
  ip(['-n', host, 'link', 'set', 'up0', 'up']);
  for (const r of routes) ip(['-n', w.client, 'route', 'add', r, 'via', `10.201.${k}.1`]);
}

function sysctl(ns: string, kv: string): void {
  inNs(ns, ['sysctl', '-q', '-w', kv]);
}

function buildWorld(o: DatapathOptions, cleanup: Cleanup, log: (m: string) => void): World {
  const tag = `l3dp${process.pid}`;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l3iso-dp-'));
  cleanup.push('temp dir', () => fs.rmSync(tmp, { recursive: true, force: true }));
  const pingpong = compilePingpong(cleanup);
  const sb = createSandbox('l3dp', [SERVER_ADDR.cell]);
  cleanup.push('sandbox', () => sb.destroy());
  const client = addNetns({ cleanup }, `${tag}-cl`);
  // Thousands of short connections per run: reuse TIME_WAIT ports.
  sysctl(client, 'net.ipv4.tcp_tw_reuse=1');
  sysctl(client, 'net.ipv4.ip_local_port_range=1024 65000');
  const hosts = {
    bare: addNetns({ cleanup }, `${tag}-bare`),
    cell: sb.netns,
    bridge: addNetns({ cleanup }, `${tag}-br`),
    routed: addNetns({ cleanup }, `${tag}-rt`),
  };
  const w: World = {
    o,
    cleanup,
    tag,
    tmp,
    pingpong,
    sb,
    client,
    hosts,
    places: {} as Record<Mode, Place>,
    cellPath: path.join(sb.cgroupRoot, 'srv'),
    checks: [],
    log,
  };

  ip(['-n', hosts.bare, 'addr', 'add', `${SERVER_ADDR.bare}/32`, 'dev', 'lo']);
  linkClient(w, SUBNET.bare, hosts.bare, ['198.18.1.0/24']);
  linkClient(w, SUBNET.cell, hosts.cell, ['198.18.2.0/24']);

  // bridge: host br0 198.19.3.1/24, container eth0 198.19.3.10/24 on it
  const brc = addNetns({ cleanup }, `${tag}-brc`);
  linkClient(w, SUBNET.bridge, hosts.bridge, ['198.19.3.0/24']);
  ip(['-n', hosts.bridge, 'link', 'add', 'br0', 'type', 'bridge']);
  ip(['-n', hosts.bridge, 'addr', 'add', '198.19.3.1/24', 'dev', 'br0']);
  ip(['-n', hosts.bridge, 'link', 'set', 'br0', 'up']);
  ip([
    '-n',
    hosts.bridge,
    'link',
    'add',
    'vc',
    'type',
    'veth',
    'peer',
    'name',
    'eth0',
    'netns',
    brc,
  ]);
  ip(['-n', hosts.bridge, 'link', 'set', 'vc', 'master', 'br0', 'up']);
  ip(['-n', brc, 'addr', 'add', `${SERVER_ADDR.bridge}/24`, 'dev', 'eth0']);
  ip(['-n', brc, 'link', 'set', 'eth0', 'up']);
  ip(['-n', brc, 'route', 'add', 'default', 'via', '198.19.3.1']);
  sysctl(hosts.bridge, 'net.ipv4.ip_forward=1');

  // routed: container 198.19.4.10/32, gateway 169.254.1.1 on the host end
  const rtc = addNetns({ cleanup }, `${tag}-rtc`);
  linkClient(w, SUBNET.routed, hosts.routed, ['198.19.4.0/24']);
  ip([
    '-n',
    hosts.routed,
    'link',
    'add',
    'vr',
    'type',
    'veth',
    'peer',
    'name',
    'eth0',
    'netns',
    rtc,
  ]);
  ip(['-n', hosts.routed, 'addr', 'add', '169.254.1.1/32', 'dev', 'vr']);
  ip(['-n', hosts.routed, 'link', 'set', 'vr', 'up']);
  ip(['-n', hosts.routed, 'route', 'add', `${SERVER_ADDR.routed}/32`, 'dev', 'vr']);
  ip(['-n', rtc, 'addr', 'add', `${SERVER_ADDR.routed}/32`, 'dev', 'eth0']);
  ip(['-n', rtc, 'link', 'set', 'eth0', 'up']);
  ip(['-n', rtc, 'route', 'add', '169.254.1.1', 'dev', 'eth0', 'scope', 'link']);
  ip(['-n', rtc, 'route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0']);
  sysctl(hosts.routed, 'net.ipv4.ip_forward=1');

  // the engine, one cell owning the server address
  cliOk(w, ['up', '--cgroup-root', sb.cgroupRoot, '--managed-prefix', '198.18.2.0/24']);
  // removed with the sandbox's cgroup tree, its processes killed first
  fs.mkdirSync(w.cellPath);
  cliOk(w, ['assign', w.cellPath, SERVER_ADDR.cell]);

  const procs = path.join(w.cellPath, 'cgroup.procs');
  w.places = {
    bare: { netns: hosts.bare },
    cell: { netns: sb.netns, procs },
    'cell-hooks': { netns: sb.netns, procs },
    bridge: { netns: brc },
    routed: { netns: rtc },
  };
  return w;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function cliOk(w: World, args: string[]): any {
  const r = w.sb.cli([...args, '--json']);
  if (r.status !== 0) throw new Error(`l3iso ${args.join(' ')}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout);
}

function offloadsOf(ns: string, iface: string): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  for (const line of inNs(ns, ['ethtool', '-k', iface]).split('\n')) {
    const m = /^([\w-]+): (on|off)/.exec(line);
    if (m) out[m[1]!] = m[2] === 'on';
  }
  return out;
}

const OFFLOAD_KEYS = [
  'tcp-segmentation-offload',
  'generic-segmentation-offload',
  'generic-receive-offload',
  'scatter-gather',
  'rx-gro-list',
];

function offloadTable(w: World, label: string): VethOffloads[] {
  const pick = (f: Record<string, boolean>) =>
    Object.fromEntries(OFFLOAD_KEYS.filter((k) => k in f).map((k) => [k, f[k]!]));
  const out: VethOffloads[] = [];
  for (const [mode, k] of Object.entries(SUBNET)) {
    const host = w.hosts[mode as keyof typeof SUBNET];
    out.push({
      where: `${mode}: client end ${label}`,
      iface: `to${k}`,
      features: pick(offloadsOf(w.client, `to${k}`)),
    });
    out.push({
      where: `${mode}: server end ${label}`,
      iface: 'up0',
      features: pick(offloadsOf(host, 'up0')),
    });
  }
  return out;
}

async function waitListening(place: Place): Promise<void> {
  const want = Object.values(PORTS).map(String);
  const t = nowMs();
  for (;;) {
    const ports = listening(place.netns, sh).map((a) => a.split(':').pop());
    if (want.every((p) => ports.includes(p))) return;
    if (nowMs() - t > 10_000)
      throw new Error(`servers in ${place.netns} not listening: ${ports.join(' ')}`);
    await sleep(50);
  }
}

async function startAll(w: World): Promise<void> {
  const started = new Set<string>();
  for (const mode of MODES) {
    const place = w.places[mode];
    const key = `${place.netns}`;
    if (started.has(key)) continue;
    started.add(key);
    const conf = nginxConfig(path.join(w.tmp, `nginx-${mode}`), SERVER_ADDR[mode]);
    startServers(place, w.o.cpu, serverCommands(SERVER_ADDR[mode], w.pingpong, conf), w.cleanup);
    await waitListening(place);
  }
  // Proof that the cell's servers are the cell's: its counters see traffic.
  const bound = listening(w.sb.netns, sh);
  if (!bound.includes(`${SERVER_ADDR.cell}:${PORTS.iperf}`))
    throw new Error(`cell servers not on ${SERVER_ADDR.cell}: ${bound.join(' ')}`);
}

let uplinkAttached = false;

function setUplink(w: World, on: boolean): { mode: string; reason: string } | undefined {
  if (on === uplinkAttached) return undefined;
  uplinkAttached = on;
  if (!on) {
    cliOk(w, ['detach', 'up0']);
    return undefined;
  }
  const r = cliOk(w, ['attach', 'up0']) as { mode: string; reason: string };
  return { mode: r.mode, reason: r.reason };
}

async function measure(w: World, mode: Mode, metric: Metric): Promise<Sample> {
  setUplink(w, mode === 'cell');
  const c = clientFor(metric, SERVER_ADDR[mode], {
    seconds: w.o.seconds,
    crrCount: w.o.crrCount,
    cpu: w.o.cpu,
    pingpong: w.pingpong,
  });
  const out = await runTo(argvIn({ netns: w.client }, w.o.cpu, c.cmd), c.timeoutMs, w.cleanup);
  return c.parse(out);
}

interface CellTraffic {
  rxBytes: number;
  uplinkRxBytes: number;
}

function cellTraffic(w: World): CellTraffic {
  const s = cliOk(w, ['show', w.cellPath]) as { traffic: CellTraffic };
  return { rxBytes: s.traffic.rxBytes, uplinkRxBytes: s.traffic.uplinkRxBytes };
}

async function profile(w: World, workloads: Metric[]): Promise<DatapathReport['programCosts']> {
  setUplink(w, true);
  const empty = attachEmpty(w.tmp, w.cellPath, w.sb.netnsPath, 'up0');
  w.cleanup.push('empty programs', empty.detach);
  const ids = [...engineProgIds(w.sb.pinDir), ...uplinkProgIds(w), ...empty.ids];
  const restore = enableBpfStats(w.cleanup);
  try {
    const out: DatapathReport['programCosts'] = [];
    for (const m of workloads) {
      const a = progInfo(ids);
      await measure(w, 'cell', m);
      out.push({ workload: m, costs: costBetween(a, progInfo(ids)) });
    }
    return out;
  } finally {
    restore();
    empty.detach();
  }
}

function uplinkProgIds(w: World): number[] {
  const r = cliOk(w, ['attach', 'up0']) as {
    xdpProgId: number;
    tcProgId: number;
    tcIngressProgId: number;
  };
  return [r.xdpProgId, r.tcProgId, r.tcIngressProgId].filter((x) => x > 0);
}

function machine(): DatapathReport['machine'] {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const version = (cmd: string, args: string[]) => {
    try {
      return sh(cmd, args).split('\n').find(Boolean)?.trim() ?? '?';
    } catch (err) {
      return ((err as Error).message.split('\n')[0] ?? '?').slice(0, 80);
    }
  };
  return {
    cpu: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? 'unknown',
    cpus: os.cpus().length,
    memGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: os.release(),
    tools: {
      iperf3: version('iperf3', ['--version']),
      sockperf: version('sockperf', ['--version']).replace(/^sockperf: /, ''),
      wrk: version('sh', ['-c', 'wrk -v 2>&1 | head -1']),
      nginx: version('sh', ['-c', 'nginx -v 2>&1']),
      ethtool: version('ethtool', ['--version']),
    },
  };
}

function loadavg(): string {
  return fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

export async function runDatapath(o: DatapathOptions): Promise<DatapathReport> {
  const log = (m: string) => process.stderr.write(`[datapath] ${m}\n`);
  const started = nowMs();
  const loadStart = loadavg();
  const cleanup = new Cleanup();
  const onSignal = (sig: NodeJS.Signals) => {
    for (const e of cleanup.run()) process.stderr.write(`[datapath] cleanup: ${e}\n`);
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  uplinkAttached = false;
  try {
    log('building the namespaces, the engine and the cell');
    const w = buildWorld(o, cleanup, log);
    const offloads = offloadTable(w, 'before attach');
    const uplink = setUplink(w, true) ?? { mode: '?', reason: '?' };
    offloads.push(
      ...offloadTable(w, 'with the uplink attached').filter((x) => x.where.startsWith('cell')),
    );
    log(`uplink: ${uplink.mode} (${uplink.reason})`);
    await startAll(w);

    const samples = Object.fromEntries(
      MODES.map((m) => [m, Object.fromEntries(METRICS.map((k) => [k, [] as Sample[]]))]),
    ) as DatapathReport['samples'];
    const t0 = cellTraffic(w);
    for (let rep = 0; rep < o.reps; rep++) {
      for (const [i, metric] of METRICS.entries()) {
        // Rotate the order per metric and repetition: drift (other load,
        // thermal) does not always land on the same mode.
        const order = MODES.map((_, j) => MODES[(j + rep + i) % MODES.length]!);
        for (const mode of order) samples[mode][metric].push(await measure(w, mode, metric));
      }
      log(`repetition ${rep + 1}/${o.reps} done (${((nowMs() - started) / 1000).toFixed(0)} s)`);
    }
    const t1 = cellTraffic(w);
    if (t1.rxBytes <= t0.rxBytes)
      throw new Error('the cell counted no traffic: its servers are not in the cell');
    if (t1.uplinkRxBytes <= t0.uplinkRxBytes)
      throw new Error('the uplink counted no traffic into the cell');
    w.checks.push(
      `cell servers bound to ${SERVER_ADDR.cell}; cell counters: ${((t1.rxBytes - t0.rxBytes) / 2 ** 30).toFixed(2)} GiB in at cgroup_skb, ${((t1.uplinkRxBytes - t0.uplinkRxBytes) / 2 ** 30).toFixed(2)} GiB at the uplink`,
    );

    log('per-program cost (kernel.bpf_stats_enabled), cell mode');
    const programCosts = await profile(w, ['udpPps', 'rrPerSec', 'streamInGbps', 'streamOutGbps']);
    const ids = [...engineProgIds(w.sb.pinDir), ...uplinkProgIds(w)];
    const programs = [...progInfo(ids).values()]
      .map((p) => ({
        name: p.name,
        type: p.type,
        verifiedInsns: p.verifiedInsns,
        xlatedInsns: p.xlatedInsns,
        jitedBytes: p.jitedBytes,
      }))
      .sort((a, b) => a.name.localeCompare(b.name));
    log('BPF_PROG_TEST_RUN: ingress filter against an empty program');
    const testRun = testRunCosts(w.tmp, o.testRunRepeat);
    return {
      options: o,
      machine: machine(),
      loadavg: { start: loadStart, end: loadavg() },
      uplink,
      offloads,
      samples,
      programCosts,
      programs,
      testRun,
      checks: w.checks,
      durationS: Math.round((nowMs() - started) / 100) / 10,
    };
  } finally {
    log('cleaning up');
    for (const e of cleanup.run()) process.stderr.write(`[datapath] cleanup: ${e}\n`);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export function parseArgs(argv: string[]): DatapathOptions {
  const o = optionsFor(argv.includes('--quick'));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v <= 0) throw new Error(`${a} needs a positive number`);
      return v;
    };
    if (a === '--quick') continue;
    else if (a === '--reps') o.reps = Math.max(3, Math.round(num()));
    else if (a === '--seconds') o.seconds = num();
    else if (a === '--cpu') o.cpu = Math.round(num());
    else if (a === '--no-write') o.write = false;
    else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

export { median };

if (require.main === module && process.argv[2] === '--report-only') {
  // Rewrites BENCHMARKS.md and the chart from the last run's bench/datapath.json
  // (after editing bench/NOTES.md, say), without measuring again.
  const file = path.join(packageRoot(), 'bench', 'datapath.json');
  const r = JSON.parse(fs.readFileSync(file, 'utf8')) as DatapathReport;
  process.stdout.write(writeReport(r, packageRoot(), true).summary + '\n');
} else if (require.main === module) {
  const o = parseArgs(process.argv.slice(2));
  runDatapath(o).then(
    (r) => {
      const where = writeReport(r, packageRoot(), o.write);
      process.stdout.write(where.summary + '\n');
    },
    (err: unknown) => {
      process.stderr.write(`datapath benchmark failed: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
