/**
 * Prometheus exposition of the engine's counters with prom-client. The
 * registry holds ordinary prom-client metrics whose values are computed at
 * collect time from one snapshot of the maps, taken once per scrape (all
 * families of one scrape see the same numbers).
 *
 * The traffic families (one per L3_TRAFFIC counter of bpf/l3iso.h, eight
 * today) have one series per cell: 800k lines for
 * 100k busy cells. prom-client's formatter costs ~1.6 µs a series (measured
 * by bench/run.ts), which alone overruns the 1 s scrape budget there, so
 * those families are streamed by renderTraffic() after the registry's own
 * output; everything else (gauges, the sparse refusal/drop families, the
 * content type) stays prom-client's. Label sets are bounded: `cell` (one
 * per assigned cell, '' for sockets outside every cell) and `reason` (the
 * fixed tables of bpf/l3iso.h).
 *
 * Which series appear:
 *   - l3iso_cell_{rx,tx}_{packets,bytes}_total: always, for every cell;
 *   - l3iso_cell_uplink_*: when non-zero (only an attached uplink counts);
 *   - l3iso_cell_refusals_total / _drops_total: one series per non-zero
 *     (cell, reason) pair, so 100k quiet cells do not cost 1.5M zero lines.
 */
import { Counter, Gauge, Registry, type CounterConfiguration } from 'prom-client';
import { EngineState } from '../dataplane/state';
import {
  CellNamer,
  DROP_SLOTS,
  NamerCache,
  REFUSED_SLOTS,
  STAT_WORDS,
  W,
  dropLabel,
  readStatsTable,
  readSuppressed,
  refusalLabel,
  type StatsTable,
} from './counters';
import { TRAFFIC_COUNTERS } from '../codecs/layout';

/** What one scrape exposes. */
export interface MetricsSnapshot {
  table: StatsTable;
  /** `cell` label value of each row ('' for row id 0) */
  names: string[];
  /** assigned cells (entries of l3_cells) */
  cells: number;
  /** events the kernel rate limit suppressed, ever */
  suppressed: number;
  /** fill of the bounded maps (absent: not measured) */
  maps?: MapFill[];
}

export { PRESSURE_MAPS, type MapFill } from './pressure';
import { mapFills, type MapFill } from './pressure';

/** prom-client's registry formats `labels` plus `sharedLabels` (labels common
 * to many samples, memoised per object in a WeakMap). Samples that leave it
 * out get a fresh `{}` each, which costs a WeakMap entry per series: pass
 * the same empty object instead. */
const NO_SHARED_LABELS: Readonly<Record<string, string>> = Object.freeze({});

type Sample<L extends string> = {
  value: number;
  labels: Partial<Record<L, string | number>>;
  sharedLabels: Readonly<Record<string, string>>;
};
type CounterResult<L extends string> = Awaited<ReturnType<Counter<L>['get']>>;

/**
 * A prom-client Counter whose series come from a function evaluated at
 * collect time instead of from inc() calls.
 */
class SnapshotCounter<L extends string> extends Counter<L> {
  constructor(
    config: CounterConfiguration<L>,
    private readonly samples: () => Sample<L>[],
  ) {
    super(config);
  }

  override async get(): Promise<CounterResult<L>> {
    const base = await super.get();
    return { ...base, values: this.samples() };
  }
}

interface TrafficFamily {
  name: string;
  help: string;
  word: number;
  always: boolean;
}

/** One family per L3_TRAFFIC counter: l3iso_cell_<field>_total. */
const TRAFFIC: readonly TrafficFamily[] = TRAFFIC_COUNTERS.map((c) => ({
  name: `l3iso_cell_${c.field}_total`,
  help: c.help,
  word: W[c.name],
  always: c.always,
}));

