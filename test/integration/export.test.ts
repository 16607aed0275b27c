// `l3iso export` prints the live state in apply's format, so a host whose
// bpffs was wiped (a reboot) is restored by export + down --force + up +
// apply: the same cells, addresses, primaries and policies, confined again.
import { rmdirSync, writeFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, V6, type Sandbox } from '../harness/sandbox';

describe('export', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up(['--managed-prefix', '192.0.2.0/24', '2001:db8::/64']);
    sb.cg('web');
    sb.cg('db/primary');
    await sb.assign('web', V4(2), V4(1), V6(1));
    await sb.assign('db/primary', V6(3));
    await sb.cliOk(['policy', 'web', '--allow-raw']);
    await sb.cliOk(['policy', 'db/primary', '--allow-from', '198.51.100.0/24', '203.0.113.0/25']);
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('prints the state as JSON and as YAML', async () => {
    const r = await sb.cliOk(['export']);
    expect(r.json).toEqual({
      version: 1,
      engine: {
        cgroupRoot: sb.root,
        managedPrefixes: ['192.0.2.0/24', '2001:db8::/64'],
        uplinks: [],
      },
      cells: [
        {
          cgroup: 'db/primary',
          addresses: [V6(3)],
          allowRaw: false,
          allowFrom: ['198.51.100.0/24', '203.0.113.0/25'],
        },
        { cgroup: 'web', addresses: [V4(2), V6(1), V4(1)], allowRaw: true },
      ],
    });
    const y = await sb.cliOk(['export', '--yaml']);
    expect(parseYaml(y.stdout)).toEqual(r.json);
  });

  it('export, down --force, up, apply restores the host (reboot)', async () => {
    const file = `/tmp/l3iso-export-${sb.id}.json`;
    writeFileSync(file, (await sb.cliOk(['export'])).stdout);
    const before = await sb.list();
    await sb.cliOk(['down', '--force']);
    expect((await sb.cli(['list'])).status).not.toBe(0);
    await sb.up(['--managed-prefix', '192.0.2.0/24', '2001:db8::/64']);
    expect(await sb.list()).toEqual([]);
    const r = await sb.cliOk(['apply', '-f', file, '--json']);
    expect(r.json.summary).toMatchObject({ create: 2, addressesAdded: 4 });
    const after = await sb.list();
    // the loopback aliases are derived from the cgroup ids, which did not change
    expect(after).toEqual(before);
    const again = await sb.cliOk(['apply', '-f', file, '--json']);
    expect(again.json.changed).toBe(false);
    const p = await sb.probe(
      'web',
      [
        { op: 'bind_new', fam: 4, addr: '0.0.0.0' },
        { op: 'bind_new', fam: 6, addr: V6(3) },
      ],
      { keepGoing: true },
    );
    expect(p.ops[0]).toMatchObject({ ok: true, addr: V4(2) });
    expect(p.ops[1]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    const check = await sb.cli(['gc', '--check', '--json']);
    expect(check.json?.inconsistencies).toEqual([]);
  });

  it('leaves out, with a warning, a cell whose cgroup is gone; apply keeps it without --prune', async () => {
    const dir = sb.cg('gone');
    await sb.assign('gone', V4(8));
    rmdirSync(dir);
    const r = await sb.cliOk(['export']);
    expect(r.json.cells.map((c: { cgroup: string }) => c.cgroup)).toEqual(['db/primary', 'web']);
    expect(r.stderr).toMatch(/cell #\d+ is not exported: its cgroup is gone/);
    const file = `/tmp/l3iso-export-${sb.id}-gone.json`;
    writeFileSync(file, r.stdout);
    const a = await sb.cliOk(['apply', '-f', file, '--json']);
    expect(a.json.changed).toBe(false);
    expect(a.json.summary).toMatchObject({ unchanged: 2, kept: 1 });
    await sb.cliOk(['gc']);
  });

  it('a restore onto an engine with other managed prefixes is refused, changing nothing', async () => {
    const file = `/tmp/l3iso-export-${sb.id}-2.json`;
    writeFileSync(file, (await sb.cliOk(['export'])).stdout);
    await sb.cliOk(['down', '--force']);
    await sb.up(['--managed-prefix', '192.0.2.0/25']);
    const r = await sb.cli(['apply', '-f', file]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(
      /engine\.managedPrefixes: the file says \[192\.0\.2\.0\/24, 2001:db8::\/64\], the engine has \[192\.0\.2\.0\/25\]/,
    );
    expect(await sb.list()).toEqual([]);
  });
});
