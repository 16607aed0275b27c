// `l3iso apply`: a declarative file converges the engine (batched claims),
// is idempotent, prunes only with --prune, changes nothing on --dry-run or
// on an invalid file (one line per error, naming its path), reads JSON and
// YAML, and leaves the maps consistent (gc --check) after every run.
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CellView } from '../../src/cells/inventory';
import { createSandbox, V4, V6, type Sandbox } from '../harness/sandbox';

async function consistent(sb: Sandbox): Promise<void> {
  const r = await sb.cli(['gc', '--check', '--json']);
  expect(r.json?.inconsistencies, `${r.stderr} ${r.stdout}`).toEqual([]);
}

describe('apply', () => {
  let sb: Sandbox;
  let n = 0;
  const file = (text: string, ext = 'json'): string => {
    const p = path.join('/tmp', `l3iso-apply-${sb.id}-${n++}.${ext}`);
    writeFileSync(p, text);
    return p;
  };
  const apply = (text: string, extra: string[] = [], ext = 'json') =>
    sb.cli(['apply', '-f', file(text, ext), '--json', ...extra]);
  const byCell = async () =>
    Object.fromEntries((await sb.list()).map((c: CellView) => [c.cell, c]));

  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up(['--managed-prefix', '192.0.2.0/24']);
    sb.cg('web');
    sb.cg('db');
    sb.cg('old');
    await sb.assign('old', V4(9));
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  const state = () => ({
    version: 1,
    engine: { cgroupRoot: sb.root, managedPrefixes: ['192.0.2.0/24'] },
    cells: [
      { cgroup: 'web', addresses: [V4(1), V6(1)], allowRaw: true },
      { cgroup: 'db', addresses: [V4(2)], allowFrom: ['198.51.100.0/24'] },
    ],
  });

  it('converges: assigns, sets policy, keeps unlisted cells without --prune', async () => {
    const r = await apply(JSON.stringify(state()));
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.changed).toBe(true);
    expect(r.json.summary).toMatchObject({ create: 2, kept: 1, addressesAdded: 3 });
    const cells = await byCell();
    expect(cells.web).toMatchObject({
      addresses: [V4(1), V6(1)],
      allowRaw: true,
      allowList: false,
    });
    expect(cells.db).toMatchObject({ addresses: [V4(2)], allowRaw: false, allowList: true });
    expect(cells.old.addresses).toEqual([V4(9)]);
    await consistent(sb);
    // the cells are confined like assigned ones
    const p = await sb.probe(
      'web',
      [
        { op: 'bind_new', fam: 4, addr: V4(1) },
        { op: 'bind_new', fam: 4, addr: V4(2) },
      ],
      { keepGoing: true },
    );
    expect(p.ops[0]).toMatchObject({ ok: true });
    expect(p.ops[1]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
  });

  it('is idempotent: a second apply changes nothing', async () => {
    const before = await sb.list();
    const r = await apply(JSON.stringify(state()));
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.changed).toBe(false);
    expect(r.json.summary).toMatchObject({ create: 0, update: 0, unchanged: 2, addressesAdded: 0 });
    expect(await sb.list()).toEqual(before);
    const text = await sb.cli(['apply', '-f', file(JSON.stringify(state()))]);
    expect(text.stdout).toMatch(/^nothing to change: 2 cells as in the file, 1 not in it kept/m);
  });

  it('--dry-run reports and changes nothing', async () => {
    const s = state();
    s.cells[0]!.addresses.push(V4(3));
    const before = await sb.list();
    const r = await apply(JSON.stringify(s), ['--dry-run', '--prune']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.dryRun).toBe(true);
    expect(r.json.summary).toMatchObject({
      update: 1,
      remove: 1,
      addressesAdded: 1,
      addressesRemoved: 1,
    });
    expect(await sb.list()).toEqual(before);
  });

  it('an invalid file changes nothing and names each error by path (exit 2)', async () => {
    const before = await sb.list();
    const bad = {
      version: 1,
      cells: [
        { cgroup: 'web', addresses: [V4(1), V4(5)] },
        { cgroup: 'db', addresses: ['10.0.0.300', V4(1)] },
        { cgroup: '../escape', addresses: [V4(6)], allowRaw: 'yes' },
      ],
    };
    const r = await sb.cli(['apply', '-f', file(JSON.stringify(bad))]);
    expect(r.status).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringContaining(
          'cells[1].addresses[0]: "10.0.0.300" is not an IPv4 or IPv6 address',
        ),
        expect.stringContaining(`cells[1].addresses[1]: ${V4(1)} is also cells[0].addresses[0]`),
        expect.stringContaining('cells[2].cgroup: "../escape" must name a cgroup below the root'),
        expect.stringContaining('cells[2].allowRaw: must be true or false'),
        expect.stringContaining('nothing was changed'),
      ]),
    );
    expect(lines).toHaveLength(5);
    // a valid file whose cgroups are missing, or whose root differs: also nothing
    const missing = await apply(
      JSON.stringify({
        cells: [
          { cgroup: 'web', addresses: [V4(7)] },
          { cgroup: 'nope/x', addresses: [V4(8)] },
        ],
      }),
    );
    expect(missing.status).toBe(2);
    expect(missing.json.error.errors).toEqual([
      expect.stringMatching(/^cells\[1\]\.cgroup: cgroup nope\/x does not exist.*--create-cgroups/),
    ]);
    const root = await apply(
      JSON.stringify({ engine: { cgroupRoot: '/sys/fs/cgroup/elsewhere' }, cells: [] }),
    );
    expect(root.status).toBe(2);
    expect(root.json.error.errors[0]).toMatch(
      /^engine\.cgroupRoot: the file says \/sys\/fs\/cgroup\/elsewhere/,
    );
    const taken = await apply(JSON.stringify({ cells: [{ cgroup: 'db', addresses: [V4(9)] }] }));
    expect(taken.status).toBe(2);
    expect(taken.json.error.errors[0]).toMatch(/belongs to cell old/);
    expect(await sb.list()).toEqual(before);
    await consistent(sb);
  });

  it('reads YAML; --prune releases what the file leaves out (moving an address works)', async () => {
    const yaml = [
      'version: 1',
      'engine:',
      `  cgroupRoot: ${sb.root}`,
      'cells:',
      '  - cgroup: web',
      `    addresses: ["${V4(1)}", "${V4(9)}"]`,
      '  - cgroup: db',
      `    addresses: ["${V4(2)}"]`,
      '    allowFrom: null',
      '',
    ].join('\n');
    const r = await apply(yaml, ['--prune'], 'yaml');
    expect(r.status, r.stderr).toBe(0);
    const web = r.json.cells.find((c: { cgroup: string }) => c.cgroup === 'web');
    expect(web).toMatchObject({ action: 'update', added: [V4(9)], removed: [V6(1)] });
    expect(r.json.cells.find((c: { cgroup: string }) => c.cgroup === 'old')).toMatchObject({
      action: 'remove',
    });
    const cells = await byCell();
    expect(Object.keys(cells).sort()).toEqual(['db', 'web']);
    expect(cells.web).toMatchObject({ addresses: [V4(1), V4(9)], allowRaw: false });
    expect(cells.db).toMatchObject({ allowList: false });
    await consistent(sb);
    const again = await apply(yaml, ['--prune'], 'yaml');
    expect(again.json.changed).toBe(false);
  });

  it('refuses to prune an address with live sockets unless --force', async () => {
    const srv = sb.spawnProbe('web', [
      { op: 'socket', fam: 4 },
      { op: 'bind', addr: V4(9), port: 0 },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'w' },
    ]);
    await srv.ready();
    const keep = {
      cells: [
        { cgroup: 'web', addresses: [V4(1)] },
        { cgroup: 'db', addresses: [V4(2)] },
      ],
    };
    const before = await sb.list();
    const r = await apply(JSON.stringify(keep), ['--prune']);
    expect(r.status).toBe(1);
    expect(r.json.error.code).toBe('ESOCKETS_LIVE');
    expect(await sb.list()).toEqual(before);
    const f = await apply(JSON.stringify(keep), ['--prune', '--force']);
    expect(f.status, f.stderr).toBe(0);
    expect((await byCell()).web.addresses).toEqual([V4(1)]);
    await srv.kill();
    await consistent(sb);
  });

  it('pruning a whole cell destroys its sockets (batched release)', async () => {
    sb.cg('udp');
    const add = await apply(
      JSON.stringify({
        cells: [
          { cgroup: 'web', addresses: [V4(1)] },
          { cgroup: 'db', addresses: [V4(2)] },
          { cgroup: 'udp', addresses: [V4(4)] },
        ],
      }),
    );
    expect(add.status, add.stderr).toBe(0);
    const udp = sb.spawnProbe('udp', [
      { op: 'socket', fam: 4, type: 'udp' },
      { op: 'bind', addr: V4(4), port: 5353 },
      { op: 'recvfrom', timeout: 20 },
    ]);
    await udp.waitFor((l) => l.op === 'bind');
    const keep = {
      cells: [
        { cgroup: 'web', addresses: [V4(1)] },
        { cgroup: 'db', addresses: [V4(2)] },
      ],
    };
    const refused = await apply(JSON.stringify(keep), ['--prune']);
    expect(refused.json.error.code).toBe('ESOCKETS_LIVE');
    const r = await apply(JSON.stringify(keep), ['--prune', '--force']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.summary).toMatchObject({ remove: 1 });
    expect(r.json.socketsDestroyed).toBeGreaterThanOrEqual(1);
    const end = await udp.waitFor((l) => l.op === 'recvfrom', 5000);
    expect(end).toMatchObject({ ok: false, errno: 'ECONNABORTED' });
    await udp.kill();
    expect(Object.keys(await byCell()).sort()).toEqual(['db', 'web']);
    await consistent(sb);
  });

  it('--create-cgroups makes missing cgroup dirs; 1,000 cells apply and prune', async () => {
    const cells = Array.from({ length: 1000 }, (_, i) => ({
      cgroup: `many/c${i}`,
      addresses: [`10.${(i >> 8) & 255}.${i & 255}.1`, `fd00::${i.toString(16)}:1`],
    }));
    const r = await apply(JSON.stringify({ cells }), ['--create-cgroups'], 'json');
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.summary).toMatchObject({ create: 1000, addressesAdded: 2000 });
    expect(r.json.createdCgroups).toHaveLength(1000);
    const list = await sb.list();
    expect(list.filter((c: { cell: string }) => c.cell.startsWith('many/'))).toHaveLength(1000);
    await consistent(sb);
    const again = await apply(JSON.stringify({ cells }), [], 'json');
    expect(again.json.changed).toBe(false);
    const gone = await apply(JSON.stringify({ cells: [] }), ['--prune'], 'json');
    expect(gone.status, gone.stderr).toBe(0);
    expect(gone.json.summary).toMatchObject({ remove: 1002 });
    expect(await sb.list()).toEqual([]);
    await consistent(sb);
  }, 300_000);
});
