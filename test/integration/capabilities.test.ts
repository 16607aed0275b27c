// Threat model: a cell's processes hold none of the capabilities that get
// around the hooks (NET_ADMIN, NET_RAW, SYS_ADMIN, BPF, SYS_PTRACE,
// SYS_MODULE, DAC_READ_SEARCH, PERFMON, SYS_RAWIO, SYS_BOOT). `exec` drops
// them from every set; `show` and `doctor` warn about any process in a cell
// that holds one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLI,
  createSandbox,
  PROBE,
  python,
  V4,
  type BgProc,
  type Sandbox,
} from '../harness/sandbox';

/** Every capability show warns about, as a plain root process holds them all. */
const ALL = [
  'dac_read_search',
  'net_admin',
  'net_raw',
  'sys_module',
  'sys_rawio',
  'sys_ptrace',
  'sys_admin',
  'sys_boot',
  'perfmon',
  'bpf',
];

interface Warning {
  pid: number;
  comm: string;
  capabilities: string[];
}

describe('capability warnings', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('c');
    sb.cg('c/sub');
    sb.cg('clean');
    await sb.assign('c', V4(1));
    await sb.assign('clean', V4(2));
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  const hold = async (cg: string): Promise<BgProc> => {
    const p = sb.spawnProbe(cg, [{ op: 'caps' }, { op: 'wait_stdin' }]);
    await p.waitFor((l) => l.op === 'caps');
    return p;
  };

  it('a plain root process in a cell is listed with every dangerous capability', async () => {
    const p = await hold('c');
    const nested = await hold('c/sub');
    try {
      const s = await sb.show('c');
      const warnings: Warning[] = s.capabilityWarnings;
      expect(Array.isArray(warnings)).toBe(true);
      for (const pid of [p.pid, nested.pid]) {
        const w = warnings.find((x) => x.pid === pid);
        expect(w, `no warning for pid ${pid}: ${JSON.stringify(warnings)}`).toBeDefined();
        expect(w!.capabilities).toEqual(ALL);
        expect(typeof w!.comm).toBe('string');
        expect(w!.comm.length).toBeGreaterThan(0);
      }
      // the text form warns on stderr, one line per process
      const t = await sb.cli(['show', 'c']);
      expect(t.status, t.stderr).toBe(0);
      const lines = t.stderr.split('\n').filter((l) => l.startsWith('l3iso: warning:'));
      expect(
        lines.some((l) => l.includes(String(p.pid))),
        t.stderr,
      ).toBe(true);
      expect(
        lines.some((l) => l.includes(String(nested.pid))),
        t.stderr,
      ).toBe(true);
      expect(
        lines.some((l) => /NET_RAW/i.test(l)),
        t.stderr,
      ).toBe(true);
      // and another cell is not warned about
      const other = await sb.show('clean');
      expect(other.capabilityWarnings).toEqual([]);
    } finally {
      p.child.stdin?.end();
      nested.child.stdin?.end();
      await p.exited;
      await nested.exited;
    }
  });

  it('each of ptrace, module, dac_read_search, perfmon, rawio, boot alone is enough', async () => {
    const only = [
      'dac_read_search',
      'sys_module',
      'sys_rawio',
      'sys_ptrace',
      'sys_boot',
      'perfmon',
    ];
    const p = sb.spawnInCell('c', [
      'setpriv',
      '--inh-caps=-all',
      '--ambient-caps=-all',
      `--bounding-set=-all,${only.map((c) => `+${c}`).join(',')}`,
      '--',
      python(),
      PROBE,
      JSON.stringify({ ops: [{ op: 'caps' }, { op: 'wait_stdin' }] }),
    ]);
    try {
      await p.waitFor((l) => l.op === 'caps');
      const w = ((await sb.show('c')).capabilityWarnings as Warning[]).find((x) => x.pid === p.pid);
      expect(w?.capabilities).toEqual(only);
      const d = await sb.cli(['doctor']);
      expect(d.stderr).toMatch(
        new RegExp(
          `pid ${p.pid} .* holds CAP_DAC_READ_SEARCH, CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_PTRACE, CAP_SYS_BOOT, CAP_PERFMON:`,
        ),
      );
    } finally {
      p.child.stdin?.end();
      await p.exited;
    }
  });

  it('no warning once the process has left', async () => {
    expect((await sb.show('c')).capabilityWarnings).toEqual([]);
  });

  it('a process started through `l3iso exec` is not listed', async () => {
    const ex = sb.spawnOnHost([
      process.execPath,
      CLI,
      '--pin-dir',
      sb.pinDir,
      'exec',
      '--name',
      'ex',
      V4(7),
      '--',
      python(),
      PROBE,
      JSON.stringify({ ops: [{ op: 'caps' }, { op: 'wait_stdin' }] }),
    ]);
    try {
      const caps = await ex.waitFor((l) => l.op === 'caps');
      const eff = BigInt('0x' + String(caps.CapEff));
      expect((eff >> 13n) & 1n, 'CAP_NET_RAW in CapEff').toBe(0n);
      expect((eff >> 19n) & 1n, 'CAP_SYS_PTRACE in CapEff').toBe(0n);
      const s = await sb.show('ex');
      expect(s.processes.length, JSON.stringify(s)).toBeGreaterThan(0);
      expect(s.capabilityWarnings).toEqual([]);
      const t = await sb.cli(['show', 'ex']);
      expect(t.status, t.stderr).toBe(0);
      expect(t.stderr).not.toMatch(/l3iso: warning:/);
    } finally {
      ex.child.stdin?.end();
      await Promise.race([ex.exited, new Promise((r) => setTimeout(r, 10_000))]);
    }
    expect(ex.child.exitCode, ex.stderr).toBe(0);
  });
});
