// `l3iso exec`: a throwaway cell around one command, without the
// capabilities that would let it escape (DESIGN.md, threat model).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, PROBE, python, V4, V6, type Op, type Sandbox } from '../harness/sandbox';

const CAP_NET_ADMIN = 12n;
const CAP_NET_RAW = 13n;
const CAP_SYS_ADMIN = 21n;
const CAP_BPF = 39n;

function parseLines(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
}

describe('exec', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  const probeArgv = (ops: Op[]) => [python(), PROBE, JSON.stringify({ ops, keep_going: true })];

  it('runs the command in a new cell: wildcard bind gets the cell’s address', async () => {
    const r = await sb.cli([
      'exec',
      '--name',
      'c1',
      V4(5),
      '--',
      ...probeArgv([
        { op: 'bind_new', fam: 4, addr: '0.0.0.0' },
        { op: 'bind_new', fam: 4, addr: V4(6) },
        { op: 'cgroup' },
      ]),
    ]);
    expect(r.status, r.stderr).toBe(0);
    const ops = parseLines(r.stdout).filter((l) => typeof l.i === 'number');
    expect(ops[0]).toMatchObject({ ok: true, addr: V4(5) });
    expect(ops[1]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    // its cgroup namespace is rooted at the cell (exec-escape.test.ts)
    expect(ops[2].cgroup).toBe('/');
  });

  it('the cell is removed afterwards', async () => {
    expect(fs.existsSync(path.join(sb.root, 'c1'))).toBe(false);
    expect((await sb.list()).map((c: { cell: string }) => c.cell)).not.toContain('c1');
    // and its address is free again
    sb.cg('again');
    await sb.assign('again', V4(5));
    await sb.cliOk(['release', 'again']);
  });

  it('v6 and dual-stack exec', async () => {
    const r = await sb.cli([
      'exec',
      '--name',
      'c6',
      V6(5),
      V4(7),
      '--',
      ...probeArgv([
        { op: 'bind_new', fam: 6, addr: '::', v6only: true },
        { op: 'bind_new', fam: 4, addr: '0.0.0.0' },
      ]),
    ]);
    expect(r.status, r.stderr).toBe(0);
    const ops = parseLines(r.stdout).filter((l) => typeof l.i === 'number');
    expect(ops[0]).toMatchObject({ ok: true, addr: V6(5) });
    expect(ops[1]).toMatchObject({ ok: true, addr: V4(7) });
  });

  it('passes the exit status through', async () => {
    const r = await sb.cli(['exec', '--name', 'c2', V4(6), '--', 'sh', '-c', 'exit 7']);
    expect(r.status, r.stderr).toBe(7);
    expect(fs.existsSync(path.join(sb.root, 'c2'))).toBe(false);
    const ok = await sb.cli(['exec', '--name', 'c2', V4(6), '--', 'true']);
    expect(ok.status, ok.stderr).toBe(0);
  });

  it('drops CAP_NET_RAW, CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF from the bounding set', async () => {
    const r = await sb.cli([
      'exec',
      '--name',
      'c3',
      V4(8),
      '--',
      ...probeArgv([
        { op: 'caps' },
        { op: 'socket', id: 'pkt', fam: 'packet', type: 'raw' },
        { op: 'socket', id: 'raw', fam: 4, type: 'raw' },
      ]),
    ]);
    expect(r.status, r.stderr).toBe(0);
    const ops = parseLines(r.stdout).filter((l) => typeof l.i === 'number');
    const bnd = BigInt('0x' + String(ops[0].CapBnd));
    const eff = BigInt('0x' + String(ops[0].CapEff));
    for (const bit of [CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN, CAP_BPF]) {
      expect((bnd >> bit) & 1n, `CapBnd bit ${bit}`).toBe(0n);
      expect((eff >> bit) & 1n, `CapEff bit ${bit}`).toBe(0n);
    }
    expect(ops[1]).toMatchObject({ ok: false, errno: 'EPERM' });
    expect(ops[2]).toMatchObject({ ok: false, errno: 'EPERM' });
  });

  it('--keep leaves the cell in place', async () => {
    const r = await sb.cli(['exec', '--name', 'kept', '--keep', V4(9), '--', 'true']);
    expect(r.status, r.stderr).toBe(0);
    expect(fs.existsSync(path.join(sb.root, 'kept'))).toBe(true);
    const kept = (await sb.list()).find((c: { cell: string }) => c.cell === 'kept');
    expect(kept).toMatchObject({ addresses: [V4(9)], primary4: V4(9) });
    await sb.cliOk(['release', 'kept']);
    expect((await sb.list()).find((c: { cell: string }) => c.cell === 'kept')).toBeUndefined();
  });

  it('an address owned by another cell: exec fails with EADDR_OWNED, runs nothing', async () => {
    sb.cg('holder');
    await sb.assign('holder', V4(4));
    const marker = `/tmp/${sb.id}-ran`;
    const r = await sb.cli(['exec', '--name', 'c4', V4(4), '--', 'touch', marker], { json: true });
    expect(r.status).toBe(1);
    expect(r.json?.error?.code, r.stdout).toBe('EADDR_OWNED');
    expect(fs.existsSync(marker)).toBe(false);
    expect(fs.existsSync(path.join(sb.root, 'c4'))).toBe(false);
  });
});
