// Address pools on one host: `pool add/list/del`, `assign --from-pool`
// (lowest free addresses, claimed in the kernel), the same from apply files
// (export/apply round trip), and the OCI hook's io.l3iso.pool annotation.
// Each refusal is one line, a code, and changes nothing.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordsDir } from '../../src/runtime/records';
import * as os from 'node:os';
import { startAgent } from '../harness/agent';
import { post } from '../harness/http-unix';
import { expectConfined, loseCellMapAndRepair } from '../harness/repair';
import { createSandbox, type BgProc, type Sandbox } from '../harness/sandbox';

describe('pools (single host)', () => {
  let sb: Sandbox;
  const procs: BgProc[] = [];
  let n = 0;
  const file = (doc: unknown): string => {
    const p = path.join('/tmp', `l3iso-pools-${sb.id}-${n++}.json`);
    fs.writeFileSync(p, JSON.stringify(doc));
    return p;
  };
  const consistent = async () => {
    const r = await sb.cli(['gc', '--check', '--json']);
    expect(r.json?.inconsistencies, `${r.stderr} ${r.stdout}`).toEqual([]);
  };
  const addrsOf = async (cell: string): Promise<string[]> =>
    ((await sb.show(cell)) as { addresses: string[] }).addresses;
  /** The CLI fails with one line on stderr and the code in --json. */
  const refused = async (args: string[], code: string, message: RegExp) => {
    const r = await sb.cli(args);
    expect(r.status, r.stdout).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(message);
    const j = await sb.cli([...args, '--json']);
    expect(j.json?.error?.code, j.stdout).toBe(code);
  };

  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up(['--managed-prefix', '192.0.2.0/24']);
    for (const c of ['a', 'b', 'c', 'd', 'e', 'r1', 'r2', 'r3', 'r4']) sb.cg(c);
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill()));
    const records = sb ? recordsDir(sb.pinDir) : undefined;
    await sb?.destroy();
    if (records) fs.rmSync(records, { recursive: true, force: true });
  });

  it('pool add / list: v4 and v6, idempotent, default block sizes clamped to the pool', async () => {
    const a = await sb.cliOk(['pool', 'add', 'p4', '192.0.2.64/28', '--json']);
    expect(a.json).toEqual({
      pool: { name: 'p4', cidr: '192.0.2.64/28', blockSize: 28 },
      added: true,
    });
    await sb.cliOk(['pool', 'add', 'p6', '2001:db8::100/120', '--block-size', '124']);
    const again = await sb.cliOk(['pool', 'add', 'p4', '192.0.2.64/28', '--json']);
    expect(again.json.added).toBe(false);
    const l = await sb.cliOk(['pool', 'list', '--json']);
    expect(l.json.pools).toEqual([
      { name: 'p4', cidr: '192.0.2.64/28', blockSize: 28, family: 4, size: '16', assigned: 0 },
      {
        name: 'p6',
        cidr: '2001:db8::100/120',
        blockSize: 124,
        family: 6,
        size: '256',
        assigned: 0,
      },
    ]);
    const t = await sb.cliOk(['pool', 'list']);
    expect(t.stdout).toMatch(/^p4\s+192\.0\.2\.64\/28\s+\/28\s+0\s+16$/m);
  });

  it('refuses bad CIDRs, overlaps, redefinitions and bad block sizes, changing nothing', async () => {
    const before = (await sb.cliOk(['pool', 'list', '--json'])).json;
    await refused(
      ['pool', 'add', 'x', '192.0.2.300/24'],
      'EADDR_INVALID',
      /pool CIDR "192\.0\.2\.300\/24" is not a prefix/,
    );
    await refused(['pool', 'add', 'x', '192.0.2.65/28'], 'EADDR_INVALID', /host bits are set/);
    await refused(['pool', 'add', 'x', '192.0.2.7'], 'EADDR_INVALID', /must be ADDRESS\/LENGTH/);
    await refused(['pool', 'add', 'x', '127.0.0.0/16'], 'EADDR_INVALID', /no cell can own/);
    await refused(
      ['pool', 'add', 'x', '192.0.2.0/25'],
      'EPOOL_OVERLAP',
      /pool x \(192\.0\.2\.0\/25\) overlaps pool p4 \(192\.0\.2\.64\/28\)/,
    );
    await refused(
      ['pool', 'add', 'p4', '192.0.2.128/28'],
      'EPOOL_EXISTS',
      /pool p4 exists as 192\.0\.2\.64\/28/,
    );
    await refused(
      ['pool', 'add', 'x', '192.0.2.128/28', '--block-size', '27'],
      'EUSAGE',
      /block size \/27 must be from \/28/,
    );
    await refused(
      ['pool', 'add', 'bad/name', '192.0.2.128/28'],
      'EUSAGE',
      /pool name "bad\/name" is not valid/,
    );
    expect((await sb.cliOk(['pool', 'list', '--json'])).json).toEqual(before);
  });

  it('assign --from-pool takes the lowest free addresses, skipping owned ones; re-running takes none', async () => {
    await sb.assign('a', '192.0.2.64');
    const r = await sb.cliOk(['assign', 'b', '--from-pool', 'p4', '--count', '2', '--json']);
    expect(r.json.added).toEqual(['192.0.2.65', '192.0.2.66']);
    expect(r.json.pool).toBe('p4');
    const again = await sb.cliOk(['assign', 'b', '--from-pool', 'p4', '--count', '2', '--json']);
    expect(again.json.added).toEqual([]);
    expect(again.json.unchanged.sort()).toEqual(['192.0.2.65', '192.0.2.66']);
    const more = await sb.cliOk(['assign', 'b', '--from-pool', 'p4', '--count', '3', '--json']);
    expect(more.json.added).toEqual(['192.0.2.67']);
    const v6 = await sb.cliOk(['assign', 'b', '--from-pool', 'p6', '--json']);
    expect(v6.json.added).toEqual(['2001:db8::100']);
    expect(v6.json.primary6).toBe('2001:db8::100');
    expect((await addrsOf('b')).sort()).toEqual(
      ['192.0.2.65', '192.0.2.66', '192.0.2.67', '2001:db8::100'].sort(),
    );
    const l = await sb.cliOk(['pool', 'list', '--json']);
    expect(l.json.pools.map((p: { assigned: number }) => p.assigned)).toEqual([4, 1]);
    // the cell is confined to what it got, like any other
    const p = await sb.probe(
      'b',
      [
        { op: 'bind_new', fam: 4, addr: '192.0.2.65' },
        { op: 'bind_new', fam: 4, addr: '192.0.2.64' },
      ],
      { keepGoing: true },
    );
    expect(p.ops[0]).toMatchObject({ ok: true });
    expect(p.ops[1]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    await consistent();
  });

  it('exhausted and unknown pools: one line, nothing claimed', async () => {
    const before = await sb.list();
    await refused(
      ['assign', 'c', '--from-pool', 'p4', '--count', '13'],
      'EPOOL_EXHAUSTED',
      /pool p4 \(192\.0\.2\.64\/28\) has no free address left \(1 more needed\)/,
    );
    await refused(
      ['assign', 'c', '--from-pool', 'nope'],
      'EPOOL_UNKNOWN',
      /no pool "nope" \(pools: p4, p6\)/,
    );
    await refused(['assign', 'c', '192.0.2.9', '--from-pool', 'p4'], 'EUSAGE', /not both/);
    await refused(
      ['assign', 'c', '192.0.2.9', '--count', '2'],
      'EUSAGE',
      /--count needs --from-pool/,
    );
    expect(await sb.list()).toEqual(before);
    await consistent();
  });

  it('concurrent assigns from one pool never share an address', async () => {
    const rs = await Promise.all(
      ['r1', 'r2', 'r3', 'r4'].map((c) =>
        sb.cliOk(['assign', c, '--from-pool', 'p4', '--count', '2', '--json']),
      ),
    );
    const got = rs.flatMap((r) => r.json.added as string[]);
    expect(got).toHaveLength(8);
    expect(new Set(got).size).toBe(8);
    // the 8 lowest free ones: 68..75
    expect(got.map((a) => Number(a.split('.')[3])).sort((x, y) => x - y)).toEqual([
      68, 69, 70, 71, 72, 73, 74, 75,
    ]);
    for (const c of ['r1', 'r2', 'r3', 'r4']) await sb.cliOk(['release', c]);
    await consistent();
  });

  it('pool del refuses while addresses are assigned; --force keeps them in their cells', async () => {
    await refused(
      ['pool', 'del', 'p6'],
      'EPOOL_IN_USE',
      /pool p6 \(2001:db8::100\/120\) still has 1 assigned address/,
    );
    await refused(['pool', 'del', 'zz'], 'EPOOL_UNKNOWN', /no pool "zz"/);
    const f = await sb.cliOk(['pool', 'del', 'p6', '--force', '--json']);
    expect(f.json.assigned).toBe(1);
    expect(await addrsOf('b')).toContain('2001:db8::100');
    await sb.cliOk(['pool', 'add', 'p6', '2001:db8::100/120', '--block-size', '124']);
    await sb.cliOk(['release', 'b', '2001:db8::100']);
    const d = await sb.cliOk(['pool', 'del', 'p6', '--json']);
    expect(d.json.assigned).toBe(0);
    expect(
      (await sb.cliOk(['pool', 'list', '--json'])).json.pools.map((p: { name: string }) => p.name),
    ).toEqual(['p4']);
  });

  it('apply: pools and pool cells, idempotent; export/apply round trip is exact', async () => {
    const doc = {
      pools: [{ name: 'q6', cidr: '2001:db8::200/124' }],
      cells: [
        { cgroup: 'd', pool: 'p4', count: 2 },
        { cgroup: 'e', pool: 'q6', count: 3, allowRaw: true },
      ],
    };
    const r = await sb.cliOk(['apply', '-f', file(doc), '--json']);
    expect(r.json.poolsAdded).toEqual(['q6']);
    expect(r.json.cells.find((c: { cgroup: string }) => c.cgroup === 'd').added).toEqual([
      '192.0.2.68',
      '192.0.2.69',
    ]);
    expect((await addrsOf('e')).sort()).toEqual([
      '2001:db8::200',
      '2001:db8::201',
      '2001:db8::202',
    ]);
    const again = await sb.cliOk(['apply', '-f', file(doc), '--json']);
    expect(again.json.changed).toBe(false);
    // bad pool cells: every problem named, nothing changed
    const bad = await sb.cli([
      'apply',
      '-f',
      file({
        cells: [
          { cgroup: 'c', pool: 'nope' },
          { cgroup: 'd', pool: 'p4', count: 20 },
          { cgroup: 'a', pool: 'p4', addresses: ['192.0.2.1'] },
        ],
      }),
    ]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/cells\[2\]: give addresses or pool, not both/);
    const bad2 = await sb.cli([
      'apply',
      '-f',
      file({
        cells: [
          { cgroup: 'c', pool: 'nope' },
          { cgroup: 'd', pool: 'p4', count: 20 },
        ],
      }),
    ]);
    expect(bad2.status).toBe(2);
    expect(bad2.stderr).toMatch(/cells\[0\]\.pool: no pool "nope"/);
    expect(bad2.stderr).toMatch(
      /cells\[1\]\.pool: pool p4 \(192\.0\.2\.64\/28\) has no free address left \(\d+ more needed\)/,
    );

    const exported = (await sb.cliOk(['export'])).stdout;
    const ex = JSON.parse(exported);
    expect(ex.pools).toEqual([
      { name: 'p4', cidr: '192.0.2.64/28', blockSize: 28 },
      { name: 'q6', cidr: '2001:db8::200/124', blockSize: 124 },
    ]);
    const listBefore = await sb.list();
    // the exported file applies to itself with no change
    const self = await sb.cliOk(['apply', '-f', file(ex), '--json']);
    expect(self.json.changed).toBe(false);
    // and restores the same pools and cells on a fresh engine
    await sb.cliOk(['down', '--force']);
    await sb.up(['--managed-prefix', '192.0.2.0/24']);
    expect((await sb.cliOk(['pool', 'list', '--json'])).json.pools).toEqual([]);
    await sb.cliOk(['apply', '-f', file(ex)]);
    expect(await sb.list()).toEqual(
      expect.arrayContaining(
        listBefore.map((c: { cell: string; addresses: string[] }) =>
          expect.objectContaining({ cell: c.cell, addresses: c.addresses }),
        ),
      ),
    );
    expect((await sb.cliOk(['export'])).stdout).toBe(exported);
    await consistent();
  });

  it('pools follow the engine: down removes the record, a new up starts with none', async () => {
    const layoutFile = fs
      .readdirSync('/run/l3iso')
      .filter((f) => f.endsWith('.pools'))
      .map((f) => path.join('/run/l3iso', f))
      .filter((f) =>
        JSON.parse(fs.readFileSync(f, 'utf8')).pools.some((p: { name: string }) => p.name === 'q6'),
      );
    expect(layoutFile).toHaveLength(1);
    await sb.cliOk(['down', '--force']);
    expect(fs.existsSync(layoutFile[0]!)).toBe(false);
    await sb.up(['--managed-prefix', '192.0.2.0/24']);
    expect((await sb.cliOk(['pool', 'list', '--json'])).json.pools).toEqual([]);
  });

  it('OCI hook: io.l3iso.pool (and pool-count) assigns from the pool at createRuntime', async () => {
    await sb.cliOk(['pool', 'add', 'ctr', '192.0.2.160/29']);
    const cg = sb.cg('oci/p1');
    const p = sb.spawnInCell('oci/p1', ['sleep', '60']);
    procs.push(p);
    for (
      let i = 0;
      i < 200 && !fs.readFileSync(path.join(cg, 'cgroup.procs'), 'utf8').includes(`${p.pid}\n`);
      i++
    )
      await new Promise((r) => setTimeout(r, 25));
    const state = (annotations: Record<string, string>) =>
      JSON.stringify({
        ociVersion: '1.0.2',
        id: 'p1',
        status: 'creating',
        pid: p.pid,
        bundle: '/x',
        annotations,
      });
    const bad = await sb.cli(['oci-hook', 'createRuntime'], {
      input: state({ 'io.l3iso.pool': 'nope' }),
    });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/container p1: no pool "nope"/);
    const r = await sb.cli(['oci-hook', 'createRuntime', '--json'], {
      input: state({ 'io.l3iso.pool': 'ctr', 'io.l3iso.pool-count': '2' }),
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.cell.added).toEqual(['192.0.2.160', '192.0.2.161']);
    expect(await addrsOf('oci/p1')).toEqual(['192.0.2.160', '192.0.2.161']);
    const stop = await sb.cli(['oci-hook', 'poststop'], {
      input: JSON.stringify({
        ociVersion: '1.0.2',
        id: 'p1',
        status: 'stopped',
        bundle: '/x',
        annotations: { 'io.l3iso.pool': 'ctr' },
      }),
    });
    expect(stop.status, stop.stderr).toBe(0);
    expect((await sb.cliOk(['pool', 'list', '--json'])).json.pools[0].assigned).toBe(0);
  });

  it('the agent without --etcd serves pools from this host and never loads etcd3', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l3iso-pools-agent-'));
    try {
      // A preload that fails the process if anything requires etcd3.
      const trap = path.join(dir, 'trap.js');
      fs.writeFileSync(
        trap,
        "const M = require('module'); const load = M._load; M._load = function (r, ...a) { if (/^etcd3($|\\/)/.test(r)) { process.stderr.write('ETCD3 LOADED\\n'); process.exit(99); } return load.call(this, r, ...a); };\n",
      );
      const sock = path.join(dir, 'a.sock');
      const agent = await startAgent(sb, {
        socket: sock,
        wrap: ['env', `NODE_OPTIONS=--require=${trap}`],
      });
      procs.push(agent);
      const env = { L3ISO_AGENT_SOCKET: sock };
      await sb.cliOk(['pool', 'add', 'ag', '192.0.2.200/30'], { env });
      const a = await sb.cliOk(['assign', 'a', '--from-pool', 'ag', '--count', '2', '--json'], {
        env,
      });
      expect(a.json.added).toEqual(['192.0.2.200', '192.0.2.201']);
      const l = await sb.cliOk(['pool', 'list', '--json'], { env });
      expect(l.json.pools.find((p: { name: string }) => p.name === 'ag').assigned).toBe(2);
      expect(l.json.blocks).toBeUndefined();
      const bad = await post(sock, '/v1/assign', {
        cgroup: 'a',
        pool: 'ag',
        addresses: ['192.0.2.1'],
      });
      expect(bad.status).toBe(400);
      expect(bad.text, bad.text).toMatch(/give either \\"addresses\\" or \\"pool\\"/);
      await sb.cliOk(['release', 'a', '192.0.2.200', '192.0.2.201'], { env });
      await sb.cliOk(['pool', 'del', 'ag'], { env });
      await agent.kill();
      expect(agent.stderr).not.toMatch(/ETCD3 LOADED/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

// The built modules: the Engine loads each verb's module with require(),
// which the test runner's TypeScript transform does not serve.
const { Engine } =
  require('../../dist/src/engine/engine') as typeof import('../../src/engine/engine');
const { HeldEngine } =
  require('../../dist/src/engine/held') as typeof import('../../src/engine/held');
const { BpfMap } = require('../../dist/loader') as typeof import('../../loader');

type Walker = 'scan' | 'lookupBatch' | 'keys' | 'count';

/** fn's result and how many times it read the whole owner map. */
function ownerWalks<T>(fn: () => T): { value: T; walks: number } {
  const proto = BpfMap.prototype as unknown as Record<Walker, (...a: unknown[]) => unknown>;
  const saved = (['scan', 'lookupBatch', 'keys', 'count'] as const).map(
    (m) => [m, proto[m]] as const,
  );
  let walks = 0;
  for (const [m, orig] of saved)
    proto[m] = function (this: { name: string }, ...a: unknown[]) {
      if (this.name === 'l3_owners') walks++;
      return orig.apply(this, a);
    };
  try {
    return { value: fn(), walks };
  } finally {
    for (const [m, orig] of saved) proto[m] = orig;
  }
}

describe('pool allocation by a long-lived Engine (the agent\u2019s, a fleet host\u2019s)', () => {
  let sb: Sandbox;
  const V4 = (n: number) => `192.0.2.${n}`;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up(['--managed-prefix', '192.0.2.0/24']);
    await sb.cliOk(['pool', 'add', 'hp', '192.0.2.32/28']);
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('walks the owner map only after another writer, and still hands out the lowest free address', () => {
    const held = Engine.open(sb.pinDir, { write: true });
    const other = Engine.open(sb.pinDir, { write: true }); // another CLI, another agent
    const added = (cell: string, count = 1) =>
      ownerWalks(() => held.assignFromPool(sb.cg(cell), 'hp', count));
    try {
      expect(added('h1', 2).value.added).toEqual([V4(32), V4(33)]);
      // nobody else wrote: no walk, however many allocations
      for (const [i, c] of ['h2', 'h3', 'h4'].entries()) {
        const r = added(c);
        expect(r.value.added).toEqual([V4(34 + i)]);
        expect(r.walks).toBe(0);
      }
      // another writer claims the next candidate: walked again, skipped
      other.assign(sb.cg('o1'), [V4(37)]);
      const after = added('h5');
      expect(after.value.added).toEqual([V4(38)]);
      expect(after.walks).toBe(1);
      // another writer frees a low one: it is the next handed out
      other.release(sb.cg('h1'), [V4(32)]);
      expect(added('h6').value.added).toEqual([V4(32)]);
      const h7 = added('h7');
      expect(h7.value.added).toEqual([V4(39)]);
      expect(h7.walks).toBe(0);
      // a refused allocation undoes its claims and keeps no stale copy:
      // the same addresses are free for the next one (40..47 are 8)
      expect(() => held.assignFromPool(sb.cg('big'), 'hp', 9)).toThrow(
        /pool hp \(192\.0\.2\.32\/28\) has no free address left \(1 more needed\)/,
      );
      expect(added('big', 8).value.added).toEqual(Array.from({ length: 8 }, (_, i) => V4(40 + i)));
      // full; a release by another writer is seen, not a stale "exhausted"
      expect(() => held.assignFromPool(sb.cg('h8'), 'hp', 1)).toThrow(/no free address left/);
      other.release(sb.cg('big'), [V4(44)]);
      expect(added('h8').value.added).toEqual([V4(44)]);
    } finally {
      held.close();
      other.close();
    }
  });

  it('a fleet host\u2019s held Engine follows a down and up --repair of the engine underneath', async () => {
    const held = new HeldEngine(sb.pinDir);
    try {
      await sb.cliOk(['pool', 'add', 'hq', '192.0.2.48/28']);
      expect(held.run((e) => e.assignFromPool(sb.cg('r1'), 'hq', 1)).added).toEqual([V4(48)]);
      // The cell map lost and re-created: the held fds name the old one,
      // which no program uses after the repair.
      await loseCellMapAndRepair(sb);
      expect(held.run((e) => e.assignFromPool(sb.cg('r2'), 'hq', 1)).added).toEqual([V4(49)]);
      await expectConfined(sb, 'r2', V4(49), V4(48));
      // down and up: a new engine, no pool (the record went with the old one)
      await sb.cliOk(['down', '--force']);
      expect(() => held.run((e) => e.poolList())).toThrow(/not up/);
      await sb.up(['--managed-prefix', '192.0.2.0/24']);
      await sb.cliOk(['pool', 'add', 'hq', '192.0.2.48/28']);
      expect(held.run((e) => e.assignFromPool(sb.cg('r3'), 'hq', 2)).added).toEqual([
        V4(48),
        V4(49),
      ]);
    } finally {
      held.close();
    }
  });
});
