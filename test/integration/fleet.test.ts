// Fleet mode with the real engine and a real etcd: three hosts (three pin
// dirs, three netns, three agents) share one pool through etcd. They race
// for addresses (no address on two hosts, every block one host's), a killed
// host's blocks come back after its lease TTL and another host takes them,
// etcd stopped mid-run gives clear errors and no duplicate, and allocation
// recovers when it returns. Counts: 3 x 500 addresses (L3ISO_LONG=1 and
// outside CI), 3 x 150 with CI set.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnAgent, startAgent as start } from '../harness/agent';
import { call } from '../harness/http-unix';
import { until } from '../harness/poll';
import { createSandbox, type BgProc, type Sandbox } from '../harness/sandbox';
import { startEtcd, type TestEtcd } from '../harness/etcd';

const LONG = process.env.L3ISO_LONG === '1';
const PER_HOST = LONG || !process.env.CI ? 500 : 150;
/** addresses per cell: PER_HOST / PER_CELL cells per host */
const PER_CELL = 5;
const POOL = '10.77.0.0/16';
const BLOCK = 26; // 64 addresses

interface Host {
  id: string;
  sb: Sandbox;
  sock: string;
  agent: BgProc;
  cells: string[];
}

/** 10.77.a.b -> its integer, for block arithmetic in the checks. */
const toN = (a: string): number => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
const blockOf = (a: string): string => {
  const n = toN(a) & ~((1 << (32 - BLOCK)) - 1);
  return `${[24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.')}-${BLOCK}`;
};

