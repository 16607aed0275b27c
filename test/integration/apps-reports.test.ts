// What the kernel reports to a cell (getsockname, getpeername, recvmsg,
// accept) is what the same program would see on a host that owns only the
// cell's addresses, v4-mapped forms included.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, mapped, V4, V6, type Sandbox } from '../harness/sandbox';

describe('addresses a cell is shown', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('c4');
    sb.cg('ds');
    await sb.assign('c4', V4(4));
    await sb.assign('ds', V4(7), V4(8), V6(7), V6(8));
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  for (const cg of ['c4', 'ds']) {
    it(`${cg}: an AF_INET6 UDP socket connected to ::1 shows ::1, to ::ffff:127.0.0.1 the mapped form`, async () => {
      // glibc's getaddrinfo sort relies on exactly this.
      const r = await sb.probe(cg, [
        { op: 'socket', fam: 6, type: 'udp', v6only: false },
        { op: 'connect', addr: '::1', port: 9 },
        { op: 'socket', id: 'm', fam: 6, type: 'udp', v6only: false },
        { op: 'connect', id: 'm', addr: mapped('127.0.0.1'), port: 9 },
      ]);
      expect(r.ops[1]).toMatchObject({ local: { addr: '::1' }, peer: { addr: '::1', port: 9 } });
      expect(r.ops[3]).toMatchObject({
        local: { addr: mapped('127.0.0.1') },
        peer: { addr: mapped('127.0.0.1'), port: 9 },
      });
    });

    it(`${cg}: TCP over ::ffff:127.0.0.1 is accepted and shown as v4-mapped; over ::1 as ::1`, async () => {
      for (const [bindAddr, want] of [
        [mapped('127.0.0.1'), mapped('127.0.0.1')],
        ['::1', '::1'],
      ]) {
        const srv = sb.spawnProbe(cg, [
          { op: 'socket', fam: 6, v6only: false },
          { op: 'bind', addr: bindAddr, port: 0 },
          { op: 'listen' },
          { op: 'accept', timeout: 5 },
        ]);
        const bound = await srv.waitFor((l) => l.op === 'bind');
        expect(bound.addr).toBe(want);
        const port = bound.port as number;
        await srv.waitFor((l) => l.op === 'listen');
        const c = await sb.probe(cg, [{ op: 'fetch', fam: 6, addr: want, port, timeout: 2 }]);
        expect(c.last).toMatchObject({ ok: true, local: { addr: want }, peer: { addr: want } });
        const acc = await srv.waitFor((l) => l.op === 'accept');
        expect(acc).toMatchObject({
          ok: true,
          peer: { addr: want },
          getpeername: { addr: want },
          local: { addr: want, port },
        });
        await srv.kill();
      }
    });

    it(`${cg}: UDP recvfrom on a v6 socket shows a 127.0.0.1 sender as ::ffff:127.0.0.1`, async () => {
      const srv = sb.spawnProbe(cg, [
        { op: 'socket', fam: 6, type: 'udp', v6only: false },
        { op: 'bind', addr: mapped('127.0.0.1'), port: 0 },
        { op: 'serve_echo', count: 1 },
      ]);
      const { port, addr } = await srv.ready();
      expect(addr).toBe(mapped('127.0.0.1'));
      const r = await sb.probe(cg, [
        { op: 'socket', fam: 4, type: 'udp' },
        { op: 'sendto', addr: '127.0.0.1', port, data: 'hi' },
        { op: 'recvfrom' },
      ]);
      expect(r.last).toMatchObject({ ok: true, addr: '127.0.0.1', port, data: 'hi' });
      const ev = await srv.waitFor((l) => l.event === 'dgram');
      expect(ev.peer.addr).toBe(mapped('127.0.0.1'));
    });
  }

  it('ds: a dual-stack :: listener accepts IPv4 (v4-mapped) and IPv6 on every address', async () => {
    const srv = sb.spawnProbe('ds', [
      { op: 'socket', fam: 6, v6only: false },
      { op: 'bind', addr: '::', port: 0 },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'dual' },
    ]);
    const { port } = await srv.ready();
    const cases: [4 | 6, string, string][] = [
      [4, V4(9), V4(7)],
      [4, V4(9), V4(8)],
      [6, V6(9), V6(7)],
      [6, V6(9), V6(8)],
    ];
    for (const [fam, src, dst] of cases) {
      const r = await sb.probe(null, [
        { op: 'socket', fam },
        { op: 'bind', addr: src, port: 0 },
        { op: 'connect', addr: dst, port },
        { op: 'recv' },
      ]);
      expect(r.last, dst).toMatchObject({ ok: true, data: 'dual' });
    }
    const seen = srv.events().map((e) => [e.peer.addr, e.local.addr]);
    expect(seen).toEqual([
      [mapped(V4(9)), mapped(V4(7))],
      [mapped(V4(9)), mapped(V4(8))],
      [V6(9), V6(7)],
      [V6(9), V6(8)],
    ]);
    await srv.kill();
  });
});
