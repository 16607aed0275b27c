/**
 * The tools operators use, run as a client against a server in some
 * network namespace, each result parsed into one figure: iperf3 (UDP
 * 64-byte packets/s, TCP stream both ways), sockperf (TCP ping-pong rate
 * and latency percentiles), bench/pingpong.c (TCP connect + request +
 * close), wrk against nginx (HTTP keep-alive and close).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { netnsPath, type Cleanup } from './isolation';

export const PORTS = { iperf: 5201, sockperf: 11111, pingpong: 7000, http: 8080 } as const;

/** Where a process runs: a network namespace, optionally inside a cell. */
export interface Place {
  netns: string;
  /** cgroup.procs of a cell to join before exec (its sockets are the cell's) */
  procs?: string;
}

/** argv running `cmd` in a place, pinned to one CPU. */
export function argvIn(place: Place, cpu: number, cmd: string[]): string[] {
  const inner = [
    'taskset',
    '-c',
    String(cpu),
    'nsenter',
    `--net=${netnsPath(place.netns)}`,
    '--',
    ...cmd,
  ];
  if (!place.procs) return inner;
  // Join the cell first, then exec: every socket is created in the cell.
  return ['sh', '-c', 'echo $$ > "$0" && exec "$@"', place.procs, ...inner];
}

export function runTo(argv: string[], timeoutMs: number, cleanup: Cleanup): Promise<string> {
  const child = cleanup.track(
    spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }),
  );
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out + err);
      else
        reject(
          new Error(
            `${argv.slice(-8).join(' ')}: exit ${code ?? signal}: ${(out + err).trim().slice(-400)}`,
          ),
        );
    });
  });
}

