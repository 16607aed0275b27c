// Issue 9: a fast-check fuzzer over the CLI grammar. Random argument vectors
// built from the verbs, their options and hostile values (bad addresses and
// CIDRs, paths outside the root, names with newlines, huge numbers) run
// against a live engine: no stack trace, an error is one line (or one JSON
// document with --json) with a non-zero status, and a failed invocation
// changes nothing in the maps. 10,000 invocations under L3ISO_LONG=1, 300 in
// CI. Verbs that block (serve, --follow, --watch) or run commands (exec) or
// take the engine down are left out: their grammar has its own tests.
import fc from 'fast-check';
import { writeFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, V6, type Sandbox } from '../harness/sandbox';

const RUNS = process.env.L3ISO_LONG === '1' ? 10_000 : 300;
const DRIVER = path.join(__dirname, '..', 'harness', 'fuzz-driver.cjs');

const value = fc.oneof(
  fc.constantFrom(
    V4(1),
    V4(2),
    V6(1),
    '192.0.2.300',
    '::ffff:192.0.2.1',
    '0.0.0.0',
    '127.0.0.1',
    '2001:db8::/129',
    '198.51.100.0/24',
    '10.0.0.0/-1',
    'a',
    'b',
    'a/sub',
    '../outside',
    '/etc',
    '/sys/fs/cgroup',
    'x\ny',
    'bad\r\nname',
    '--',
    '-',
    '',
    '0',
    '-1',
    '1e9',
    '99999999999999999999',
    'd0',
    'lo',
    'eth-none',
  ),
  fc.ipV4(),
  fc.ipV6(),
  fc.string({ maxLength: 12 }),
);
const option = fc.constantFrom(
  '--json',
  '-j',
  '--force',
  '--drain',
  '--check',
  '--allow-raw',
  '--deny-raw',
  '--allow-from',
  '--clear',
  '--mode',
  '--max-cells',
  '--timeout',
  '--name',
  '--help',
  '--bogus',
  '-x',
);
const verb = fc.constantFrom(
  'list',
  'ls',
  'show',
  'assign',
  'release',
  'policy',
  'gc',
  'stats',
  'metrics',
  'events',
  'attach',
  'detach',
  'nonsense',
);
const argv = fc
  .tuple(verb, fc.array(fc.oneof(value, option), { maxLength: 6 }))
  .map(([v, rest]) => [v, ...rest]);

describe('CLI grammar fuzz', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('a/sub');
    sb.cg('b');
    await sb.assign('a', V4(1), V6(1));
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it(`${RUNS} invocations: clean errors, failures change nothing`, async () => {
    const cases = fc.sample(argv, { numRuns: RUNS, seed: 9 });
    const file = `/tmp/l3iso-fuzz-${process.pid}.json`;
    writeFileSync(file, JSON.stringify(cases));
    try {
      const r = await sb.onHost([process.execPath, DRIVER, sb.pinDir, file], {
        timeoutMs: 1_200_000,
      });
      expect(r.status, r.stderr.slice(-2000)).toBe(0);
      const report = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
        results: {
          argv: string[];
          status: number;
          stdout: string;
          stderr: string;
          crash?: string;
          changed: boolean;
        }[];
        warnings: string[];
        listenersGrew: Record<string, number>;
      };
      const { results } = report;
      expect(results).toHaveLength(RUNS);
      // main() run thousands of times in one process leaves nothing behind
      expect(report.warnings).toEqual([]);
      for (const [kind, runs] of Object.entries(report.listenersGrew))
        expect(runs, `${kind} listeners grew in ${runs} runs: a leak per run`).toBeLessThanOrEqual(
          1,
        );
      let failures = 0;
      // every bad case, not just the first: one report names them all
      const bad: string[] = [];
      const check = (ok: boolean, what: string, why: string, res: { stderr: string }) => {
        if (!ok) bad.push(`${what}: ${why}: ${JSON.stringify(res.stderr.slice(0, 300))}`);
      };
      for (const res of results) {
        const what = JSON.stringify(res.argv);
        check(res.crash === undefined, what, `crashed: ${res.crash}`, res);
        check(!/\n\s+at .+:\d+:\d+\)?\n/.test(res.stderr + res.stdout), what, 'stack trace', res);
        if (res.status === 0) continue;
        failures++;
        check([1, 2].includes(res.status), what, `status ${res.status}`, res);
        check(!res.changed, what, 'failed and changed the maps', res);
        const json = res.argv.includes('--json') || res.argv.includes('-j');
        if (json && res.stdout.includes('"error"')) {
          const code = (JSON.parse(res.stdout) as { error: { code: string } }).error.code;
          check(/^E[A-Z_]+$/.test(code), what, `code ${code}`, res);
        } else {
          const errLines = res.stderr.split('\n').filter((l) => l.startsWith('l3iso: '));
          const others = res.stderr.split('\n').filter((l) => l && !/^l3iso: warning:/.test(l));
          check(errLines.length === 1, what, `${errLines.length} error lines`, res);
          check(others.length === 1, what, `${others.length} lines`, res);
        }
      }
      expect(bad.slice(0, 20), `${bad.length} bad cases`).toEqual([]);
      expect(failures).toBeGreaterThan(RUNS / 4);
    } finally {
      rmSync(file, { force: true });
    }
  }, 1_500_000);
});