describe('fleet: three hosts, one etcd', () => {
  let etcd: TestEtcd;
  let kv: Etcd3;
  let dir: string;
  const hosts: Host[] = [];

  function startAgent(h: Omit<Host, 'agent'>, ttl: number): Promise<BgProc> {
    return start(h.sb, {
      socket: h.sock,
      args: [
        '--etcd',
        etcd.unixUrl,
        '--host-id',
        h.id,
        '--lease-ttl',
        String(ttl),
        '--etcd-timeout',
        '1',
      ],
      ready: (agent) => agent.stderr.includes('fleet: lease granted'),
    });
  }

  /** Every block key in etcd: block -> host. */
  async function blocks(): Promise<Map<string, string>> {
    const all = await kv.getAll().prefix('/l3iso/ipam/v1/blocks/').strings();
    return new Map(
      Object.entries(all).map(([k, v]) => [
        k.split('/').pop()!,
        (JSON.parse(v) as { host: string }).host,
      ]),
    );
  }

  /** Addresses each host's kernel owner map gives its cells. */
  async function owned(h: Host): Promise<string[]> {
    return (await h.sb.list()).flatMap((c: { addresses: string[] }) => c.addresses);
  }

  /** No address on two hosts; each address in a block etcd says is its host's. */
  async function noDuplicates(live: Host[]): Promise<number> {
    const seen = new Map<string, string>();
    const b = await blocks();
    for (const h of live)
      for (const a of await owned(h)) {
        expect(seen.get(a), `${a} on ${seen.get(a)} and ${h.id}`).toBeUndefined();
        seen.set(a, h.id);
        expect(b.get(blockOf(a)), `block of ${a} (host ${h.id})`).toBe(h.id);
      }
    return seen.size;
  }

  const assignVia = (h: Host, cell: string, count: number) =>
    call(h.sock, 'POST', '/v1/assign', { cgroup: cell, pool: 'fleet', count });

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l3iso-fleet-'));
    etcd = await startEtcd();
    kv = new Etcd3({ hosts: etcd.url });
    for (const [i, ttl] of [3, 20, 20].entries()) {
      const sb = await createSandbox();
      await sb.up(['--managed-prefix', POOL]);
      const h = { id: `h${i}`, sb, sock: path.join(dir, `h${i}.sock`), cells: [] as string[] };
      hosts.push({ ...h, agent: await startAgent(h, ttl) });
    }
  }, 120_000);

  afterAll(async () => {
    kv?.close();
    for (const h of hosts) await h.agent.kill();
    for (const h of hosts) await h.sb.destroy();
    await etcd?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('a pool defined on one host is every host\u2019s; keys documented in the README', async () => {
    const r = await call(hosts[0]!.sock, 'POST', '/v1/pools/add', {
      name: 'fleet',
      cidr: POOL,
      blockSize: BLOCK,
    });
    expect(r.status, r.text).toBe(200);
    expect(JSON.parse((await kv.get('/l3iso/ipam/v1/pools/fleet').string())!)).toEqual({
      name: 'fleet',
      cidr: POOL,
      blockSize: BLOCK,
    });
    const dup = await call(hosts[1]!.sock, 'POST', '/v1/pools/add', {
      name: 'other',
      cidr: '10.77.128.0/17',
    });
    expect(dup.status).toBe(409);
    expect(dup.json.error.code).toBe('EPOOL_OVERLAP');
    // The CLI goes through the agent: the pool is listed on every host.
    for (const h of hosts) {
      const l = await h.sb.cliOk(['pool', 'list', '--json'], {
        env: { L3ISO_AGENT_SOCKET: h.sock },
      });
      expect(l.json.pools.map((p: { name: string }) => p.name)).toEqual(['fleet']);
      expect(l.json.host).toBe(h.id);
    }
  });

  it(`three agents race for ${PER_HOST} addresses each: no address on two hosts, each block one host's`, async () => {
    const cellsPerHost = PER_HOST / PER_CELL;
    await Promise.all(
      hosts.map(async (h) => {
        for (let i = 0; i < cellsPerHost; i++) h.cells.push(path.basename(h.sb.cg(`c${i}`)));
        // 8 requests in flight per host, the three hosts at once
        let next = 0;
        const worker = async () => {
          while (next < h.cells.length) {
            const cell = h.cells[next++]!;
            const r = await assignVia(h, cell, PER_CELL);
            expect(r.status, r.text).toBe(200);
            expect(r.json.added).toHaveLength(PER_CELL);
          }
        };
        await Promise.all(Array.from({ length: 8 }, worker));
      }),
    );
    expect(await noDuplicates(hosts)).toBe(3 * PER_HOST);
    // each host holds just the blocks its addresses need (a block is taken
    // only when the held ones are full)
    const b = await blocks();
    for (const h of hosts) {
      const mine = [...b].filter(([, host]) => host === h.id).length;
      expect(mine).toBeGreaterThanOrEqual(Math.ceil(PER_HOST / 64));
      const listed = await call(h.sock, 'GET', '/v1/pools');
      expect(
        listed.json.blocks.map((x: { cidr: string }) => x.cidr.replace('/', '-')).sort(),
      ).toEqual(
        [...b]
          .filter(([, host]) => host === h.id)
          .map(([k]) => k)
          .sort(),
      );
      expect(listed.json.pools[0].assigned).toBe(PER_HOST);
    }
    for (const h of hosts) {
      const gc = await h.sb.cliOk(['gc', '--check', '--json']);
      expect(gc.json.inconsistencies).toEqual([]);
    }
  }, 600_000);

  it('a killed host loses its blocks after the TTL, and another host takes them', async () => {
    const [dead, alive] = [hosts[0]!, hosts[1]!];
    const before = await blocks();
    const deadBlocks = [...before].filter(([, h]) => h === dead.id).map(([k]) => k);
    expect(deadBlocks.length).toBeGreaterThan(0);
    await dead.agent.kill(); // SIGKILL: no goodbye to etcd
    await until(
      'the dead host\u2019s blocks to expire',
      async () => {
        const b = await blocks();
        return deadBlocks.every((k) => !b.has(k)) ? true : undefined;
      },
      30_000,
    );
    expect(await kv.get('/l3iso/ipam/v1/hosts/h0').string()).toBeNull();
    // a live host's id is not for another engine to take
    const thief = spawnAgent(dead.sb, {
      socket: path.join(dir, 'thief.sock'),
      args: ['--etcd', etcd.unixUrl, '--host-id', alive.id],
    });
    const exit = await thief.exited;
    expect(exit.status).toBe(1);
    expect(thief.stderr).toMatch(/host id h1 is held by another live agent/);
    // The lowest free block is now one the dead host had.
    const cell = path.basename(alive.sb.cg('taker'));
    alive.cells.push(cell);
    const free = await freeInHeld(alive);
    const r = await assignVia(alive, cell, free + 1);
    expect(r.status, r.text).toBe(200);
    const now = await blocks();
    const taken = deadBlocks.filter((k) => now.get(k) === alive.id);
    expect(taken).toEqual([
      deadBlocks.sort((x, y) => toN(x.split('-')[0]!) - toN(y.split('-')[0]!))[0],
    ]);
    // the dead host is out of the fleet: its kernel still has its cells
    // (a dead machine's would not), so it is left out of the check
    await noDuplicates(hosts.slice(1));
  }, 120_000);

  /** Free addresses in the blocks a host holds (from its pool listing). */
  async function freeInHeld(h: Host): Promise<number> {
    const l = await call(h.sock, 'GET', '/v1/pools');
    return l.json.blocks.reduce(
      (n: number, b: { cidr: string; assigned: number }) =>
        n + 2 ** (32 - Number(b.cidr.split('/')[1])) - b.assigned,
      0,
    );
  }

  it('etcd stopped mid-run: held blocks still serve, a new block fails clearly, no duplicate; recovery when it returns', async () => {
    const live = hosts.slice(1);
    const extra: Record<string, string> = {};
    for (const h of live) {
      expect(await freeInHeld(h)).toBeGreaterThan(0);
      extra[h.id] = path.basename(h.sb.cg('outage'));
      h.cells.push(extra[h.id]!);
    }
    await etcd.stop();
    for (const h of live) {
      // from the blocks held: no etcd needed
      const ok = await assignVia(h, extra[h.id]!, 1);
      expect(ok.status, ok.text).toBe(200);
      // more than the held blocks have: needs etcd, which is gone
      const big = await assignVia(h, extra[h.id]!, (await freeInHeld(h)) + 2);
      expect(big.status).toBe(503);
      expect(big.json.error.code).toBe('EFLEET_UNAVAILABLE');
      expect(big.json.error.message).toMatch(
        /^etcd \(unix:\/\/\/.*\) (is unavailable|did not answer within 1000 ms): cannot /,
      );
      // nothing of the refused request was claimed
      expect((await h.sb.show(extra[h.id]!)).addresses).toHaveLength(1);
      // existing cells are untouched and the CLI says the same through the agent
      const cli = await h.sb.cli(
        ['assign', 'c0', '--from-pool', 'fleet', '--count', String(PER_CELL + 64), '--json'],
        {
          env: { L3ISO_AGENT_SOCKET: h.sock },
        },
      );
      expect(cli.status).toBe(1);
      expect(cli.json.error.code).toBe('EFLEET_UNAVAILABLE');
    }
    await etcd.start();
    for (const h of live) {
      const want = (await freeInHeld(h)) + 3;
      const r = await until(`allocation on ${h.id} after etcd returned`, async () => {
        const a = await assignVia(h, extra[h.id]!, want + 1);
        return a.status === 200 ? a : undefined;
      });
      expect(r.json.added.length).toBeGreaterThan(0);
    }
    await noDuplicates(live);
  }, 120_000);

  it('blocks are given back when their cells are released', async () => {
    const h = hosts[2]!;
    for (const cell of h.cells) {
      const r = await call(h.sock, 'POST', '/v1/release', { cgroup: cell });
      expect(r.status, r.text).toBe(200);
    }
    await until('the blocks of h2 to be given back', async () => {
      const b = await blocks();
      return [...b.values()].includes(h.id) ? undefined : true;
    });
    expect((await call(h.sock, 'GET', '/v1/pools')).json.blocks).toEqual([]);
    // the host stays in the fleet (its lease lives on)
    expect(await kv.get('/l3iso/ipam/v1/hosts/h2').string()).not.toBeNull();
  }, 120_000);
});
