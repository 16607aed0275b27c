// The OCI hook under a real runc (issue 10): a container annotated
// io.l3iso.addresses is a cell before its first instruction (createRuntime)
// and is released when it ends (poststop), although its cgroup is gone by
// then. The bundle's rootfs is the host's /usr: no image, no pull.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordsDir } from '../../src/runtime/records';
import { startAgent } from '../harness/agent';
import { answered as requestCounts } from '../harness/http-unix';
import {
  CONTAINER_PROBE,
  CONTAINER_PYTHON,
  confinementProbe,
  makeBundle,
  outsideView,
  readyDespiteRefusals,
  removeRuntimeWorld,
  runtimeWorld,
  type RuntimeWorld,
} from '../harness/containers';
import { V4, type BgProc, type Op, type Sandbox } from '../harness/sandbox';

describe('runc runs the OCI hook', () => {
  let w: RuntimeWorld;
  let sb: Sandbox;
  let dir: string;
  let rootfs: string;
  let runcRoot: string;

  beforeAll(async () => {
    w = await runtimeWorld([
      [['runc', '--version'], 'install runc (scripts/setup.sh does: apt-get install runc)'],
    ]);
    ({ sb, dir, rootfs } = w);
    runcRoot = path.join(dir, 'runc');
  });
  afterAll(async () => {
    if (runcRoot) {
      const ids = spawnSync('runc', ['--root', runcRoot, 'list', '-q'], { encoding: 'utf8' });
      for (const id of (ids.stdout ?? '').split('\n').filter(Boolean))
        spawnSync('runc', ['--root', runcRoot, 'delete', '--force', id]);
    }
    await removeRuntimeWorld(w ?? {});
  });

  const probeArgs = (ops: Op[]) => [
    CONTAINER_PYTHON,
    CONTAINER_PROBE,
    JSON.stringify({ ops, keep_going: true }),
  ];

  function runc(
    name: string,
    ops: Op[],
    annotations?: Record<string, string>,
    hookEnv?: string[],
  ): BgProc {
    const bundle = makeBundle(sb, dir, rootfs, {
      name,
      args: probeArgs(ops),
      cgroup: `runc/${name}`,
      ...(annotations ? { annotations } : {}),
      ...(hookEnv ? { hookEnv } : {}),
    });
    // runc itself in the test netns too: nothing it or its hooks do leaves it.
    return sb.spawnOnHost(['runc', '--root', runcRoot, 'run', '--bundle', bundle, name]);
  }

  const cellNames = async () => (await sb.list()).map((c: { cell: string }) => c.cell);

  it('an annotated container is its own cell from the first instruction, and is released when it exits', async () => {
    const hostLoopback = sb.spawnProbe(null, [
      { op: 'socket', fam: 4 },
      { op: 'bind', addr: '127.0.0.1', port: 7001 },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'host-local' },
    ]);
    await hostLoopback.ready();

    const probe = confinementProbe('in-runc', [
      { op: 'fetch', fam: 4, addr: '127.0.0.1', port: 7001 },
    ]);
    const c = runc('c1', probe.ops, { 'io.l3iso.addresses': V4(2) });
    const ready = await readyDespiteRefusals(c, 30_000);
    const ops = c.lines.filter((l) => typeof l.i === 'number');
    expect(ops[probe.at.cgroup]!.cgroup).toBe(
      '/' + path.relative(sb.cgroup2, path.join(sb.root, 'runc/c1')),
    );
    // it cannot bind an address it was not given
    expect(ops[probe.at.foreignBind]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    // its 127.0.0.1 is its own: the host's loopback service is not there...
    expect(ops[probe.at.foreignBind + 1]).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
    // ...its own one is
    expect(ops[probe.at.ownLoopback]).toMatchObject({
      ok: true,
      peer: { addr: '127.0.0.1', port: 7002 },
    });
    // the wildcard bind got the annotated address
    expect(ops[probe.at.wildcardBind]).toMatchObject({ ok: true, addr: V4(2), port: 8080 });
    expect(ready).toMatchObject({ addr: V4(2), port: 8080 });

    const cells = await sb.list();
    expect(cells).toContainEqual(expect.objectContaining({ cell: 'runc/c1', addresses: [V4(2)] }));
    expect(fs.readdirSync(recordsDir(sb.pinDir))).toContain('c1.json');

    // and from outside: the host's 127.0.0.1:7002 is not the container's
    const outside = await outsideView(sb, V4(2));
    expect(outside.ops[0]).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
    expect(outside.ops[1]).toMatchObject({ ok: true, data: 'in-runc' });

    expect(await c.exited).toEqual({ status: 0, signal: null });
    // poststop released it although its cgroup is gone
    expect(fs.existsSync(path.join(sb.root, 'runc/c1'))).toBe(false);
    expect(await cellNames()).not.toContain('runc/c1');
    expect(fs.readdirSync(recordsDir(sb.pinDir))).not.toContain('c1.json');
    sb.cg('after');
    await sb.assign('after', V4(2));
    await sb.cliOk(['release', 'after']);
    await hostLoopback.kill();
  });

  it('a container without io.l3iso annotations is left alone', async () => {
    const c = runc('plain', [{ op: 'bind_new', fam: 4, addr: '0.0.0.0' }]);
    expect(await c.exited).toEqual({ status: 0, signal: null });
    expect(c.lines.find((l) => l.i === 0)).toMatchObject({ ok: true, addr: '0.0.0.0' });
    expect(await cellNames()).not.toContain('runc/plain');
  });

  it('a start that fails after createRuntime still releases: runc runs poststop when it destroys the container', async () => {
    const bundle = makeBundle(sb, dir, rootfs, {
      name: 'noexec',
      args: ['/nonexistent/binary'],
      cgroup: 'runc/noexec',
      annotations: { 'io.l3iso.addresses': V4(6) },
    });
    const c = sb.spawnOnHost(['runc', '--root', runcRoot, 'run', '--bundle', bundle, 'noexec']);
    expect((await c.exited).status).not.toBe(0);
    expect(c.stderr).toMatch(/nonexistent\/binary/);
    expect(await cellNames()).not.toContain('runc/noexec');
    expect(fs.existsSync(path.join(recordsDir(sb.pinDir), 'noexec.json'))).toBe(false);
    sb.cg('after6');
    await sb.assign('after6', V4(6));
    await sb.cliOk(['release', 'after6']);
  });

  it('without a poststop the cell outlives the container until gc, which also drops the record', async () => {
    const bundle = makeBundle(sb, dir, rootfs, {
      name: 'nopost',
      args: probeArgs([{ op: 'bind_new', fam: 4, addr: '0.0.0.0' }]),
      cgroup: 'runc/nopost',
      annotations: { 'io.l3iso.addresses': V4(7) },
      stages: ['createRuntime'],
    });
    const c = sb.spawnOnHost(['runc', '--root', runcRoot, 'run', '--bundle', bundle, 'nopost']);
    expect(await c.exited).toEqual({ status: 0, signal: null });
    expect(c.lines.find((l) => l.i === 0)).toMatchObject({ ok: true, addr: V4(7) });
    expect(fs.existsSync(path.join(recordsDir(sb.pinDir), 'nopost.json'))).toBe(true);
    const gc = await sb.cliOk(['gc', '--json']);
    expect(gc.json.cells).toEqual([expect.objectContaining({ addresses: [V4(7)] })]);
    expect(gc.json.ociRecords).toEqual(['nopost']);
    expect(fs.existsSync(path.join(recordsDir(sb.pinDir), 'nopost.json'))).toBe(false);
  });

  it.each([
    [
      'an address another cell owns',
      { 'io.l3iso.addresses': V4(3) },
      /address 192\.0\.2\.3 is owned by cell other/,
    ],
    ['an unknown pool', { 'io.l3iso.pool': 'web' }, /no pool \\?"web\\?" \(no pools defined\)/],
    ['an invalid address', { 'io.l3iso.addresses': '192.0.2.300' }, /192\.0\.2\.300/],
    [
      'an unknown io.l3iso annotation',
      { 'io.l3iso.adresses': V4(4) },
      /unknown annotation io\.l3iso\.adresses/,
    ],
  ])(
    'the container does not start when the hook refuses %s',
    async (_what, annotations, message) => {
      sb.cg('other');
      await sb.cli(['assign', 'other', V4(3)]);
      const name = `bad${Math.floor(Math.random() * 1e6)}`;
      const c = runc(name, [{ op: 'cgroup' }], annotations);
      const exit = await c.exited;
      expect(exit.status).not.toBe(0);
      // runc shows the hook's one line...
      expect(c.stderr).toMatch(message);
      expect(c.stderr).toContain(`l3iso: container ${name}: `);
      // ...and not one instruction of the container ran
      expect(c.lines).toEqual([]);
      expect(await cellNames()).not.toContain(`runc/${name}`);
      expect(fs.existsSync(path.join(recordsDir(sb.pinDir), `${name}.json`))).toBe(false);
    },
  );

  describe('through the agent', () => {
    let sock: string;
    let agent: BgProc | undefined;

    /** Requests the agent answered, by route. */
    const answered = () => requestCounts(sock);

    beforeAll(async () => {
      sock = path.join(dir, 'agent.sock');
      agent = await startAgent(sb, { socket: sock });
    });
    afterAll(async () => {
      await agent?.kill();
    });

    it('the hook has the agent assign and release: the container is confined the same way', async () => {
      const before = await answered();
      const c = runc(
        'viaagent',
        [
          { op: 'cgroup' },
          { op: 'bind_new', fam: 4, addr: V4(9) },
          { op: 'socket', fam: 4 },
          { op: 'bind', addr: '0.0.0.0', port: 8080 },
          { op: 'listen' },
          { op: 'serve_banner', banner: 'via-agent', count: 1 },
        ],
        { 'io.l3iso.addresses': V4(5) },
        [`L3ISO_AGENT_SOCKET=${sock}`],
      );
      const ready = await readyDespiteRefusals(c, 30_000);
      const ops = c.lines.filter((l) => typeof l.i === 'number');
      expect(ops[0]!.cgroup).toBe(
        '/' + path.relative(sb.cgroup2, path.join(sb.root, 'runc/viaagent')),
      );
      expect(ops[1]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
      expect(ready).toMatchObject({ addr: V4(5), port: 8080 });
      expect(await sb.list()).toContainEqual(
        expect.objectContaining({ cell: 'runc/viaagent', addresses: [V4(5)] }),
      );
      const outside = await sb.probe(null, [{ op: 'fetch', fam: 4, addr: V4(5), port: 8080 }]);
      expect(outside.last).toMatchObject({ ok: true, data: 'via-agent' });
      expect(await c.exited).toEqual({ status: 0, signal: null });

      expect(await cellNames()).not.toContain('runc/viaagent');
      expect(fs.existsSync(path.join(recordsDir(sb.pinDir), 'viaagent.json'))).toBe(false);
      const after = await answered();
      for (const route of ['POST /v1/oci/create-runtime', 'POST /v1/oci/poststop'])
        expect((after[route] ?? 0) - (before[route] ?? 0), route).toBe(1);
      sb.cg('after5');
      await sb.assign('after5', V4(5));
      await sb.cliOk(['release', 'after5']);
    });

    it('a refusal fails the start with the same line through the agent as without one', async () => {
      sb.cg('owner');
      await sb.cliOk(['assign', 'owner', V4(8)]);
      const refusal = async (name: string, env: string[]) => {
        const before = await answered();
        const c = runc(name, [{ op: 'cgroup' }], { 'io.l3iso.addresses': V4(8) }, env);
        expect((await c.exited).status).not.toBe(0);
        expect(c.lines).toEqual([]);
        const after = await answered();
        const asked =
          (after['POST /v1/oci/create-runtime'] ?? 0) -
          (before['POST /v1/oci/create-runtime'] ?? 0);
        const line = c.stderr.split('\n').find((l) => l.includes('l3iso: container'));
        expect(line, c.stderr).toBeDefined();
        return {
          asked,
          line: line!.slice(line!.indexOf('l3iso: container')).split(name).join('NAME'),
        };
      };
      const via = await refusal('refagent', [`L3ISO_AGENT_SOCKET=${sock}`]);
      // nothing listens there: the hook does the work itself
      const direct = await refusal('refdirect', [
        `L3ISO_AGENT_SOCKET=${path.join(dir, 'none.sock')}`,
      ]);
      expect(via.asked).toBe(1);
      expect(direct.asked).toBe(0);
      expect(via.line).toMatch(
        /^l3iso: container NAME: address 192\.0\.2\.8 is owned by cell owner/,
      );
      expect(via.line).toBe(direct.line);
      expect(await cellNames()).not.toContain('runc/refagent');
      expect(await cellNames()).not.toContain('runc/refdirect');
      await sb.cliOk(['release', 'owner']);
    });
  });
});
