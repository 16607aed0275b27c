// DESIGN.md: "an address is released from C — new binds to it fail, and C's
// existing sockets on it are destroyed (bpf_sock_destroy), so no access
// lingers". bpf/revoke.bpf.c: established connections and UDP sockets are
// aborted (a TCP peer gets a RST); listeners stay open but unreachable (a
// destroyed listener makes servers spin on accept), and connections to
// them are refused. Live sockets make release refuse without --force.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, V6, type BgProc, type Sandbox } from '../harness/sandbox';

const P = 8301;
const U = 8302;

describe('socket revocation on release', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('a');
    sb.cg('w');
    await sb.assign('a', V4(1), V4(2), V6(1), V6(2));
    await sb.assign('w', V4(5), V6(5));
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  /** A cell listener on addr:P that accepts one connection and keeps it. */
  const holdOne = (cg: string, fam: 4 | 6, addr: string, port = P) =>
    sb.spawnProbe(cg, [
      { op: 'socket', id: 'l', fam, ...(fam === 6 ? { v6only: true } : {}) },
      { op: 'bind', id: 'l', addr, port },
      { op: 'listen', id: 'l' },
      { op: 'accept', id: 'l', as: 'c', timeout: 30 },
      { op: 'recv', id: 'c', timeout: 30 },
    ]);

  /** A client outside the cells, bound to a host address, that connects and
   * then waits for data (or a reset). */
  const client = (fam: 4 | 6, addr: string, port = P) =>
    sb.spawnProbe(null, [
      { op: 'socket', fam },
      { op: 'bind', addr: fam === 4 ? V4(9) : V6(9), port: 0 },
      { op: 'connect', addr, port },
      { op: 'recv', timeout: 20 },
    ]);

  const banner = (cg: string, fam: 4 | 6, addr: string, text: string): BgProc =>
    sb.spawnProbe(cg, [
      { op: 'socket', fam, ...(fam === 6 ? { v6only: true } : {}) },
      { op: 'bind', addr, port: P },
      { op: 'listen' },
      { op: 'serve_banner', banner: text },
    ]);

  for (const fam of [4, 6] as const) {
    const A = fam === 4 ? V4 : V6;

    describe(`v${fam}: release A2 of a cell serving on A1 and A2`, () => {
      let held: BgProc;
      let keep: BgProc;
      let udp: BgProc;
      let c: BgProc;
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      let rel: any;
      let t0 = 0;
      let spoofBefore = 0;

      beforeAll(async () => {
        // cell a: a listener with an established connection on A2, a server
        // on A1, a UDP socket on A2
        held = holdOne('a', fam, A(2));
        await held.waitFor((l) => l.op === 'listen');
        keep = banner('a', fam, A(1), `a1-v${fam}`);
        await keep.ready();
        udp = sb.spawnProbe('a', [
          { op: 'socket', fam, type: 'udp', ...(fam === 6 ? { v6only: true } : {}) },
          { op: 'bind', addr: A(2), port: U },
          { op: 'recvfrom', timeout: 20 },
        ]);
        await udp.waitFor((l) => l.op === 'bind');
        c = client(fam, A(2));
        await c.waitFor((l) => l.op === 'connect');
        await held.waitFor((l) => l.op === 'accept');
        spoofBefore = (await sb.show('a')).dropped['spoofed-source'];
        t0 = Date.now();
        const refused = await sb.cli(['release', 'a', A(2)], { json: true });
        expect(refused.json?.error?.code, refused.stdout).toBe('ESOCKETS_LIVE');
        rel = (await sb.cliOk(['release', 'a', A(2), '--force'], { json: true })).json;
      });
      afterAll(async () => {
        for (const p of [held, keep, udp, c]) await p?.kill();
      });

      it('socketsDestroyed counts the connection and the UDP socket; the listener is named', () => {
        expect(rel.released).toEqual([A(2)]);
        expect(rel.socketsDestroyed, JSON.stringify(rel)).toBeGreaterThanOrEqual(2);
        const kinds = (rel.sockets as { kind: string; port: number }[]).map((s) => s.kind);
        expect(kinds).toContain('tcp-listen');
        expect(kinds).toContain('udp');
      });

      it('the cell’s sockets on A2 are aborted (TCP connection and UDP socket)', async () => {
        const heldEnd = await held.waitFor((l) => l.op === 'recv', 5000);
        expect(heldEnd).toMatchObject({ ok: false, errno: 'ECONNABORTED' });
        const udpEnd = await udp.waitFor((l) => l.op === 'recvfrom', 5000);
        expect(udpEnd).toMatchObject({ ok: false, errno: 'ECONNABORTED' });
      });

      it('the peer outside the cell sees its connection reset promptly', async () => {
        // revoke.bpf.c: "bpf_sock_destroy ... aborts each match (a TCP peer gets a RST)"
        const end = await c.waitFor((l) => l.op === 'recv', 5000).catch(() => undefined);
        const spoofed = (await sb.show('a')).dropped['spoofed-source'] - spoofBefore;
        expect(
          end,
          'client recv still blocked 5 s after release: no RST/FIN reached it ' +
            `(cell a spoofed-source drops since the release: ${spoofed})`,
        ).toBeDefined();
        expect(Date.now() - t0).toBeLessThan(10_000);
        if (end!.ok) expect(end!.data).toBe('');
        else expect(end!.errno).toBe('ECONNRESET');
      });

      it('no listener lingers on A2; A1 still serves', async () => {
        const r = await sb.probe(
          null,
          [
            { op: 'fetch', fam, addr: A(2), port: P },
            { op: 'fetch', fam, addr: A(1), port: P },
          ],
          { keepGoing: true },
        );
        expect(r.ops[0]).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
        expect(r.ops[1]).toMatchObject({ ok: true, data: `a1-v${fam}` });
      });
    });
  }

  it('releasing the whole cell destroys its sockets on every address', async () => {
    const s4 = banner('w', 4, V4(5), 'w4');
    const s6 = banner('w', 6, V6(5), 'w6');
    const held = holdOne('w', 4, V4(5), P + 10);
    await held.waitFor((l) => l.op === 'listen');
    const c = client(4, V4(5), P + 10);
    await c.waitFor((l) => l.op === 'connect');
    await held.waitFor((l) => l.op === 'accept');
    const u4 = sb.spawnProbe('w', [
      { op: 'socket', fam: 4, type: 'udp' },
      { op: 'bind', addr: V4(5), port: U },
      { op: 'recvfrom', timeout: 20 },
    ]);
    await s4.ready();
    await s6.ready();
    await u4.waitFor((l) => l.op === 'bind');
    const before = await sb.probe(null, [
      { op: 'fetch', fam: 4, addr: V4(5), port: P },
      { op: 'fetch', fam: 6, addr: V6(5), port: P },
    ]);
    expect(before.ops.map((o) => o.data)).toEqual(['w4', 'w6']);

    const rel = await sb.cliOk(['release', 'w', '--force'], { json: true });
    // the accepted connection and the UDP socket (the listeners stay, unreachable)
    expect(rel.json.socketsDestroyed, rel.stdout).toBeGreaterThanOrEqual(2);
    expect(rel.json.removed).toBe(true);
    // the addresses are nobody's now: the old listeners, still bound, must
    // not answer through the kernel's own lookup
    const after = await sb.probe(
      null,
      [
        { op: 'fetch', fam: 4, addr: V4(5), port: P },
        { op: 'fetch', fam: 6, addr: V6(5), port: P },
      ],
      { keepGoing: true },
    );
    expect(after.ops[0]).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
    expect(after.ops[1]).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
    const uEnd = await u4.waitFor((l) => l.op === 'recvfrom', 5000);
    expect(uEnd).toMatchObject({ ok: false, errno: 'ECONNABORTED' });
    const hEnd = await held.waitFor((l) => l.op === 'recv', 5000);
    expect(hEnd).toMatchObject({ ok: false, errno: 'ECONNABORTED' });
    const cEnd = await c.waitFor((l) => l.op === 'recv', 5000);
    if (cEnd.ok) expect(cEnd.data).toBe('');
    else expect(cEnd.errno).toBe('ECONNRESET');
  });
});
