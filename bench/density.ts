/**
 * `node dist/bench/density.js [--cells N] [--json]`: kernel memory per
 * assigned cell. In a sandbox (own netns, cgroup subtree, pin dir), the
 * engine is brought up for N cells, the memory of every pinned map is read
 * (bpf_map_info's memlock, as /proc/<pid>/fdinfo reports it: on Linux 6.4+
 * hash maps without preallocation report what they hold), then N cells with
 * two addresses each (IPv4 + IPv6) are made by one `apply` and held while
 * the maps are read again. The difference over N is the per-cell figure;
 * the cgroup directories themselves are not counted (a netns container
 * has one too). Writes bench/density.json; reports, never asserts.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CELL_PREFIXES, desiredCells, numberArg } from './cells';
import { createSandbox } from '../src/demo/sandbox';
import { Engine } from '../src/engine/engine';
import { packageRoot } from '../src/dataplane/paths';
import { SHARED_MAPS } from '../src/dataplane/programs';
import { BpfMap } from '../loader';

/** memlock of each pinned map, from the fdinfo of a fresh fd. */
function mapMemory(pinDir: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of SHARED_MAPS) {
    const m = BpfMap.openPinned(path.join(pinDir, 'maps', name));
    try {
      const info = fs.readFileSync(`/proc/self/fdinfo/${m.fd}`, 'utf8');
      out[name] = Number(/^memlock:\s+(\d+)/m.exec(info)?.[1] ?? NaN);
    } finally {
      m.close();
    }
  }
  return out;
}

function withEngine<T>(pinDir: string, fn: (e: Engine) => T): T {
  using engine = Engine.open(pinDir, { write: true });
  return fn(engine);
}

function main(): void {
  const n = numberArg('--cells', 100_000);
  const sb = createSandbox('l3dn', []);
  try {
    Engine.up({
      pinDir: sb.pinDir,
      cgroupRoot: sb.cgroupRoot,
      netns: sb.netnsPath,
      maxCells: n + 1024,
      managedPrefixes: CELL_PREFIXES,
    });
    for (let i = 0; i < n; i++) fs.mkdirSync(path.join(sb.cgroupRoot, `c${i}`));
    const empty = mapMemory(sb.pinDir);
    const made = withEngine(sb.pinDir, (e) => e.apply(desiredCells(n)));
    if (made.summary.create !== n) throw new Error(`apply made ${made.summary.create} cells`);
    const full = mapMemory(sb.pinDir);
    const perMap: Record<string, number> = {};
    for (const name of SHARED_MAPS) {
      const d = full[name]! - empty[name]!;
      if (d !== 0) perMap[name] = Math.round((d / n) * 10) / 10;
    }
    const perCell = Object.values(perMap).reduce((a, b) => a + b, 0);
    const f = {
      cells: n,
      addressesPerCell: 2,
      cpus: os.cpus().length,
      kernel: os.release(),
      bytesPerCell: Math.round(perCell),
      bytesPerCellByMap: perMap,
      emptyMapsBytes: Object.values(empty).reduce((a, b) => a + b, 0),
      /** what the maps hold before any cell (hash buckets sized by
       * --max-cells, the event ring, ...), shared out over the N cells */
      fixedBytesPerCell: 0,
    };
    f.fixedBytesPerCell = Math.round(f.emptyMapsBytes / n);
    fs.writeFileSync(
      path.join(packageRoot(), 'bench', 'density.json'),
      JSON.stringify(f, null, 2) + '\n',
    );
    if (process.argv.includes('--json')) process.stdout.write(JSON.stringify(f) + '\n');
    else
      process.stdout.write(
        [
          `kernel memory per cell, ${n} cells x 2 addresses held (${f.cpus} CPUs, kernel ${f.kernel})`,
          `  total   ${f.bytesPerCell} B per cell (maps only; the cgroup is not counted)`,
          `  + ${f.fixedBytesPerCell} B per cell of what the empty maps hold for --max-cells ${n + 1024}`,
          ...Object.entries(perMap).map(([k, v]) => `  ${k.padEnd(16)} ${v} B`),
          '',
        ].join('\n'),
      );
  } finally {
    sb.destroy();
  }
}

main();