/** A registry over snapshots from `collect`, one per scrape. */
export class MetricsExporter {
  readonly registry = new Registry();
  private snap: MetricsSnapshot | undefined;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly collect: () => MetricsSnapshot) {
    const registers = [this.registry];
    const current = () => this.current();

    // Single-series metrics: plain prom-client metrics set by collect().
    new Gauge({
      name: 'l3iso_cells',
      help: 'Cells (cgroups with assigned addresses) in this engine instance.',
      registers,
      collect() {
        this.set(current().cells);
      },
    });
    new Counter({
      name: 'l3iso_events_suppressed_total',
      help: 'Audit events not sent because a CPU exceeded the kernel rate limit (2000/s per CPU).',
      registers,
      collect() {
        this.reset();
        this.inc(current().suppressed);
      },
    });
    new Gauge<'map'>({
      name: 'l3iso_map_pressure',
      help: 'Entries of a bounded BPF map divided by its max_entries (1 = full: inserts fail).',
      labelNames: ['map'],
      registers,
      collect() {
        this.reset();
        for (const m of current().maps ?? [])
          this.set({ map: m.map }, m.maxEntries > 0 ? m.entries / m.maxEntries : 0);
      },
    });
    new SnapshotCounter<'cell' | 'reason'>(
      {
        name: 'l3iso_cell_refusals_total',
        help: 'Socket operations refused by the cell confinement, by reason (absent while zero).',
        labelNames: ['cell', 'reason'],
        registers,
      },
      () => this.slotSamples(W.refused, REFUSED_SLOTS, refusalLabel),
    );
    new SnapshotCounter<'cell' | 'reason'>(
      {
        name: 'l3iso_cell_drops_total',
        help: 'Packets dropped by the packet-layer checks, by reason (absent while zero).',
        labelNames: ['cell', 'reason'],
        registers,
      },
      () => this.slotSamples(W.dropped, DROP_SLOTS, dropLabel),
    );
  }

  /** Content-Type of `scrape()`'s text, from the registry. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * Takes a snapshot and renders the exposition. Concurrent calls run one
   * after the other (a scrape of a large engine is CPU-bound).
   */
  scrape(): Promise<string> {
    const run = this.chain.then(() => this.render());
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async render(): Promise<string> {
    const snap = this.collect();
    this.snap = snap;
    try {
      return (await this.registry.metrics()) + renderTraffic(snap);
    } finally {
      this.snap = undefined;
    }
  }

  private current(): MetricsSnapshot {
    if (!this.snap) throw new Error('l3iso metrics: collect outside a scrape');
    return this.snap;
  }

  private slotSamples(
    first: number,
    slots: number,
    label: (slot: number) => string,
  ): Sample<'cell' | 'reason'>[] {
    const { table, names } = this.current();
    const v = table.values;
    const out: Sample<'cell' | 'reason'>[] = [];
    for (let i = 0; i < table.length; i++) {
      const base = i * STAT_WORDS + first;
      for (let s = 0; s < slots; s++) {
        const value = v[base + s];
        if (value !== 0) {
          const labels = { cell: names[i]!, reason: label(s) };
          out.push({ labels, value, sharedLabels: NO_SHARED_LABELS });
        }
      }
    }
    return out;
  }
}

/** Text-format label value escaping: backslash, double quote, newline. */
export function escapeLabelValue(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/** HELP text escaping: backslash and newline. */
function escapeHelp(v: string): string {
  return v.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'));
}

/** The per-cell traffic families, one line per series (see the header). */
export function renderTraffic(snap: MetricsSnapshot): string {
  const { table } = snap;
  const v = table.values;
  const cells = snap.names.map((n) => `{cell="${escapeLabelValue(n)}"} `);
  let out = '';
  for (const f of TRAFFIC) {
    let body = '';
    for (let i = 0, at = f.word; i < table.length; i++, at += STAT_WORDS) {
      const value = v[at]!;
      if (f.always || value !== 0) body += f.name + cells[i] + value + '\n';
    }
    // HELP and TYPE even without samples, as prom-client does for its own.
    out += `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} counter\n` + body;
  }
  return out;
}

/** Reads everything a scrape needs from an open engine. */
export function snapshotOf(state: EngineState, namer: CellNamer): MetricsSnapshot {
  const table = readStatsTable(state.map('l3_cell_stats'), state.map('l3_cell_denials'));
  // Both counter maps were just read whole: their entry counts are known.
  const maps = mapFills(state, table.entries);
  return {
    table,
    names: namer.resolve(table.ids),
    // Cells are l3_cells entries: a counters row a crash left without its
    // cell (until gc) is not a cell.
    cells: maps.find((m) => m.map === 'l3_cells')?.entries ?? 0,
    suppressed: readSuppressed(state.map('l3_event_budget')),
    maps,
  };
}

/**
 * Snapshots of the engine at `pinDir`, opened anew for each scrape (so a
 * `down`/`up` cycle is picked up) with the cell names cached across scrapes.
 */
export function engineSnapshots(
  pinDir: string,
  opts: { rewalkMs?: number } = {},
): () => MetricsSnapshot {
  const namers = new NamerCache(opts);
  return () => {
    const state = EngineState.open(pinDir);
    try {
      return snapshotOf(state, namers.for(state.config().cgroupRoot));
    } finally {
      state.close();
    }
  };
}
