// DESIGN.md, threat model: "Cells are unprivileged towards the host network
// namespace: no CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN or CAP_BPF there.
// `exec` drops them from the bounding set; `show`/`doctor` warn about any
// process in a cell that holds them."
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

  it('a plain root process in a cell is listed with net_raw, net_admin, sys_admin', async () => {
    const p = await hold('c');
    const nested = await hold('c/sub');
    try {
      const s = await sb.show('c');
      const warnings: Warning[] = s.capabilityWarnings;
      expect(Array.isArray(warnings)).toBe(true);
      for (const pid of [p.pid, nested.pid]) {
        const w = warnings.find((x) => x.pid === pid);
        expect(w, `no warning for pid ${pid}: ${JSON.stringify(warnings)}`).toBeDefined();
        expect(w!.capabilities).toEqual(
          expect.arrayContaining(['net_raw', 'net_admin', 'sys_admin']),
        );
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
