/**
 * One benchmark variant in a fresh process (so one variant's heap never
 * slows the GC of the next): `node dist/bench/child.js PINDIR VARIANT RUNS`.
 * Prints one JSON line: {"variant", "runs": [ms...], ...}.
 */
import { Counter, Registry } from 'prom-client';
import type { BpfMap } from '../loader';
import {
  NamerCache,
  STAT_WORDS,
  W,
  decodeStatsTable,
  dropLabel,
  readStatsTable,
  readSuppressed,
  refusalLabel,
  type StatsTable,
} from '../src/observe/counters';
import {
  MetricsExporter,
  engineSnapshots,
  snapshotOf,
  type MetricsSnapshot,
} from '../src/observe/metrics';
import { EngineState } from '../src/dataplane/state';
import { TRAFFIC_COUNTERS, type CellTotals } from '../src/codecs/layout';

function ms(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** Alternative read: one bpf_map_get_next_key plus one lookup per cell. */
function readPerKey(map: BpfMap): StatsTable {
  const keys: Buffer[] = [];
  const values: Buffer[] = [];
  for (const k of map.keys()) {
    const v = map.lookup(k);
    if (!v) continue;
    keys.push(k);
    values.push(v);
  }
  return decodeStatsTable(keys, values);
}

/** The exact bigint codec's result, as a table for the exposition. */
function tableFromBigint(all: Map<bigint, CellTotals>): StatsTable {
  const ids = [...all.keys()];
  const values = new Float64Array(ids.length * STAT_WORDS);
  ids.forEach((id, i) => {
    const s = all.get(id)!;
    const b = i * STAT_WORDS;
    s.refused.forEach((v, r) => (values[b + W.refused + r] = Number(v)));
    s.dropped.forEach((v, d) => (values[b + W.dropped + d] = Number(v)));
    for (const c of TRAFFIC_COUNTERS) values[b + W[c.name]] = Number(s[c.name]);
  });
  return { length: ids.length, ids, values };
}

/**
 * Alternative exposition, the textbook prom-client way: a Counter per
 * family whose collect() calls reset() and inc(labels, value) per series
 * (the same series as the exporter).
 */
function incRegistry(current: () => MetricsSnapshot): Registry {
  const registry = new Registry();
  const families = TRAFFIC_COUNTERS.map(
    (c) => [`l3iso_cell_${c.field}_total`, W[c.name], c.always] as const,
  );
  for (const [name, word, always] of families) {
    new Counter({
      name,
      help: name,
      labelNames: ['cell'],
      registers: [registry],
      collect() {
        const { table, names } = current();
        this.reset();
        for (let i = 0; i < table.length; i++) {
          const v = table.values[i * STAT_WORDS + word];
          if (always || v !== 0) this.inc({ cell: names[i]! }, v);
        }
      },
    });
  }
  const slots = (name: string, first: number, n: number, label: (s: number) => string) =>
    new Counter({
      name,
      help: name,
      labelNames: ['cell', 'reason'],
      registers: [registry],
      collect() {
        const { table, names } = current();
        this.reset();
        for (let i = 0; i < table.length; i++)
          for (let s = 0; s < n; s++) {
            const v = table.values[i * STAT_WORDS + first + s];
            if (v !== 0) this.inc({ cell: names[i]!, reason: label(s) }, v);
          }
      },
    });
  slots('l3iso_cell_refusals_total', W.refused, 16, refusalLabel);
  slots('l3iso_cell_drops_total', W.dropped, 8, dropLabel);
  return registry;
}

/** The Number fast path must agree with the exact bigint codec. */
function checkAgainstBigint(state: EngineState, table: StatsTable): number {
  const exact = state.allStats();
  if (exact.size !== table.length) throw new Error(`rows: ${table.length} != ${exact.size}`);
  let checked = 0;
  for (let i = 0; i < table.length; i++) {
    const s = exact.get(table.ids[i]!)!;
    const b = i * STAT_WORDS;
    const pairs: [number, bigint][] = [
      [table.values[b + W.rxPackets], s.rxPackets],
      [table.values[b + W.rxBytes], s.rxBytes],
      [table.values[b + W.txBytes], s.txBytes],
      [table.values[b + W.uplinkTxBytes], s.uplinkTxBytes],
      [table.values[b + W.refused], s.refused[0]!],
      [table.values[b + W.dropped], s.dropped[0]!],
    ];
    for (const [fast, big] of pairs) {
      if (BigInt(fast) !== big) throw new Error(`row ${i}: fast ${fast} != exact ${big}`);
      checked++;
    }
  }
  return checked;
}

async function main(): Promise<void> {
  const [pinDir, variant, runsText] = process.argv.slice(2);
  if (!pinDir || !variant) throw new Error('usage: child.js PINDIR VARIANT RUNS');
  const runs = Number(runsText ?? 5);
  const state = EngineState.open(pinDir);
  const namers = new NamerCache();
  const namer = namers.for(state.config().cgroupRoot);
  namer.resolve([]); // walks the cgroup tree once, outside the timings
  const snapshot = (): MetricsSnapshot => snapshotOf(state, namer);
  const out: Record<string, unknown> = { variant };

  let body: () => unknown;
  switch (variant) {
    case 'check': {
      const table = readStatsTable(state.map('l3_cell_stats'), state.map('l3_cell_denials'));
      out.checked = checkAgainstBigint(state, table);
      const text = await new MetricsExporter(snapshot).scrape();
      out.series = text.split('\n').filter((l) => l && !l.startsWith('#')).length;
      out.mib = text.length / 1048576;
      out.suppressed = readSuppressed(state.map('l3_event_budget'));
      body = () => undefined;
      break;
    }
    case 'read-ours':
      body = () => readStatsTable(state.map('l3_cell_stats'), state.map('l3_cell_denials'));
      break;
    case 'read-bigint':
      body = () => state.allStats();
      break;
    case 'read-perkey':
      body = () => readPerKey(state.map('l3_cell_stats'));
      break;
    case 'expo-ours': {
      const snap = snapshot();
      const exporter = new MetricsExporter(() => snap);
      body = () => exporter.scrape();
      break;
    }
    case 'expo-inc': {
      const snap = snapshot();
      const registry = incRegistry(() => snap);
      body = () => registry.metrics();
      break;
    }
    case 'scrape-ours': {
      // What `serve` does per scrape: open the pinned maps, one batch read,
      // names from the cache, exposition. The untimed warm-up scrape walks
      // the cgroup tree once.
      const exporter = new MetricsExporter(engineSnapshots(pinDir));
      const t = process.hrtime.bigint();
      await exporter.scrape();
      out.firstScrape = ms(t);
      body = () => exporter.scrape();
      break;
    }
    case 'scrape-straight': {
      let snap: MetricsSnapshot | undefined;
      const registry = incRegistry(() => snap!);
      body = async () => {
        const s = EngineState.open(pinDir);
        try {
          const table = tableFromBigint(s.allStats());
          snap = { table, names: namer.resolve(table.ids), cells: table.length - 1, suppressed: 0 };
        } finally {
          s.close();
        }
        await registry.metrics();
      };
      break;
    }
    case 'breakdown': {
      // The stages of one scrape, timed separately.
      const stages: Record<string, number[]> = { open: [], read: [], names: [], exposition: [] };
      body = async () => {
        let t = process.hrtime.bigint();
        const s = EngineState.open(pinDir);
        stages.open!.push(ms(t));
        try {
          t = process.hrtime.bigint();
          const table = readStatsTable(s.map('l3_cell_stats'), s.map('l3_cell_denials'));
          stages.read!.push(ms(t));
          t = process.hrtime.bigint();
          const names = namer.resolve(table.ids);
          stages.names!.push(ms(t));
          const snap = { table, names, cells: table.length - 1, suppressed: 0 };
          t = process.hrtime.bigint();
          await new MetricsExporter(() => snap).scrape();
          stages.exposition!.push(ms(t));
        } finally {
          s.close();
        }
      };
      out.stages = stages;
      break;
    }
    default:
      throw new Error(`unknown variant ${variant}`);
  }
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    await body();
    times.push(ms(t));
  }
  out.runs = times;
  state.close();
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
