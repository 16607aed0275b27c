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
  hostMounts,
  makeRootfs,
  removeTempDir,
  removeV1Cgroups,
  requireTool,
  sweepStaleContainers,
  tempDir,
} from '../harness/containers';
import {
  createSandbox,
  V4,
  type BgProc,
  type Op,
  type ProbeLine,
  type Sandbox,
} from '../harness/sandbox';

describe('podman runs the OCI hook from hooks.d', () => {
  let sb: Sandbox;
  let dir: string;
  let rootfs: string;
  let hooksDir: string;
  let podmanGlobal: string[];

  beforeAll(async () => {
    requireTool(
      ['runc', '--version'],
      'install runc (scripts/setup.sh does: apt-get install runc)',
    );
    requireTool(
      ['podman', '--version'],
      'install podman (scripts/setup.sh does: apt-get install podman)',
    );
    sweepStaleContainers();
    sb = await createSandbox();
    await sb.up();
    dir = tempDir(sb);
    rootfs = makeRootfs(dir);
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
    const records = sb ? recordsDir(sb.pinDir) : undefined;
    await sb?.destroy();
    if (sb) removeV1Cgroups(sb);
    if (dir) removeTempDir(dir);
    if (records) fs.rmSync(records, { recursive: true, force: true });
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

  async function readyDespiteRefusals(c: BgProc): Promise<ProbeLine> {
    for (let waited = 0; waited < 60_000; waited += 50) {
      const hit = c.lines.find((l) => l.ready === true);
      if (hit) return hit;
      if (c.child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`container never served: ${c.stdout} ${c.stderr}`);
  }

  const podmanCells = async () =>
    (await sb.list()).filter((c: { cell: string }) => c.cell.startsWith('podman/'));

  it('an annotated container is a cell from its first instruction and is released when it exits', async () => {
    const c = podman(
      'c1',
      [
        { op: 'cgroup' },
        { op: 'bind_new', fam: 4, addr: V4(9) },
        { op: 'socket', id: 'l', fam: 4 },
        { op: 'bind', id: 'l', addr: '127.0.0.1', port: 7002 },
        { op: 'listen', id: 'l' },
        { op: 'socket', id: 'c', fam: 4 },
        { op: 'connect', id: 'c', addr: '127.0.0.1', port: 7002 },
        { op: 'socket', fam: 4 },
        { op: 'bind', addr: '0.0.0.0', port: 8080 },
        { op: 'listen' },
        { op: 'serve_banner', banner: 'in-podman', count: 1 },
      ],
      { 'io.l3iso.addresses': V4(5) },
    );
    const ready = await readyDespiteRefusals(c);
    const cid = fs.readFileSync(path.join(dir, 'c1.cid'), 'utf8').trim();
    const ops = c.lines.filter((l) => typeof l.i === 'number');
    const cellName = `podman/libpod-${cid}`;
    expect(ops[0]!.cgroup).toBe('/' + path.relative(sb.cgroup2, path.join(sb.root, cellName)));
    expect(ops[1]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    expect(ops[6]).toMatchObject({ ok: true, peer: { addr: '127.0.0.1', port: 7002 } });
    expect(ready).toMatchObject({ addr: V4(5), port: 8080 });
    expect(await podmanCells()).toEqual([
      expect.objectContaining({ cell: cellName, addresses: [V4(5)] }),
    ]);
    expect(fs.readdirSync(recordsDir(sb.pinDir))).toContain(`${cid}.json`);

    const outside = await sb.probe(
      null,
      [
        { op: 'fetch', fam: 4, addr: '127.0.0.1', port: 7002 },
        { op: 'fetch', fam: 4, addr: V4(5), port: 8080 },
      ],
      { keepGoing: true },
    );
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
