// Issue 9: racing CLIs on many addresses. Every worker (one per cell) tries
// to assign every batch of a shared address pool, in its own random order;
// batches that nobody won (two claimers can both lose and roll back) are
// retried. At the end each address has exactly one owner, it is the cell
// whose assign of that batch exited 0, and every record is consistent.
// CI: 8 CLIs on 200 addresses; L3ISO_LONG=1: 16 CLIs on 1,000.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type Sandbox } from '../harness/sandbox';
import { childrenOf, flocksOn, inFlock, lockFree, spawnCli, stopped, until } from '../harness/lock';

const LONG = process.env.L3ISO_LONG === '1';
const WORKERS = LONG ? 16 : 8;
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

describe(`${WORKERS} concurrent CLIs on ${ADDRESSES} addresses`, () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('every address ends with exactly one owner: the cell whose assign won it', async () => {
    const batches = Array.from({ length: ADDRESSES / BATCH }, (_, b) =>
      Array.from({ length: BATCH }, (_, k) => addr(b * BATCH + k)),
    );
    const cells = Array.from({ length: WORKERS }, (_, w) => `w${w}`);
    for (const c of cells) sb.cg(c);
    const winner = new Map<number, string>();
    const worker = async (cell: string, order: number[]) => {
      for (const b of order) {
        if (winner.has(b)) continue;
        const r = await sb.cli(['assign', cell, ...batches[b]!], {
          json: true,
          timeoutMs: 120_000,
        });
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
