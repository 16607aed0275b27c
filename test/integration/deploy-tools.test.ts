// The deploy/ files checked by the tools that consume them: promtool for
// the alert rules, systemd-analyze for the units, the Kubernetes API schema
// for the manifests, and the cell unit's own ExecStart/ExecStop lines run
// against a real engine. A missing tool fails the test (scripts/setup.sh
// installs them).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { requireTool, tempDir } from '../harness/containers';
import { CLI, createSandbox, REPO, V4, V6, type Sandbox } from '../harness/sandbox';

const SHIPPED_L3ISO = '/usr/local/bin/l3iso';
const UNITS = path.join(REPO, 'deploy', 'systemd');

function tool(argv: string[], cwd = REPO) {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', cwd, timeout: 60_000 });
  return {
    status: r.status,
    out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ?? ''}`,
    stderr: r.stderr ?? '',
  };
}

const MANIFESTS = path.join(REPO, 'deploy', 'kubernetes');
const KUBE_SCHEMA = path.join(REPO, 'test', 'harness', 'kube-schema.py');
/** Debian's python3-kubernetes is installed for this interpreter (not a pyenv one on PATH). */
const DEBIAN_PYTHON = '/usr/bin/python3';

interface Manifest {
  name: string;
  doc: unknown;
}

function manifests(): Manifest[] {
  return fs
    .readdirSync(MANIFESTS)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .flatMap((f) =>
      parseAllDocuments(fs.readFileSync(path.join(MANIFESTS, f), 'utf8')).map((d, i) => {
        if (d.errors.length) throw new Error(`${f}: ${d.errors[0]!.message}`);
        return { name: `${f}#${i}`, doc: d.toJS() as unknown };
      }),
    );
}

/** The schema check's problems (empty: every object is valid). */
function kubeSchema(items: Manifest[]): { schema: string; errors: string[] } {
  const r = spawnSync(DEBIAN_PYTHON, [KUBE_SCHEMA], {
    input: JSON.stringify(items),
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`kube-schema.py failed: ${r.stderr}${r.error ?? ''}`);
  return JSON.parse(r.stdout) as { schema: string; errors: string[] };
}

describe('kubernetes manifests', () => {
  beforeAll(() => {
    requireTool(
      [DEBIAN_PYTHON, '-c', 'import kubernetes.client'],
      'install the Kubernetes API schema (scripts/setup.sh: apt-get install python3-kubernetes)',
    );
  });

  it('every object in deploy/kubernetes is valid against the Kubernetes API schema, unknown fields included', () => {
    const items = manifests();
    expect(items.map((m) => (m.doc as { kind: string }).kind)).toEqual([
      'Namespace',
      'ServiceAccount',
      'DaemonSet',
    ]);
    const r = kubeSchema(items);
    expect(r.schema).toMatch(/^kubernetes python client \d+\./);
    expect(r.errors).toEqual([]);
  });

  it('the check refuses a misspelled field, a wrong type, a missing required field and a kind its apiVersion does not serve', () => {
    const ds = manifests().find((m) => (m.doc as { kind: string }).kind === 'DaemonSet')!;
    /* eslint-disable @typescript-eslint/no-explicit-any -- edits reach deep into a parsed manifest */
    const edit = (fn: (d: any) => void): Manifest => {
      const doc = structuredClone(ds.doc) as any;
      fn(doc);
      return { name: 'edited', doc };
    };
    const r = kubeSchema([
      edit((d: any) => {
        d.spec.template.spec.hostNetwrok = d.spec.template.spec.hostNetwork;
      }),
      edit((d: any) => {
        d.spec.template.spec.hostPID = 'yes';
      }),
      edit((d: any) => {
        delete d.spec.template.spec.containers[0].name;
      }),
      edit((d: any) => {
        d.apiVersion = 'extensions/v1beta1';
      }),
      edit((d: any) => {
        d.spec.template.spec.volumes[0].hostPath.kind = 'Directory';
      }),
    ]);
    /* eslint-enable @typescript-eslint/no-explicit-any */
    expect(r.errors).toEqual([
      'edited: $.spec.template.spec.hostNetwrok: unknown field (not in V1PodSpec)',
      'edited: $.spec.template.spec.hostPID: must be bool, not str "yes"',
      expect.stringMatching(
        /^edited: \$\.spec\.template\.spec\.containers\[0\]: V1Container: .*`name`/,
      ),
      'edited: $: extensions/v1beta1 serves no kind DaemonSet',
      'edited: $.spec.template.spec.volumes[0].hostPath.kind: unknown field (not in V1HostPathVolumeSource)',
    ]);
  });
});

describe('prometheus rules', () => {
  beforeAll(() => {
    requireTool(
      ['promtool', '--version'],
      'install promtool (scripts/setup.sh: apt-get install prometheus)',
    );
  });

  it('promtool check rules accepts deploy/prometheus/l3iso-rules.yml', () => {
    const r = tool(['promtool', 'check', 'rules', 'deploy/prometheus/l3iso-rules.yml']);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/SUCCESS: 7 rules found/);
  });

  it('promtool test rules: each alert fires on exporter series and stays quiet below threshold', () => {
    const r = tool(['promtool', 'test', 'rules', 'test/prometheus/l3iso-rules.test.yml']);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain('SUCCESS');
  });
});

