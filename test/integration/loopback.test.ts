// DESIGN.md: private loopback. A cell's 127.0.0.1 / ::1 are its own (an
// alias in 127.64.0.0/10; ::1 maps to the v4-mapped alias), the cell never
// sees the alias, and nobody else reaches it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, mapped, V4, V6, type BgProc, type Sandbox } from '../harness/sandbox';

describe('private loopback', () => {
  let sb: Sandbox;
  let aliasA: string;
  let aliasB: string;
  let tcp4: BgProc; // cell a, 127.0.0.1
  let tcp6: BgProc; // cell a, [::1]
  let host4: BgProc; // host, 127.0.0.1
  let host6: BgProc; // host, [::1]
  let p4: number;
  let p6: number;
  let q4: number;
  let q6: number;

  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('a');
    sb.cg('b');
    await sb.assign('a', V4(1), V6(1));
    await sb.assign('b', V4(2), V6(2));
    aliasA = (await sb.show('a')).loopback4;
    aliasB = (await sb.show('b')).loopback4;
    tcp4 = sb.spawnProbe('a', [
      { op: 'socket', fam: 4 },
      { op: 'bind', addr: '127.0.0.1', port: 0 },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'a-local' },
    ]);
    tcp6 = sb.spawnProbe('a', [
      { op: 'socket', fam: 6, v6only: false },
      { op: 'bind', addr: '::1', port: 0 },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'a-local6' },
    ]);
    host4 = sb.spawnProbe(null, [
      { op: 'socket', fam: 4 },
      { op: 'bind', addr: '127.0.0.1', port: 0 },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'host-local' },
    ]);
    host6 = sb.spawnProbe(null, [
      { op: 'socket', fam: 6, v6only: true },
      { op: 'bind', addr: '::1', port: 0 },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'host-local6' },
    ]);
    const r = await Promise.all([tcp4.ready(), tcp6.ready(), host4.ready(), host6.ready()]);
    expect(r[0].addr).toBe('127.0.0.1');
    expect(r[1].addr).toBe('::1');
    [p4, p6, q4, q6] = r.map((l) => l.port as number);
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('each cell has its own alias in 127.64.0.0/10', () => {
    for (const alias of [aliasA, aliasB]) {
      const o = alias.split('.').map(Number);
      expect(o[0]).toBe(127);
      expect(o[1] >= 64 && o[1] <= 127).toBe(true);
    }
    expect(aliasA).not.toBe(aliasB);
  });

  it('v4: a client in the same cell reaches the cell’s 127.0.0.1 service, names show 127.0.0.1', async () => {
    const n = tcp4.events().length;
    const r = await sb.probe('a', [{ op: 'fetch', fam: 4, addr: '127.0.0.1', port: p4 }]);
    expect(r.last).toEqual(
      expect.objectContaining({
        ok: true,
        data: 'a-local',
        local: expect.objectContaining({ addr: '127.0.0.1' }),
        peer: { addr: '127.0.0.1', port: p4 },
      }),
    );
    const ev = await tcp4.waitFor((l) => l.event === 'conn' && tcp4.events().indexOf(l) >= n);
    expect(ev.peer.addr).toBe('127.0.0.1');
    expect(ev.local).toEqual({ addr: '127.0.0.1', port: p4 });
  });

  it('v6: a client in the same cell reaches the cell’s [::1] service, names show ::1', async () => {
    const n = tcp6.events().length;
    const r = await sb.probe('a', [{ op: 'fetch', fam: 6, addr: '::1', port: p6 }]);
    expect(r.last).toEqual(
      expect.objectContaining({
        ok: true,
        data: 'a-local6',
        local: expect.objectContaining({ addr: '::1' }),
        peer: { addr: '::1', port: p6 },
      }),
    );
    const ev = await tcp6.waitFor((l) => l.event === 'conn' && tcp6.events().indexOf(l) >= n);
    expect(ev.peer.addr).toBe('::1');
    expect(ev.local).toEqual({ addr: '::1', port: p6 });
  });

  it('the host’s loopback services are not the cell’s: ECONNREFUSED', async () => {
    // sanity: the host services are up and reachable from the host
    const h = await sb.probe(null, [
      { op: 'fetch', fam: 4, addr: '127.0.0.1', port: q4 },
      { op: 'fetch', fam: 6, addr: '::1', port: q6 },
    ]);
    expect(h.ops.map((o) => o.data)).toEqual(['host-local', 'host-local6']);
    const r = await sb.probe(
      'a',
      [
        { op: 'fetch', fam: 4, addr: '127.0.0.1', port: q4 },
        { op: 'fetch', fam: 6, addr: '::1', port: q6 },
        { op: 'fetch', fam: 6, addr: mapped('127.0.0.1'), port: q4, v6only: false },
      ],
      { keepGoing: true },
    );
    expect(r.ops).toHaveLength(3);
    for (const op of r.ops) expect(op).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
  });

  it('cell b cannot reach cell a’s loopback service (127.0.0.1, ::1, or a’s alias)', async () => {
    const r = await sb.probe(
      'b',
      [
        { op: 'fetch', fam: 4, addr: '127.0.0.1', port: p4 },
        { op: 'fetch', fam: 4, addr: aliasA, port: p4 },
        { op: 'fetch', fam: 6, addr: '::1', port: p6 },
        { op: 'fetch', fam: 6, addr: mapped(aliasA), port: p4, v6only: false },
        { op: 'fetch', fam: 6, addr: mapped(aliasA), port: p6, v6only: false },
      ],
      { keepGoing: true },
    );
    expect(r.ops).toHaveLength(5);
    for (const op of r.ops) expect(op).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
  });

  it('a host process (managed root, unassigned child) cannot connect to a cell’s alias', async () => {
    // The hooks are attached at the managed root, so "host processes" are
    // those in the root itself or in an unassigned child cgroup; a process
    // outside the managed subtree is not seen by the hooks at all.
    for (const cg of [sb.root, sb.cg('h')]) {
      const r = await sb.probe(
        cg,
        [
          { op: 'fetch', fam: 4, addr: aliasA, port: p4 },
          { op: 'fetch', fam: 6, addr: mapped(aliasA), port: p6, v6only: false },
          { op: 'fetch', fam: 6, addr: mapped(aliasA), port: p4, v6only: false },
        ],
        { keepGoing: true },
      );
      expect(r.ops).toHaveLength(3);
      for (const op of r.ops) expect(op).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
    }
  });

  it('UDP to 127.0.0.1 round-trips inside a cell, showing 127.0.0.1 only', async () => {
    const echo = sb.spawnProbe('a', [
      { op: 'socket', fam: 4, type: 'udp' },
      { op: 'bind', addr: '127.0.0.1', port: 0 },
      { op: 'serve_echo' },
    ]);
    const ready = await echo.ready();
    expect(ready.addr).toBe('127.0.0.1');
    const r = await sb.probe('a', [
      { op: 'socket', fam: 4, type: 'udp' },
      { op: 'sendto', addr: '127.0.0.1', port: ready.port, data: 'ping4' },
      { op: 'recvfrom' },
      { op: 'getsockname' },
    ]);
    expect(r.ops[2]).toMatchObject({
      ok: true,
      addr: '127.0.0.1',
      port: ready.port,
      data: 'ping4',
    });
    // unconnected: the socket itself stays on the wildcard, never the alias
    expect(r.ops[3].addr).not.toBe(aliasA);
    const ev = await echo.waitFor((l) => l.event === 'dgram');
    expect(ev.peer.addr).toBe('127.0.0.1');
    expect(ev.send_errno).toBeUndefined();
    // another cell's datagram to 127.0.0.1 does not reach a's echo server
    const b = await sb.probe(
      'b',
      [
        { op: 'socket', fam: 4, type: 'udp' },
        { op: 'sendto', addr: '127.0.0.1', port: ready.port, data: 'from-b' },
        { op: 'recvfrom', timeout: 1 },
      ],
      { keepGoing: true },
    );
    expect(b.ops[1]).toMatchObject({ ok: true });
    expect(b.ops[2].ok).toBe(false);
    expect(echo.events().filter((e) => e.data === 'from-b')).toHaveLength(0);
  });

  it('UDP over ::1: connected datagrams reach the cell’s alias (peer shows ::1)', async () => {
    const echo = sb.spawnProbe('a', [
      { op: 'socket', fam: 6, type: 'udp', v6only: false },
      { op: 'bind', addr: '::1', port: 0 },
      { op: 'serve_echo', count: 1 },
    ]);
    const ready = await echo.ready();
    expect(ready.addr).toBe('::1');
    const r = await sb.probe('a', [
      { op: 'socket', fam: 6, type: 'udp', v6only: false },
      { op: 'connect', addr: '::1', port: ready.port },
      { op: 'send', data: 'ping6' },
    ]);
    expect(r.ops[1]).toMatchObject({
      ok: true,
      local: { addr: '::1' },
      peer: { addr: '::1', port: ready.port },
    });
    const ev = await echo.waitFor((l) => l.event === 'dgram');
    expect(ev).toMatchObject({ peer: { addr: '::1' }, data: 'ping6' });
    // The echo's reply is an unconnected sendto(::1): refused by design.
    expect(ev.send_errno).toBe('EPERM');
  });

  it('unconnected UDP sendto(::1) from a cell is refused with EPERM', async () => {
    const r = await sb.probe(
      'a',
      [
        { op: 'socket', fam: 6, type: 'udp' },
        { op: 'sendto', addr: '::1', port: 9, data: 'x' },
      ],
      { keepGoing: true },
    );
    expect(r.ops[1]).toMatchObject({ ok: false, errno: 'EPERM' });
  });
});
