// CLI errors: exit status 1 (2 for usage errors), one line on stderr
// starting "l3iso: ", {"error":{"code",...}} on stdout with --json, and the
// engine's state unchanged.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, V6, type CliOpts, type Sandbox } from '../harness/sandbox';

const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

describe('CLI errors', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('owner-cell');
    sb.cg('other');
    await sb.assign('owner-cell', V4(1), V6(1));
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  /** Runs args twice (plain and --json) and checks the error contract. */
  async function expectError(
    args: string[],
    code: string,
    opts: CliOpts & { status?: number; check?: (message: string) => void } = {},
  ) {
    const before = await sb.list();
    const plain = await sb.cli(args, opts);
    expect(plain.timedOut).toBe(false);
    expect(plain.status, `${args.join(' ')}: ${plain.stderr}`).toBe(opts.status ?? 1);
    const lines = plain.stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines, plain.stderr).toHaveLength(1);
    expect(lines[0].startsWith('l3iso: ')).toBe(true);

    const js = await sb.cli(args, { ...opts, json: true });
    expect(js.status, js.stderr).toBe(opts.status ?? 1);
    expect(js.json, js.stdout).toBeTypeOf('object');
    expect(js.json.error, js.stdout).toMatchObject({ code });
    expect(typeof js.json.error.message).toBe('string');
    expect(js.json.error.message.length).toBeGreaterThan(0);
    opts.check?.(js.json.error.message);
    opts.check?.(lines[0]);

    expect(await sb.list()).toEqual(before);
    return { plain, js };
  }

  it('invalid address: EADDR_INVALID', async () => {
    await expectError(['assign', 'other', '192.0.2.300'], 'EADDR_INVALID');
    await expectError(['assign', 'other', 'not-an-address'], 'EADDR_INVALID');
    // the valid address of a mixed list is not assigned either
    await expectError(['assign', 'other', V4(2), '2001:db8::zz'], 'EADDR_INVALID');
  });

  it('cgroup missing: ECGROUP_MISSING', async () => {
    await expectError(['assign', 'no-such-cell', V4(2)], 'ECGROUP_MISSING');
    await expectError(['assign', `${sb.root}/no/such`, V4(2)], 'ECGROUP_MISSING');
    expect(fs.existsSync(path.join(sb.root, 'no-such-cell'))).toBe(false);
  });

  it('cgroup outside the root: ECGROUP_OUTSIDE_ROOT', async () => {
    const outside = sb.outsideCg('outside');
    await expectError(['assign', outside, V4(2)], 'ECGROUP_OUTSIDE_ROOT');
    await expectError(['assign', `../${path.basename(outside)}`, V4(2)], 'ECGROUP_OUTSIDE_ROOT');
  });

  it('address owned by another cell: EADDR_OWNED, naming the owner', async () => {
    const check = (m: string) => expect(m).toContain('owner-cell');
    await expectError(['assign', 'other', V4(1)], 'EADDR_OWNED', { check });
    await expectError(['assign', 'other', V6(1)], 'EADDR_OWNED', { check });
    // all or nothing: the free address of the list is not assigned either
    await expectError(['assign', 'other', V4(3), V4(1)], 'EADDR_OWNED', { check });
  });

  it('engine not up (fresh empty pin dir): ENOT_UP', async () => {
    const empty = sb.extraPinDir();
    await expectError(['assign', 'other', V4(2)], 'ENOT_UP', { pinDir: empty });
    await expectError(['list'], 'ENOT_UP', { pinDir: empty });
    expect(fs.readdirSync(empty)).toEqual([]);
  });

  it('not root: ENOT_ROOT', async () => {
    await expectError(['assign', 'other', V4(2)], 'ENOT_ROOT', { wrap: NOBODY });
    await expectError(['up', '--cgroup-root', sb.root], 'ENOT_ROOT', { wrap: NOBODY });
  });

  it('usage errors: EUSAGE, exit status 2', async () => {
    await expectError(['assign'], 'EUSAGE', { status: 2 });
    await expectError(['no-such-verb'], 'EUSAGE', { status: 2 });
  });

  it('map full: EMAP_FULL with --max-cells 2', async () => {
    const small = await createSandbox();
    try {
      await small.up(['--max-cells', '2']);
      small.cg('c1');
      small.cg('c2');
      small.cg('c3');
      await small.assign('c1', V4(1));
      await small.assign('c2', V4(2));
      const before = await small.list();
      expect(before).toHaveLength(2);
      for (const json of [false, true]) {
        const r = await small.cli(['assign', 'c3', V4(3)], { json });
        expect(r.status, r.stderr).toBe(1);
        if (json) expect(r.json?.error?.code, r.stdout).toBe('EMAP_FULL');
        else {
          const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
          expect(lines).toHaveLength(1);
          expect(lines[0]).toMatch(/^l3iso: /);
        }
      }
      expect(await small.list()).toEqual(before);
      // the refused cell is not confined by a half-made assignment
      const p = await small.probe('c3', [{ op: 'bind_new', fam: 4, addr: V4(3) }]);
      expect(p.last).toMatchObject({ ok: true, addr: V4(3) });
      // releasing a cell makes room again
      await small.cliOk(['release', 'c1']);
      await small.assign('c3', V4(3));
      expect((await small.list()).map((c: { cell: string }) => c.cell).sort()).toEqual([
        'c2',
        'c3',
      ]);
    } finally {
      await small.destroy();
    }
  });
});
