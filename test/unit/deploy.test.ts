// The shipped deploy/ files are consistent with the code: the Grafana
// dashboard and the alert rules use only metric names and labels the
// exporter emits, and the hooks.d files are what `oci-hook install` writes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_AGENT_SOCKET } from '../../src/agent/api';
import { DEFAULT_PIN_DIR, pinLayout } from '../../src/dataplane/paths';
import { RECORDS_ROOT } from '../../src/runtime/records';
import { STAT_WORDS, type StatsTable } from '../../src/observe/counters';
import { MetricsExporter, PRESSURE_MAPS, type MetricsSnapshot } from '../../src/observe/metrics';
import {
  HOOK_STAGES,
  SHIPPED_HOOK_ARGV,
  hookDefinition,
  hookFileName,
} from '../../src/runtime/oci-hook';
import { parsePromText } from '../harness/promtext';

const REPO = path.resolve(__dirname, '..', '..');
const read = (rel: string) => fs.readFileSync(path.join(REPO, rel), 'utf8');

/** Every family the exporter can emit, with its labels: one scrape of a snapshot where everything is non-zero. */
async function emitted(): Promise<Map<string, Set<string>>> {
  const values = new Float64Array(2 * STAT_WORDS).fill(1);
  const table: StatsTable = { length: 2, ids: [0n, 7n], values };
  const snap: MetricsSnapshot = {
    table,
    names: ['', 'web'],
    cells: 1,
    suppressed: 1,
    maps: PRESSURE_MAPS.map((map) => ({ map, entries: 1, maxEntries: 10 })),
  };
  const fams = parsePromText(await new MetricsExporter(() => snap).scrape());
  const out = new Map<string, Set<string>>();
  for (const f of fams.values()) {
    const labels = new Set<string>(['instance', 'job']);
    for (const s of f.samples) for (const l of Object.keys(s.labels)) labels.add(l);
    out.set(f.name, labels);
  }
  return out;
}

/** Metric names, the labels each selector names, and `by (...)` labels of a PromQL text. */
function references(expr: string): { metrics: Map<string, string[]>; grouped: string[] } {
  const metrics = new Map<string, string[]>();
  for (const m of expr.matchAll(/\b(l3iso_[a-z0-9_]+)\b(\{([^}]*)\})?/g)) {
    const labels = [...(m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)/g)].map(
      (x) => x[1]!,
    );
    metrics.set(m[1]!, [...(metrics.get(m[1]!) ?? []), ...labels]);
  }
  const grouped = [...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) =>
    m[1]!.split(',').map((s) => s.trim()),
  );
  return { metrics, grouped };
}

function checkExpr(expr: string, fams: Map<string, Set<string>>, where: string): void {
  const { metrics, grouped } = references(expr);
  expect(metrics.size, `${where}: ${expr}`).toBeGreaterThan(0);
  const allLabels = new Set<string>();
  for (const [name, labels] of metrics) {
    expect(fams.has(name), `${where}: ${name} is not emitted`).toBe(true);
    for (const l of labels) expect(fams.get(name)!.has(l), `${where}: ${name}{${l}}`).toBe(true);
    for (const l of fams.get(name)!) allLabels.add(l);
  }
  for (const l of grouped) expect(allLabels.has(l), `${where}: by (${l})`).toBe(true);
}

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: { refId: string; expr: string }[];
}

describe('deploy/grafana/l3iso.json', () => {
  const dash = JSON.parse(read('deploy/grafana/l3iso.json')) as {
    uid: string;
    title: string;
    schemaVersion: number;
    panels: Panel[];
    templating: { list: { name: string; query?: unknown }[] };
  };

  it('is a dashboard: uid, title, unique panel ids, panels on the 24-column grid without overlap', () => {
    expect(dash.uid).toBe('l3iso');
    expect(dash.title).toBeTruthy();
    expect(dash.schemaVersion).toBeGreaterThanOrEqual(30);
    const ids = dash.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const taken = new Set<string>();
    for (const p of dash.panels) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++)
        for (let j = y; j < y + h; j++) {
          expect(taken.has(`${i},${j}`), `${p.title} overlaps at ${i},${j}`).toBe(false);
          taken.add(`${i},${j}`);
        }
    }
  });

  it('every panel queries only metrics and labels the exporter emits', async () => {
    const fams = await emitted();
    const graphs = dash.panels.filter((p) => p.type !== 'row');
    expect(graphs.length).toBeGreaterThanOrEqual(8);
    for (const p of graphs) {
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      const refIds = p.targets!.map((t) => t.refId);
      expect(new Set(refIds).size, p.title).toBe(refIds.length);
      for (const t of p.targets!) checkExpr(t.expr, fams, `panel "${p.title}"`);
    }
    for (const v of dash.templating.list) {
      const q = v.query as { query?: string } | string | undefined;
      const text = typeof q === 'object' ? q.query : undefined;
      if (text) checkExpr(text, fams, `variable ${v.name}`);
    }
  });

  it('covers refusals, drops, traffic, map pressure and suppressed events', () => {
    const all = JSON.stringify(dash.panels);
    for (const name of [
      'l3iso_cell_refusals_total',
      'l3iso_cell_drops_total',
      'l3iso_cell_rx_bytes_total',
      'l3iso_cell_tx_bytes_total',
      'l3iso_cell_uplink_rx_bytes_total',
      'l3iso_map_pressure',
      'l3iso_events_suppressed_total',
      'l3iso_cells',
    ])
      expect(all).toContain(name);
  });

  it('uses only variables it defines', () => {
    const defined = new Set(dash.templating.list.map((v) => v.name));
    const used = [...JSON.stringify(dash).matchAll(/\$\{?([a-zA-Z_]+)/g)].map((m) => m[1]!);
    for (const v of used) if (!v.startsWith('__')) expect(defined.has(v), `$${v}`).toBe(true);
  });
});

