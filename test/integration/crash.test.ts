// Issue 9: every interrupted change converges. Each verb is killed (SIGKILL)
// once before each of its state-changing syscalls (strace fault injection:
// the syscall does not run, the process dies), and at random instants; after
// each kill the state is checked straight from the maps (`gc --check`), then
// gc and a re-run of the killed command must both leave zero
// inconsistencies and the state the command would have reached.
// L3ISO_LONG=1 (npm run test:long) runs every point of every verb and 100+
// random kills; CI runs every point of assign, a stride of release's, up's
// and down's, and a few random kills.
import { readFileSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, V6, type CliResult, type Sandbox } from '../harness/sandbox';

const LONG = process.env.L3ISO_LONG === '1';
const RANDOM_KILLS = LONG ? 104 : 8;
/** CI: every Nth injection point (up and down load programs; a whole-cell
 * release has a point per flag, iterator run and unclaim). */
const STRIDE = (ci: number): number => (LONG ? 1 : ci);
const TRACED = ['bpf', 'unlink', 'rename', 'symlink', 'mkdir', 'rmdir'];
/** bpf commands that change persistent state (pins, maps, links, sockets). */
const MUTATING_BPF =
  /^BPF_(MAP_UPDATE_ELEM|MAP_DELETE_ELEM|MAP_UPDATE_BATCH|MAP_DELETE_BATCH|OBJ_PIN|LINK_CREATE|LINK_UPDATE|LINK_DETACH|ITER_CREATE)\b/;

interface Point {
  syscall: string;
  /** per-syscall invocation number, as strace's when= counts it */
  nth: number;
  what: string;
}

/** The state-changing syscalls of one run of `args`, in order. */
async function mutatingPoints(sb: Sandbox, args: string[]): Promise<Point[]> {
  const out = `/tmp/l3iso-crash-${process.pid}.trace`;
  const r = await sb.cli(args, {
    wrap: ['strace', '-f', '-qq', '-o', out, '-e', `trace=${TRACED.join(',')}`, '--'],
  });
  expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(0);
  const lines = readFileSync(out, 'utf8').split('\n');
  rmSync(out, { force: true });
  // Everything runs on node's main thread: the pid with the most calls.
  const perPid = new Map<string, number>();
  for (const l of lines) {
    const pid = l.split(' ')[0];
    if (pid) perPid.set(pid, (perPid.get(pid) ?? 0) + 1);
  }
  const main = [...perPid].sort((a, b) => b[1] - a[1])[0]![0];
  const seen = new Map<string, number>();
  const points: Point[] = [];
  for (const l of lines) {
    const m = /^(\d+)\s+(\w+)\((.*)$/.exec(l);
    if (!m || m[1] !== main || !TRACED.includes(m[2]!)) continue;
    const syscall = m[2]!;
    const nth = (seen.get(syscall) ?? 0) + 1;
    seen.set(syscall, nth);
    const arg = m[3]!;
    if (syscall === 'bpf' && !MUTATING_BPF.test(arg)) continue;
    // A call that failed (mkdir of an existing dir) changed nothing.
    if (/\)\s+= -1 /.test(arg)) continue;
    points.push({ syscall, nth, what: `${syscall}(${arg.slice(0, 60)}` });
  }
  return points;
}

function killedAt(sb: Sandbox, args: string[], p: Point): Promise<CliResult> {
  return sb.cli(args, {
    wrap: [
      'strace',
      '-f',
      '-qq',
      '-o',
      '/dev/null',
      '-e',
      `trace=${p.syscall}`,
      '-e',
      `inject=${p.syscall}:error=EINTR:signal=KILL:when=${p.nth}`,
      '--',
    ],
  });
}

async function inconsistencies(sb: Sandbox): Promise<string[]> {
  const r = await sb.cli(['gc', '--check', '--json']);
  expect(r.json?.inconsistencies, `${r.stderr} ${r.stdout}`).toBeDefined();
  return r.json.inconsistencies as string[];
}

interface Scenario {
  name: string;
  args: string[];
  /** bring the engine to the state the command starts from */
  before: (sb: Sandbox) => Promise<void>;
  /** the state the command reaches, checked after gc and the re-run */
  after: (sb: Sandbox) => Promise<void>;
  /** engine-level verbs: the re-run comes before gc (gc needs an engine) */
  engine?: boolean;
  stride?: number;
}

const cellOf = async (sb: Sandbox, name: string) =>
  (await sb.list()).find((c: { cell: string }) => c.cell === name);

async function reset(sb: Sandbox, name: string, ...addrs: string[]): Promise<void> {
  sb.cg(name);
  if (await cellOf(sb, name)) await sb.cliOk(['release', name, '--force']);
  if (addrs.length) await sb.cliOk(['assign', name, ...addrs]);
}

async function engineUp(sb: Sandbox): Promise<void> {
  const probe = await sb.cli(['list', '--json']);
  if (probe.status !== 0) await sb.up();
  await reset(sb, 'keep', V4(1), V6(1));
}

