// Pure parts of stats / metrics / events: units, sorting, rates, decoding
// of batch-lookup buffers, the exposition of a synthetic snapshot, the cell
// name cache, event lines. No kernel state involved.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CellNamer,
  STAT_WORDS,
  W,
  decodeStatsTable,
  dropLabel,
  refusalLabel,
  type StatsTable,
} from '../../src/observe/counters';
import { MonotonicClock, formatEventLine, type EventView } from '../../src/observe/events';
import { MetricsExporter, type MetricsSnapshot } from '../../src/observe/metrics';
import { parseListen } from '../../src/observe/serve';
import {
  OUTSIDE_LABEL,
  emptyCounters,
  humanBytes,
  humanCount,
  ratesBetween,
  sortCells,
  statsHeaders,
  statsReport,
  statsRows,
  type CellCounters,
} from '../../src/observe/stats';
import {
  DROP_MAX,
  LAYOUT,
  REASON_MAX,
  emptyCellDenials,
  encodeCellDenials,
} from '../../src/codecs/layout';
import { parsePromText, sampleValue } from '../harness/promtext';

describe('human units', () => {
  it.each([
    [0, '0 B'],
    [1, '1 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [1536, '1.5 KiB'],
    [1024 * 1024 - 1, '1.0 MiB'],
    [5 * 1024 ** 2 + 300 * 1024, '5.3 MiB'],
    [3 * 1024 ** 3, '3.0 GiB'],
    [2 ** 53, '8.0 PiB'],
  ])('humanBytes(%d) = %s', (n, text) => expect(humanBytes(n)).toBe(text));

  it.each([
    [0, '0'],
    [999, '999'],
    [1000, '1.0k'],
    [12_345, '12.3k'],
    [999_999, '1.0M'],
    [4_200_000, '4.2M'],
    [7e9, '7.0G'],
  ])('humanCount(%d) = %s', (n, text) => expect(humanCount(n)).toBe(text));

  it('rates keep their fraction below one unit', () => {
    expect(humanBytes(0.5)).toBe('0.5 B');
    expect(humanCount(2.25)).toBe('2.3');
  });
});

function counters(cell: string, id: string, over: Partial<CellCounters> = {}): CellCounters {
  return { ...emptyCounters(cell, id), ...over };
}

describe('stats table', () => {
  it('sorts by total bytes (socket + uplink), largest first, ties by name', () => {
    const cells = [
      counters('small', '1', { rxBytes: 10 }),
      counters('b-tie', '2', { txBytes: 500 }),
      counters('big', '3', { rxBytes: 100, uplinkRxBytes: 10_000 }),
      counters('a-tie', '4', { rxBytes: 200, txBytes: 300 }),
      counters('idle', '5'),
    ];
    expect(sortCells(cells).map((c) => c.cell)).toEqual(['big', 'a-tie', 'b-tie', 'small', 'idle']);
  });

  it('rows: one per cell in order, then the outside-cells line; sums of drops and refusals', () => {
    const web = counters('web', '7', {
      rxPackets: 1500,
      rxBytes: 3 * 1024 * 1024,
      txPackets: 12,
      txBytes: 2048,
      refused: { 'bind-foreign': 4, 'sock-raw': 2 },
      dropped: { 'spoofed-source': 1 },
    });
    const rows = statsRows({ cells: [web], outside: counters('', '0', { rxPackets: 3 }) });
    expect(rows).toEqual([
      ['web', '1.5k / 3.0 MiB', '12 / 2.0 KiB', '0 / 0 B', '0 / 0 B', '1', '6'],
      [OUTSIDE_LABEL, '3 / 0 B', '0 / 0 B', '0 / 0 B', '0 / 0 B', '0', '0'],
    ]);
    expect(statsHeaders(false)).toHaveLength(rows[0]!.length);
  });

  it('watch rates: per second since the last draw; new cells have none', () => {
    const prev = {
      cells: [counters('a', '1', { rxBytes: 1000, txPackets: 10 })],
      outside: counters('', '0'),
    };
    const cur = {
      cells: [
        counters('a', '1', { rxBytes: 5000, txPackets: 30 }),
        counters('new', '2', { rxBytes: 99 }),
      ],
      outside: counters('', '0', { txBytes: 400 }),
    };
    const rates = ratesBetween(prev, cur, 2);
    expect(rates.get('1')).toEqual({ rxBps: 2000, txBps: 0, rxPps: 0, txPps: 10 });
    expect(rates.has('2')).toBe(false);
    expect(rates.get('0')?.txBps).toBe(200);
    const rows = statsRows(cur, rates);
    expect(rows[0]!.slice(-2)).toEqual(['2.0 KiB/s', '0 B/s']);
    expect(rows[1]!.slice(-2)).toEqual(['-', '-']);
    expect(statsHeaders(true)).toHaveLength(rows[0]!.length);
  });

  it('a counter that went down (cell re-created) counts from zero', () => {
    const prev = { cells: [counters('a', '1', { rxBytes: 9000 })], outside: counters('', '0') };
    const cur = { cells: [counters('a', '1', { rxBytes: 100 })], outside: counters('', '0') };
    expect(ratesBetween(prev, cur, 1).get('1')?.rxBps).toBe(100);
  });
});

/** A per-CPU l3_cell_stats value as the kernel returns it. */
function perCpuValue(
  cpus: number,
  fill: (cpu: number, put: (word: number, v: bigint) => void) => void,
) {
  const stride = Math.ceil(LAYOUT.l3_cell_stats.size / 8) * 8;
  const buf = Buffer.alloc(cpus * stride);
  for (let c = 0; c < cpus; c++)
    fill(c, (word, v) => buf.writeBigUInt64LE(v, c * stride + word * 8));
  return buf;
}

function key(id: bigint): Buffer {
  const k = Buffer.alloc(8);
  k.writeBigUInt64LE(id);
  return k;
}

describe('decodeStatsTable', () => {
  const cpus = 3;
  const v1 = perCpuValue(cpus, (c, put) => {
    put(W.rxBytes, (1n << 33n) + BigInt(c)); // high half set
    put(W.txPackets, 7n);
    put(W.uplinkTxBytes, 0xffffffffn);
  });
  /** An l3_cell_denials value: one shared copy, not per CPU. */
  const denials = (refused0: bigint, dropped5: bigint): Buffer => {
    const d = emptyCellDenials();
    d.refused[0] = refused0;
    d.dropped[5] = dropped5;
    return encodeCellDenials(d);
  };

  it('sums the traffic counters over CPUs, high and low u32 halves', () => {
    const t = decodeStatsTable([key(42n), key(0n)], [v1, perCpuValue(cpus, () => {})], cpus);
    expect(t.length).toBe(2);
    expect(t.ids).toEqual([42n, 0n]);
    const at = (row: number, w: number) => t.values[row * STAT_WORDS + w];
    expect(at(0, W.rxBytes)).toBe(3 * 2 ** 33 + 0 + 1 + 2);
    expect(at(0, W.txPackets)).toBe(21);
    expect(at(0, W.refused)).toBe(0);
    expect(at(0, W.uplinkTxBytes)).toBe(3 * 0xffffffff);
    expect(Array.from(t.values.subarray(STAT_WORDS)).every((v) => v === 0)).toBe(true);
    expect(t.entries).toEqual({ l3_cell_stats: 2, l3_cell_denials: 0 });
  });

  it('merges l3_cell_denials rows by id; an id only it has gets a row of its own', () => {
    const t = decodeStatsTable([key(42n), key(0n)], [v1, perCpuValue(cpus, () => {})], cpus, {
      keys: [key(0n), key(9n)],
      values: [denials(2n ** 40n, 3n), denials(1n, 0n)],
    });
    expect(t.ids).toEqual([42n, 0n, 9n]);
    const at = (row: number, w: number) => t.values[row * STAT_WORDS + w];
    expect(at(0, W.refused)).toBe(0);
    expect(at(1, W.refused)).toBe(2 ** 40);
    expect(at(1, W.dropped + 5)).toBe(3);
    expect(at(1, W.rxBytes)).toBe(0);
    expect(at(2, W.refused)).toBe(1);
    expect(t.entries).toEqual({ l3_cell_stats: 2, l3_cell_denials: 2 });
    expect(() =>
      decodeStatsTable([], [], cpus, { keys: [key(1n)], values: [Buffer.alloc(8)] }),
    ).toThrow(/malformed l3_cell_denials/);
  });

  it('reads values that are not 4-byte aligned the same way', () => {
    const backing = Buffer.alloc(v1.length + 1);
    v1.copy(backing, 1);
    const unaligned = backing.subarray(1);
    const a = decodeStatsTable([key(1n)], [v1], cpus);
    const b = decodeStatsTable([key(1n)], [unaligned], cpus);
    expect(Array.from(b.values)).toEqual(Array.from(a.values));
  });

  it('rejects a value of the wrong size (maps of another version)', () => {
    expect(() => decodeStatsTable([key(1n)], [Buffer.alloc(100)], cpus)).toThrow(
      /malformed l3_cell_stats/,
    );
  });
});

function snapshotOf(
  rows: { id: bigint; name: string; set?: Partial<Record<number, number>> }[],
): MetricsSnapshot {
  const values = new Float64Array(rows.length * STAT_WORDS);
  rows.forEach((r, i) => {
    for (const [w, v] of Object.entries(r.set ?? {})) values[i * STAT_WORDS + Number(w)] = v!;
  });
  const table: StatsTable = { length: rows.length, ids: rows.map((r) => r.id), values };
  return {
    table,
    names: rows.map((r) => r.name),
    cells: rows.filter((r) => r.id !== 0n).length,
    suppressed: 17,
  };
}

describe('MetricsExporter', () => {
  const snap = snapshotOf([
    { id: 0n, name: '', set: { [W.rxPackets]: 5, [W.refused + 2]: 1 } },
    {
      id: 10n,
      name: 'web',
      set: { [W.rxBytes]: 2 ** 40, [W.txPackets]: 3, [W.refused + 0]: 6, [W.dropped + 1]: 2 },
    },
    { id: 11n, name: 'odd "name"\\x', set: { [W.uplinkRxBytes]: 1500, [W.refused + 12]: 1 } },
    { id: 12n, name: '#12', set: {} },
  ]);

  it('renders valid exposition with HELP and TYPE for every family', async () => {
    const exporter = new MetricsExporter(() => snap);
    const text = await exporter.scrape();
    const fams = parsePromText(text);
    for (const f of fams.values()) {
      expect(f.help, f.name).toBeTruthy();
      expect(f.type, f.name).toBeTruthy();
      if (f.type === 'counter') expect(f.name).toMatch(/_total$/);
    }
    expect([...fams.keys()].sort()).toEqual(
      [
        'l3iso_cells',
        'l3iso_events_suppressed_total',
        'l3iso_cell_rx_packets_total',
        'l3iso_cell_rx_bytes_total',
        'l3iso_cell_tx_packets_total',
        'l3iso_cell_tx_bytes_total',
        'l3iso_cell_uplink_rx_packets_total',
        'l3iso_cell_uplink_rx_bytes_total',
        'l3iso_cell_uplink_tx_packets_total',
        'l3iso_cell_uplink_tx_bytes_total',
        'l3iso_cell_refusals_total',
        'l3iso_cell_drops_total',
        'l3iso_map_pressure',
      ].sort(),
    );
    expect(fams.get('l3iso_cells')!.type).toBe('gauge');
    expect(exporter.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  });

  it('always has the rx/tx series of every cell; other series only when non-zero', async () => {
    const fams = parsePromText(await new MetricsExporter(() => snap).scrape());
    for (const name of ['rx_packets', 'rx_bytes', 'tx_packets', 'tx_bytes']) {
      const cells = fams.get(`l3iso_cell_${name}_total`)!.samples.map((s) => s.labels.cell);
      expect(cells.sort()).toEqual(['', '#12', 'odd "name"\\x', 'web']);
    }
    expect(fams.get('l3iso_cell_uplink_rx_bytes_total')!.samples).toEqual([
      { name: 'l3iso_cell_uplink_rx_bytes_total', labels: { cell: 'odd "name"\\x' }, value: 1500 },
    ]);
    expect(fams.get('l3iso_cell_uplink_tx_bytes_total')!.samples).toEqual([]);
    expect(sampleValue(fams, 'l3iso_cell_rx_bytes_total', { cell: 'web' })).toBe(2 ** 40);
    expect(
      sampleValue(fams, 'l3iso_cell_refusals_total', { cell: 'web', reason: 'bind-foreign' }),
    ).toBe(6);
    expect(
      sampleValue(fams, 'l3iso_cell_refusals_total', { cell: '', reason: 'bind-cell-addr' }),
    ).toBe(1);
    expect(
      sampleValue(fams, 'l3iso_cell_refusals_total', {
        cell: 'odd "name"\\x',
        reason: 'reason-12',
      }),
    ).toBe(1);
    expect(
      sampleValue(fams, 'l3iso_cell_drops_total', { cell: 'web', reason: 'foreign-destination' }),
    ).toBe(2);
    expect(fams.get('l3iso_cell_refusals_total')!.samples).toHaveLength(3);
    expect(sampleValue(fams, 'l3iso_cells')).toBe(3);
    expect(sampleValue(fams, 'l3iso_events_suppressed_total')).toBe(17);
  });

  it('takes one snapshot per scrape and serialises concurrent scrapes', async () => {
    let calls = 0;
    let active = 0;
    let maxActive = 0;
    const exporter = new MetricsExporter(() => {
      calls++;
      active++;
      maxActive = Math.max(maxActive, active);
      queueMicrotask(() => active--);
      return snap;
    });
    const texts = await Promise.all([exporter.scrape(), exporter.scrape(), exporter.scrape()]);
    expect(calls).toBe(3);
    expect(maxActive).toBe(1);
    expect(new Set(texts).size).toBe(1);
  });

  it('a failing collect fails that scrape only', async () => {
    let fail = true;
    const exporter = new MetricsExporter(() => {
      if (fail) throw new Error('maps gone');
      return snap;
    });
    await expect(exporter.scrape()).rejects.toThrow('maps gone');
    fail = false;
    expect(await exporter.scrape()).toContain('l3iso_cells 3');
  });

  it('reason labels of unknown slots stay bounded', () => {
    expect(refusalLabel(0)).toBe('bind-foreign');
    expect(refusalLabel(15)).toBe('reason-15');
    expect(dropLabel(5)).toBe('spoofed-source-wire');
    expect(dropLabel(7)).toBe('drop-7');
  });
});

describe('statsReport', () => {
  it('splits out key 0 and names cells; refusals list every known reason', () => {
    const s = snapshotOf([
      { id: 5n, name: 'a', set: { [W.rxBytes]: 10 } },
      { id: 0n, name: '', set: { [W.txBytes]: 4 } },
      { id: 6n, name: 'b', set: { [W.rxBytes]: 20, [W.refused + 15]: 1 } },
    ]);
    const r = statsReport(s.table, s.names);
    expect(r.cells.map((c) => [c.cell, c.id])).toEqual([
      ['b', '6'],
      ['a', '5'],
    ]);
    expect(r.outside).toMatchObject({ id: '0', txBytes: 4 });
    expect(Object.keys(r.cells[1]!.refused)).toHaveLength(REASON_MAX);
    expect(r.cells[0]!.refused['reason-15']).toBe(1);
    expect(Object.keys(r.cells[0]!.dropped)).toHaveLength(DROP_MAX);
  });
});

describe('CellNamer', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'l3namer-'));
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
  const ino = (p: string) => fs.statSync(p, { bigint: true }).ino;

  it('walks once, names by path, #<id> for unknown ids, re-walks only when due', () => {
    fs.mkdirSync(path.join(root, 'web'));
    fs.mkdirSync(path.join(root, 'db', 'replica'), { recursive: true });
    let now = 0;
    const namer = new CellNamer(root, { rewalkMs: 1000, maxAgeMs: 60_000, now: () => now });
    const web = ino(path.join(root, 'web'));
    const replica = ino(path.join(root, 'db', 'replica'));
    expect(namer.resolve([web, replica, 0n, 999_999_999n])).toEqual([
      'web',
      'db/replica',
      '',
      '#999999999',
    ]);
    expect(namer.walkCount).toBe(1);

    // A new cgroup appears: not seen before the re-walk interval is over.
    fs.mkdirSync(path.join(root, 'api'));
    const api = ino(path.join(root, 'api'));
    now = 500;
    expect(namer.resolve([api])).toEqual([`#${api}`]);
    expect(namer.walkCount).toBe(1);
    now = 1600;
    // Ids already known to have no cgroup do not trigger walks...
    expect(namer.resolve([999_999_999n, web])).toEqual(['#999999999', 'web']);
    expect(namer.walkCount).toBe(1);
    // ...but `api` was only named #id for lack of a walk; once due, it is found.
    const fresh = new CellNamer(root, { rewalkMs: 1000, now: () => now });
    expect(fresh.resolve([api])).toEqual(['api']);
    now = 61_000;
    expect(namer.resolve([api])).toEqual(['api']);
    expect(namer.walkCount).toBe(2);
  });
});

