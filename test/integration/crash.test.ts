// Issue 9: every interrupted change converges. Each verb (assign, release,
// apply, up, down) is killed (SIGKILL) once before each of its
// state-changing syscalls (strace fault injection: the syscall does not run,
// the process dies), and at random instants inside it; after each kill the
// state is checked straight from the maps (by the test itself, see
// harness/invariants.ts, and by `gc --check`), then gc and a re-run of the
// killed command must both leave zero inconsistencies and the state the
// command would have reached.
// L3ISO_LONG=1 (npm run test:long): every point of every verb and >= 100
// random kills inside each verb. CI: every kind of state change of every
// verb at least once (first and last point included) plus a stride of the
// rest, and a few random kills per verb.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mapInvariants } from '../harness/invariants';
import { createSandbox, V4, V6, type CliResult, type Sandbox } from '../harness/sandbox';

const LONG = process.env.L3ISO_LONG === '1';
/** Kills that land inside each verb (the process had not exited yet). */
const RANDOM_PER_VERB = LONG ? 100 : 3;
/** CI: every Nth injection point, on top of the first point of each kind
 * (up and down load programs; a whole-cell release has a point per flag,
 * iterator run and unclaim). */
const STRIDE = (ci: number): number => (LONG ? 1 : ci);
type Verb = 'assign' | 'release' | 'apply' | 'up' | 'down';
const VERBS: Verb[] = ['assign', 'release', 'apply', 'up', 'down'];
/** Syscalls that change state: pins (bpffs), and the records in /run/l3iso. */
const TRACED = ['bpf', 'unlink', 'rename', 'symlink', 'mkdir', 'rmdir', 'write'];
/** also traced while collecting: which fd a write goes to */
const FD_CALLS = ['openat', 'close'];
/** bpf commands that change persistent state (pins, maps, links, sockets). */
const MUTATING_BPF =
  /^BPF_(MAP_UPDATE_ELEM|MAP_DELETE_ELEM|MAP_UPDATE_BATCH|MAP_DELETE_BATCH|OBJ_PIN|LINK_CREATE|LINK_UPDATE|LINK_DETACH|ITER_CREATE)\b/;

interface Point {
  syscall: string;
  /** per-syscall invocation number of the main thread, as strace's when= counts it */
  nth: number;
  what: string;
  /** the kind of change (bpf command, or syscall and file): CI kills before
   * the first of each kind, so no path goes untested */
  kind: string;
  /** the call's decoded arguments, as strace printed them */
  arg: string;
}

/** `-tmp-123`, `revoke-123-abc`: names that differ from run to run; one
 * kind for every link (one code path pins them all), one per map (each
 * map missing is another state). */
