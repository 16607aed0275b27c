// The OCI hook under a real podman (issue 10), installed by
// `l3iso oci-hook install` into a test-private hooks dir: podman matches the
// io.l3iso.* annotation, runc runs the hook at createRuntime and poststop.
// podman's storage, run state, runc state and events all live in the test's
// temp dir; the rootfs is the host's /usr (no image, no pull).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordsDir } from '../../src/runtime/records';
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
import { V4, type BgProc, type Op, type Sandbox } from '../harness/sandbox';

describe('podman runs the OCI hook from hooks.d', () => {
  let w: RuntimeWorld;
  let sb: Sandbox;
  let dir: string;
  let rootfs: string;
  let hooksDir: string;
  let podmanGlobal: string[];

  beforeAll(async () => {
    w = await runtimeWorld([
      [['runc', '--version'], 'install runc (scripts/setup.sh does: apt-get install runc)'],
      [['podman', '--version'], 'install podman (scripts/setup.sh does: apt-get install podman)'],
    ]);
    ({ sb, dir, rootfs } = w);
    hooksDir = path.join(dir, 'hooks.d');
    const p = (d: string) => path.join(dir, 'podman', d);
    podmanGlobal = [
      '--root',
      p('root'),
      '--runroot',
      p('runroot'),
      '--tmpdir',
      p('tmp'),
      '--storage-driver',
      'vfs',
      '--cgroup-manager',
      'cgroupfs',
      '--events-backend',
      'file',
      '--hooks-dir',
      hooksDir,
      '--runtime',
      'runc',
      '--runtime-flag',
      `root=${p('runc')}`,
    ];
    const r = await sb.cliOk(['oci-hook', 'install', '--dir', hooksDir]);
    expect(r.stdout).toContain(path.join(hooksDir, 'l3iso-createruntime.json'));
  });
  afterAll(async () => {
    if (podmanGlobal)
      spawnSync('podman', [...podmanGlobal, 'rm', '--all', '--force'], { timeout: 30_000 });
    await removeRuntimeWorld(w ?? {});
  });

  function podman(name: string, ops: Op[], annotations: Record<string, string> = {}): BgProc {
    const argv = [
      'podman',
      ...podmanGlobal,
      'run',
      '--rm',
      '--name',
      name,
      '--cidfile',
      path.join(dir, `${name}.cid`),
      '--network',
      'host',
      '--cgroup-parent',
      '/' + path.relative(sb.cgroup2, sb.cg('podman')),
      // Without CAP_SYS_RESOURCE podman cannot raise its default limits.
      '--ulimit',
      'nofile=1024:1024',
      '--ulimit',
      'nproc=1024:1024',
      ...hostMounts().flatMap((m) => ['-v', `${m.source}:${m.destination}:ro`]),
      ...Object.entries(annotations).flatMap(([k, v]) => ['--annotation', `${k}=${v}`]),
      '--rootfs',
      rootfs,
      CONTAINER_PYTHON,
      CONTAINER_PROBE,
      JSON.stringify({ ops, keep_going: true }),
    ];
    // In the test netns: --network host is that netns.
    return sb.spawnOnHost(argv);
  }

  const podmanCells = async () =>
    (await sb.list()).filter((c: { cell: string }) => c.cell.startsWith('podman/'));

  it('an annotated container is a cell from its first instruction and is released when it exits', async () => {
    const probe = confinementProbe('in-podman');
    const c = podman('c1', probe.ops, { 'io.l3iso.addresses': V4(5) });
    const ready = await readyDespiteRefusals(c);
    const cid = fs.readFileSync(path.join(dir, 'c1.cid'), 'utf8').trim();
    const ops = c.lines.filter((l) => typeof l.i === 'number');
    const cellName = `podman/libpod-${cid}`;
    expect(ops[probe.at.cgroup]!.cgroup).toBe(
      '/' + path.relative(sb.cgroup2, path.join(sb.root, cellName)),
    );
    expect(ops[probe.at.foreignBind]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    expect(ops[probe.at.ownLoopback]).toMatchObject({
      ok: true,
      peer: { addr: '127.0.0.1', port: 7002 },
    });
    expect(ready).toMatchObject({ addr: V4(5), port: 8080 });
    expect(await podmanCells()).toEqual([
      expect.objectContaining({ cell: cellName, addresses: [V4(5)] }),
    ]);
    expect(fs.readdirSync(recordsDir(sb.pinDir))).toContain(`${cid}.json`);

    const outside = await outsideView(sb, V4(5));
    expect(outside.ops[0]).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
    expect(outside.ops[1]).toMatchObject({ ok: true, data: 'in-podman' });

    expect(await c.exited).toEqual({ status: 0, signal: null });
    expect(await podmanCells()).toEqual([]);
    expect(fs.readdirSync(recordsDir(sb.pinDir))).not.toContain(`${cid}.json`);
    sb.cg('after');
    await sb.assign('after', V4(5));
    await sb.cliOk(['release', 'after']);
  });

  it('a container without io.l3iso annotations is left alone', async () => {
    const c = podman('plain', [{ op: 'bind_new', fam: 4, addr: '0.0.0.0' }]);
    expect(await c.exited).toEqual({ status: 0, signal: null });
    expect(c.lines.find((l) => l.i === 0)).toMatchObject({ ok: true, addr: '0.0.0.0' });
    expect(await podmanCells()).toEqual([]);
  });

  it('a refused annotation fails the start with the hook’s message; nothing of the container ran', async () => {
    const c = podman('pooled', [{ op: 'cgroup' }], { 'io.l3iso.pool': 'web' });
    const exit = await c.exited;
    expect(exit.status).not.toBe(0);
    expect(c.stderr).toMatch(
      /l3iso: container [0-9a-f]{64}: no pool \\?"web\\?" \(no pools defined\)/,
    );
    expect(c.lines).toEqual([]);
    expect(await podmanCells()).toEqual([]);
  });
});
