/**
 * BENCHMARKS.md and the ratio chart (an SVG rendered to PNG by
 * rsvg-convert, from Debian's librsvg2-bin, which bench/setup.sh installs).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DatapathReport, Mode } from './datapath';
import { median } from './isolation';
import { METRICS, METRIC_LABEL, SMALL_PACKET, type Metric } from './tools';

/** a ÷ b within each repetition, then the median of those. */
export function ratio(r: DatapathReport, a: Mode, b: Mode, m: Metric): number {
  const xs = r.samples[a][m];
  const ys = r.samples[b][m];
  const per = xs.map((x, i) => x.value / (ys[i]?.value ?? NaN)).filter(Number.isFinite);
  return median(per);
}

const fmt = (x: number | undefined, digits = 2): string =>
  x === undefined || !Number.isFinite(x)
    ? 'n/a'
    : x >= 1000
      ? Math.round(x).toLocaleString('en-US')
      : x.toFixed(digits);

interface Target {
  what: string;
  figure: number;
  goal: number;
  /** 'min': figure >= goal; 'max': figure <= goal */
  kind: 'min' | 'max';
  unit: string;
  /** the figure less an empty program's on the same hook and packets */
  net?: number;
}

function progNs(r: DatapathReport, workload: Metric, name: string): number | undefined {
  return r.programCosts.find((p) => p.workload === workload)?.costs.find((c) => c.name === name)
    ?.nsPerRun;
}

export function targets(r: DatapathReport): Target[] {
  const t: Target[] = [];
  for (const m of ['udpPps', 'rrPerSec', 'crrPerSec'] as Metric[])
    t.push({
      what: `cell ÷ bare, ${METRIC_LABEL[m]}`,
      figure: ratio(r, 'cell', 'bare', m),
      goal: 0.97,
      kind: 'min',
      unit: 'x',
    });
  for (const m of ['streamInGbps', 'streamOutGbps'] as Metric[])
    t.push({
      what: `cell ÷ bare, ${METRIC_LABEL[m]}, uplink attached`,
      figure: ratio(r, 'cell', 'bare', m),
      goal: 0.97,
      kind: 'min',
      unit: 'x',
    });
  for (const m of SMALL_PACKET)
    t.push({
      what: `cell ÷ bridge, ${METRIC_LABEL[m]}`,
      figure: ratio(r, 'cell', 'bridge', m),
      goal: 1.15,
      kind: 'min',
      unit: 'x',
    });
  const ingressProg = r.uplink.mode === 'tc' ? 'l3_tc_ingress' : 'l3_xdp';
  for (const [name, label, empty] of [
    ['l3_ingress', 'cgroup_skb ingress', 'empty_ingress'],
    ['l3_egress', 'cgroup_skb egress', 'empty_egress'],
    ['l3_tc_egress', 'tc egress (uplink)', 'empty_tc'],
    [ingressProg, `uplink ingress (${r.uplink.mode}), owner hit`, 'empty_tc'],
  ] as const) {
    const ns = progNs(r, 'rrPerSec', name);
    const floor =
      ingressProg === 'l3_xdp' && name === ingressProg ? undefined : progNs(r, 'rrPerSec', empty);
    if (ns !== undefined)
      t.push({
        what: `${label}: ns per packet (bpf_stats, TCP request/response)`,
        figure: ns,
        goal: 60,
        kind: 'max',
        unit: 'ns',
        ...(floor !== undefined ? { net: ns - floor } : {}),
      });
  }
  const hit = r.testRun[0];
  if (hit) {
    t.push({
      what: 'XDP, owner hit: ns per run (BPF_PROG_TEST_RUN)',
      figure: hit.xdpNs,
      goal: 60,
      kind: 'max',
      unit: 'ns',
    });
    t.push({
      what: 'XDP, owner hit: ns over an empty XDP_PASS program (BPF_PROG_TEST_RUN)',
      figure: hit.xdpNs - hit.emptyXdpNs,
      goal: 25,
      kind: 'max',
      unit: 'ns',
    });
  }
  return t;
}