const kindOfPath = (p: string): string =>
  p
    .replace(/-tmp-\d+/g, '-tmp')
    .replace(/revoke-[\w-]+/g, 'revoke-N')
    .replace(/\/links\/[\w-]+?(-tmp|")/g, '/links/LINK$1')
    .replace(/\/sys\/fs\/bpf\/[^/"]+/g, 'PIN');

/** The main thread's lines (everything runs on node's main thread: the
 * pid with the most calls). */
function mainThread(lines: string[]): { name: string; args: string }[] {
  const perPid = new Map<string, number>();
  for (const l of lines) {
    const pid = l.split(' ')[0];
    if (pid) perPid.set(pid, (perPid.get(pid) ?? 0) + 1);
  }
  const main = [...perPid].sort((a, b) => b[1] - a[1])[0]![0];
  const out: { name: string; args: string }[] = [];
  for (const l of lines) {
    const m = /^(\d+)\s+(\w+)\((.*)$/.exec(l);
    if (m && m[1] === main) out.push({ name: m[2]!, args: m[3]! });
  }
  return out;
}

/** The state-changing syscalls of one run of `args`, in order. */
async function mutatingPoints(sb: Sandbox, args: string[]): Promise<Point[]> {
  const out = `/tmp/l3iso-crash-${process.pid}.trace`;
  const r = await sb.cli(args, {
    wrap: [
      'strace',
      '-f',
      '-qq',
      '-o',
      out,
      '-e',
      `trace=${[...TRACED, ...FD_CALLS].join(',')}`,
      '--',
    ],
  });
  expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(0);
  const calls = mainThread(readFileSync(out, 'utf8').split('\n'));
  rmSync(out, { force: true });
  const seen = new Map<string, number>();
  const records = new Map<string, string>(); // fd -> file under /run/l3iso
  const points: Point[] = [];
  for (const { name, args: arg } of calls) {
    if (name === 'openat') {
      const m = /^\w+, "(\/run\/l3iso\/[^"]+)".*O_CREAT.*= (\d+)$/.exec(arg);
      if (m) records.set(m[2]!, m[1]!);
      continue;
    }
    if (name === 'close') {
      records.delete(/^(\d+)/.exec(arg)?.[1] ?? '');
      continue;
    }
    if (!TRACED.includes(name)) continue;
    const nth = (seen.get(name) ?? 0) + 1;
    seen.set(name, nth);
    if (name === 'bpf' && !MUTATING_BPF.test(arg)) continue;
    // A call that failed (mkdir of an existing dir) changed nothing.
    if (/\)\s+= -1 /.test(arg)) continue;
    let kind: string;
    if (name === 'bpf') kind = arg.split(',')[0]!;
    else if (name === 'write') {
      const file = records.get(/^(\d+)/.exec(arg)?.[1] ?? '');
      if (!file) continue; // stdout, stderr, libuv's own pipes
      kind = `write ${file.replace(/[0-9a-f]{16}/, 'TAG').replace(/\d+/g, 'N')}`;
    } else kind = `${name} ${kindOfPath(arg.split(',')[0]!)}`;
    points.push({ syscall: name, nth, what: `${name}(${arg.slice(0, 60)}`, kind, arg });
  }
  return points;
}

/** Every stride-th point, plus the first point of each kind and the last. */
function choose(points: Point[], stride: number): number[] {
  const chosen = new Set<number>();
  const kinds = new Set<string>();
  points.forEach((p, i) => {
    if (i % stride === 0 || !kinds.has(p.kind)) chosen.add(i);
    kinds.add(p.kind);
  });
  chosen.add(points.length - 1);
  return [...chosen].sort((a, b) => a - b);
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

/** Both checks: the engine's `gc --check`, and the test's own from the maps. */
async function inconsistencies(sb: Sandbox): Promise<string[]> {
  const r = await sb.cli(['gc', '--check', '--json']);
  expect(r.json?.inconsistencies, `${r.stderr} ${r.stdout}`).toBeDefined();
  return [...(r.json.inconsistencies as string[]), ...mapInvariants(sb.pinDir)];
}

interface Scenario {
  name: string;
  verb: Verb;
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

/** apply --prune: releases a whole cell and an address, adds addresses to a
 * cell, makes two cells (batched claims) and sets a policy (allow-list). */
const APPLY_FILE = `/tmp/l3iso-crash-apply-${process.pid}.json`;
const APPLIED = {
  cells: [
    { cgroup: 'keep', addresses: [V4(1), V6(1)] },
    { cgroup: 'ap1', addresses: [V4(20), V6(20)], allowRaw: true },
    { cgroup: 'ap3', addresses: [V4(23), V6(23)], allowFrom: ['198.51.100.0/24'] },
    { cgroup: 'ap4', addresses: [V6(24)] },
  ],
};

async function beforeApply(sb: Sandbox): Promise<void> {
  for (const c of await sb.list())
    if (!['keep', 'ap1', 'ap2'].includes(c.cell)) await sb.cliOk(['release', c.cell, '--force']);
  for (const c of ['ap3', 'ap4']) sb.cg(c);
  await reset(sb, 'ap1', V4(20), V4(22));
  await reset(sb, 'ap2', V4(21));
}

const SCENARIOS: Scenario[] = [
  {
    name: 'assign of a new cell',
    verb: 'assign',
    args: ['assign', 'k1', V4(7), V6(7)],
    before: (sb) => reset(sb, 'k1'),
    after: async (sb) => {
      const c = await cellOf(sb, 'k1');
      expect(c).toMatchObject({ addresses: [V4(7), V6(7)], primary4: V4(7), primary6: V6(7) });
    },
  },
  {
    name: 'assign to an existing cell',
    verb: 'assign',
    args: ['assign', 'k2', V4(8)],
    before: (sb) => reset(sb, 'k2', V6(8)),
    after: async (sb) => {
      expect(await cellOf(sb, 'k2')).toMatchObject({ primary4: V4(8), primary6: V6(8) });
    },
  },
  {
    name: 'release of a primary',
    verb: 'release',
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
    verb: 'release',
    stride: STRIDE(4),
    args: ['release', 'k4', '--force'],
    before: (sb) => reset(sb, 'k4', V4(5), V6(5)),
    after: async (sb) => {
      expect(await cellOf(sb, 'k4')).toBeUndefined();
    },
  },
  {
    name: 'apply --prune',
    verb: 'apply',
    stride: STRIDE(3),
    args: ['apply', '-f', APPLY_FILE, '--prune', '--force'],
    before: beforeApply,
    after: async (sb) => {
      const cells = await sb.list();
      expect(
        cells.map((c: { cell: string; addresses: string[] }) => [c.cell, c.addresses]).sort(),
      ).toEqual(APPLIED.cells.map((c) => [c.cgroup, c.addresses]).sort());
      expect(await cellOf(sb, 'ap1')).toMatchObject({ primary4: V4(20), allowRaw: true });
      expect(await cellOf(sb, 'ap3')).toMatchObject({ allowList: true });
    },
  },
  {
    name: 'up on a live engine',
    verb: 'up',
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
    verb: 'up',
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
    verb: 'down',
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
    writeFileSync(APPLY_FILE, JSON.stringify(APPLIED));
    sb = await createSandbox();
    await sb.up();
    await engineUp(sb);
  });
  afterAll(async () => {
    rmSync(APPLY_FILE, { force: true });
    await sb?.destroy();
  });

  /** A killed release may have taken the address already (it was killed
   * after the unclaim): the re-run then says so, having reconciled first. */
  async function rerun(s: Scenario, label: string): Promise<void> {
    const again = await sb.cli(argsOf(s));
    if (again.status !== 0 && s.verb === 'release')
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

  /** Right after a kill, before any repair: what the maps show (empty for
   * an engine verb, whose kill can leave no engine to read). */
  async function leftBehind(s: Scenario): Promise<string[]> {
    if (s.engine) return [];
    return inconsistencies(sb); // readable straight after the kill
  }

  for (const s of SCENARIOS) {
    it(`${s.name}: killed before each of its state changes`, async () => {
      await s.before(sb);
      const points = await mutatingPoints(sb, argsOf(s));
      expect(points.length, s.name).toBeGreaterThan(0);
      await s.after(sb);
      const chosen = choose(points, s.stride ?? 1);
      let inconsistent = 0;
      for (const i of chosen) {
        const p = points[i]!;
        await s.before(sb);
        const r = await killedAt(sb, argsOf(s), p);
        const label = `${s.name} killed at #${i} ${p.what}`;
        // A name record is written only when missing: a run after the
        // traced one (which wrote it) may not reach that write at all.
        if (r.status === 0 && p.syscall === 'write') {
          await s.after(sb);
          continue;
        }
        expect(r.status, `${label}: ${r.stderr}`).not.toBe(0);
        expect(r.signal, label).toBe('SIGKILL');
        if ((await leftBehind(s)).length > 0) inconsistent++;
        await converge(s, i % 2 === 0, label);
      }
      const kinds = new Set(points.map((p) => p.kind)).size;
      console.log(
        `crash: ${s.name}: killed before ${chosen.length} of ${points.length} state changes (${kinds} kinds); ${inconsistent} left inconsistent maps, all repaired`,
      );
      expect(chosen.length).toBeGreaterThanOrEqual(kinds);
    }, 3_600_000);
  }

  // Issue 9: `up` killed while it re-pins the revocation iterator left a
  // window in which `release` failed with a raw bpf_obj_get ENOENT after it
  // had changed the maps. Now: a release in that window either works
  // whole or is refused (EPIN_PARTIAL, naming the iterator) before it
  // changes anything, and the next up leaves everything consistent.
  it('up killed while it re-pins the revocation iterator: a release in the window is whole or refused first', async () => {
    const upArgs = ['up', '--cgroup-root', sb.root];
    await engineUp(sb);
    const points = (await mutatingPoints(sb, upArgs)).filter((p) => /revoke/.test(p.arg));
    expect(points.length).toBeGreaterThanOrEqual(6); // mkdir, 4 pins, symlink, rename, removals
    let refused = 0;
    for (const p of points) {
      await reset(sb, 'win', V4(6), V6(6));
      const label = `up killed at ${p.what}`;
      const r = await killedAt(sb, upArgs, p);
      expect(r.signal, label).toBe('SIGKILL');
      const before = await sb.list();
      const rel = await sb.cli(['release', 'win', V4(6), '--force'], { json: true });
      expect(rel.stdout + rel.stderr, label).not.toMatch(/bpf_obj_get|ENOENT/);
      if (rel.status === 0) {
        expect((await cellOf(sb, 'win')).addresses, label).toEqual([V6(6)]);
      } else {
        refused++;
        expect(rel.json?.error?.code, `${label}: ${rel.stdout}`).toBe('EPIN_PARTIAL');
        expect(rel.json.error.message, label).toContain('revocation iterator');
        expect(await sb.list(), label).toEqual(before);
      }
      await sb.cliOk(upArgs);
      expect(await inconsistencies(sb), label).toEqual([]);
    }
    console.log(
      `crash: up killed at ${points.length} revocation iterator steps; release refused in ${refused}, whole in the rest`,
    );
  }, 600_000);

  for (const verb of VERBS) {
    it(`${verb}: ${RANDOM_PER_VERB} kills at random instants inside it`, async () => {
      const scenarios = SCENARIOS.filter((s) => s.verb === verb);
      // Node's start-up (before any of l3iso runs), and how long each
      // command takes uninterrupted: the kills land between the two.
      const t0 = Date.now();
      await sb.cliOk(['--version']);
      const boot = Date.now() - t0;
      const took = new Map<Scenario, number>();
      for (const s of scenarios) {
        await s.before(sb);
        const t1 = Date.now();
        await sb.cliOk(argsOf(s));
        took.set(s, Date.now() - t1);
        await s.after(sb);
      }
      let inside = 0;
      let inconsistent = 0;
      let attempts = 0;
      while (inside < RANDOM_PER_VERB && attempts < 2 * RANDOM_PER_VERB + 10) {
        const s = scenarios[attempts % scenarios.length]!;
        attempts++;
        await s.before(sb);
        const span = Math.max(1, took.get(s)! - boot);
        const at = boot + Math.floor(Math.random() * span);
        const r = await sb.cli(argsOf(s), { timeoutMs: at });
        if (r.timedOut) inside++;
        const label = `${s.name} killed after ${at} ms`;
        if ((await leftBehind(s)).length > 0) inconsistent++;
        await converge(s, attempts % 2 === 0, label);
      }
      console.log(
        `crash: ${verb}: ${inside} random kills inside it (${attempts} tries, boot ${boot} ms, runs ${[...took.values()].join('/')} ms); ${inconsistent} left inconsistent maps, all repaired`,
      );
      expect(inside).toBeGreaterThanOrEqual(RANDOM_PER_VERB);
    }, 7_200_000);
  }
});
