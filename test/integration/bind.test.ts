// DESIGN.md "Socket semantics", bind rows: own address, wildcard, foreign
// addresses (EADDRNOTAVAIL), and host processes binding a cell's address.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, mapped, V4, V6, type Op, type Sandbox } from '../harness/sandbox';

describe('bind', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('a');
    sb.cg('b');
    sb.cg('c4');
    sb.cg('d6');
    sb.cg('h');
    // a: primaries .1 / ::1 plus a second address of each family.
    await sb.assign('a', V4(1), V6(1), V4(2), V6(2));
    await sb.assign('b', V4(3), V6(3));
    await sb.assign('c4', V4(4));
    await sb.assign('d6', V6(6));
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  const bindOps = (fam: 4 | 6, type: 'tcp' | 'udp', addr: string, extra = {}): Op => ({
    op: 'bind_new',
    fam,
    type,
    addr,
    port: 0,
    ...extra,
  });

  describe('to one of the cell’s own addresses: allowed, getsockname shows it', () => {
    for (const type of ['tcp', 'udp'] as const) {
      it(`v4 ${type}`, async () => {
        const r = await sb.probe('a', [bindOps(4, type, V4(1)), bindOps(4, type, V4(2))]);
        expect(r.ops[0]).toMatchObject({ ok: true, addr: V4(1) });
        expect(r.ops[1]).toMatchObject({ ok: true, addr: V4(2) });
        expect(r.ops[0].port).toBeGreaterThan(0);
      });
      it(`v6 ${type}`, async () => {
        const r = await sb.probe('a', [
          bindOps(6, type, V6(1), { v6only: true }),
          bindOps(6, type, V6(2)),
          // the v4-mapped form of the cell's own v4 address, dual-stack socket
          bindOps(6, type, mapped(V4(2)), { v6only: false }),
        ]);
        expect(r.ops[0]).toMatchObject({ ok: true, addr: V6(1) });
        expect(r.ops[1]).toMatchObject({ ok: true, addr: V6(2) });
        expect(r.ops[2]).toMatchObject({ ok: true, addr: mapped(V4(2)) });
      });
    }
  });

  describe('to the wildcard: bound to the primary of that family', () => {
    for (const type of ['tcp', 'udp'] as const) {
      it(`v4 ${type}: 0.0.0.0 -> primary4, port 0 ephemeral, fixed port kept`, async () => {
        const r = await sb.probe('a', [
          bindOps(4, type, '0.0.0.0'),
          { ...bindOps(4, type, '0.0.0.0'), port: 8081 },
        ]);
        expect(r.ops[0]).toMatchObject({ ok: true, addr: V4(1) });
        expect(r.ops[0].port).toBeGreaterThan(1023);
        expect(r.ops[1]).toMatchObject({ ok: true, addr: V4(1), port: 8081 });
      });
      // A dual-stack TCP socket keeps IPv4, as on a host: bound to a v6
      // address the kernel would make it V6ONLY, so it gets the v4-mapped
      // primary and sk_lookup serves the cell's v6 addresses with it
      // (apps.test.ts: node's default listen).
      const dual6 = type === 'tcp' ? mapped(V4(1)) : V6(1);
      it(`v6 ${type}: :: -> primary6 (v6-only sockets), ${dual6} (dual-stack)`, async () => {
        const r = await sb.probe('a', [
          bindOps(6, type, '::', { v6only: true }),
          bindOps(6, type, '::', { v6only: false }),
          { ...bindOps(6, type, '::', { v6only: true }), port: 8082 },
        ]);
        expect(r.ops[0]).toMatchObject({ ok: true, addr: V6(1) });
        expect(r.ops[0].port).toBeGreaterThan(1023);
        expect(r.ops[1]).toMatchObject({ ok: true, addr: dual6 });
        expect(r.ops[2]).toMatchObject({ ok: true, addr: V6(1), port: 8082 });
      });
      it(`dual-stack ${type} :: of a v4-only cell -> ::ffff:primary4`, async () => {
        const r = await sb.probe('c4', [
          bindOps(6, type, '::', { v6only: false }),
          bindOps(6, type, mapped('0.0.0.0'), { v6only: false }),
          bindOps(4, type, '0.0.0.0'),
        ]);
        expect(r.ops[0]).toMatchObject({ ok: true, addr: mapped(V4(4)) });
        expect(r.ops[0].port).toBeGreaterThan(1023);
        expect(r.ops[1]).toMatchObject({ ok: true, addr: mapped(V4(4)) });
        expect(r.ops[2]).toMatchObject({ ok: true, addr: V4(4) });
      });
      // A v6-only cell's only IPv4 is its loopback: a dual-stack TCP :: gets
      // its v4-mapped form (IPv4 over 127.0.0.1, as on a v6-only host).
      const dualD6 = type === 'tcp' ? mapped('127.0.0.1') : V6(6);
      it(`v6-only cell ${type}: :: -> its v6 primary (dual-stack: ${dualD6})`, async () => {
        const r = await sb.probe('d6', [
          bindOps(6, type, '::', { v6only: false }),
          bindOps(6, type, '::', { v6only: true }),
        ]);
        expect(r.ops[0]).toMatchObject({ ok: true, addr: dualD6 });
        expect(r.ops[1]).toMatchObject({ ok: true, addr: V6(6) });
      });
    }
  });

  describe('to a foreign address: EADDRNOTAVAIL', () => {
    for (const type of ['tcp', 'udp'] as const) {
      it(`v4 ${type}: another cell's, the host's`, async () => {
        const r = await sb.probe(
          'a',
          [bindOps(4, type, V4(3)), bindOps(4, type, V4(9)), bindOps(4, type, V4(4))],
          { keepGoing: true },
        );
        for (const op of r.ops) expect(op).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
        expect(r.ops).toHaveLength(3);
      });
      it(`v6 ${type}: another cell's, the host's, v4-mapped of another cell's / the host's`, async () => {
        const r = await sb.probe(
          'a',
          [
            bindOps(6, type, V6(3)),
            bindOps(6, type, V6(9)),
            bindOps(6, type, V6(6)),
            bindOps(6, type, mapped(V4(3)), { v6only: false }),
            bindOps(6, type, mapped(V4(9)), { v6only: false }),
          ],
          { keepGoing: true },
        );
        expect(r.ops).toHaveLength(5);
        for (const op of r.ops) expect(op).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
      });
    }
    it('a v4-only cell cannot bind a v6 address of another cell nor the host', async () => {
      const r = await sb.probe('c4', [bindOps(6, 'tcp', V6(1)), bindOps(6, 'tcp', V6(9))], {
        keepGoing: true,
      });
      for (const op of r.ops) expect(op).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    });
  });

  describe('a host process (no cell) binding a cell’s address: EADDRNOTAVAIL', () => {
    for (const where of ['managed root', 'unassigned child cgroup'] as const) {
      for (const type of ['tcp', 'udp'] as const) {
        it(`${where}, ${type}: v4, v6, v4-mapped`, async () => {
          const cg = where === 'managed root' ? sb.root : sb.cg('h');
          const r = await sb.probe(
            cg,
            [
              bindOps(4, type, V4(1)),
              bindOps(4, type, V4(2)),
              bindOps(6, type, V6(1)),
              bindOps(6, type, V6(6)),
              bindOps(6, type, mapped(V4(1)), { v6only: false }),
              bindOps(6, type, mapped(V4(4)), { v6only: false }),
            ],
            { keepGoing: true },
          );
          expect(r.ops).toHaveLength(6);
          for (const op of r.ops) {
            expect(op).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
          }
        });
      }
      it(`${where}: unowned addresses and the wildcard still bind normally`, async () => {
        const cg = where === 'managed root' ? sb.root : sb.cg('h');
        const r = await sb.probe(cg, [
          bindOps(4, 'tcp', V4(9)),
          bindOps(6, 'tcp', V6(9)),
          bindOps(4, 'tcp', '0.0.0.0'),
          bindOps(6, 'tcp', '::', { v6only: true }),
          bindOps(4, 'tcp', '127.0.0.1'),
        ]);
        expect(r.ops.map((o) => [o.ok, o.addr])).toEqual([
          [true, V4(9)],
          [true, V6(9)],
          [true, '0.0.0.0'],
          [true, '::'],
          [true, '127.0.0.1'],
        ]);
      });
    }
  });
});
