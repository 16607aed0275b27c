// DESIGN.md: "two cells bind 0.0.0.0:80 — both succeed; each address
// reaches its own cell's socket".
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, V6, type BgProc, type Sandbox } from '../harness/sandbox';

const PORT = 8080;

describe('two cells on the same wildcard port', () => {
  let sb: Sandbox;
  const servers: Record<string, BgProc> = {};
  const readyLines: Record<string, Record<string, unknown>> = {};

  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('a');
    sb.cg('b');
    await sb.assign('a', V4(1), V6(1));
    await sb.assign('b', V4(2), V6(2));
    for (const cell of ['a', 'b']) {
      servers[`${cell}4`] = sb.spawnProbe(cell, [
        { op: 'socket', fam: 4 },
        { op: 'bind', addr: '0.0.0.0', port: PORT },
        { op: 'listen' },
        { op: 'serve_banner', banner: `cell-${cell}` },
      ]);
      servers[`${cell}6`] = sb.spawnProbe(cell, [
        { op: 'socket', fam: 6, v6only: true },
        { op: 'bind', addr: '::', port: PORT },
        { op: 'listen' },
        { op: 'serve_banner', banner: `cell-${cell}-v6` },
      ]);
    }
    for (const [k, s] of Object.entries(servers)) readyLines[k] = await s.ready();
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('both binds succeed, each on its cell’s primary', () => {
    expect(readyLines.a4).toMatchObject({ addr: V4(1), port: PORT });
    expect(readyLines.b4).toMatchObject({ addr: V4(2), port: PORT });
    expect(readyLines.a6).toMatchObject({ addr: V6(1), port: PORT });
    expect(readyLines.b6).toMatchObject({ addr: V6(2), port: PORT });
  });

  it('v4: a client outside the cells gets each cell’s banner on its address', async () => {
    const r = await sb.probe(null, [
      { op: 'fetch', fam: 4, addr: V4(1), port: PORT },
      { op: 'fetch', fam: 4, addr: V4(2), port: PORT },
    ]);
    expect(r.ops[0]).toMatchObject({ ok: true, data: 'cell-a' });
    expect(r.ops[1]).toMatchObject({ ok: true, data: 'cell-b' });
    await servers.a4.waitFor((l) => l.event === 'conn');
    await servers.b4.waitFor((l) => l.event === 'conn');
  });

  it('v6: a client outside the cells gets each cell’s banner on its address', async () => {
    const r = await sb.probe(null, [
      { op: 'fetch', fam: 6, addr: V6(1), port: PORT },
      { op: 'fetch', fam: 6, addr: V6(2), port: PORT },
    ]);
    expect(r.ops[0]).toMatchObject({ ok: true, data: 'cell-a-v6' });
    expect(r.ops[1]).toMatchObject({ ok: true, data: 'cell-b-v6' });
  });

  it('cells reach each other over their real addresses', async () => {
    const r = await sb.probe('a', [
      { op: 'fetch', fam: 4, addr: V4(2), port: PORT },
      { op: 'fetch', fam: 6, addr: V6(2), port: PORT },
    ]);
    expect(r.ops[0]).toMatchObject({ ok: true, data: 'cell-b', local: { addr: V4(1) } });
    expect(r.ops[1]).toMatchObject({ ok: true, data: 'cell-b-v6', local: { addr: V6(1) } });
  });

  it('a host address with no listener is refused, not served by a cell', async () => {
    const r = await sb.probe(null, [{ op: 'fetch', fam: 4, addr: V4(9), port: PORT }], {
      keepGoing: true,
    });
    expect(r.ops[0]).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
  });
});