/** Split a unit's command line the way systemd does for these files: words, '…' and "…" quoting, $$ for $. */
function commandLine(unitText: string, key: string, subst: (s: string) => string): string[] {
  const line = unitText.split('\n').find((l) => l.startsWith(`${key}=`));
  if (!line) throw new Error(`no ${key}= line`);
  const words: string[] = [];
  const re = /'([^']*)'|"([^"]*)"|(\S+)/g;
  for (const m of subst(line.slice(key.length + 1)).matchAll(re))
    words.push((m[1] ?? m[2] ?? m[3]!).replace(/\$\$/g, '$'));
  return words;
}

describe('systemd units', () => {
  let sb: Sandbox;
  let dir: string;
  let wrapper: string;

  beforeAll(async () => {
    requireTool(['systemd-analyze', '--version'], 'install systemd (for systemd-analyze)');
    sb = await createSandbox();
    await sb.up();
    dir = tempDir(sb);
    // The units run the CLI from where `npm install -g` puts it; here, this checkout's.
    wrapper = path.join(dir, 'l3iso');
    fs.writeFileSync(
      wrapper,
      `#!/bin/sh\nexec ${process.execPath} ${CLI} --pin-dir ${sb.pinDir} "$@"\n`,
      { mode: 0o755 },
    );
  });
  afterAll(async () => {
    await sb?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('systemd-analyze verify accepts the units and a service that joins a cell, without a warning', () => {
    const units = path.join(dir, 'units');
    fs.mkdirSync(units);
    for (const f of fs.readdirSync(UNITS)) {
      const text = fs.readFileSync(path.join(UNITS, f), 'utf8');
      if (f.endsWith('.service')) expect(text).toContain(SHIPPED_L3ISO);
      fs.writeFileSync(path.join(units, f), text.split(SHIPPED_L3ISO).join(wrapper));
    }
    // The README's recipe for a member service.
    fs.writeFileSync(
      path.join(units, 'web.service'),
      '[Unit]\nDescription=web, in cell web\nBindsTo=l3iso-cell@web.service\nAfter=l3iso-cell@web.service\n\n' +
        '[Service]\nSlice=l3iso-web.slice\nExecStart=/usr/bin/python3 -m http.server 8080\n',
    );
    const r = tool([
      'systemd-analyze',
      'verify',
      ...[
        'l3iso.slice',
        'l3iso.service',
        'l3iso-cell@web.service',
        'l3iso-agent.socket',
        'l3iso-agent.service',
        'web.service',
      ].map((u) => path.join(units, u)),
    ]);
    expect(r.status, r.out).toBe(0);
    expect(r.stderr).toBe('');
  });

  it('l3iso-cell@web: ExecStart assigns the addresses of web.addrs to l3iso-web.slice, ExecStop releases it', async () => {
    const unit = fs.readFileSync(path.join(UNITS, 'l3iso-cell@.service'), 'utf8');
    const addrs = path.join(dir, 'cells');
    fs.mkdirSync(addrs);
    fs.writeFileSync(
      path.join(addrs, 'web.addrs'),
      `# web's addresses\n${V4(4)}\n${V6(4)}  # v6 too\n`,
    );
    const subst = (s: string) =>
      s
        .split('%i')
        .join('web')
        .split(SHIPPED_L3ISO)
        .join(wrapper)
        .split('/etc/l3iso/cells')
        .join(addrs);
    // systemd creates the slice's cgroup below l3iso.slice, the engine's root
    sb.cg('l3iso-web.slice');

    const start = await sb.onHost(commandLine(unit, 'ExecStart', subst));
    expect(start.status, start.stderr).toBe(0);
    expect((await sb.show('l3iso-web.slice')).addresses.sort()).toEqual([V4(4), V6(4)].sort());
    const inCell = await sb.probe('l3iso-web.slice', [{ op: 'bind_new', fam: 4, addr: '0.0.0.0' }]);
    expect(inCell.last).toMatchObject({ ok: true, addr: V4(4) });

    const stop = await sb.onHost(commandLine(unit, 'ExecStop', subst));
    expect(stop.status, stop.stderr).toBe(0);
    expect((await sb.list()).map((c: { cell: string }) => c.cell)).not.toContain('l3iso-web.slice');
  });
});
