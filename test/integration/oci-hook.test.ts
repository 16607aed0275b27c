// `l3iso oci-hook` driven directly with OCI state documents (no runtime):
// the failure paths and the clean-up of what a missed poststop leaves.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeCgroupTree } from '../../src/model/cgroup';
import { recordsDir } from '../../src/runtime/records';
import { createSandbox, V4, type BgProc, type Sandbox } from '../harness/sandbox';

function state(id: string, pid: number | undefined, annotations: Record<string, string>): string {
  return JSON.stringify({
    ociVersion: '1.0.2',
    id,
    status: pid ? 'creating' : 'stopped',
    ...(pid ? { pid } : {}),
    bundle: '/nonexistent',
    annotations,
  });
}

describe('oci-hook without a runtime', () => {
  let sb: Sandbox;
  const procs: BgProc[] = [];

  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill()));
    const records = sb ? recordsDir(sb.pinDir) : undefined;
    await sb?.destroy();
    if (records) fs.rmSync(records, { recursive: true, force: true });
  });

  /** A process sitting in cgroup `rel` (relative to the root, or absolute), as a container's init at createRuntime. */
  async function initIn(rel: string): Promise<number> {
    const cg = sb.cg(rel);
    const p = sb.spawnInCell(rel, ['sleep', '60']);
    procs.push(p);
    for (let i = 0; i < 200; i++) {
      if (fs.readFileSync(path.join(cg, 'cgroup.procs'), 'utf8').includes(`${p.pid}\n`))
        return p.pid!;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`pid ${p.pid} never joined ${cg}`);
  }

  const hook = (stage: string, input: string, pinDir?: string) =>
    sb.cli(['oci-hook', stage], { input, ...(pinDir ? { pinDir } : {}) });

  it('createRuntime assigns addresses and allow-from; gc releases what a missed poststop left, record included', async () => {
    const pid = await initIn('ctr/gc1');
    const r = await hook(
      'createRuntime',
      state('gc1', pid, { 'io.l3iso.addresses': V4(6), 'io.l3iso.allow-from': '198.51.100.0/24' }),
    );
    expect(r.status, r.stderr).toBe(0);
    const cell = await sb.show('ctr/gc1');
    expect(cell.addresses).toEqual([V4(6)]);
    expect(cell.allowList).toBe(true);
    const record = path.join(recordsDir(sb.pinDir), 'gc1.json');
    expect(JSON.parse(fs.readFileSync(record, 'utf8'))).toMatchObject({
      container: 'gc1',
      cgroupId: cell.id,
      addresses: [V4(6)],
    });

    // The container dies and its cgroup goes; poststop never comes.
    await procs.pop()!.kill();
    removeCgroupTree(path.join(sb.root, 'ctr/gc1'));
    const gc = await sb.cliOk(['gc', '--json']);
    expect(gc.json.cells).toEqual([{ id: cell.id, addresses: [V4(6)] }]);
    expect(gc.json.ociRecords).toEqual(['gc1']);
    expect(fs.existsSync(record)).toBe(false);

    // A late poststop finds nothing: logged, exit 0.
    const late = await hook('poststop', state('gc1', undefined, { 'io.l3iso.addresses': V4(6) }));
    expect(late.status).toBe(0);
    expect(late.stderr).toMatch(/no record of container gc1/);
  });

  it('poststop never fails the runtime: bad input is logged and exits 0', async () => {
    const r = await hook('poststop', 'not json');
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/poststop: release failed/);
  });

  it('createRuntime fails closed: engine down, cgroup outside the root, foreign cell, bad allow-from', async () => {
    const pid = await initIn('ctr/c2');
    const down = await hook(
      'createRuntime',
      state('c2', pid, { 'io.l3iso.addresses': V4(7) }),
      sb.extraPinDir(),
    );
    expect(down.status).not.toBe(0);
    expect(down.stderr).toMatch(/^l3iso: container c2: engine is not up/);

    const opid = await initIn(sb.outsideCg('o'));
    const out = await hook('createRuntime', state('c3', opid, { 'io.l3iso.addresses': V4(7) }));
    expect(out.status).not.toBe(0);
    expect(out.stderr).toMatch(/outside the managed root/);

    await sb.assign('ctr/c2', V4(8));
    const foreign = await hook('createRuntime', state('c2', pid, { 'io.l3iso.addresses': V4(7) }));
    expect(foreign.status).not.toBe(0);
    expect(foreign.stderr).toMatch(/already is a cell/);
    expect((await sb.show('ctr/c2')).addresses).toEqual([V4(8)]);
    await sb.cliOk(['release', 'ctr/c2']);

    const badAllow = await hook(
      'createRuntime',
      state('c2', pid, { 'io.l3iso.addresses': V4(7), 'io.l3iso.allow-from': '198.51.100.0/99' }),
    );
    expect(badAllow.status).not.toBe(0);
    expect((await sb.list()).map((c: { cell: string }) => c.cell)).not.toContain('ctr/c2');
    expect(fs.existsSync(path.join(recordsDir(sb.pinDir), 'c2.json'))).toBe(false);
  });
});
