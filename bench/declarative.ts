/**
 * `node dist/bench/declarative.js [--cells N] [--json] [--profile DIR]`: the declarative
 * control plane at density. In a sandbox (own netns, cgroup subtree, pin
 * dir), N cells with two addresses each (IPv4 + IPv6 from managed
 * prefixes) are made by one `apply`, checked by a second (idempotent, no
 * writes), and released by one `apply --prune` of an empty file. Figures
 * are cells/s, reported (not asserted); writes bench/declarative.json.
 * `--profile DIR` writes a CPU profile of each phase (apply, reapply,
 * prune) into DIR.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { DesiredState } from '../src/declarative/schema';
import { CELL_PREFIXES, desiredCells, numberArg, profiled, stringArg } from './cells';
import { createSandbox } from '../src/demo/sandbox';
import { Engine } from '../src/engine/engine';
import { packageRoot } from '../src/dataplane/paths';

interface Figures {
  cells: number;
  addressesPerCell: number;
  mkdirCgroupsMs: number;
  applyMs: number;
  applyCellsPerSecond: number;
  reapplyMs: number;
  releaseMs: number;
  releaseCellsPerSecond: number;
  /** CPU time (user + system) of this process per phase: what a loaded
   * box's wall clock hides */
  applyCpuMs: number;
  reapplyCpuMs: number;
  releaseCpuMs: number;
  kernel: string;
  cpus: number;
}

/** fn's result, wall-clock ms and CPU ms. */
function timed<T>(fn: () => T): [T, number, number] {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const r = fn();
  const wall = Number(process.hrtime.bigint() - t0) / 1e6;
  const c = process.cpuUsage(c0);
  return [r, wall, (c.user + c.system) / 1000];
}

function main(): void {
  const n = numberArg('--cells', 100_000);
  const prof = stringArg('--profile');
  const sb = createSandbox('l3ap', []);
  const stop = () => {
    sb.destroy();
    process.exit(130);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    Engine.up({
      pinDir: sb.pinDir,
      cgroupRoot: sb.cgroupRoot,
      netns: sb.netnsPath,
      maxCells: n + 1024,
      managedPrefixes: CELL_PREFIXES,
    });
    const [, mkdirMs] = timed(() => {
      for (let i = 0; i < n; i++) fs.mkdirSync(path.join(sb.cgroupRoot, `c${i}`));
    });
    const want = desiredCells(n);
    using engine = Engine.open(sb.pinDir, { write: true });
    const [made, applyMs, applyCpu] = timed(() =>
      profiled(prof, 'apply', () => engine.apply(want)),
    );
    if (made.summary.create !== n)
      throw new Error(`apply made ${made.summary.create} cells, not ${n}`);
    const [again, reapplyMs, reapplyCpu] = timed(() =>
      profiled(prof, 'reapply', () => engine.apply(want)),
    );
    if (again.changed) throw new Error('a second apply changed something');
    const empty: DesiredState = { version: 1, engine: {}, cells: [] };
    const [gone, releaseMs, releaseCpu] = timed(() =>
      profiled(prof, 'prune', () => engine.apply(empty, { prune: true })),
    );
    if (gone.summary.remove !== n)
      throw new Error(`prune removed ${gone.summary.remove}, not ${n}`);
    const left = engine.cellIds().size;
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
      applyCpuMs: Math.round(applyCpu),
      reapplyCpuMs: Math.round(reapplyCpu),
      releaseCpuMs: Math.round(releaseCpu),
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
          `  apply (create)       ${f.applyMs} ms   ${f.applyCellsPerSecond} cells/s   (target >= 100000; CPU ${f.applyCpuMs} ms)`,
          `  apply again (no-op)  ${f.reapplyMs} ms   (CPU ${f.reapplyCpuMs} ms)`,
          `  apply --prune (all)  ${f.releaseMs} ms   ${f.releaseCellsPerSecond} cells/s   (target >= 50000; CPU ${f.releaseCpuMs} ms)`,
          `  (mkdir of the cgroups, not counted: ${f.mkdirCgroupsMs} ms)`,
          '',
        ].join('\n'),
      );
  } finally {
    sb.destroy();
  }
}

main();