const SCENARIOS: Scenario[] = [
  {
    name: 'assign of a new cell',
    args: ['assign', 'k1', V4(7), V6(7)],
    before: (sb) => reset(sb, 'k1'),
    after: async (sb) => {
      const c = await cellOf(sb, 'k1');
      expect(c).toMatchObject({ addresses: [V4(7), V6(7)], primary4: V4(7), primary6: V6(7) });
    },
  },
  {
    name: 'assign to an existing cell',
    args: ['assign', 'k2', V4(8)],
    before: (sb) => reset(sb, 'k2', V6(8)),
    after: async (sb) => {
      expect(await cellOf(sb, 'k2')).toMatchObject({ primary4: V4(8), primary6: V6(8) });
    },
  },
  {
    name: 'release of a primary',
    stride: STRIDE(2),
    args: ['release', 'k3', V4(3), '--force'],
    before: (sb) => reset(sb, 'k3', V4(3), V4(4), V6(3)),
    after: async (sb) => {
      const c = await cellOf(sb, 'k3');
      expect(c).toMatchObject({ addresses: [V4(4), V6(3)], primary4: V4(4) });
    },
  },
  {
    name: 'release of a whole cell',
    stride: STRIDE(4),
    args: ['release', 'k4', '--force'],
    before: (sb) => reset(sb, 'k4', V4(5), V6(5)),
    after: async (sb) => {
      expect(await cellOf(sb, 'k4')).toBeUndefined();
    },
  },
  {
    name: 'up on a live engine',
    args: ['up', '--cgroup-root', '@root'],
    before: engineUp,
    after: async (sb) => {
      expect(await cellOf(sb, 'keep')).toMatchObject({ primary4: V4(1) });
    },
    engine: true,
    stride: STRIDE(10),
  },
  {
    name: 'the first up',
    args: ['up', '--cgroup-root', '@root'],
    before: async (sb) => {
      if ((await sb.cli(['list'])).status === 0) await sb.cliOk(['down', '--force']);
    },
    after: async (sb) => {
      expect(await sb.list()).toEqual([]);
      await engineUp(sb);
    },
    engine: true,
    stride: STRIDE(20),
  },
  {
    name: 'down',
    args: ['down', '--force'],
    before: engineUp,
    after: async (sb) => {
      const r = await sb.cli(['list']);
      expect(r.json?.error?.code ?? r.stderr).toMatch(/ENOT_UP|not up/);
      await sb.up(); // for gc and the next scenario
    },
    engine: true,
    stride: STRIDE(10),
  },
];

describe('crash points: SIGKILL before each state-changing syscall, and at random', () => {
  let sb: Sandbox;
  const argsOf = (s: Scenario) => s.args.map((a) => (a === '@root' ? sb.root : a));
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    await engineUp(sb);
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  /** A killed release may have taken the address already (it was killed
   * after the unclaim): the re-run then says so, having reconciled first. */
  async function rerun(s: Scenario, label: string): Promise<void> {
    const again = await sb.cli(argsOf(s));
    if (again.status !== 0 && s.args[0] === 'release')
      expect(again.stderr, `${label}: re-run`).toMatch(/not a cell|not assigned/);
    else expect(again.status, `${label}: re-run: ${again.stderr}`).toBe(0);
  }

  /** After a kill: re-run and gc (in either order) reach a consistent state. */
  async function converge(s: Scenario, gcFirst: boolean, label: string): Promise<void> {
    if (s.engine) {
      const again = await sb.cli(argsOf(s));
      // a down killed after its last removal left nothing to take down
      if (again.status !== 0) expect(again.stderr, `${label}: re-run`).toMatch(/is not up/);
      await s.after(sb);
    } else if (!gcFirst) {
      await rerun(s, label);
    }
    const gc = await sb.cli(['gc', '--json']);
    expect(gc.status, `${label}: gc: ${gc.stderr}`).toBe(0);
    expect(await inconsistencies(sb), `${label}: after gc`).toEqual([]);
    if (!s.engine && gcFirst) await rerun(s, label);
    expect(await inconsistencies(sb), `${label}: after the re-run`).toEqual([]);
    if (!s.engine) await s.after(sb);
  }

  for (const s of SCENARIOS) {
    it(`${s.name}: killed before each of its state changes`, async () => {
      await s.before(sb);
      const points = await mutatingPoints(sb, argsOf(s));
      expect(points.length, s.name).toBeGreaterThan(0);
      await s.after(sb);
      const stride = s.stride ?? 1;
      let tried = 0;
      for (let i = 0; i < points.length; i += stride) {
        const p = points[i]!;
        await s.before(sb);
        const r = await killedAt(sb, argsOf(s), p);
        const label = `${s.name} killed at #${i} ${p.what}`;
        expect(r.status, `${label}: ${r.stderr}`).not.toBe(0);
        if (!s.engine) await inconsistencies(sb); // readable straight after the kill
        await converge(s, i % 2 === 0, label);
        tried++;
      }
      expect(tried).toBeGreaterThan(0);
    }, 600_000);
  }

  it(`${RANDOM_KILLS} kills at random instants`, async () => {
    // How long each command takes uninterrupted, to spread the kills over it.
    const took = new Map<Scenario, number>();
    for (const s of SCENARIOS) {
      await s.before(sb);
      const t0 = Date.now();
      await sb.cliOk(argsOf(s));
      took.set(s, Date.now() - t0);
      await s.after(sb);
    }
    let inside = 0;
    for (let i = 0; i < RANDOM_KILLS; i++) {
      const s = SCENARIOS[i % SCENARIOS.length]!;
      await s.before(sb);
      const at = Math.floor(Math.random() * took.get(s)!);
      const r = await sb.cli(argsOf(s), { timeoutMs: Math.max(1, at) });
      if (r.timedOut) inside++;
      const label = `${s.name} killed after ${at} ms`;
      if (!s.engine) await inconsistencies(sb);
      await converge(s, i % 2 === 0, label);
    }
    // Most kills land inside the command, not after it finished.
    expect(inside).toBeGreaterThan(RANDOM_KILLS / 3);
  }, 900_000);
});
