// DESIGN.md: "Metrics: per-cell counters read from per-CPU maps with batch
// lookups, exposed as Prometheus text (`metrics`) and over HTTP (`serve`)."
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BpfMap } from '../../loader';
import { PRESSURE_MAPS } from '../../src/observe/metrics';
import { pinLayout } from '../../src/dataplane/paths';
import { parsePromText, sampleValue, type PromFamily } from '../harness/promtext';
import { CLI, createSandbox, V4, V6, type BgProc, type Op, type Sandbox } from '../harness/sandbox';

const REFUSED_BINDS = 5;

describe('stats, metrics and serve', () => {
  let sb: Sandbox;

  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('x');
    sb.cg('srv');
    sb.cg('idle');
    await sb.assign('x', V4(1), V6(1));
    await sb.assign('srv', V4(2));
    await sb.assign('idle', V4(3));

    // Traffic: x fetches from srv twice (TCP both ways, counted at both cells).
    const server = sb.spawnProbe('srv', [
      { op: 'socket', fam: 4 },
      { op: 'bind', addr: V4(2), port: 8080 },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'hello', count: 2 },
    ]);
    await server.ready();
    const fetches = await sb.probe('x', [
      { op: 'fetch', fam: 4, addr: V4(2), port: 8080 },
      { op: 'fetch', fam: 4, addr: V4(2), port: 8080 },
    ]);
    expect(fetches.ops.every((o) => o.ok)).toBe(true);

    // N refused binds in x, one refused raw socket.
    const binds: Op[] = [];
    for (let i = 0; i < REFUSED_BINDS; i++)
      binds.push({ op: 'bind_new', fam: 4, addr: V4(9), port: 9000 + i });
    binds.push({ op: 'socket', fam: 4, type: 'raw' });
    const r = await sb.probe('x', binds, { keepGoing: true });
    expect(r.ops.filter((o) => o.errno === 'EADDRNOTAVAIL')).toHaveLength(REFUSED_BINDS);
    expect(r.ops[REFUSED_BINDS]).toMatchObject({ ok: false, errno: 'EPERM' });
    await server.kill();
    // Let the last FIN/ACKs land before anything compares counters.
    await new Promise((res) => setTimeout(res, 300));
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  describe('metrics', () => {
    let text: string;
    let fams: Map<string, PromFamily>;
    beforeAll(async () => {
      text = (await sb.cliOk(['metrics'])).stdout;
      fams = parsePromText(text);
    });

    it('is valid Prometheus text: HELP and TYPE before the samples of every family', () => {
      expect(fams.size).toBeGreaterThanOrEqual(12);
      for (const f of fams.values()) {
        expect(f.help, `HELP of ${f.name}`).toMatch(/\S/);
        expect(['counter', 'gauge']).toContain(f.type);
        expect(f.name).toMatch(/^l3iso_/);
        if (f.type === 'counter') expect(f.name).toMatch(/_total$/);
      }
      const lines = text.split('\n');
      const helpAt = lines.indexOf(
        lines.find((l) => l.startsWith('# HELP l3iso_cell_refusals_total '))!,
      );
      const typeAt = lines.indexOf('# TYPE l3iso_cell_refusals_total counter');
      const firstSample = lines.findIndex((l) => l.startsWith('l3iso_cell_refusals_total{'));
      expect(helpAt).toBeGreaterThanOrEqual(0);
      expect(typeAt).toBe(helpAt + 1);
      expect(firstSample).toBeGreaterThan(typeAt);
    });

    it(`a cell with ${REFUSED_BINDS} refused binds shows bind-foreign ${REFUSED_BINDS}`, () => {
      expect(text).toContain(
        `l3iso_cell_refusals_total{cell="x",reason="bind-foreign"} ${REFUSED_BINDS}\n`,
      );
      expect(
        sampleValue(fams, 'l3iso_cell_refusals_total', { cell: 'x', reason: 'sock-raw' }),
      ).toBe(1);
      // Only non-zero (cell, reason) pairs, with exactly the labels cell and reason.
      for (const s of fams.get('l3iso_cell_refusals_total')!.samples) {
        expect(Object.keys(s.labels).sort()).toEqual(['cell', 'reason']);
        expect(s.value).toBeGreaterThan(0);
      }
      expect(
        fams.get('l3iso_cell_refusals_total')!.samples.filter((s) => s.labels.cell !== 'x'),
      ).toEqual([]);
    });

    it('rx/tx series for every cell (idle ones too) and for outside-cell sockets', () => {
      for (const dir of ['rx', 'tx'])
        for (const unit of ['packets', 'bytes']) {
          const f = fams.get(`l3iso_cell_${dir}_${unit}_total`)!;
          expect(f.type).toBe('counter');
          expect(f.samples.map((s) => s.labels.cell).sort()).toEqual(['', 'idle', 'srv', 'x']);
          for (const s of f.samples) expect(Object.keys(s.labels)).toEqual(['cell']);
        }
      expect(sampleValue(fams, 'l3iso_cell_tx_packets_total', { cell: 'x' })).toBeGreaterThan(0);
      expect(sampleValue(fams, 'l3iso_cell_rx_bytes_total', { cell: 'srv' })).toBeGreaterThan(0);
      expect(sampleValue(fams, 'l3iso_cell_rx_bytes_total', { cell: 'idle' })).toBe(0);
    });

    it('l3iso_cells counts the cells; suppressed events counter is there', () => {
      expect(fams.get('l3iso_cells')!.type).toBe('gauge');
      expect(sampleValue(fams, 'l3iso_cells')).toBe(3);
      expect(sampleValue(fams, 'l3iso_events_suppressed_total')).toBe(0);
    });

    it('l3iso_map_pressure{map} is entries / max_entries of each bounded map', () => {
      const f = fams.get('l3iso_map_pressure')!;
      expect(f.type).toBe('gauge');
      expect(f.samples.map((s) => s.labels.map).sort()).toEqual([...PRESSURE_MAPS].sort());
      const max = (name: string) => {
        const m = BpfMap.openPinned(pinLayout(sb.pinDir).map(name));
        try {
          return m.maxEntries;
        } finally {
          m.close();
        }
      };
      // 3 cells; their addresses (x: 2, srv: 1, idle: 1) and 3 loopback
      // aliases; stats rows for the 3 cells and row 0 (outside-cell sockets).
      expect(sampleValue(fams, 'l3iso_map_pressure', { map: 'l3_cells' })).toBe(
        3 / max('l3_cells'),
      );
      expect(sampleValue(fams, 'l3iso_map_pressure', { map: 'l3_owners' })).toBe(
        7 / max('l3_owners'),
      );
      expect(sampleValue(fams, 'l3iso_map_pressure', { map: 'l3_cell_stats' })).toBe(
        4 / max('l3_cell_stats'),
      );
      for (const s of f.samples) {
        expect(s.value).toBeGreaterThanOrEqual(0);
        expect(s.value).toBeLessThan(1);
      }
    });
  });

  it('stats --json numbers match show --json', async () => {
    const stats = (await sb.cliOk(['stats', '--json'])).json;
    expect(stats.cells.map((c: { cell: string }) => c.cell).sort()).toEqual(['idle', 'srv', 'x']);
    for (const c of stats.cells) {
      const show = await sb.show(c.cell);
      expect(c.id).toBe(show.id);
      // Every traffic counter show reports (socket level, uplink) is the same.
      expect(Object.keys(show.traffic)).toEqual(expect.arrayContaining(['rxBytes', 'txPackets']));
      for (const [k, v] of Object.entries(show.traffic)) expect(c[k], `${c.cell} ${k}`).toBe(v);
      expect(c.refused).toEqual(show.refused);
      expect(c.dropped).toEqual(show.dropped);
    }
    const x = stats.cells.find((c: { cell: string }) => c.cell === 'x');
    expect(x.refused['bind-foreign']).toBe(REFUSED_BINDS);
    expect(x.txBytes).toBeGreaterThan(0);
    expect(stats.outside).toMatchObject({ id: '0' });
    // Sorted by total bytes, largest first: the idle cell comes last.
    expect(stats.cells[stats.cells.length - 1].cell).toBe('idle');
  });

  it('stats prints a table with human units and the outside-cells line', async () => {
    const r = await sb.cliOk(['stats']);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(
      /^CELL\s+RX PKTS\/BYTES\s+TX PKTS\/BYTES\s+UPLINK RX PKTS\/BYTES\s+UPLINK TX PKTS\/BYTES\s+DROPS\s+REFUSED$/,
    );
    expect(lines.slice(1).map((l) => l.split(/\s{2,}/)[0])).toEqual([
      expect.stringMatching(/^(x|srv)$/),
      expect.stringMatching(/^(x|srv)$/),
      'idle',
      '(outside cells)',
    ]);
    expect(r.stdout).toMatch(/\d+(\.\d)? (B|KiB)/);
  });

  it('stats --watch redraws with rates until SIGINT', async () => {
    const p = sb.spawnOnHost([
      process.execPath,
      CLI,
      '--pin-dir',
      sb.pinDir,
      'stats',
      '--watch',
      '0.3',
    ]);
    const deadline = Date.now() + 10_000;
    while ((p.stdout.match(/^l3iso stats/gm) ?? []).length < 2 && Date.now() < deadline)
      await new Promise((res) => setTimeout(res, 100));
    p.child.kill('SIGINT');
    const exit = await p.exited;
    expect(exit).toEqual({ status: 0, signal: null });
    expect((p.stdout.match(/^l3iso stats/gm) ?? []).length).toBeGreaterThanOrEqual(2);
    expect(p.stdout).toMatch(/RX\/s\s+TX\/s/);
    expect(p.stdout).toMatch(/\d B\/s/);
  });

  describe('serve', () => {
    let server: BgProc;
    let port: number;

    const curl = async (pathAndQuery: string, extra: string[] = []) => {
      const r = await sb.onHost([
        'curl',
        '-s',
        '-S',
        '-m',
        '10',
        '-o',
        '-',
        '-w',
        '\n%{http_code} %{content_type}',
        ...extra,
        `http://127.0.0.1:${port}${pathAndQuery}`,
      ]);
      expect(r.status, r.stderr).toBe(0);
      const cut = r.stdout.lastIndexOf('\n');
      const [code, ...type] = r.stdout.slice(cut + 1).split(' ');
      return { code: Number(code), type: type.join(' '), body: r.stdout.slice(0, cut) };
    };

    const waitListening = async (p: BgProc): Promise<number> => {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const m = /"port":(\d+)[^\n]*serving \/metrics/.exec(p.stderr);
        if (m) return Number(m[1]);
        if (Date.now() > deadline) throw new Error(`serve did not start: ${p.stderr}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    };

    beforeAll(async () => {
      // In the test netns, on a port the kernel picks.
      server = sb.spawnOnHost([
        process.execPath,
        CLI,
        '--pin-dir',
        sb.pinDir,
        'serve',
        '--listen',
        '127.0.0.1:0',
      ]);
      port = await waitListening(server);
    });
    afterAll(async () => {
      await server?.kill();
    });

    it('GET /metrics: the exposition, read at scrape time, with the registry content type', async () => {
      const r = await curl('/metrics');
      expect(r.code).toBe(200);
      expect(r.type).toMatch(/^text\/plain; version=0\.0\.4; charset=utf-8$/);
      const fams = parsePromText(r.body + '\n');
      expect(
        sampleValue(fams, 'l3iso_cell_refusals_total', { cell: 'x', reason: 'bind-foreign' }),
      ).toBe(REFUSED_BINDS);
      // A new refusal shows up in the next scrape.
      await sb.probe('x', [{ op: 'bind_new', fam: 4, addr: V4(9), port: 1 }], { keepGoing: true });
      const again = parsePromText((await curl('/metrics')).body + '\n');
      expect(
        sampleValue(again, 'l3iso_cell_refusals_total', { cell: 'x', reason: 'bind-foreign' }),
      ).toBe(REFUSED_BINDS + 1);
    });

    it('GET /healthz: 200 ok while the engine is up', async () => {
      expect(await curl('/healthz')).toMatchObject({ code: 200, body: 'ok' });
    });

    it('other paths: 404; other methods: 405', async () => {
      expect((await curl('/nope')).code).toBe(404);
      expect((await curl('/metrics', ['-X', 'POST'])).code).toBe(405);
    });

    it('an instance that is not up: /healthz and /metrics answer 503', async () => {
      const empty = sb.extraPinDir();
      const down = sb.spawnOnHost([
        process.execPath,
        CLI,
        '--pin-dir',
        empty,
        'serve',
        '--listen',
        '127.0.0.1:0',
      ]);
      try {
        const saved = port;
        port = await waitListening(down);
        try {
          const h = await curl('/healthz');
          expect(h.code).toBe(503);
          expect(h.body).toMatch(/not up/);
          expect((await curl('/metrics')).code).toBe(503);
        } finally {
          port = saved;
        }
      } finally {
        await down.kill();
      }
    });

    it('SIGTERM: exits 0 and stops listening', async () => {
      server.child.kill('SIGTERM');
      expect(await server.exited).toEqual({ status: 0, signal: null });
      expect(server.stderr).toMatch(/shutting down/);
      const r = await sb.onHost(['curl', '-s', '-m', '3', `http://127.0.0.1:${port}/healthz`]);
      expect(r.status).not.toBe(0);
    });
  });
});
