// DESIGN.md: "an address is released from C: new binds to it fail, and C's
// existing sockets on it are destroyed (bpf_sock_destroy), so no access
// lingers".
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, V6, type Sandbox } from '../harness/sandbox';

describe('release', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('a');
    sb.cg('gone');
    await sb.assign('a', V4(1), V6(1), V4(2), V6(2));
    await sb.assign('gone', V4(5), V6(5));
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('releasing an address: the cell can no longer bind it, the host can', async () => {
    await sb.cliOk(['release', 'a', V4(2), V6(2)]);
    const cell = (await sb.list()).find((c: { cell: string }) => c.cell === 'a');
    expect([...cell.addresses].sort()).toEqual([V4(1), V6(1)].sort());
    const r = await sb.probe(
      'a',
      [
        { op: 'bind_new', fam: 4, addr: V4(2) },
        { op: 'bind_new', fam: 6, addr: V6(2) },
        { op: 'bind_new', fam: 4, addr: V4(1) },
      ],
      { keepGoing: true },
    );
    expect(r.ops[0]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    expect(r.ops[1]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    expect(r.ops[2]).toMatchObject({ ok: true, addr: V4(1) });
    const h = await sb.probe(sb.root, [
      { op: 'bind_new', fam: 4, addr: V4(2) },
      { op: 'bind_new', fam: 6, addr: V6(2) },
    ]);
    expect(h.ops.map((o) => o.ok)).toEqual([true, true]);
  });

  it('releasing a whole cell: it leaves list, its addresses are free', async () => {
    await sb.cliOk(['release', 'gone']);
    expect((await sb.list()).map((c: { cell: string }) => c.cell)).toEqual(['a']);
    const h = await sb.probe(sb.root, [
      { op: 'bind_new', fam: 4, addr: V4(5) },
      { op: 'bind_new', fam: 6, addr: V6(5) },
    ]);
    expect(h.ops.map((o) => o.ok)).toEqual([true, true]);
    // another cell may now take them
    await sb.assign('a', V4(5));
  });

  it('a listener on a released address: refused without --force, unreachable after it', async () => {
    sb.cg('b');
    await sb.assign('b', V4(3), V4(4));
    const srv = sb.spawnProbe('b', [
      { op: 'socket', fam: 4 },
      { op: 'bind', addr: V4(4), port: 0 },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'b4' },
    ]);
    const ready = await srv.ready();
    const before = await sb.probe(null, [{ op: 'fetch', addr: V4(4), port: ready.port }]);
    expect(before.last).toMatchObject({ ok: true, data: 'b4' });
    const refused = await sb.cli(['release', 'b', V4(4)]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(
      new RegExp(
        `tcp-listen ${V4(4).replace(/\./g, '\\.')}:${ready.port} held by pid \\d+ \\(python3\\)`,
      ),
    );
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect((await sb.list()).find((c: { cell: string }) => c.cell === 'b').addresses).toContain(
      V4(4),
    );
    await sb.cliOk(['release', 'b', V4(4), '--force']);
    const after = await sb.probe(null, [{ op: 'fetch', addr: V4(4), port: ready.port }], {
      keepGoing: true,
    });
    expect(after.last).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
  });
});
