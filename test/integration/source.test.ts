// DESIGN.md: "connect / UDP sendmsg: source address is C's address of that
// family, never the host's; an explicit foreign source (IP_PKTINFO) is
// refused".
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sandboxWithCells } from '../harness/cells';
import { hostServers } from '../harness/host-servers';
import { mapped, V4, V6, type BgProc, type Sandbox } from '../harness/sandbox';

describe('forced source address', () => {
  let sb: Sandbox;
  let tcp4: BgProc;
  let tcp6: BgProc;
  let udp4: BgProc;
  let udp6: BgProc;
  const port: Record<string, number> = {};

  beforeAll(async () => {
    sb = await sandboxWithCells({ a: [V4(1), V6(1), V4(2), V6(2)], b: [V4(3), V6(3)] });
    // The listeners are outside the cells, on the host's (unassigned) .9
    const host = await hostServers(sb, ['tcp4', 'tcp6', 'udp4', 'udp6']);
    tcp4 = host.tcp4.proc;
    tcp6 = host.tcp6.proc;
    udp4 = host.udp4.proc;
    udp6 = host.udp6.proc;
    for (const [k, v] of Object.entries(host)) port[k] = v.port;
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  /** The newest event of a server whose data/peer matches, after the call. */
  async function nextEvent(srv: BgProc, fn: () => Promise<unknown>) {
    const n = srv.events().length;
    await fn();
    await srv.waitFor(() => srv.events().length > n);
    return srv.events()[n];
  }

  it('TCP v4 connect: the listener sees the cell’s primary', async () => {
    let local: unknown;
    const ev = await nextEvent(tcp4, async () => {
      const r = await sb.probe('a', [{ op: 'fetch', fam: 4, addr: V4(9), port: port.tcp4 }]);
      expect(r.last).toMatchObject({ ok: true, data: 'host4' });
      local = r.last.local.addr;
    });
    expect(local).toBe(V4(1));
    expect(ev.peer.addr).toBe(V4(1));
    const evb = await nextEvent(tcp4, () =>
      sb.probe('b', [{ op: 'fetch', fam: 4, addr: V4(9), port: port.tcp4 }]),
    );
    expect(evb.peer.addr).toBe(V4(3));
  });

  it('TCP v6 connect: the listener sees the cell’s primary', async () => {
    const ev = await nextEvent(tcp6, async () => {
      const r = await sb.probe('a', [{ op: 'fetch', fam: 6, addr: V6(9), port: port.tcp6 }]);
      expect(r.last).toMatchObject({ ok: true, data: 'host6', local: { addr: V6(1) } });
    });
    expect(ev.peer.addr).toBe(V6(1));
  });

  it('TCP connect to a v4-mapped destination from a dual-stack socket: primary4', async () => {
    const ev = await nextEvent(tcp4, async () => {
      const r = await sb.probe('a', [
        { op: 'fetch', fam: 6, v6only: false, addr: mapped(V4(9)), port: port.tcp4 },
      ]);
      expect(r.last).toMatchObject({ ok: true, local: { addr: mapped(V4(1)) } });
    });
    expect(ev.peer.addr).toBe(V4(1));
  });

  it('UDP v4 sendto: the source is the cell’s primary', async () => {
    const ev = await nextEvent(udp4, async () => {
      const r = await sb.probe('a', [
        { op: 'socket', fam: 4, type: 'udp' },
        { op: 'sendto', addr: V4(9), port: port.udp4, data: 'u4' },
        { op: 'recvfrom' },
      ]);
      expect(r.ops[2]).toMatchObject({ ok: true, addr: V4(9), data: 'u4' });
    });
    expect(ev).toMatchObject({ peer: { addr: V4(1) }, data: 'u4' });
  });

  it('UDP v6 sendto: the source is the cell’s primary', async () => {
    const ev = await nextEvent(udp6, async () => {
      const r = await sb.probe('a', [
        { op: 'socket', fam: 6, type: 'udp' },
        { op: 'sendto', addr: V6(9), port: port.udp6, data: 'u6' },
        { op: 'recvfrom' },
      ]);
      expect(r.ops[2]).toMatchObject({ ok: true, addr: V6(9), data: 'u6' });
    });
    expect(ev).toMatchObject({ peer: { addr: V6(1) }, data: 'u6' });
  });

  it('connected UDP: the socket is bound to the primary', async () => {
    const r = await sb.probe('a', [
      { op: 'socket', fam: 4, type: 'udp' },
      { op: 'connect', addr: V4(9), port: port.udp4 },
      { op: 'socket', id: 't', fam: 6, type: 'udp' },
      { op: 'connect', id: 't', addr: V6(9), port: port.udp6 },
    ]);
    expect(r.ops[1]).toMatchObject({ ok: true, local: { addr: V4(1) } });
    expect(r.ops[3]).toMatchObject({ ok: true, local: { addr: V6(1) } });
  });

  it('IP_PKTINFO source: foreign -> EADDRNOTAVAIL, own secondary -> used', async () => {
    const r = await sb.probe(
      'a',
      [
        { op: 'socket', fam: 4, type: 'udp' },
        { op: 'sendto', addr: V4(9), port: port.udp4, src: V4(9), data: 'host-src' },
        { op: 'sendto', addr: V4(9), port: port.udp4, src: V4(3), data: 'b-src' },
      ],
      { keepGoing: true },
    );
    expect(r.ops[1]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    expect(r.ops[2]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    const ev = await nextEvent(udp4, () =>
      sb.probe('a', [
        { op: 'socket', fam: 4, type: 'udp' },
        { op: 'sendto', addr: V4(9), port: port.udp4, src: V4(2), data: 'own-src' },
      ]),
    );
    expect(ev).toMatchObject({ peer: { addr: V4(2) }, data: 'own-src' });
    expect(udp4.events().some((e) => e.data === 'host-src' || e.data === 'b-src')).toBe(false);
  });

  it('IPV6_PKTINFO source: foreign -> EADDRNOTAVAIL, own secondary -> used', async () => {
    const r = await sb.probe(
      'a',
      [
        { op: 'socket', fam: 6, type: 'udp' },
        { op: 'sendto', addr: V6(9), port: port.udp6, src: V6(9), data: 'host-src' },
        { op: 'sendto', addr: V6(9), port: port.udp6, src: V6(3), data: 'b-src' },
      ],
      { keepGoing: true },
    );
    expect(r.ops[1]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    expect(r.ops[2]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    const ev = await nextEvent(udp6, () =>
      sb.probe('a', [
        { op: 'socket', fam: 6, type: 'udp' },
        { op: 'sendto', addr: V6(9), port: port.udp6, src: V6(2), data: 'own-src' },
      ]),
    );
    expect(ev).toMatchObject({ peer: { addr: V6(2) }, data: 'own-src' });
    expect(udp6.events().some((e) => e.data === 'host-src' || e.data === 'b-src')).toBe(false);
  });

  it('a host process in the managed root may not use a cell’s address as an explicit source', async () => {
    // The hooks sit at the managed root, so a host process in the root is
    // covered (one outside the managed subtree is not, by design).
    const inRoot = await sb.probe(
      sb.root,
      [
        { op: 'socket', fam: 4, type: 'udp' },
        { op: 'sendto', addr: V4(9), port: port.udp4, src: V4(1), data: 'spoof4' },
        { op: 'socket', id: 't', fam: 6, type: 'udp' },
        { op: 'sendto', id: 't', addr: V6(9), port: port.udp6, src: V6(1), data: 'spoof6' },
      ],
      { keepGoing: true },
    );
    expect(inRoot.ops[1]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    expect(inRoot.ops[3]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
  });
});
