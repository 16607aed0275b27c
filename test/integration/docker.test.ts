// The Docker recipe (README, "Container runtimes"): Docker has no OCI hooks,
// so the cell is a parent cgroup assigned in advance, and `docker run
// --cgroup-parent` puts the container below it (a child inherits its nearest
// assigned ancestor). dockerd runs for this test only: in the test netns, in
// a private mount namespace with its own /run, with data and exec roots in
// the test's temp dir and no bridge or iptables; the image is imported from
// a local rootfs (no pull).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CONTAINER_PROBE,
  CONTAINER_PYTHON,
  confinementProbe,
  hostMounts,
  outsideView,
  readyDespiteRefusals,
  removeRuntimeWorld,
  runtimeWorld,
  type RuntimeWorld,
} from '../harness/containers';
import { recordsDir } from '../../src/runtime/records';
import { startAgent } from '../harness/agent';
import { health as healthOf } from '../harness/http-unix';
import { until } from '../harness/poll';
import { BgProc, V4, type Sandbox } from '../harness/sandbox';

describe('docker run --cgroup-parent below an assigned cell', () => {
  let w: RuntimeWorld;
  let sb: Sandbox;
  let dir: string;
  let dockerd: ChildProcess | undefined;
  let dockerdLog = '';
  let host: string;
  const image = 'l3iso-test:local';

  const docker = (args: string[], input?: string) =>
    spawnSync('docker', ['-H', host, ...args], { encoding: 'utf8', timeout: 60_000, input });

  beforeAll(async () => {
    const why = 'install docker.io (scripts/setup.sh does)';
    w = await runtimeWorld([
      [['dockerd', '--version'], why],
      [['docker', '--version'], why],
    ]);
    ({ sb, dir } = w);
    const rootfs = w.rootfs;
    host = `unix://${dir}/docker.sock`;
    fs.writeFileSync(path.join(dir, 'daemon.json'), '{}\n');
    const daemon = [
      'dockerd',
      '--data-root',
      path.join(dir, 'data'),
      '--exec-root',
      path.join(dir, 'exec'),
      '--pidfile',
      path.join(dir, 'docker.pid'),
      '--config-file',
      path.join(dir, 'daemon.json'),
      '-H',
      host,
      '--storage-driver',
      'vfs',
      '--bridge',
      'none',
      '--iptables=false',
      '--ip6tables=false',
      '--ip-masq=false',
      '--userland-proxy=false',
    ];
    // A /run of its own: containerd and dockerd write fixed paths there.
    dockerd = spawn(
      'nsenter',
      [
        `--net=${sb.nsPath}`,
        '--',
        'unshare',
        '--mount',
        '--propagation',
        'private',
        '--',
        'sh',
        '-c',
        'mount -t tmpfs -o mode=755 l3iso-test /run && exec "$@"',
        'sh',
        ...daemon,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    dockerd.stdout!.on('data', (d: Buffer) => (dockerdLog += d.toString()));
    dockerd.stderr!.on('data', (d: Buffer) => (dockerdLog += d.toString()));
    for (let i = 0; i < 600; i++) {
      if (dockerd.exitCode !== null) break;
      if (docker(['version']).status === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const v = docker(['version']);
    if (v.status !== 0)
      throw new Error(
        `dockerd does not run on this machine: ${v.stderr}\n${dockerdLog.slice(-3000)}`,
      );
    const imp = spawnSync(
      'sh',
      ['-c', 'tar -C "$1" -c . | docker -H "$2" import - "$3"', 'sh', rootfs, host, image],
      { encoding: 'utf8' },
    );
    if (imp.status !== 0) throw new Error(`docker import failed: ${imp.stderr}`);
  }, 120_000);

  afterAll(async () => {
    if (dockerd && dockerd.exitCode === null) {
      const ids = docker(['ps', '-aq']).stdout.split('\n').filter(Boolean);
      if (ids.length) docker(['rm', '-f', ...ids]);
      const exited = new Promise((r) => dockerd!.once('exit', r));
      dockerd.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
      if (dockerd.exitCode === null) dockerd.kill('SIGKILL');
    }
    await removeRuntimeWorld(w ?? {});
  }, 60_000);

  it('a container below the assigned parent is confined to its addresses; releasing the parent frees them', async () => {
    sb.cg('web');
    await sb.assign('web', V4(2));
    const probe = confinementProbe('in-docker');
    const argv = [
      'docker',
      '-H',
      host,
      'run',
      '--rm',
      '--network',
      'host',
      '--cgroup-parent',
      '/' + path.relative(sb.cgroup2, path.join(sb.root, 'web')),
      ...hostMounts().flatMap((m) => ['-v', `${m.source}:${m.destination}:ro`]),
      image,
      CONTAINER_PYTHON,
      CONTAINER_PROBE,
      JSON.stringify({ ops: probe.ops, keep_going: true }),
    ];
    const c = new BgProc(spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] }));
    try {
      const ready = await readyDespiteRefusals(c);
      const got = c.lines.filter((l) => typeof l.i === 'number');
      const rel = '/' + path.relative(sb.cgroup2, path.join(sb.root, 'web'));
      expect(path.dirname(got[probe.at.cgroup]!.cgroup as string)).toBe(rel);
      expect(got[probe.at.foreignBind]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
      expect(got[probe.at.ownLoopback]).toMatchObject({
        ok: true,
        peer: { addr: '127.0.0.1', port: 7002 },
      });
      expect(ready).toMatchObject({ addr: V4(2), port: 8080 });

      const outside = await outsideView(sb, V4(2));
      expect(outside.ops[0]).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
      expect(outside.ops[1]).toMatchObject({ ok: true, data: 'in-docker' });
      expect(await c.exited).toEqual({ status: 0, signal: null });
    } finally {
      await c.kill();
    }
    // The parent stays a cell for the next container until it is released.
    expect((await sb.show('web')).addresses).toEqual([V4(2)]);
    await sb.cliOk(['release', 'web']);
    sb.cg('after');
    await sb.assign('after', V4(2));
    await sb.cliOk(['release', 'after']);
  });

  it('agent --watch-docker: a container that ends loses its recorded cell; the --cgroup-parent cell stays', async () => {
    const sock = path.join(dir, 'agent.sock');
    const health = (): Promise<{
      docker?: { running: boolean; events: number; released: number };
    }> => healthOf(sock);
    const rel = (cg: string) => '/' + path.relative(sb.cgroup2, path.join(sb.root, cg));
    const sleeper = (cgroupParent: string) => {
      const r = docker([
        'run',
        '-d',
        '--network',
        'host',
        '--cgroup-parent',
        cgroupParent,
        ...hostMounts().flatMap((m) => ['-v', `${m.source}:${m.destination}:ro`]),
        image,
        '/usr/bin/sleep',
        '600',
      ]);
      expect(r.status, r.stderr).toBe(0);
      return r.stdout.trim();
    };

    // The recipe's operator-assigned parent, and a container of it.
    sb.cg('web2');
    await sb.assign('web2', V4(4));
    // A container whose runtime ran the OCI hook: its own cgroup is a cell,
    // with a record (as createRuntime makes them, here after the start).
    sb.cg('ctr');
    const agent = await startAgent(sb, {
      socket: sock,
      args: ['--resync', '3600', '--watch-docker'],
      wrap: ['env', `DOCKER_HOST=${host}`],
      ready: async () => (await health()).docker?.running === true,
    });
    try {
      const member = sleeper(rel('web2'));
      const own = sleeper(rel('ctr'));
      const pid = Number(docker(['inspect', '-f', '{{.State.Pid}}', own]).stdout.trim());
      const hook = await sb.cli(['oci-hook', 'createRuntime'], {
        input: JSON.stringify({
          ociVersion: '1.0.2',
          id: own,
          status: 'creating',
          pid,
          bundle: '/nonexistent',
          annotations: { 'io.l3iso.addresses': V4(5) },
        }),
      });
      expect(hook.status, hook.stderr).toBe(0);
      const cells = await sb.list();
      const ownCell = cells.find((c: { addresses: string[] }) => c.addresses.includes(V4(5)));
      expect(path.dirname(ownCell.cell)).toBe('ctr');
      expect(fs.existsSync(path.join(recordsDir(sb.pinDir), `${own}.json`))).toBe(true);

      expect(docker(['rm', '-f', member, own]).status).toBe(0);
      const h = await until(
        'the watcher released the recorded cell',
        async () => {
          const v = await health();
          return v.docker && v.docker.released >= 1 && v.docker.events >= 4 ? v : undefined;
        },
        60_000,
      );
      expect(h.docker!.released).toBe(1);
      expect(fs.existsSync(path.join(recordsDir(sb.pinDir), `${own}.json`))).toBe(false);
      const names = (await sb.list()).map((c: { cell: string }) => c.cell);
      expect(names).not.toContain(ownCell.cell);
      // the operator's cell is untouched: the next container below it is confined
      expect((await sb.show('web2')).addresses).toEqual([V4(4)]);
      sb.cg('after5');
      await sb.assign('after5', V4(5));
      await sb.cliOk(['release', 'after5']);
    } finally {
      await agent.kill();
    }
    expect(agent.stderr).not.toMatch(/docker events stream lost/);
    await sb.cliOk(['release', 'web2']);
  });
});
