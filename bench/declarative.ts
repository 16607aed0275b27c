/**
 * `node dist/bench/declarative.js [--cells N] [--json]`: the declarative
 * control plane at density. In a sandbox (own netns, cgroup subtree, pin
 * dir), N cells with two addresses each (IPv4 + IPv6 from managed
 * prefixes) are made by one `apply`, checked by a second (idempotent, no
 * writes), and released by one `apply --prune` of an empty file. Figures
 * are cells/s, reported (not asserted); writes bench/declarative.json.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { applyState } from '../src/declarative/apply';
import type { DesiredState } from '../src/declarative/schema';
import { createSandbox } from '../src/demo/sandbox';
import { up } from '../src/engine/lifecycle';
import { packageRoot } from '../src/dataplane/paths';
import { EngineState } from '../src/dataplane/state';

interface Figures {
  cells: number;
  addressesPerCell: number;
  mkdirCgroupsMs: number;
  applyMs: number;
  applyCellsPerSecond: number;
  reapplyMs: number;
  releaseMs: number;
  releaseCellsPerSecond: number;
  kernel: string;
  cpus: number;
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function timed<T>(fn: () => T): [T, number] {
  const t0 = process.hrtime.bigint();
  const r = fn();
  return [r, Number(process.hrtime.bigint() - t0) / 1e6];
}

function desired(n: number): DesiredState {
  const cells = Array.from({ length: n }, (_, i) => ({
    cgroup: `c${i}`,
    addresses: [
      `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
      `fd00::${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}`,
    ],
    allowRaw: false,
    allowFrom: null,
  }));
  return { version: 1, engine: {}, cells };
}

function main(): void {
  const n = arg('--cells', 100_000);
  const sb = createSandbox('l3ap', []);
  const stop = () => {
    sb.destroy();
    process.exit(130);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    up({
      pinDir: sb.pinDir,
      cgroupRoot: sb.cgroupRoot,
      netns: sb.netnsPath,
      maxCells: n + 1024,
      managedPrefixes: ['10.0.0.0/8', 'fd00::/64'],
    });
    const [, mkdirMs] = timed(() => {
      for (let i = 0; i < n; i++) fs.mkdirSync(path.join(sb.cgroupRoot, `c${i}`));
    });
    const want = desired(n);
    const [made, applyMs] = timed(() => applyState(sb.pinDir, want));
    if (made.summary.create !== n)
      throw new Error(`apply made ${made.summary.create} cells, not ${n}`);
    const [again, reapplyMs] = timed(() => applyState(sb.pinDir, want));
    if (again.changed) throw new Error('a second apply changed something');
    const empty: DesiredState = { version: 1, engine: {}, cells: [] };
    const [gone, releaseMs] = timed(() => applyState(sb.pinDir, empty, { prune: true }));
    if (gone.summary.remove !== n)
      throw new Error(`prune removed ${gone.summary.remove}, not ${n}`);
    const state = EngineState.open(sb.pinDir);
    const left = state.cells().size;
    state.close();
    if (left !== 0) throw new Error(`${left} cells left after the prune`);
    const f: Figures = {
      cells: n,
      addressesPerCell: 2,
      mkdirCgroupsMs: Math.round(mkdirMs),
      applyMs: Math.round(applyMs),
      applyCellsPerSecond: Math.round(n / (applyMs / 1000)),
      reapplyMs: Math.round(reapplyMs),
      releaseMs: Math.round(releaseMs),
      releaseCellsPerSecond: Math.round(n / (releaseMs / 1000)),
      kernel: os.release(),
      cpus: os.cpus().length,
    };
    fs.writeFileSync(
      path.join(packageRoot(), 'bench', 'declarative.json'),
      JSON.stringify(f, null, 2) + '\n',
    );
    if (process.argv.includes('--json')) process.stdout.write(JSON.stringify(f) + '\n');
    else
      process.stdout.write(
        [
          `declarative control plane, ${n} cells x 2 addresses (${f.cpus} CPUs, kernel ${f.kernel})`,
          `  apply (create)       ${f.applyMs} ms   ${f.applyCellsPerSecond} cells/s   (target >= 100000)`,
          `  apply again (no-op)  ${f.reapplyMs} ms`,
          `  apply --prune (all)  ${f.releaseMs} ms   ${f.releaseCellsPerSecond} cells/s   (target >= 50000)`,
          `  (mkdir of the cgroups, not counted: ${f.mkdirCgroupsMs} ms)`,
          '',
        ].join('\n'),
      );
  } finally {
    sb.destroy();
  }
}

main();
