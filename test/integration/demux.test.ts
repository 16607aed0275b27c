// DESIGN.md, "action by anyone else": "a packet arrives for a cell's
// address — only that cell's sockets can receive it; a host wildcard
// listener never does; with no cell socket on that port the sender gets a
// refusal (RST / ICMP), not the host's service". And "C owns several
// addresses and listens on the wildcard — reachable on every one of C's
// addresses". bpf/demux.bpf.c (sk_lookup) and bpf/skb.bpf.c (ingress).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sandboxWithCells } from '../harness/cells';
import { V4, V6, type BgProc, type Sandbox } from '../harness/sandbox';

const P_HOST = 8101; // host wildcard listener; cell "empty" has nothing here
const P_WILD = 8102; // cells a and b listen on the wildcard
const P_EXACT = 8103; // cell a binds only its second address
const U_PORT = 8104; // UDP

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('sk_lookup / ingress demux', () => {
  let sb: Sandbox;
  const procs: BgProc[] = [];

  beforeAll(async () => {
    sb = await sandboxWithCells({
      a: [V4(1), V6(1), V4(2), V6(2)],
      b: [V4(3), V6(3)],
      empty: [V4(4), V6(4)],
      hostsvc: [], // unassigned child of the managed root: a host cgroup
    });
  });
  afterAll(async () => {
    for (const p of procs) await p.kill();
    await sb?.destroy();
  });

  const serve = async (cg: string, fam: 4 | 6, addr: string, port: number, banner: string) => {
    const p = sb.spawnProbe(cg, [
      { op: 'socket', fam, ...(fam === 6 ? { v6only: true } : {}) },
      { op: 'bind', addr, port },
      { op: 'listen' },
      { op: 'serve_banner', banner },
    ]);
    procs.push(p);
    const ready = await p.ready();
    return { p, ready };
  };

  const dropped = async (cg: string, reason: string): Promise<number> =>
    (await sb.show(cg)).dropped?.[reason] ?? 0;

  describe('a host wildcard listener never gets a cell’s connections', () => {
    let host4: BgProc;
    let host6: BgProc;
    beforeAll(async () => {
      // v4 host listener in the managed root itself, v6 in an unassigned child.
      host4 = (await serve(sb.root, 4, '0.0.0.0', P_HOST, 'host')).p;
      host6 = (await serve('hostsvc', 6, '::', P_HOST, 'host6')).p;
    });

    it('v4/v6: connecting to a cell address with no cell socket is refused (RST)', async () => {
      const before = await dropped('empty', 'no-cell-socket');
      const r = await sb.probe(
        null,
        [
          { op: 'fetch', fam: 4, addr: V4(4), port: P_HOST },
          { op: 'fetch', fam: 6, addr: V6(4), port: P_HOST },
        ],
        { keepGoing: true },
      );
      expect(r.ops[0]).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
      expect(r.ops[1]).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
      await sleep(300);
      expect(host4.events(), 'host v4 listener accepted a cell connection').toEqual([]);
      expect(host6.events(), 'host v6 listener accepted a cell connection').toEqual([]);
      expect(await dropped('empty', 'no-cell-socket')).toBe(before + 2);
    });

    it('v4/v6: a host address on the same port reaches the host listener', async () => {
      const r = await sb.probe(null, [
        { op: 'fetch', fam: 4, addr: V4(9), port: P_HOST },
        { op: 'fetch', fam: 6, addr: V6(9), port: P_HOST },
      ]);
      expect(r.ops[0]).toMatchObject({ ok: true, data: 'host' });
      expect(r.ops[1]).toMatchObject({ ok: true, data: 'host6' });
      await host4.waitFor((l) => l.event === 'conn');
      await host6.waitFor((l) => l.event === 'conn');
      expect(host4.events()).toHaveLength(1);
      expect(host6.events()).toHaveLength(1);
      expect(host4.events()[0].local).toMatchObject({ addr: V4(9) });
    });

    it('a cell on a port where the host listens: refused, not the host’s service (cell a)', async () => {
      const r = await sb.probe(
        null,
        [
          { op: 'fetch', fam: 4, addr: V4(2), port: P_HOST },
          { op: 'fetch', fam: 6, addr: V6(1), port: P_HOST },
        ],
        { keepGoing: true },
      );
      expect(r.ops[0]).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
      expect(r.ops[1]).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
      await sleep(200);
      expect(host4.events()).toHaveLength(1);
      expect(host6.events()).toHaveLength(1);
    });
  });

  describe('cell listeners', () => {
    beforeAll(async () => {
      const a4 = await serve('a', 4, '0.0.0.0', P_WILD, 'a');
      const a6 = await serve('a', 6, '::', P_WILD, 'a6');
      const b4 = await serve('b', 4, '0.0.0.0', P_WILD, 'b');
      const b6 = await serve('b', 6, '::', P_WILD, 'b6');
      expect(a4.ready).toMatchObject({ addr: V4(1), port: P_WILD });
      expect(a6.ready).toMatchObject({ addr: V6(1), port: P_WILD });
      expect(b4.ready).toMatchObject({ addr: V4(3), port: P_WILD });
      expect(b6.ready).toMatchObject({ addr: V6(3), port: P_WILD });
      const x4 = await serve('a', 4, V4(2), P_EXACT, 'a-exact');
      const x6 = await serve('a', 6, V6(2), P_EXACT, 'a-exact6');
      expect(x4.ready).toMatchObject({ addr: V4(2), port: P_EXACT });
      expect(x6.ready).toMatchObject({ addr: V6(2), port: P_EXACT });
    });

    it('v4: a wildcard listener of a two-address cell is reachable on both addresses', async () => {
      const r = await sb.probe(null, [
        { op: 'fetch', fam: 4, addr: V4(1), port: P_WILD },
        { op: 'fetch', fam: 4, addr: V4(2), port: P_WILD },
      ]);
      expect(r.ops[0]).toMatchObject({ ok: true, data: 'a', peer: { addr: V4(1) } });
      expect(r.ops[1]).toMatchObject({ ok: true, data: 'a', peer: { addr: V4(2) } });
    });

    it('v6: a wildcard listener of a two-address cell is reachable on both addresses', async () => {
      const r = await sb.probe(null, [
        { op: 'fetch', fam: 6, addr: V6(1), port: P_WILD },
        { op: 'fetch', fam: 6, addr: V6(2), port: P_WILD },
      ]);
      expect(r.ops[0]).toMatchObject({ ok: true, data: 'a6', peer: { addr: V6(1) } });
      expect(r.ops[1]).toMatchObject({ ok: true, data: 'a6', peer: { addr: V6(2) } });
    });

    it('a second cell on the same wildcard port is reached only on its own address', async () => {
      const r = await sb.probe(
        null,
        [
          { op: 'fetch', fam: 4, addr: V4(3), port: P_WILD },
          { op: 'fetch', fam: 6, addr: V6(3), port: P_WILD },
          // the empty cell and the host have no listener on P_WILD
          { op: 'fetch', fam: 4, addr: V4(4), port: P_WILD },
          { op: 'fetch', fam: 6, addr: V6(4), port: P_WILD },
          { op: 'fetch', fam: 4, addr: V4(9), port: P_WILD },
        ],
        { keepGoing: true },
      );
      expect(r.ops[0]).toMatchObject({ ok: true, data: 'b' });
      expect(r.ops[1]).toMatchObject({ ok: true, data: 'b6' });
      expect(r.ops[2]).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
      expect(r.ops[3]).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
      expect(r.ops[4]).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
    });

    it('an exact bind to the second address: served there, refused on the first', async () => {
      const r = await sb.probe(
        null,
        [
          { op: 'fetch', fam: 4, addr: V4(2), port: P_EXACT },
          { op: 'fetch', fam: 6, addr: V6(2), port: P_EXACT },
          { op: 'fetch', fam: 4, addr: V4(1), port: P_EXACT },
          { op: 'fetch', fam: 6, addr: V6(1), port: P_EXACT },
        ],
        { keepGoing: true },
      );
      expect(r.ops[0]).toMatchObject({ ok: true, data: 'a-exact' });
      expect(r.ops[1]).toMatchObject({ ok: true, data: 'a-exact6' });
      expect(r.ops[2]).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
      expect(r.ops[3]).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
    });

    it('cells reach each other’s wildcard listeners on every address', async () => {
      const r = await sb.probe('b', [
        { op: 'fetch', fam: 4, addr: V4(2), port: P_WILD },
        { op: 'fetch', fam: 6, addr: V6(2), port: P_WILD },
      ]);
      expect(r.ops[0]).toMatchObject({ ok: true, data: 'a', local: { addr: V4(3) } });
      expect(r.ops[1]).toMatchObject({ ok: true, data: 'a6', local: { addr: V6(3) } });
    });

    it('the cell’s 127.0.0.1 reaches its own wildcard listener (private loopback alias)', async () => {
      const r = await sb.probe('a', [{ op: 'fetch', fam: 4, addr: '127.0.0.1', port: P_WILD }], {
        keepGoing: true,
      });
      expect(r.ops[0]).toMatchObject({
        ok: true,
        data: 'a',
        peer: { addr: '127.0.0.1', port: P_WILD },
      });
      // and another cell's 127.0.0.1 reaches its own listener, not a's
      const rb = await sb.probe('b', [{ op: 'fetch', fam: 4, addr: '127.0.0.1', port: P_WILD }], {
        keepGoing: true,
      });
      expect(rb.ops[0]).toMatchObject({ ok: true, data: 'b' });
    });

    it('the cell’s ::1 (dual-stack socket) reaches its own v4 wildcard listener', async () => {
      // connect6 maps ::1 to the v4-mapped alias; the packet is IPv4.
      const r = await sb.probe(
        'a',
        [{ op: 'fetch', fam: 6, v6only: false, addr: '::1', port: P_WILD }],
        { keepGoing: true },
      );
      expect(r.ops[0]).toMatchObject({ ok: true, data: 'a', peer: { addr: '::1' } });
    });
  });

  describe('UDP', () => {
    let host: BgProc;
    beforeAll(async () => {
      host = sb.spawnProbe(sb.root, [
        // SO_REUSEADDR on every socket of U_PORT: without it the kernel
        // refuses a cell's exact bind while a host wildcard holds the port.
        { op: 'socket', fam: 6, type: 'udp', v6only: false, reuse: true },
        { op: 'bind', addr: '::', port: U_PORT },
        { op: 'serve_echo' },
      ]);
      procs.push(host);
      await host.ready();
    });

    const sendFromOutside = (fam: 4 | 6, dst: string, data: string) =>
      sb.probe(
        null,
        [
          { op: 'socket', fam, type: 'udp' },
          { op: 'bind', addr: fam === 4 ? V4(9) : V6(9), port: 0 },
          { op: 'sendto', addr: dst, port: U_PORT, data },
          { op: 'recvfrom', timeout: 1 },
        ],
        { keepGoing: true },
      );

    it('sanity: the host UDP socket gets datagrams for a host address', async () => {
      const r = await sendFromOutside(4, V4(8), 'to-host');
      expect(r.ops[3]).toMatchObject({ ok: true, data: 'to-host' });
      await host.waitFor((l) => l.event === 'dgram' && l.data === 'to-host');
    });

    it('v4/v6: a host wildcard UDP socket gets nothing sent to a cell’s address', async () => {
      const before = await dropped('empty', 'foreign-destination');
      const r4 = await sendFromOutside(4, V4(4), 'stolen4');
      const r6 = await sendFromOutside(6, V6(4), 'stolen6');
      expect(r4.ops[2]).toMatchObject({ ok: true });
      expect(r6.ops[2]).toMatchObject({ ok: true });
      // the sender sees no answer (nothing, or an ICMP error)
      expect(r4.ops[3].ok).toBe(false);
      expect(r6.ops[3].ok).toBe(false);
      await sleep(300);
      expect(host.events().filter((e) => /stolen/.test(String(e.data)))).toEqual([]);
      expect(await dropped('empty', 'foreign-destination')).toBe(before + 2);
    });

    it('v4/v6: a cell UDP socket bound to its address gets them; the host still does not', async () => {
      const cell4 = sb.spawnProbe('empty', [
        { op: 'socket', fam: 4, type: 'udp', reuse: true },
        { op: 'bind', addr: V4(4), port: U_PORT },
        { op: 'serve_echo' },
      ]);
      const cell6 = sb.spawnProbe('empty', [
        { op: 'socket', fam: 6, type: 'udp', v6only: true, reuse: true },
        { op: 'bind', addr: V6(4), port: U_PORT },
        { op: 'serve_echo' },
      ]);
      procs.push(cell4, cell6);
      await cell4.ready();
      await cell6.ready();
      const r4 = await sendFromOutside(4, V4(4), 'cell4');
      const r6 = await sendFromOutside(6, V6(4), 'cell6');
      await cell4.waitFor((l) => l.event === 'dgram' && l.data === 'cell4');
      await cell6.waitFor((l) => l.event === 'dgram' && l.data === 'cell6');
      expect(r4.ops[3]).toMatchObject({ ok: true, data: 'cell4', addr: V4(4) });
      expect(r6.ops[3]).toMatchObject({ ok: true, data: 'cell6', addr: V6(4) });
      expect(host.events().filter((e) => /cell[46]/.test(String(e.data)))).toEqual([]);
    });
  });
});
