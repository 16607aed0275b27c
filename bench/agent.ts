/**
 * `node dist/bench/agent.js [--n 1000] [--runs 30]`: the control plane's
 * latency per container, side by side on this machine:
 *   - one assign (and one release) as a request to a running agent, over
 *     its unix socket (keep-alive connection), N times: p50/p99;
 *   - `l3iso assign` as a process, through the agent and alone (--no-agent),
 *     against `node -e 0` (node's own start-up), each RUNS times: medians.
 * Everything lives in a throwaway sandbox (own netns, cgroup subtree, pin
 * dir, AnyIP route for the addresses), removed in `finally`. Figures are
 * printed, never asserted.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { createSandbox } from '../src/demo/sandbox';
import { up } from '../src/engine/lifecycle';
import { packageRoot } from '../src/dataplane/paths';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('--n', 1000);
const RUNS = arg('--runs', 30);
const CLI = path.join(packageRoot(), 'dist', 'src', 'cli', 'main.js');

const addr = (i: number) => `198.18.${(i >> 8) & 255}.${i & 255}`;

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function post(agent: http.Agent, socket: string, url: string, body: unknown): Promise<number> {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        socketPath: socket,
        agent,
        method: 'POST',
        path: url,
        headers: { 'content-type': 'application/json', 'content-length': payload.length },
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          res.statusCode === 200 ? resolve(res.statusCode) : reject(new Error(`${res.statusCode}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

async function timed(n: number, f: (i: number) => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await f(i);
    out.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return out.sort((a, b) => a - b);
}

function medianOfRuns(argv: string[], env: NodeJS.ProcessEnv): number {
  const ms: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = process.hrtime.bigint();
    const r = spawnSync(argv[0]!, argv.slice(1), { env, stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}`);
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  ms.sort((a, b) => a - b);
  return pct(ms, 50);
}

async function waitHealthy(socket: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get({ socketPath: socket, path: '/healthz' }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('agent did not start');
}

async function main(): Promise<void> {
  const sb = createSandbox('l3ia', []);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l3iso-bench-agent-'));
  const socket = path.join(dir, 'agent.sock');
  let agentProc: ChildProcess | undefined;
  try {
    spawnSync('ip', ['-n', sb.netns, 'route', 'add', 'local', '198.18.0.0/16', 'dev', 'lo']);
    up({ pinDir: sb.pinDir, cgroupRoot: sb.cgroupRoot, netns: sb.netnsPath });
    for (let i = 0; i < N; i++) fs.mkdirSync(path.join(sb.cgroupRoot, `c${i}`));
    agentProc = sb.spawnCli(['agent', '--socket', socket, '--resync', '3600']);
    await waitHealthy(socket);
    const ka = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const assignMs = await timed(N, (i) =>
      post(ka, socket, '/v1/assign', { cgroup: `c${i}`, addresses: [addr(i)] }),
    );
    const releaseMs = await timed(N, (i) => post(ka, socket, '/v1/release', { cgroup: `c${i}` }));
    ka.destroy();

    const ns = sb.inNetns;
    const env = { ...process.env, L3ISO_LOG_LEVEL: 'warn', L3ISO_AGENT_SOCKET: socket };
    const cli = (extra: string[]) =>
      ns([process.execPath, CLI, '--pin-dir', sb.pinDir, ...extra, 'assign', 'c0', addr(0)]);
    const nodeMs = medianOfRuns(ns([process.execPath, '-e', '0']), env);
    const viaAgentMs = medianOfRuns(cli([]), env);
    const aloneMs = medianOfRuns(cli(['--no-agent']), env);
    const r = (x: number) => Math.round(x * 1000) / 1000;
    const report = {
      n: N,
      runs: RUNS,
      agentAssignMs: { p50: r(pct(assignMs, 50)), p99: r(pct(assignMs, 99)) },
      agentReleaseMs: { p50: r(pct(releaseMs, 50)), p99: r(pct(releaseMs, 99)) },
      processMedianMs: { nodeE0: r(nodeMs), cliViaAgent: r(viaAgentMs), cliAlone: r(aloneMs) },
      ratioToNodeE0: { cliViaAgent: r(viaAgentMs / nodeMs), cliAlone: r(aloneMs / nodeMs) },
    };
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } finally {
    agentProc?.kill('SIGKILL');
    sb.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench agent: ${String(err)}\n`);
  process.exitCode = 1;
});
