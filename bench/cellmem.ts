/**
 * Kernel memory of the per-cell maps per assigned cell, as the kernel
 * accounts it (the `memlock` line of /proc/PID/fdinfo/FD: the map's
 * map_mem_usage, which for a BPF_F_NO_PREALLOC hash counts its live
 * elements, per-CPU copies included). Fills a sandboxed engine with N
 * synthetic cells (bench/populate.ts: cell entry, one owner, counters, and
 * denials for the cells that had refusals or drops) and prints the
 * increase divided by N, map by map.
 *
 *   node dist/bench/cellmem.js [N]
 */
import * as fs from 'node:fs';
import { possibleCpus } from '../loader';
import { EngineState } from '../src/dataplane/state';
import { createSandbox } from '../src/demo/sandbox';
import { PROFILES, populate } from './populate';

const MAPS = ['l3_cells', 'l3_owners', 'l3_cell_stats', 'l3_cell_denials'] as const;

/** memlock of each map that exists in this engine (an older layout has no l3_cell_denials). */
function memlock(state: EngineState): Map<string, number> {
  const out = new Map<string, number>();
  for (const name of MAPS) {
    let fd: number;
    try {
      fd = state.map(name as Parameters<EngineState['map']>[0]).fd;
    } catch {
      continue;
    }
    const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    const m = /^memlock:\s+(\d+)/m.exec(info);
    if (m) out.set(name, Number(m[1]));
  }
  return out;
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 20000);
  const sb = createSandbox('l3iso-cellmem', []);
  try {
    const up = sb.cli(['up', '--cgroup-root', sb.cgroupRoot, '--max-cells', String(n + 1024)]);
    if (up.status !== 0) throw new Error(`up failed: ${up.stderr}`);
    const state = EngineState.open(sb.pinDir);
    try {
      const before = memlock(state);
      await populate(state, n, PROFILES[0]!, true);
      const after = memlock(state);
      let total = 0;
      console.log(
        `${n} cells, ${possibleCpus()} possible CPUs; bytes per cell (memlock delta / N):`,
      );
      for (const [name, b] of after) {
        const per = (b - (before.get(name) ?? 0)) / n;
        total += per;
        console.log(`  ${name.padEnd(16)} ${per.toFixed(1)}`);
      }
      console.log(`  ${'total'.padEnd(16)} ${total.toFixed(1)}`);
    } finally {
      state.close();
    }
  } finally {
    sb.destroy();
  }
}

main().catch((err: unknown) => {
  console.error(`cellmem failed: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
