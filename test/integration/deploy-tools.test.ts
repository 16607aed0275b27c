// The deploy/ files checked by the tools that consume them: promtool for
// the alert rules, systemd-analyze for the units, and the cell unit's own
// ExecStart/ExecStop lines run against a real engine. A missing tool fails
// the test (scripts/setup.sh installs them).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
