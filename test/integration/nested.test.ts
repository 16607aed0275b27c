// DESIGN.md: "a socket's cell is the nearest assigned ancestor of the cgroup
// the socket was created in".
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, V6, type BgProc, type Sandbox } from '../harness/sandbox';

describe('nested cgroups', () => {
  let sb: Sandbox;
  let srv4: BgProc;
  let srv6: BgProc;
  let p4: number;
  let p6: number;

  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('a/x/y');
    await sb.assign('a', V4(1), V6(1));
    srv4 = sb.spawnProbe(null, [
      { op: 'socket', fam: 4 },
      { op: 'bind', addr: V4(9), port: 0 },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'host4' },
    ]);
    srv6 = sb.spawnProbe(null, [
      { op: 'socket', fam: 6, v6only: true },
      { op: 'bind', addr: V6(9), port: 0 },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'host6' },
    ]);
    [p4, p6] = (await Promise.all([srv4.ready(), srv6.ready()])).map((l) => l.port as number);
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  const probeAll = (cg: string) =>
    sb.probe(
      cg,
      [
        { op: 'bind_new', fam: 4, addr: '0.0.0.0' },
        { op: 'bind_new', fam: 6, addr: '::', v6only: true },
        { op: 'fetch', fam: 4, addr: V4(9), port: p4 },
        { op: 'fetch', fam: 6, addr: V6(9), port: p6 },
        { op: 'bind_new', fam: 4, addr: V4(1) },
        { op: 'bind_new', fam: 4, addr: V4(3) },
        { op: 'bind_new', fam: 6, addr: V6(1) },
        { op: 'bind_new', fam: 6, addr: V6(3) },
      ],
      { keepGoing: true },
    );

  it('a process in a/x/y is confined as cell a', async () => {
    const r = await probeAll('a/x/y');
    expect(r.ops[0]).toMatchObject({ ok: true, addr: V4(1) });
    expect(r.ops[1]).toMatchObject({ ok: true, addr: V6(1) });
    expect(r.ops[2]).toMatchObject({ ok: true, local: { addr: V4(1) } });
    expect(r.ops[3]).toMatchObject({ ok: true, local: { addr: V6(1) } });
    expect(r.ops[4]).toMatchObject({ ok: true, addr: V4(1) });
    expect(r.ops[5]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    expect(r.ops[6]).toMatchObject({ ok: true, addr: V6(1) });
    expect(r.ops[7]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
  });

  it('after assigning a/x its own addresses, new sockets in a/x/y use x’s', async () => {
    await sb.assign('a/x', V4(3), V6(3));
    const cells = await sb.list();
    const x = cells.find((c: { path: string }) => c.path === `${sb.root}/a/x`);
    expect(x).toMatchObject({ primary4: V4(3), primary6: V6(3) });
    const r = await probeAll('a/x/y');
    expect(r.ops[0]).toMatchObject({ ok: true, addr: V4(3) });
    expect(r.ops[1]).toMatchObject({ ok: true, addr: V6(3) });
    expect(r.ops[2]).toMatchObject({ ok: true, local: { addr: V4(3) } });
    expect(r.ops[3]).toMatchObject({ ok: true, local: { addr: V6(3) } });
    // a's addresses are now another cell's
    expect(r.ops[4]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    expect(r.ops[5]).toMatchObject({ ok: true, addr: V4(3) });
    expect(r.ops[6]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    expect(r.ops[7]).toMatchObject({ ok: true, addr: V6(3) });
  });

  it('a process directly in a still uses a’s addresses', async () => {
    const r = await probeAll('a');
    expect(r.ops[0]).toMatchObject({ ok: true, addr: V4(1) });
    expect(r.ops[1]).toMatchObject({ ok: true, addr: V6(1) });
    expect(r.ops[5]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
  });

  it('the two cells have distinct private loopbacks', async () => {
    const a = await sb.show('a');
    const x = await sb.show('a/x');
    expect(a.loopback4).not.toBe(x.loopback4);
    const srv = sb.spawnProbe('a', [
      { op: 'socket', fam: 4 },
      { op: 'bind', addr: '127.0.0.1', port: 0 },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'a-local' },
    ]);
    const ready = await srv.ready();
    const fromY = await sb.probe('a/x/y', [{ op: 'fetch', addr: '127.0.0.1', port: ready.port }], {
      keepGoing: true,
    });
    expect(fromY.last).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
    const fromA = await sb.probe('a', [{ op: 'fetch', addr: '127.0.0.1', port: ready.port }]);
    expect(fromA.last).toMatchObject({ ok: true, data: 'a-local' });
  });
});
