// The sandbox itself: created and destroyed without leaving anything behind,
// and processes land in the right cgroup and network namespace. Needs no
// engine, so it also checks the harness before the CLI exists.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as hermetic from '../../src/sandbox';
import {
  BPFFS,
  createSandbox,
  mustSync,
  PREFIX,
  REPO,
  run,
  sweepStale,
  V4,
  V6,
  type Sandbox,
} from '../harness/sandbox';

/** Everything on the machine whose name starts with `start`: netns, cgroups, pin dirs. */
function leftovers(cgroup2: string, start: string): string[] {
  return [
    ...fs.readdirSync('/run/netns').map((n) => `/run/netns/${n}`),
    ...fs.readdirSync(cgroup2).map((n) => path.join(cgroup2, n)),
    ...fs.readdirSync(BPFFS).map((n) => path.join(BPFFS, n)),
  ].filter((p) => path.basename(p).startsWith(start));
}

describe('sandbox harness', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('creates a netns with d0 and the documentation addresses', async () => {
    const r = await sb.onHost(['ip', '-o', 'addr', 'show', 'dev', 'd0']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`${V4(1)}/32`);
    expect(r.stdout).toContain(`${V4(9)}/32`);
    expect(r.stdout).toContain(`${V6(1)}/128`);
    expect(r.stdout).not.toMatch(/tentative.*2001:db8/);
  });

  it('runs a process in a child cgroup and in the netns', async () => {
    const cg = sb.cg('a/x');
    const r = await sb.probe(cg, [
      { op: 'cgroup' },
      { op: 'bind_new', fam: 6, addr: V6(3) },
      { op: 'bind_new', fam: 4, addr: V4(3) },
    ]);
    expect(r.ops[0].cgroup).toBe('/' + path.relative(sb.cgroup2, cg));
    expect(r.ops[1]).toMatchObject({ ok: true, addr: V6(3) });
    expect(r.ops[2]).toMatchObject({ ok: true, addr: V4(3) });
  });

  it('runs background servers that report readiness and connections', async () => {
    const srv = sb.spawnProbe(null, [
      { op: 'socket', fam: 4 },
      { op: 'bind', addr: V4(9), port: 0 },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'hi', count: 1 },
    ]);
    const ready = await srv.ready();
    const c = await sb.probe(sb.cg('b'), [{ op: 'fetch', addr: V4(9), port: ready.port }]);
    expect(c.last).toMatchObject({ ok: true, data: 'hi' });
    await srv.waitFor((l) => l.event === 'conn');
    expect((await srv.exited).status).toBe(0);
  });

  it('destroy removes the netns, the cgroup subtree and the pin dir', async () => {
    const other = await createSandbox({ hosts: [1] });
    other.cg('a/b/c');
    other.outsideCg('out');
    const server = other.spawnProbe(other.cg('a/b'), [
      { op: 'socket', fam: 4 },
      { op: 'bind', addr: '127.0.0.1', port: 0 },
      { op: 'listen' },
      { op: 'serve_banner' },
    ]);
    await server.ready();
    await other.destroy();
    expect(fs.existsSync(other.root)).toBe(false);
    expect(fs.existsSync(`${other.root}-out`)).toBe(false);
    expect(fs.existsSync(other.pinDir)).toBe(false);
    expect(fs.existsSync(other.nsPath)).toBe(false);
    expect((await server.exited).signal).toBe('SIGKILL');
  });

  it('sweeps what a killed run left, never a live sandbox', async () => {
    // A run that dies by SIGKILL right after making its sandbox.
    const crash = await run([
      process.execPath,
      '-e',
      `const s = require(${JSON.stringify(path.join(REPO, 'dist/src/sandbox'))});
       const sb = s.createSandbox({ prefix: ${JSON.stringify(PREFIX)}, addresses: ['192.0.2.1'] });
       sb.extraCgroup('out');
       sb.extraPinDir('x0');
       console.log(sb.name);
       process.kill(process.pid, 'SIGKILL');`,
    ]);
    expect(crash.signal).toBe('SIGKILL');
    const name = crash.stdout.trim();
    expect(name).toMatch(/^l3t-\d+-[0-9a-f]{6}$/);
    expect(leftovers(sb.cgroup2, name)).toHaveLength(5);
    await sweepStale();
    expect(leftovers(sb.cgroup2, name)).toEqual([]);
    expect(leftovers(sb.cgroup2, sb.id)).toHaveLength(3);
  });

  it('a failed creation leaves nothing behind', () => {
    const before = leftovers(sb.cgroup2, `${PREFIX}-${process.pid}-`);
    expect(() => hermetic.createSandbox({ prefix: PREFIX, addresses: ['not-an-address'] })).toThrow(
      /ip -n l3t-\d+-[0-9a-f]{6} -batch - failed/,
    );
    expect(leftovers(sb.cgroup2, `${PREFIX}-${process.pid}-`)).toEqual(before);
  });

  it('destroy tries every removal, says what is left, and can be retried', () => {
    const world = hermetic.createSandbox({ prefix: PREFIX });
    // A mount on a pin dir makes its removal fail (EBUSY).
    const stuck = world.extraPinDir('x0');
    mustSync(['mount', '-t', 'tmpfs', '-o', 'ro,size=4k', 'l3t-stuck', stuck]);
    try {
      expect(() => world.destroy()).toThrow(
        new RegExp(`sandbox ${world.name} not fully removed: ${stuck}: .*EBUSY`),
      );
      expect(fs.existsSync(world.cgroupRoot)).toBe(false);
      expect(fs.existsSync(world.pinDir)).toBe(false);
      expect(fs.existsSync(world.netnsPath)).toBe(false);
    } finally {
      mustSync(['umount', stuck]);
    }
    world.destroy();
    expect(leftovers(world.cgroup2, world.name)).toEqual([]);
  });
});
