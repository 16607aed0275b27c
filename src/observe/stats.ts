/**
 * `stats`: per-cell traffic, drop and refusal counters from one batch read
 * of l3_cell_stats and one of l3_cell_denials, as rows for a table or a JSON
 * document. Columns and fields follow the counter tables of bpf/l3iso.h. Formatting
 * helpers (human units, sorting, rates) are pure so they can be unit tested.
 */
import { EngineState } from '../dataplane/state';
import {
  DROP_SLOTS,
  NamerCache,
  REFUSED_SLOTS,
  STAT_WORDS,
  TRAFFIC_FIELDS,
  W,
  dropLabel,
  readStatsTable,
  refusalLabel,
  type StatsTable,
} from './counters';
import { DROP_MAX, REASON_MAX, TRAFFIC_GROUPS, type TrafficName } from '../codecs/layout';

/** The L3_TRAFFIC counters of a cell, by camelCase name (rxPackets ...). */
export type TrafficCounters = Record<TrafficName, number>;

export type CellCounters = TrafficCounters & {
  /** cell name (cgroup path relative to the root, `#<id>` without a cgroup) */
  cell: string;
  /** cgroup id, as a decimal string (u64) */
  id: string;
  /** refusals by reason (every known reason, zeros included, like `show`) */
  refused: Record<string, number>;
  /** packet-layer drops by reason (every known reason) */
  dropped: Record<string, number>;
};

/** The traffic counters of a row, by name. */
export function trafficOf(c: TrafficCounters): TrafficCounters {
  return Object.fromEntries(TRAFFIC_FIELDS.map((f) => [f, c[f]])) as TrafficCounters;
}

export interface StatsReport {
  /** sorted by total bytes, largest first */
  cells: CellCounters[];
  /** key 0: sockets and packets outside every cell */
  outside: CellCounters;
}

function bySlot(
  table: StatsTable,
  row: number,
  first: number,
  slots: number,
  known: number,
  label: (slot: number) => string,
): Record<string, number> {
  const out: Record<string, number> = {};
  const base = row * STAT_WORDS + first;
  for (let s = 0; s < slots; s++) {
    const v = table.values[base + s];
    // Slots past the known reasons appear only when a newer BPF object
    // counts something this build has no name for.
    if (s < known || v !== 0) out[label(s)] = v;
  }
  return out;
}

export function countersOf(table: StatsTable, row: number, name: string): CellCounters {
  const v = table.values;
  const b = row * STAT_WORDS;
  const traffic = Object.fromEntries(
    TRAFFIC_FIELDS.map((f) => [f, v[b + W[f]]!]),
  ) as TrafficCounters;
  return {
    cell: name,
    id: table.ids[row]!.toString(),
    ...traffic,
    refused: bySlot(table, row, W.refused, REFUSED_SLOTS, REASON_MAX, refusalLabel),
    dropped: bySlot(table, row, W.dropped, DROP_SLOTS, DROP_MAX, dropLabel),
  };
}

export function emptyCounters(cell: string, id: string): CellCounters {
  const empty = { length: 1, ids: [0n], values: new Float64Array(STAT_WORDS) };
  return { ...countersOf(empty, 0, cell), id };
}

/** Every bytes counter (socket-level plus uplink): the sort key of the table. */
export function totalBytes(c: CellCounters): number {
  let n = 0;
  for (const g of TRAFFIC_GROUPS) for (const f of g.fields) if (f.bytes) n += c[f.name];
  return n;
}

export function sum(r: Record<string, number>): number {
  let n = 0;
  for (const v of Object.values(r)) n += v;
  return n;
}

/** Largest total first; ties by name, so the order is stable. */
export function sortCells(cells: CellCounters[]): CellCounters[] {
  return cells.sort((a, b) => totalBytes(b) - totalBytes(a) || compareNames(a.cell, b.cell));
}

function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function statsReport(table: StatsTable, names: readonly string[]): StatsReport {
  const cells: CellCounters[] = [];
  let outside: CellCounters | undefined;
  for (let i = 0; i < table.length; i++) {
    if (table.ids[i] === 0n) outside = countersOf(table, i, '');
    else cells.push(countersOf(table, i, names[i]!));
  }
  return { cells: sortCells(cells), outside: outside ?? emptyCounters('', '0') };
}

/** Reads the engine's counters once. Pass `namers` to reuse cell names
 * across calls (stats --watch). */
