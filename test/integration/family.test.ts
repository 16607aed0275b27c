// DESIGN.md: "C uses a family it has no address for: EAFNOSUPPORT (jail
// semantics), except loopback". A wildcard bind in the missing family is
// loopback's: it succeeds, reachable by the cell alone or by nobody.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sandboxWithCells } from '../harness/cells';
import { hostServers } from '../harness/host-servers';
import { mapped, V4, V6, type Sandbox } from '../harness/sandbox';

describe('address families a cell lacks', () => {
  let sb: Sandbox;
  let p4: number;
  let p6: number;

  beforeAll(async () => {
    sb = await sandboxWithCells({ c4: [V4(4)], c4b: [V4(5)], d6: [V6(6)] });
    const host = await hostServers(sb, ['tcp4', 'tcp6']);
    [p4, p6] = [host.tcp4.port, host.tcp6.port];
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  describe('v4-only cell', () => {
    it('connect to a v6 address: EAFNOSUPPORT (TCP and connected UDP)', async () => {
      const r = await sb.probe(
        'c4',
        [
          { op: 'fetch', fam: 6, addr: V6(9), port: p6 },
          { op: 'socket', fam: 6, type: 'udp' },
          { op: 'connect', addr: V6(9), port: p6 },
        ],
        { keepGoing: true },
      );
      expect(r.ops[0]).toMatchObject({ ok: false, errno: 'EAFNOSUPPORT' });
      expect(r.ops[2]).toMatchObject({ ok: false, errno: 'EAFNOSUPPORT' });
    });

    it('UDP sendto a v6 address: EAFNOSUPPORT', async () => {
      const r = await sb.probe(
        'c4',
        [
          { op: 'socket', fam: 6, type: 'udp' },
          { op: 'sendto', addr: V6(9), port: 9, data: 'x' },
        ],
        { keepGoing: true },
      );
      expect(r.ops[1]).toMatchObject({ ok: false, errno: 'EAFNOSUPPORT' });
    });

    it('bind [::]:P on an IPV6_V6ONLY socket succeeds, parked where nothing reaches it', async () => {
      // As on a v4-only host, where nginx's stock `listen [::]:80` (V6ONLY)
      // binds fine. The cell has no v6 address of its own: the socket is
      // parked on [::1] with an ephemeral port, so two v4-only cells both
      // binding [::]:P never clash, and getsockname shows the :: asked for.
      const parked = ['c4', 'c4b'].map((cg) =>
        sb.spawnProbe(cg, [
          { op: 'socket', fam: 6, v6only: true },
          { op: 'bind', addr: '::', port: 8080 },
          { op: 'listen' },
          { op: 'serve_banner', banner: `parked-${cg}` },
        ]),
      );
      const ready = await Promise.all(parked.map((p) => p.ready()));
      for (const l of ready) expect(l.addr).toBe('::');
      expect(ready[0].port).not.toBe(ready[1].port);
      // Nothing reaches it: not the host over ::1 (a cell socket gets
      // nothing for an address no cell owns), not the cell over [::1]:P
      // (its ::1 is its v4 loopback alias).
      const host = await sb.probe(null, [
        { op: 'fetch', fam: 6, addr: '::1', port: ready[0].port, timeout: 1 },
      ]);
      expect(host.last).toMatchObject({ ok: false });
      const own = await sb.probe('c4', [{ op: 'fetch', fam: 6, addr: '::1', port: 8080 }]);
      expect(own.last).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
      expect(parked[0].events()).toHaveLength(0);
      expect(parked[1].events()).toHaveLength(0);
      await Promise.all(parked.map((p) => p.kill()));
    });

    it('v4 still works: connect source and dual-stack v4-mapped connect', async () => {
      const r = await sb.probe('c4', [
        { op: 'fetch', fam: 4, addr: V4(9), port: p4 },
        { op: 'fetch', fam: 6, v6only: false, addr: mapped(V4(9)), port: p4 },
      ]);
      expect(r.ops[0]).toMatchObject({ ok: true, data: 'host4', local: { addr: V4(4) } });
      expect(r.ops[1]).toMatchObject({ ok: true, data: 'host4', local: { addr: mapped(V4(4)) } });
    });

    it('loopback works over ::1 too', async () => {
      const srv = sb.spawnProbe('c4', [
        { op: 'socket', fam: 6, v6only: false },
        { op: 'bind', addr: '::1', port: 0 },
        { op: 'listen' },
        { op: 'serve_banner', banner: 'c4-local6', count: 1 },
      ]);
      const ready = await srv.ready();
      expect(ready.addr).toBe('::1');
      const r = await sb.probe('c4', [{ op: 'fetch', fam: 6, addr: '::1', port: ready.port }]);
      expect(r.last).toMatchObject({ ok: true, data: 'c4-local6', peer: { addr: '::1' } });
    });
  });

  describe('v6-only cell', () => {
    it('bind 0.0.0.0 (TCP, UDP) and ::ffff:0.0.0.0: its loopback, as on a v6-only host', async () => {
      // nginx's stock `listen 80` must start in a v6-only cell: IPv4's
      // wildcard is the cell's private 127.0.0.1, which only it reaches.
      const r = await sb.probe('d6', [
        { op: 'bind_new', fam: 4, type: 'tcp', addr: '0.0.0.0' },
        { op: 'bind_new', fam: 4, type: 'udp', addr: '0.0.0.0' },
        { op: 'bind_new', fam: 6, type: 'tcp', addr: mapped('0.0.0.0'), v6only: false },
      ]);
      expect(r.ops.map((o) => o.addr)).toEqual(['127.0.0.1', '127.0.0.1', mapped('127.0.0.1')]);
      const srv = sb.spawnProbe('d6', [
        { op: 'socket', fam: 4 },
        { op: 'bind', addr: '0.0.0.0', port: 0 },
        { op: 'listen' },
        { op: 'serve_banner', banner: 'd6-any4' },
      ]);
      const { port } = await srv.ready();
      const own = await sb.probe('d6', [{ op: 'fetch', fam: 4, addr: '127.0.0.1', port }]);
      expect(own.last).toMatchObject({ ok: true, data: 'd6-any4', peer: { addr: '127.0.0.1' } });
      const other = await sb.probe('c4', [{ op: 'fetch', fam: 4, addr: '127.0.0.1', port }], {
        keepGoing: true,
      });
      expect(other.last).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
      await srv.kill();
    });

    it('connect to a v4 address (AF_INET and v4-mapped): EAFNOSUPPORT', async () => {
      const r = await sb.probe(
        'd6',
        [
          { op: 'fetch', fam: 4, addr: V4(9), port: p4 },
          { op: 'fetch', fam: 6, v6only: false, addr: mapped(V4(9)), port: p4 },
          { op: 'socket', fam: 4, type: 'udp' },
          { op: 'connect', addr: V4(9), port: p4 },
        ],
        { keepGoing: true },
      );
      expect(r.ops[0]).toMatchObject({ ok: false, errno: 'EAFNOSUPPORT' });
      expect(r.ops[1]).toMatchObject({ ok: false, errno: 'EAFNOSUPPORT' });
      expect(r.ops[3]).toMatchObject({ ok: false, errno: 'EAFNOSUPPORT' });
    });

    it('UDP sendto a v4 address: EAFNOSUPPORT', async () => {
      const r = await sb.probe(
        'd6',
        [
          { op: 'socket', fam: 4, type: 'udp' },
          { op: 'sendto', addr: V4(9), port: 9, data: 'x' },
        ],
        { keepGoing: true },
      );
      expect(r.ops[1]).toMatchObject({ ok: false, errno: 'EAFNOSUPPORT' });
    });

    it('v6 works: connect source is the v6 primary', async () => {
      const r = await sb.probe('d6', [{ op: 'fetch', fam: 6, addr: V6(9), port: p6 }]);
      expect(r.last).toMatchObject({ ok: true, data: 'host6', local: { addr: V6(6) } });
    });

    it('loopback still works: TCP on 127.0.0.1 and [::1], UDP on 127.0.0.1', async () => {
      const s4 = sb.spawnProbe('d6', [
        { op: 'socket', fam: 4 },
        { op: 'bind', addr: '127.0.0.1', port: 0 },
        { op: 'listen' },
        { op: 'serve_banner', banner: 'd6-local', count: 1 },
      ]);
      const s6 = sb.spawnProbe('d6', [
        { op: 'socket', fam: 6, v6only: false },
        { op: 'bind', addr: '::1', port: 0 },
        { op: 'listen' },
        { op: 'serve_banner', banner: 'd6-local6', count: 1 },
      ]);
      const u4 = sb.spawnProbe('d6', [
        { op: 'socket', fam: 4, type: 'udp' },
        { op: 'bind', addr: '127.0.0.1', port: 0 },
        { op: 'serve_echo', count: 1 },
      ]);
      const [r4, r6, ru] = await Promise.all([s4.ready(), s6.ready(), u4.ready()]);
      expect([r4.addr, r6.addr, ru.addr]).toEqual(['127.0.0.1', '::1', '127.0.0.1']);
      const r = await sb.probe('d6', [
        { op: 'fetch', fam: 4, addr: '127.0.0.1', port: r4.port },
        { op: 'fetch', fam: 6, addr: '::1', port: r6.port },
        { op: 'socket', fam: 4, type: 'udp' },
        { op: 'sendto', addr: '127.0.0.1', port: ru.port, data: 'lo' },
        { op: 'recvfrom' },
      ]);
      expect(r.ops[0]).toMatchObject({ ok: true, data: 'd6-local', peer: { addr: '127.0.0.1' } });
      expect(r.ops[1]).toMatchObject({ ok: true, data: 'd6-local6', peer: { addr: '::1' } });
      expect(r.ops[4]).toMatchObject({ ok: true, data: 'lo', addr: '127.0.0.1' });
    });
  });
});