const met = (t: Target): boolean => (t.kind === 'min' ? t.figure >= t.goal : t.figure <= t.goal);

// ---- chart -------------------------------------------------------------------

const SERIES: { a: Mode; b: Mode; label: string; color: string }[] = [
  { a: 'cell', b: 'bare', label: 'cell (all programs + uplink) ÷ bare', color: '#1f77b4' },
  { a: 'cell-hooks', b: 'bare', label: 'cell (socket hooks only) ÷ bare', color: '#6baed6' },
  { a: 'bridge', b: 'bare', label: 'netns + veth + bridge ÷ bare', color: '#d62728' },
  { a: 'routed', b: 'bare', label: 'netns + routed veth ÷ bare', color: '#ff9896' },
];

const SHORT: Record<Metric, string> = {
  udpPps: 'UDP 64B pps',
  rrPerSec: 'TCP RR/s',
  crrPerSec: 'TCP CRR/s',
  streamInGbps: 'stream in',
  streamOutGbps: 'stream out',
  httpKeepAlive: 'HTTP keep-alive',
  httpClose: 'HTTP close',
};

export function chartSvg(r: DatapathReport): string {
  const W = 900;
  const H = 420;
  const left = 50;
  const top = 40;
  const bottom = 80;
  const plotH = H - top - bottom;
  const groupW = (W - left - 20) / METRICS.length;
  const barW = (groupW - 16) / SERIES.length;
  const max = 1.4;
  const y = (v: number) => top + plotH - (Math.min(v, max) / max) * plotH;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="DejaVu Sans, sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">l3iso data path: throughput ratio to bare (higher is better), medians of per-run ratios</text>`,
  ];
  for (const v of [0, 0.25, 0.5, 0.75, 1, 1.25]) {
    parts.push(
      `<line x1="${left}" x2="${W - 20}" y1="${y(v)}" y2="${y(v)}" stroke="${v === 1 ? '#333' : '#ddd'}"/>`,
    );
    parts.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(2)}</text>`);
  }
  parts.push(
    `<line x1="${left}" x2="${W - 20}" y1="${y(0.97)}" y2="${y(0.97)}" stroke="#2ca02c" stroke-dasharray="4 3"/>`,
  );
  parts.push(`<text x="${left + 4}" y="${y(0.97) + 12}" fill="#2ca02c">0.97 target</text>`);
  METRICS.forEach((m, i) => {
    const gx = left + i * groupW + 8;
    SERIES.forEach((s, j) => {
      const v = ratio(r, s.a, s.b, m);
      if (!Number.isFinite(v)) return;
      const x = gx + j * barW;
      parts.push(
        `<rect x="${x}" y="${y(v)}" width="${barW - 2}" height="${y(0) - y(v)}" fill="${s.color}"/>`,
      );
      parts.push(
        `<text x="${x + barW / 2 - 1}" y="${y(v) - 3}" text-anchor="middle" font-size="9">${v.toFixed(2)}</text>`,
      );
    });
    parts.push(
      `<text x="${gx + (groupW - 16) / 2}" y="${y(0) + 16}" text-anchor="middle">${SHORT[m]}</text>`,
    );
  });
  SERIES.forEach((s, j) => {
    const lx = left + (j % 2) * 420;
    const ly = H - 36 + Math.floor(j / 2) * 16;
    parts.push(`<rect x="${lx}" y="${ly - 9}" width="10" height="10" fill="${s.color}"/>`);
    parts.push(`<text x="${lx + 14}" y="${ly}">${s.label}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

// ---- markdown ----------------------------------------------------------------

function table(headers: string[], rows: string[][]): string {
  return [
    `| ${headers.join(' | ')} |`,
    `|${headers.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

export function markdown(r: DatapathReport, notes: string): string {
  const modes: Mode[] = ['bare', 'cell', 'cell-hooks', 'bridge', 'routed'];
  const out: string[] = [];
  const o = r.options;
  out.push('# Benchmarks: the l3iso data path', '');
  out.push(
    '> Generated by `npm run bench` (bench/datapath.ts) on the 2-core test machine, with nothing',
    '> else running (the load average below is the bench itself). Ratios are taken within each',
    '> repetition, so they drift less than the absolute figures; bench/NOTES.md explains what',
    '> bounds each missed target.',
    '',
  );
  out.push('## Machine and run', '');
  out.push(
    `- CPU: ${r.machine.cpu}, ${r.machine.cpus} CPUs, ${r.machine.memGiB} GiB; kernel ${r.machine.kernel}`,
    `- tools: ${Object.entries(r.machine.tools)
      .map(([k, v]) => `${k} (${v})`)
      .join('; ')}`,
    `- ${o.quick ? '**--quick** run' : 'full run'}: ${o.reps} repetitions × ${o.seconds} s per metric and mode, modes interleaved in rotating order; every client and server pinned to CPU ${o.cpu}; ${r.durationS} s in all`,
    `- load average ${r.loadavg.start} at start, ${r.loadavg.end} at end`,
    `- uplink: \`l3iso attach up0\` chose **${r.uplink.mode}**: ${r.uplink.reason}`,
    '',
    'Topology: one client netns; for each mode its own veth pair from the client to the server side.',
    '`bare`: the server in a plain netns. `cell`: the server in an l3iso cell (every program up, the',
    'uplink attached on the server end of its veth). `cell-hooks`: the same cell, uplink detached.',
    '`bridge`: the server in a container netns behind veth + bridge in a host netns. `routed`: the',
    'server in a container netns behind a routed veth (/32 route, gateway on the host end).',
    '',
  );
  out.push('## Targets', '');
  out.push(
    table(
      ['target', 'goal', 'figure', 'met', 'less an empty program on the same hook'],
      targets(r).map((t) => [
        t.what,
        `${t.kind === 'min' ? '≥' : '≤'} ${t.goal}${t.unit === 'x' ? '×' : ` ${t.unit}`}`,
        `${fmt(t.figure)}${t.unit === 'x' ? '×' : ` ${t.unit}`}`,
        met(t) ? 'yes' : '**no**',
        t.net === undefined ? '' : `${fmt(t.net, 0)} ns`,
      ]),
    ),
    '',
    '![ratios](bench/datapath.png)',
    '',
  );
  out.push('## Ratios (median of per-repetition ratios)', '');
  out.push(
    table(
      [
        'metric',
        'cell ÷ bare',
        'cell-hooks ÷ bare',
        'bridge ÷ bare',
        'routed ÷ bare',
        'cell ÷ bridge',
        'cell ÷ routed',
      ],
      METRICS.map((m) => [
        METRIC_LABEL[m],
        fmt(ratio(r, 'cell', 'bare', m)),
        fmt(ratio(r, 'cell-hooks', 'bare', m)),
        fmt(ratio(r, 'bridge', 'bare', m)),
        fmt(ratio(r, 'routed', 'bare', m)),
        fmt(ratio(r, 'cell', 'bridge', m)),
        fmt(ratio(r, 'cell', 'routed', m)),
      ]),
    ),
    '',
  );
  out.push('## Every figure (median, then each repetition)', '');
  out.push(
    table(
      ['metric', ...modes],
      METRICS.map((m) => [
        METRIC_LABEL[m],
        ...modes.map((mode) => {
          const xs = r.samples[mode][m].map((s) => s.value);
          return `${fmt(median(xs))} (${xs.map((x) => fmt(x)).join(', ')})`;
        }),
      ]),
    ),
    '',
  );
  out.push('TCP request/response round trip (sockperf, µs, median of repetitions):', '');
  out.push(
    table(
      ['percentile', ...modes],
      (['p50', 'p99'] as const).map((p) => [
        p,
        ...modes.map((mode) => fmt(median(r.samples[mode].rrPerSec.map((s) => s[p] ?? NaN)))),
      ]),
    ),
    '',
  );
  out.push('## Per-program cost (kernel.bpf_stats_enabled, cell mode, a separate pass)', '');
  const names = [...new Set(r.programCosts.flatMap((p) => p.costs.map((c) => c.name)))].sort();
  out.push(
    table(
      [
        'program',
        ...r.programCosts.map((p) => `ns/run: ${SHORT[p.workload]}`),
        ...r.programCosts.map((p) => `runs: ${SHORT[p.workload]}`),
      ],
      names.map((n) => [
        n,
        ...r.programCosts.map((p) => fmt(p.costs.find((c) => c.name === n)?.nsPerRun, 0)),
        ...r.programCosts.map((p) => fmt(p.costs.find((c) => c.name === n)?.runs, 0)),
      ]),
    ),
    '',
    'Stream workloads run once per GSO/GRO super-packet, not per wire packet. bpf_stats adds its own',
    'clock reads to every run, so these figures are upper bounds.',
    '',
  );
  out.push('Verifier and JIT sizes:', '');
  out.push(
    table(
      ['program', 'type', 'verified insns', 'xlated insns', 'JIT bytes'],
      r.programs.map((p) => [
        p.name,
        p.type,
        fmt(p.verifiedInsns, 0),
        fmt(p.xlatedInsns, 0),
        fmt(p.jitedBytes, 0),
      ]),
    ),
    '',
  );
  out.push(
    `BPF_PROG_TEST_RUN, ${o.testRunRepeat.toLocaleString('en-US')} runs each, mean ns per run:`,
    '',
  );
  out.push(
    table(
      ['frame', 'l3_xdp', 'empty XDP', 'l3_xdp − empty', 'l3_tc_ingress', 'empty tc', 'tc − empty'],
      r.testRun.map((t) => [
        t.frame,
        fmt(t.xdpNs, 0),
        fmt(t.emptyXdpNs, 0),
        fmt(t.xdpNs - t.emptyXdpNs, 0),
        fmt(t.tcIngressNs, 0),
        fmt(t.emptyTcNs, 0),
        fmt(t.tcIngressNs - t.emptyTcNs, 0),
      ]),
    ),
    '',
  );
  out.push('## Offloads per veth (ethtool -k)', '');
  const keys = [...new Set(r.offloads.flatMap((x) => Object.keys(x.features)))];
  out.push(
    table(
      ['veth end', 'iface', ...keys],
      r.offloads.map((x) => [
        x.where,
        x.iface,
        ...keys.map((k) => (x.features[k] === undefined ? '-' : x.features[k] ? 'on' : 'off')),
      ]),
    ),
    '',
  );
  out.push('## Checks', '', ...r.checks.map((c) => `- ${c}`), '');
  if (notes.trim()) out.push(notes.trim(), '');
  return out.join('\n');
}

/** Writes BENCHMARKS.md, bench/datapath.svg and .png; returns a summary for stdout. */
export function writeReport(r: DatapathReport, root: string, write: boolean): { summary: string } {
  const notesFile = path.join(root, 'bench', 'NOTES.md');
  const notes = fs.existsSync(notesFile) ? fs.readFileSync(notesFile, 'utf8') : '';
  const md = markdown(r, notes);
  const json = path.join(root, 'bench', 'datapath.json');
  if (write) {
    fs.writeFileSync(path.join(root, 'BENCHMARKS.md'), md);
    fs.writeFileSync(json, JSON.stringify(r, null, 1) + '\n');
    const svg = path.join(root, 'bench', 'datapath.svg');
    fs.writeFileSync(svg, chartSvg(r));
    execFileSync('rsvg-convert', ['-o', path.join(root, 'bench', 'datapath.png'), svg]);
  }
  const lines = targets(r).map(
    (t) =>
      `${met(t) ? 'met ' : 'MISS'}  ${t.what}: ${fmt(t.figure)} (goal ${t.kind === 'min' ? '>=' : '<='} ${t.goal})`,
  );
  return {
    summary: [
      write ? 'wrote BENCHMARKS.md, bench/datapath.png' : '(not written: --no-write)',
      ...lines,
    ].join('\n'),
  };
}