export function readStats(pinDir: string, namers: NamerCache = new NamerCache()): StatsReport {
  const state = EngineState.open(pinDir);
  try {
    const namer = namers.for(state.config().cgroupRoot);
    const table = readStatsTable(state.map('l3_cell_stats'), state.map('l3_cell_denials'));
    return statsReport(table, namer.resolve(table.ids));
  } finally {
    state.close();
  }
}

// ---- human units ---------------------------------------------------------

function scaled(n: number, base: number, units: readonly string[], sep: string): string {
  if (!Number.isFinite(n)) return String(n);
  const neg = n < 0;
  let v = Math.abs(n);
  if (v < base) {
    const s = Number.isInteger(v) ? String(v) : v.toFixed(1);
    return `${neg ? '-' : ''}${s}${units[0] ? `${sep}${units[0]}` : ''}`;
  }
  let u = 0;
  while (v >= base && u < units.length - 1) {
    v /= base;
    u++;
  }
  // 1023.96 KiB would print as "1024.0 KiB": move to the next unit.
  if (Number(v.toFixed(1)) >= base && u < units.length - 1) {
    v /= base;
    u++;
  }
  return `${neg ? '-' : ''}${v.toFixed(1)}${sep}${units[u]}`;
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'] as const;
const COUNT_UNITS = ['', 'k', 'M', 'G', 'T', 'P'] as const;

/** 0 B, 999 B, 1.0 KiB, 12.3 MiB ... (binary multiples) */
export function humanBytes(n: number): string {
  return scaled(n, 1024, BYTE_UNITS, ' ');
}

/** 0, 999, 1.0k, 12.3M ... (decimal multiples) */
export function humanCount(n: number): string {
  return scaled(n, 1000, COUNT_UNITS, '');
}

/** "12.3k / 4.5 MiB" */
export function humanTraffic(packets: number, bytes: number): string {
  return `${humanCount(packets)} / ${humanBytes(bytes)}`;
}

// ---- rates (stats --watch) ---------------------------------------------

export interface Rates {
  /** socket-level bytes per second */
  rxBps: number;
  txBps: number;
  /** socket-level packets per second */
  rxPps: number;
  txPps: number;
}

/** Per-second rates of each cell between two reports `seconds` apart.
 * Cells absent from `prev` (new) get no rate; a counter that went down
 * (cell released and re-created) counts from zero. */
export function ratesBetween(
  prev: StatsReport,
  cur: StatsReport,
  seconds: number,
): Map<string, Rates> {
  const before = new Map(prev.cells.map((c) => [c.id, c]));
  before.set('0', prev.outside);
  const out = new Map<string, Rates>();
  const rate = (now: number, then: number) => (now >= then ? now - then : now) / seconds;
  for (const c of [...cur.cells, cur.outside]) {
    const p = before.get(c.id);
    if (!p || seconds <= 0) continue;
    out.set(c.id, {
      rxBps: rate(c.rxBytes, p.rxBytes),
      txBps: rate(c.txBytes, p.txBytes),
      rxPps: rate(c.rxPackets, p.rxPackets),
      txPps: rate(c.txPackets, p.txPackets),
    });
  }
  return out;
}

// ---- table rows -----------------------------------------------------------

export const OUTSIDE_LABEL = '(outside cells)';

export function statsHeaders(withRates: boolean): string[] {
  return [
    'CELL',
    ...TRAFFIC_GROUPS.map((g) =>
      `${g.group.toUpperCase()} ${g.fields.length > 1 ? 'PKTS/BYTES' : ''}`.trim(),
    ),
    'DROPS',
    'REFUSED',
    ...(withRates ? ['RX/s', 'TX/s'] : []),
  ];
}

function row(c: CellCounters, label: string, rates?: Map<string, Rates>): string[] {
  const cells = [
    label,
    ...TRAFFIC_GROUPS.map((g) =>
      g.fields.map((f) => (f.bytes ? humanBytes(c[f.name]) : humanCount(c[f.name]))).join(' / '),
    ),
    humanCount(sum(c.dropped)),
    humanCount(sum(c.refused)),
  ];
  if (rates) {
    const r = rates.get(c.id);
    cells.push(r ? `${humanBytes(r.rxBps)}/s` : '-', r ? `${humanBytes(r.txBps)}/s` : '-');
  }
  return cells;
}

/** Table rows: cells in report order, then the outside-cells line. */
export function statsRows(report: StatsReport, rates?: Map<string, Rates>): string[][] {
  const rows = report.cells.map((c) => row(c, c.cell, rates));
  rows.push(row(report.outside, OUTSIDE_LABEL, rates));
  return rows;
}