describe('events', () => {
  const base: EventView = {
    time: '2026-01-02T03:04:05.678Z',
    monotonicNs: '123',
    cell: 'web',
    cellId: '42',
    kind: 'refused',
    reason: 'bind-foreign',
    address: '192.0.2.9',
    port: 8080,
    pid: 4242,
    comm: 'python3',
  };

  it('formats one line per event', () => {
    expect(formatEventLine(base)).toBe(
      '2026-01-02T03:04:05.678Z web refused bind-foreign 192.0.2.9:8080 pid=4242 comm=python3',
    );
    expect(
      formatEventLine({
        ...base,
        kind: 'dropped',
        reason: 'spoofed-source',
        address: '2001:db8::9',
        port: 0,
        pid: 0,
        comm: '',
      }),
    ).toBe('2026-01-02T03:04:05.678Z web dropped spoofed-source [2001:db8::9]:0 pid=- comm=-');
    expect(formatEventLine({ ...base, cell: '', address: null, reason: 'sock-raw' })).toBe(
      '2026-01-02T03:04:05.678Z - refused sock-raw - pid=4242 comm=python3',
    );
    expect(formatEventLine({ ...base, cell: 'a b' })).toContain(' "a b" refused ');
  });

  it('maps CLOCK_MONOTONIC stamps to wall-clock time', () => {
    const clock = new MonotonicClock(1_000_000_000_000n);
    expect(clock.wallMs(500_000_000n)).toBe(1_000_500);
    expect(clock.iso(0n)).toBe(new Date(1_000_000).toISOString());
    const measured = new MonotonicClock();
    const nowMono = process.hrtime.bigint();
    expect(Math.abs(measured.wallMs(nowMono) - Date.now())).toBeLessThan(50);
  });
});

describe('parseListen', () => {
  it.each([
    ['127.0.0.1:9469', { host: '127.0.0.1', port: 9469 }],
    ['[::1]:80', { host: '::1', port: 80 }],
    [':9469', { host: '::', port: 9469 }],
    ['localhost:0', { host: 'localhost', port: 0 }],
  ])('%s', (text, want) => expect(parseListen(text)).toEqual(want));

  it.each(['9469', '127.0.0.1', '::1:80', '1.2.3.4:99999', 'a:b'])('rejects %s', (text) =>
    expect(() => parseListen(text)).toThrow(/ADDR:PORT/),
  );
});
