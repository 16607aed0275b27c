// DESIGN.md: "an address is released from C — new binds to it fail, and C's
// existing sockets on it are destroyed (bpf_sock_destroy), so no access
// lingers". bpf/revoke.bpf.c: listeners and established connections go, a
// TCP peer gets a RST.
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
  const holdOne = (cg: string, fam: 4 | 6, addr: string) =>
    sb.spawnProbe(cg, [
      { op: 'socket', id: 'l', fam, ...(fam === 6 ? { v6only: true } : {}) },
      { op: 'bind', id: 'l', addr, port: P },
      { op: 'listen', id: 'l' },
      { op: 'accept', id: 'l', as: 'c', timeout: 30 },
      { op: 'recv', id: 'c', timeout: 30 },
    ]);

  /** A client outside the cells, bound to a host address, that connects and
   * then waits for data (or a reset). */
  const client = (fam: 4 | 6, addr: string) =>
    sb.spawnProbe(null, [
      { op: 'socket', fam },
      { op: 'bind', addr: fam === 4 ? V4(9) : V6(9), port: 0 },
      { op: 'connect', addr, port: P },
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

    it(`v${fam}: release A2 resets its established connection, closes its listener, spares A1`, async () => {
      // cell a: a listener + established connection on A2, a server on A1,
      // a UDP socket on A2
      const held = holdOne('a', fam, A(2));
      await held.waitFor((l) => l.op === 'listen');
      const keep = banner('a', fam, A(1), `a1-v${fam}`);
      await keep.ready();
      const udp = sb.spawnProbe('a', [
        { op: 'socket', fam, type: 'udp', ...(fam === 6 ? { v6only: true } : {}) },
        { op: 'bind', addr: A(2), port: U },
        { op: 'recvfrom', timeout: 20 },
      ]);
      await udp.waitFor((l) => l.op === 'bind');
      const c = client(fam, A(2));
      await c.waitFor((l) => l.op === 'connect');
      await held.waitFor((l) => l.op === 'accept');

      const t0 = Date.now();
      const rel = await sb.cliOk(['release', 'a', A(2)], { json: true });
      expect(rel.json.socketsDestroyed, rel.stdout).toBeGreaterThanOrEqual(3);

      // the client's established connection is reset (or at least ended)
      const end = await c.waitFor((l) => l.op === 'recv', 10_000);
      expect(Date.now() - t0).toBeLessThan(10_000);
      if (end.ok) expect(end.data).toBe('');
      else expect(end.errno).toBe('ECONNRESET');
      // the cell-side sockets saw the abort too
      const heldEnd = await held.waitFor((l) => l.op === 'recv', 10_000);
      expect(heldEnd.ok).toBe(false);
      const udpEnd = await udp.waitFor((l) => l.op === 'recvfrom', 10_000);
      expect(udpEnd.ok, JSON.stringify(udpEnd)).toBe(false);
      expect(udpEnd.errno).not.toBe('ETIMEDOUT');

      // no listener lingers on A2, A1 still serves
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
      await keep.kill();
    });
  }

  it('releasing the whole cell destroys its sockets on every address', async () => {
    const s4 = banner('w', 4, V4(5), 'w4');
    const s6 = banner('w', 6, V6(5), 'w6');
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

    const rel = await sb.cliOk(['release', 'w'], { json: true });
    expect(rel.json.socketsDestroyed, rel.stdout).toBeGreaterThanOrEqual(3);
    // the addresses are nobody's now: without revocation the old listeners
    // would still answer through the kernel's own lookup
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
    const uEnd = await u4.waitFor((l) => l.op === 'recvfrom', 10_000);
    expect(uEnd.ok).toBe(false);
    expect(uEnd.errno).not.toBe('ETIMEDOUT');
  });
});
