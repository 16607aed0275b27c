/**
 * `l3iso agent` of a sandbox, started the way each test needs it and
 * waited for until it answers: the one place that knows the agent's argv.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from './http-unix';
import { CLI, type BgProc, type Sandbox } from './sandbox';

/** A bound for a slow machine, not a timed assertion. */
const READY_BOUND_MS = 30_000;

export interface AgentOptions {
  /** the unix socket it serves */
  socket: string;
  /** agent options after --socket (--resync, --etcd, ...) */
  args?: string[];
  /** argv it runs under: env(1) with variables, systemd-socket-activate */
  wrap?: string[];
  /**
   * Ready when this holds (e.g. a line on stderr); by default when /healthz
   * answers with the new process's pid, not a killed predecessor's.
   */
  ready?: (agent: BgProc) => boolean | Promise<boolean>;
}

/** The agent on the sandbox's pin dir, in its netns, not waited for. */
export function spawnAgent(sb: Sandbox, o: Omit<AgentOptions, 'ready'>): BgProc {
  return sb.spawnOnHost([
    ...(o.wrap ?? []),
    process.execPath,
    CLI,
    '--pin-dir',
    sb.pinDir,
    'agent',
    '--socket',
    o.socket,
    ...(o.args ?? []),
  ]);
}

/** spawnAgent, then wait until it is ready; fails if it exits first. */
export async function startAgent(sb: Sandbox, o: AgentOptions): Promise<BgProc> {
  const agent = spawnAgent(sb, o);
  const ready = o.ready ?? answersHealth;
  const deadline = Date.now() + READY_BOUND_MS;
  for (;;) {
    if (agent.child.exitCode !== null) throw new Error(`the agent exited: ${agent.stderr}`);
    if (await Promise.resolve(ready(agent)).catch(() => false)) return agent;
    if (Date.now() > deadline) {
      await agent.kill();
      throw new Error(`the agent was not ready after ${READY_BOUND_MS} ms: ${agent.stderr}`);
    }
    await sleep(100);
  }

  async function answersHealth(p: BgProc): Promise<boolean> {
    const r = await request(o.socket, 'GET', '/healthz');
    return r.status === 200 && r.json?.pid === p.pid;
  }
}