/** nginx serving a two-byte body on addr:PORTS.http, one process. */
export function nginxConfig(dir: string, addr: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(
    conf,
    [
      'worker_processes 1;',
      'master_process off;',
      'daemon off;',
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log warn;`,
      'events { worker_connections 4096; }',
      'http {',
      '  access_log off;',
      '  keepalive_requests 100000000;',
      `  client_body_temp_path ${dir}/body;`,
      `  proxy_temp_path ${dir}/proxy;`,
      `  fastcgi_temp_path ${dir}/fastcgi;`,
      `  uwsgi_temp_path ${dir}/uwsgi;`,
      `  scgi_temp_path ${dir}/scgi;`,
      `  server { listen ${addr}:${PORTS.http}; location / { return 200 "ok"; } }`,
      '}',
      '',
    ].join('\n'),
  );
  return conf;
}

/** The servers of one place, started together and killed together. */
export function serverCommands(addr: string, pingpong: string, nginxConf: string): string[][] {
  return [
    ['iperf3', '-s', '-B', addr, '-p', String(PORTS.iperf)],
    ['sockperf', 'server', '--tcp', '-i', addr, '-p', String(PORTS.sockperf)],
    [pingpong, 'server', addr, String(PORTS.pingpong)],
    ['nginx', '-c', nginxConf, '-e', path.join(path.dirname(nginxConf), 'error.log')],
  ];
}

export function startServers(
  place: Place,
  cpu: number,
  cmds: string[][],
  cleanup: Cleanup,
): ChildProcess[] {
  return cmds.map((c) => {
    const argv = argvIn(place, cpu, c);
    return cleanup.track(spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' }));
  });
}

/** Every TCP port listening in the namespace (ss, numeric). */
export function listening(
  netns: string,
  execSh: (cmd: string, args: string[]) => string,
): string[] {
  return execSh('nsenter', [`--net=${netnsPath(netns)}`, '--', 'ss', '-Hltn'])
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[3] ?? '')
    .filter(Boolean);
}

// ---- one measurement per metric -------------------------------------------

export type Metric =
  | 'udpPps'
  | 'rrPerSec'
  | 'crrPerSec'
  | 'streamInGbps'
  | 'streamOutGbps'
  | 'httpKeepAlive'
  | 'httpClose';

export const METRICS: readonly Metric[] = [
  'udpPps',
  'rrPerSec',
  'crrPerSec',
  'streamInGbps',
  'streamOutGbps',
  'httpKeepAlive',
  'httpClose',
];

export const METRIC_LABEL: Record<Metric, string> = {
  udpPps: 'UDP 64-byte rx packets/s (iperf3)',
  rrPerSec: 'TCP request/response /s (sockperf ping-pong)',
  crrPerSec: 'TCP connect+request+close /s (pingpong crr)',
  streamInGbps: 'TCP stream into the server, Gbit/s (iperf3)',
  streamOutGbps: 'TCP stream out of the server, Gbit/s (iperf3 -R)',
  httpKeepAlive: 'HTTP requests/s keep-alive (wrk -> nginx)',
  httpClose: 'HTTP requests/s Connection: close (wrk -> nginx)',
};

/** Small-packet metrics: where the per-packet cost shows. */
export const SMALL_PACKET: readonly Metric[] = [
  'udpPps',
  'rrPerSec',
  'crrPerSec',
  'httpKeepAlive',
  'httpClose',
];

export interface Sample {
  value: number;
  /** sockperf only: round-trip percentiles, µs */
  p50?: number;
  p99?: number;
}

interface IperfEnd {
  end: {
    sum?: { packets?: number; lost_packets?: number; seconds?: number };
    sum_received?: { bits_per_second?: number };
  };
}

export function parseIperfUdp(json: string): number {
  const s = (JSON.parse(json) as IperfEnd).end.sum;
  if (!s?.packets || !s.seconds) throw new Error('iperf3 UDP: no packet count');
  return (s.packets - (s.lost_packets ?? 0)) / s.seconds;
}

export function parseIperfStream(json: string): number {
  const bps = (JSON.parse(json) as IperfEnd).end.sum_received?.bits_per_second;
  if (!bps) throw new Error('iperf3: no received throughput');
  return bps / 1e9;
}

export function parseSockperf(out: string): Sample {
  const valid =
    /\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=\d+; ReceivedMessages=(\d+)/.exec(out);
  const pct = (p: string) => Number(new RegExp(`percentile ${p} =\\s*([\\d.]+)`).exec(out)?.[1]);
  if (!valid) throw new Error(`sockperf: no valid duration in ${out.slice(-300)}`);
  return { value: Number(valid[2]) / Number(valid[1]), p50: pct('50.000'), p99: pct('99.000') };
}

export function parseWrk(out: string): number {
  const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (!m) throw new Error(`wrk: no Requests/sec in ${out.slice(-300)}`);
  if (
    /Socket errors: connect \d+, read \d+, write \d+, timeout [1-9]/.test(out) ||
    /Non-2xx/.test(out)
  )
    throw new Error(`wrk reported errors: ${out.slice(-300)}`);
  return Number(m[1]);
}

export function parsePingpongCrr(out: string): number {
  const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as { usPerConn?: number };
  if (!r.usPerConn) throw new Error(`pingpong crr: ${out}`);
  return 1e6 / r.usPerConn;
}

export interface RunSpec {
  seconds: number;
  crrCount: number;
  cpu: number;
  pingpong: string;
}

/** The client argv for one metric against `addr`, and how to read its output. */
export function clientFor(
  metric: Metric,
  addr: string,
  o: RunSpec,
): { cmd: string[]; parse: (out: string) => Sample; timeoutMs: number } {
  const t = String(o.seconds);
  const timeoutMs = o.seconds * 1000 + 30_000;
  const iperf = ['iperf3', '-c', addr, '-p', String(PORTS.iperf), '-t', t, '-J'];
  const url = `http://${addr}:${PORTS.http}/`;
  switch (metric) {
    case 'udpPps':
      return {
        cmd: [...iperf, '-u', '-l', '64', '-b', '0'],
        parse: (s) => ({ value: parseIperfUdp(s) }),
        timeoutMs,
      };
    case 'streamInGbps':
      return { cmd: iperf, parse: (s) => ({ value: parseIperfStream(s) }), timeoutMs };
    case 'streamOutGbps':
      return { cmd: [...iperf, '-R'], parse: (s) => ({ value: parseIperfStream(s) }), timeoutMs };
    case 'rrPerSec':
      return {
        // sockperf spends its first 400 ms warming up
        cmd: [
          'sockperf',
          'ping-pong',
          '--tcp',
          '-i',
          addr,
          '-p',
          String(PORTS.sockperf),
          '-t',
          String(o.seconds + 0.4),
          '-m',
          '64',
          '--full-rtt',
        ],
        parse: parseSockperf,
        timeoutMs,
      };
    case 'crrPerSec':
      return {
        cmd: [o.pingpong, 'client', addr, String(PORTS.pingpong), '-', 'crr', String(o.crrCount)],
        parse: (s) => ({ value: parsePingpongCrr(s) }),
        timeoutMs,
      };
    case 'httpKeepAlive':
      return {
        cmd: ['wrk', '-t1', '-c8', `-d${t}s`, url],
        parse: (s) => ({ value: parseWrk(s) }),
        timeoutMs,
      };
    case 'httpClose':
      return {
        cmd: ['wrk', '-t1', '-c8', `-d${t}s`, '-H', 'Connection: close', url],
        parse: (s) => ({ value: parseWrk(s) }),
        timeoutMs,
      };
  }
}
