/**
 * `npm run bench`: how long a `metrics` scrape takes with 100,000 cells,
 * next to the straightforward alternatives, in one run.
 *
 * The engine is a real one in a sandbox (own netns, cgroup subtree and pin
 * dir, all removed at the end), but its cells are synthetic: l3_cells,
 * l3_owners and l3_cell_stats are filled directly with batch updates, with
 * made-up cgroup ids and non-zero counters (bench/populate.ts). The maps
 * and the read path are those of a real engine; only the cgroups are
 * missing, so cells are named `#<id>`.
 *
 * Every variant runs in a fresh node process (bench/child.ts), so the heap
 * one leaves behind never slows the garbage collection of the next.
 *
 * Environment: L3ISO_BENCH_CELLS (default 100000), L3ISO_BENCH_RUNS (5).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { possibleCpus } from '../loader';
import { createSandbox, type Sandbox } from '../src/demo/sandbox';
import { packageRoot } from '../src/dataplane/paths';
import { EngineState } from '../src/dataplane/state';
import { PROFILES, populate, type Profile } from './populate';

const CELLS = Number(process.env.L3ISO_BENCH_CELLS ?? 100_000);
const RUNS = Number(process.env.L3ISO_BENCH_RUNS ?? 5);
const TARGET_MS = 1000;

interface Timing {
  label: string;
  runs: number[];
}

const min = (t: Timing) => Math.min(...t.runs);
function median(t: Timing): number {
  const s = [...t.runs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function report(title: string, rows: Timing[]): void {
  const base = rows[0]!;
  const width = Math.max(...rows.map((r) => r.label.length));
  console.log(`\n  ${title}`);
  console.log(`    ${''.padEnd(width)}  ${'min'.padStart(8)}  ${'median'.padStart(8)}  vs ours`);
  for (const r of rows) {
    console.log(
      `    ${r.label.padEnd(width)}  ${min(r).toFixed(0).padStart(5)} ms  ${median(r)
        .toFixed(0)
        .padStart(5)} ms  ${(median(r) / median(base)).toFixed(2)}x`,
    );
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function child(sb: Sandbox, variant: string, runs: number): any {
  const script = path.join(__dirname, 'child.js');
  const r = spawnSync(process.execPath, [script, sb.pinDir, variant, String(runs)], {
    encoding: 'utf8',
    maxBuffer: 16 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`bench variant ${variant} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

function timing(sb: Sandbox, label: string, variant: string, runs = RUNS): Timing {
  return { label, runs: child(sb, variant, runs).runs as number[] };
}

function cliMetrics(sb: Sandbox, runs: number): Timing {
  const cli = path.join(packageRoot(), 'dist', 'src', 'cli', 'main.js');
  const out = fs.openSync('/dev/null', 'w');
  const times: number[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const t = process.hrtime.bigint();
      const r = spawnSync(
        'nsenter',
        [`--net=${sb.netnsPath}`, '--', process.execPath, cli, '--pin-dir', sb.pinDir, 'metrics'],
        { stdio: ['ignore', out, 'pipe'], env: { ...process.env, L3ISO_LOG_LEVEL: 'warn' } },
      );
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
      if (r.status !== 0) throw new Error(`l3iso metrics failed: ${r.stderr}`);
    }
  } finally {
    fs.closeSync(out);
  }
  return { label: '`l3iso metrics` > /dev/null, node start included', runs: times };
}

async function benchProfile(sb: Sandbox, state: EngineState, profile: Profile, first: boolean) {
  console.log(`\n== ${profile.name} ==`);
  const p = await populate(state, CELLS, profile, first);
  console.log(
    `  populated ${CELLS} cells in ${p.ms.toFixed(0)} ms` +
      (p.retries ? ` (${p.retries} ENOMEM retries while the per-CPU allocator caught up)` : ''),
  );
  const check = child(sb, 'check', 0);
  console.log(
    `  exposition: ${check.series} series, ${check.mib.toFixed(1)} MiB; ` +
      `Number decode checked against the bigint codec on ${check.checked} counters`,
  );

  const scrape = timing(
    sb,
    'ours: batch lookup, Number decode, streamed traffic families',
    'scrape-ours',
  );
  report('full scrape in-process (open maps, read, decode, names, exposition)', [
    scrape,
    timing(
      sb,
      'straightforward: allStats() bigints, Counter.inc() per series',
      'scrape-straight',
      3,
    ),
  ]);
  const b = child(sb, 'breakdown', RUNS);
  const stages = b.stages as Record<string, number[]>;
  console.log(
    '    stages (median): ' +
      Object.entries(stages)
        .map(([k, v]) => `${k} ${median({ label: k, runs: v }).toFixed(0)} ms`)
        .join(', '),
  );
  report('read + decode of l3_cell_stats', [
    timing(sb, 'batch lookup + Number decode (ours)', 'read-ours'),
    timing(sb, 'batch lookup + bigint decode (EngineState.allStats)', 'read-bigint'),
    timing(sb, 'per-key get_next_key + lookup, Number decode', 'read-perkey', 2),
  ]);
  report('exposition only, same snapshot', [
    timing(sb, 'traffic families streamed, the rest prom-client (ours)', 'expo-ours'),
    timing(sb, 'Counter.inc(labels, v) per series in collect()', 'expo-inc'),
  ]);
  const cli = cliMetrics(sb, Math.min(RUNS, 3));
  report('CLI end to end', [cli]);
  return { scrape, cli, series: check.series as number };
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('bench: needs root (it brings up a sandboxed engine)');
    return 1;
  }
  if (!fs.existsSync(path.join(packageRoot(), 'dist', 'src', 'cli', 'main.js'))) {
    console.error('bench: run `npm run build` first');
    return 1;
  }
  const load = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  console.log(
    `l3iso metrics benchmark: ${CELLS} cells, ${RUNS} runs per variant, each variant in a fresh process\n` +
      `machine: ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), ${possibleCpus()} possible CPUs, ` +
      `node ${process.version}, load average ${load}\n` +
      'note: the cells are synthetic: made-up cgroup ids written straight into l3_cells,\n' +
      '      l3_owners and l3_cell_stats of a real (sandboxed) engine. No cgroups exist\n' +
      '      for them (none are needed to read the maps), so they are named "#<id>".',
  );

  const sb = createSandbox('l3bench', []);
  let state: EngineState | undefined;
  const cleanup = () => {
    state?.close();
    state = undefined;
    sb.destroy();
  };
  const onSignal = () => {
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const up = sb.cli(['up', '--cgroup-root', sb.cgroupRoot, '--max-cells', String(CELLS + 1024)]);
    if (up.status !== 0) throw new Error(`up failed: ${up.stderr}`);
    state = EngineState.open(sb.pinDir);
    const results = [];
    for (const [i, profile] of PROFILES.entries()) {
      results.push({ profile, ...(await benchProfile(sb, state, profile, i === 0)) });
    }
    console.log(`\nsummary (median, ${CELLS} cells):`);
    for (const r of results) {
      const m = median(r.scrape);
      console.log(
        `  ${r.profile.name}\n    ${r.series} series: scrape ${m.toFixed(0)} ms in-process ` +
          `(${m < TARGET_MS ? 'under' : 'OVER'} the ${TARGET_MS} ms target), ` +
          `${median(r.cli).toFixed(0)} ms for the CLI end to end`,
      );
    }
    return 0;
  } finally {
    cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(
      `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
    );
    process.exitCode = 1;
  },
);
