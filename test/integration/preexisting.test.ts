// DESIGN.md: "Sockets created before `up` are not retrofitted: `doctor`
// lists them." A listener opened in a cell's cgroup before the engine came
// up has no origin, so the hooks treat it as a host socket; doctor must
// name it, and must not name sockets created after `up`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, V6, type BgProc, type Sandbox } from '../harness/sandbox';

const OLD_PORT = 7101;
const NEW_PORT = 7102;

describe('doctor lists cell sockets that predate up', () => {
  let sb: Sandbox;
  const procs: BgProc[] = [];
  beforeAll(async () => {
    sb = await createSandbox();
    sb.cg('early/sub');
    const listen = (fam: 4 | 6, addr: string, port: number) => [
      { op: 'socket', fam, ...(fam === 6 ? { v6only: true } : {}) },
      { op: 'bind', addr, port },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'x' },
    ];
    // Before up: nothing confines these, they bind what they like.
    procs.push(sb.spawnProbe('early/sub', listen(4, V4(4), OLD_PORT)));
    procs.push(sb.spawnProbe('early/sub', listen(6, V6(4), OLD_PORT)));
    for (const p of procs) await p.ready();
    await sb.up();
    // assign says the cgroup already has sockets, and who holds them
    const refused = await sb.cli(['assign', 'early', V4(4), V6(4)], { json: true });
    expect(refused.json?.error?.code, refused.stdout).toBe('ESOCKETS_LIVE');
    for (const p of procs.slice(0, 2))
      expect(refused.json.error.message).toContain(`held by pid ${p.pid}`);
    expect(await sb.list()).toEqual([]);
    await sb.cliOk(['assign', 'early', V4(4), V6(4), '--force']);
    const fresh = sb.spawnProbe('early', listen(4, '0.0.0.0', NEW_PORT));
    procs.push(fresh);
    await fresh.ready();
  });
  afterAll(async () => {
    for (const p of procs) await p.kill();
    await sb?.destroy();
  });

  it('names the old sockets with their cell, cgroup and address', async () => {
    const r = await sb.cli(['doctor', '--json']);
    const found = (r.json as { preexistingSockets: Record<string, unknown>[] }).preexistingSockets;
    const old = found.filter((s) => s.port === OLD_PORT);
    expect(old).toEqual(
      expect.arrayContaining([
        {
          cell: 'early',
          cgroup: `${sb.root}/early/sub`,
          protocol: 'tcp',
          address: V4(4),
          port: OLD_PORT,
        },
        {
          cell: 'early',
          cgroup: `${sb.root}/early/sub`,
          protocol: 'tcp',
          address: V6(4),
          port: OLD_PORT,
        },
      ]),
    );
    expect(found.filter((s) => s.port === NEW_PORT)).toEqual([]);
  });

  it('warns on stderr in text mode', async () => {
    const r = await sb.cli(['doctor']);
    expect(r.stderr).toMatch(
      new RegExp(`tcp socket ${V4(4).replace(/\./g, '\\.')}:${OLD_PORT} in cell early predates`),
    );
    expect(r.stderr).toMatch(/can still bind and connect to any address/);
  });
});