describe('deploy/prometheus/l3iso-rules.yml', () => {
  it('alerts only on metrics and labels the exporter emits', async () => {
    const fams = await emitted();
    const text = read('deploy/prometheus/l3iso-rules.yml');
    // expr: one line, or a folded block (>-) of indented lines
    const exprs = [...text.matchAll(/^\s+expr: (?:>-\n((?:\s{10,}.*\n)+)|(.*)\n)/gm)].map((m) =>
      (m[1] ?? m[2]!).replace(/\s+/g, ' ').trim(),
    );
    expect(exprs.length).toBeGreaterThanOrEqual(5);
    for (const e of exprs) checkExpr(e, fams, 'rule');
  });
});

describe('deploy/oci', () => {
  it('holds exactly the hooks.d files oci-hook install writes (for /usr/local/bin/l3iso)', () => {
    const files = fs.readdirSync(path.join(REPO, 'deploy/oci')).sort();
    expect(files).toEqual(HOOK_STAGES.map(hookFileName).sort());
    for (const stage of HOOK_STAGES) {
      const shipped: unknown = JSON.parse(read(`deploy/oci/${hookFileName(stage)}`));
      expect(shipped).toEqual(hookDefinition(stage, SHIPPED_HOOK_ARGV));
    }
  });
});

describe('deploy/kubernetes', () => {
  const dir = path.join(REPO, 'deploy', 'kubernetes');
  const objects = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .flatMap((f) => parseAllDocuments(read(`deploy/kubernetes/${f}`)).map((d) => d.toJS()));
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a parsed manifest
  const ds: any = objects.find((o) => o.kind === 'DaemonSet');
  const pod = ds.spec.template.spec;
  const under = (p: string, mounts: { mountPath: string }[]) =>
    mounts.some((m) => p === m.mountPath || p.startsWith(m.mountPath + '/'));

  it('shares the node network and PID namespaces, with no API token and no RBAC rule', () => {
    expect(pod.hostNetwork).toBe(true);
    expect(pod.hostPID).toBe(true);
    expect(pod.automountServiceAccountToken).toBe(false);
    const sa = objects.find((o) => o.kind === 'ServiceAccount');
    expect(sa.automountServiceAccountToken).toBe(false);
    expect(pod.serviceAccountName).toBe(sa.metadata.name);
    expect(objects.filter((o) => /Role/.test(o.kind))).toEqual([]);
  });

  it('mounts the node paths the engine, the agent and the hooks share, at the paths the code uses', () => {
    const hostPaths = Object.fromEntries(
      pod.volumes.map((v: { name: string; hostPath: { path: string } }) => [
        v.name,
        v.hostPath.path,
      ]),
    );
    const cgroupRoot = pod.initContainers[0].env.find(
      (e: { name: string }) => e.name === 'L3ISO_CGROUP_ROOT',
    ).value;
    for (const c of [...pod.initContainers, ...pod.containers]) {
      expect(c.securityContext.privileged).toBe(true);
      // each mount shows the node's directory at the same path
      for (const m of c.volumeMounts) expect(hostPaths[m.name]).toBe(m.mountPath);
      for (const p of [
        DEFAULT_PIN_DIR,
        DEFAULT_AGENT_SOCKET,
        RECORDS_ROOT,
        pinLayout(DEFAULT_PIN_DIR).lockFile,
        cgroupRoot,
      ])
        expect(under(p, c.volumeMounts), `${c.name}: ${p}`).toBe(true);
    }
    const agent = pod.containers.find((c: { name: string }) => c.name === 'agent');
    expect(agent.args[0]).toBe('agent');
    expect(agent.env).toContainEqual({ name: 'L3ISO_AGENT_SOCKET', value: DEFAULT_AGENT_SOCKET });
    expect(pod.initContainers[0].args.slice(0, 2)).toEqual(['up', '--cgroup-root']);
  });
});
