// Issue 9: racing CLIs and agent clients on many addresses. Every worker
// (one per cell) tries to assign every batch of a shared address pool, in
// its own random order; batches that nobody won (two claimers can both
// lose and roll back) are retried. The CLI workers run alone (--no-agent),
// the agent clients are CLIs whose requests the agent answers, so the
// agent's assigns race the CLIs' in the kernel. At the end each address
// has exactly one owner, it is the cell whose assign of that batch exited
// 0, and every record is consistent (gc --check and the test's own check).
// CI: 8 CLIs and 2 agent clients on 200 addresses; L3ISO_LONG=1: 16 CLIs
// and 4 agent clients on 1,000.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { childrenOf, flocksOn, inFlock, lockFree, spawnCli, stopped, until } from '../harness/lock';
import { mapInvariants } from '../harness/invariants';
import { startAgent } from '../harness/agent';
import { answered as agentRequests } from '../harness/http-unix';
import { createSandbox, type BgProc, type Sandbox } from '../harness/sandbox';

const LONG = process.env.L3ISO_LONG === '1';
const WORKERS = LONG ? 16 : 8;
const AGENT_CLIENTS = LONG ? 4 : 2;
const ADDRESSES = LONG ? 1000 : 200;
const BATCH = 10;

const addr = (i: number): string =>
  i % 2 === 0 ? `10.77.${Math.floor(i / 250)}.${(i % 250) + 1}` : `fd77::${i.toString(16)}`;

function shuffled<T>(xs: readonly T[]): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

describe(`${WORKERS} concurrent CLIs and ${AGENT_CLIENTS} agent clients on ${ADDRESSES} addresses`, () => {
  let sb: Sandbox;
  let dir: string;
  let sock: string;
  let agent: BgProc | undefined;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l3iso-race-'));
    sock = path.join(dir, 'agent.sock');
    agent = await startAgent(sb, { socket: sock });
  });
  afterAll(async () => {
    await agent?.kill();
    await sb?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('every address ends with exactly one owner: the cell whose assign won it', async () => {
    const batches = Array.from({ length: ADDRESSES / BATCH }, (_, b) =>
      Array.from({ length: BATCH }, (_, k) => addr(b * BATCH + k)),
    );
    const cells = [
      ...Array.from({ length: WORKERS }, (_, w) => `w${w}`),
      ...Array.from({ length: AGENT_CLIENTS }, (_, w) => `agent${w}`),
    ];
    for (const c of cells) sb.cg(c);
    const winner = new Map<number, string>();
    let viaAgent = 0;
    const before = (await agentRequests(sock))['POST /v1/assign'] ?? 0;
    const worker = async (cell: string, order: number[]) => {
      const agentClient = cell.startsWith('agent');
      for (const b of order) {
        if (winner.has(b)) continue;
        if (agentClient) viaAgent++;
        const r = await sb.cli(
          [...(agentClient ? [] : ['--no-agent']), 'assign', cell, ...batches[b]!],
          {
            json: true,
            timeoutMs: 120_000,
            env: agentClient ? { L3ISO_AGENT_SOCKET: sock } : {},
          },
        );
        if (r.status === 0) {
          expect(winner.has(b), `batch ${b} won twice`).toBe(false);
          winner.set(b, cell);
        } else {
          expect(r.json?.error?.code, r.stdout + r.stderr).toBe('EADDR_OWNED');
        }
      }
    };
    const all = batches.map((_, b) => b);
    for (let round = 0; round < 5 && winner.size < batches.length; round++) {
      const left = all.filter((b) => !winner.has(b));
      await Promise.all(cells.map((c) => worker(c, shuffled(left))));
    }
    expect(winner.size).toBe(batches.length);
    // the agent answered every agent client's request
    const answered = ((await agentRequests(sock))['POST /v1/assign'] ?? 0) - before;
    expect(viaAgent).toBeGreaterThan(0);
    expect(answered).toBe(viaAgent);
    const agentWon = [...winner.values()].filter((c) => c.startsWith('agent')).length;
    console.log(
      `concurrency: ${cells.length} workers, ${ADDRESSES} addresses; agent clients sent ${viaAgent} assigns and won ${agentWon} of ${batches.length} batches`,
    );

    const owner = new Map<string, string>();
    for (const c of await sb.list()) {
      for (const a of c.addresses as string[]) {
        expect(owner.has(a), `${a} listed twice`).toBe(false);
        owner.set(a, c.cell);
      }
    }
    for (const [b, cell] of winner) for (const a of batches[b]!) expect(owner.get(a)).toBe(cell);
    expect(owner.size).toBe(ADDRESSES);
    const check = await sb.cli(['gc', '--check', '--json']);
    expect(check.json?.inconsistencies, check.stderr).toEqual([]);
    expect(mapInvariants(sb.pinDir)).toEqual([]);
  }, 900_000);

  // Issue 12: the lock is the pin dir's flock. A writer stopped inside its
  // critical section (SIGSTOP on its way out of the flock(LOCK_EX) that begins it)
  // keeps a second writer out, and a reader too, until it goes on.
  it('two writers are never both inside: the second waits while the first is stopped in it', async () => {
    sb.cg('s1');
    sb.cg('s2');
    const first = spawnCli(
      sb.nsPath,
      sb.pinDir,
      ['assign', 's1', '10.78.0.1'],
      [
        'strace',
        '-f',
        '-qq',
        '-o',
        '/dev/null',
        '-e',
        'trace=flock',
        '-e',
        'inject=flock:signal=STOP:when=1',
        '--',
      ],
    );
    // Once it holds the lock it stays inside: the STOP is delivered as the
    // flock returns. Watched in /proc/locks, which takes no lock itself.
    let node = 0;
    await until(() => {
      node = childrenOf(first.child.pid!)[0] ?? 0;
      const held = flocksOn(sb.pinDir);
      return (
        node > 0 && stopped(node) && held.some((l) => l.pid === node && l.mode === 'exclusive')
      );
    }, 'the first writer stopped inside its critical section').catch((err: Error) => {
      throw new Error(`${err.message}: ${first.output()}`);
    });
    expect(lockFree(sb.pinDir, 'shared')).toBe(false);
    const second = spawnCli(sb.nsPath, sb.pinDir, ['assign', 's2', '10.78.0.2']);
    const reader = spawnCli(sb.nsPath, sb.pinDir, ['--json', 'list']);
    await until(() => inFlock(second.child.pid!), 'the second writer waits in flock');
    await until(() => inFlock(reader.child.pid!), 'the reader waits in flock');
    process.kill(node, 'SIGCONT');
    const [a, b, r] = await Promise.all([first.done, second.done, reader.done]);
    expect(a.status, a.stderr).toBe(0);
    expect(b.status, b.stderr).toBe(0);
    expect(r.status, r.stderr).toBe(0);
    // The reader ran after the first writer: it sees its address whole.
    expect(r.stdout).toContain('10.78.0.1');
    const cells = await sb.list();
    expect(cells.find((c) => c.cell === 's2')?.addresses).toEqual(['10.78.0.2']);
  }, 400_000);
});
