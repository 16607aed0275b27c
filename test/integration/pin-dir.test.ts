// Issue 9: pin dirs are owned and checked. l3iso writes a marker (l3_config:
// magic, layout version, instance id) and every verb checks it and the shape
// of every map; down removes only what l3iso created; up refuses foreign,
// partial, damaged and newer dirs (--repair rebuilds the cell map from the
// owner map); gc never releases a cell because the root cannot be resolved.
// Issue 7 item 4: up with other parameters, or a second engine on the same
// root, is refused. Downgrades (README "Crashes and gc"): a dir of a newer
// layout (bigger l3_config, maps this version does not know or no longer
// has) is refused by every verb by its version; BPF objects built from the
// previous header are refused by up before anything is loaded; the way
// down is export, down --force, up with the older l3iso, apply.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BpfLink, BpfMap, BpfObject, MapType, MapUpdate } from '../../loader';
import {
  L3_CONFIG_COMPLETE,
  L3_CONFIG_MAGIC,
  L3_LAYOUT_VERSION,
  LAYOUT,
  decodeConfig,
  encodeConfig,
} from '../../src/codecs/layout';
import { SHARED_MAP_SHAPES, SHARED_MAPS, SOCK_OBJECT } from '../../src/dataplane/programs';
import { compileBpf, packageCopy, type PackageCopy } from '../harness/install';
import { createSandbox, REPO, V4, V6, type Sandbox } from '../harness/sandbox';
import { holdLock, inFlock, lockFree, spawnCli, until } from '../harness/lock';

const VERBS: string[][] = [
  ['list'],
  ['show', 'a'],
  ['assign', 'b', V4(3)],
  ['release', 'a', V4(1)],
  ['gc'],
  ['stats'],
  ['metrics'],
  ['events'],
  ['policy', 'a', '--allow-raw'],
];

function pinMap(file: string, type: MapType, keySize: number, valueSize: number): void {
  const m = BpfMap.create({ type, name: 'foreign', keySize, valueSize, maxEntries: 4 });
  try {
    m.pin(file);
  } finally {
    m.close();
  }
}

function rewriteConfig(pinDir: string, change: (c: ReturnType<typeof decodeConfig>) => void): void {
  const m = BpfMap.openPinned(path.join(pinDir, 'maps', 'l3_config'));
  try {
    const c = decodeConfig(m.lookup(Buffer.alloc(4))!);
    change(c);
    m.update(Buffer.alloc(4), encodeConfig(c), MapUpdate.ANY);
  } finally {
    m.close();
  }
}

describe('pin dirs', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('a');
    sb.cg('b');
    await sb.assign('a', V4(1), V6(1), V4(2));
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('the map shapes l3iso checks are the ones the BPF objects declare', () => {
    const obj = BpfObject.open(path.join(REPO, 'bpf', SOCK_OBJECT));
    try {
      const specs = new Map(obj.mapSpecs().map((s) => [s.name, s]));
      for (const name of SHARED_MAPS) {
        const spec = specs.get(name)!;
        expect(spec, name).toBeDefined();
        const want = SHARED_MAP_SHAPES[name];
        expect({ type: spec.type, key: spec.keySize, value: spec.valueSize }, name).toEqual({
          type: want.type,
          key: want.keySize,
          value: want.valueSize,
        });
      }
    } finally {
      obj.close();
    }
  });

  it('a dir of unrelated pins: up refuses to adopt it, down removes nothing', async () => {
    const dir = sb.extraPinDir();
    pinMap(path.join(dir, 'theirs'), MapType.HASH, 4, 4);
    const up = await sb.cli(['up', '--cgroup-root', sb.cg('other')], { pinDir: dir, json: true });
    expect(up.json?.error?.code, up.stdout).toBe('EPIN_DIR');
    expect(up.json.error.message).toContain('theirs');
    const down = await sb.cli(['down', '--force'], { pinDir: dir, json: true });
    expect(down.json?.error?.code, down.stdout).toBe('EPIN_DIR');
    expect(fs.readdirSync(dir)).toEqual(['theirs']);
  });

  it('a dir whose l3_config is not ours (no marker) is refused by every verb', async () => {
    const dir = sb.extraPinDir();
    fs.mkdirSync(path.join(dir, 'maps'));
    for (const name of SHARED_MAPS) {
      const s = SHARED_MAP_SHAPES[name];
      if (
        s.type === MapType.RINGBUF ||
        s.type === MapType.SK_STORAGE ||
        s.type === MapType.SOCKHASH
      )
        continue;
      pinMap(path.join(dir, 'maps', name), MapType.HASH, 8, 8);
    }
    for (const v of VERBS) {
      const r = await sb.cli(v, { pinDir: dir, json: true });
      expect(r.json?.error?.code, `${v.join(' ')}: ${r.stdout}`).toMatch(/EPIN_DIR|EPIN_PARTIAL/);
    }
  });

  it('a newer layout version is refused by every verb, down included', async () => {
    rewriteConfig(sb.pinDir, (c) => (c.version = 999));
    try {
      for (const v of [...VERBS, ['up', '--cgroup-root', sb.root], ['down', '--force']]) {
        const r = await sb.cli(v, { json: true });
        expect(r.json?.error?.code, `${v.join(' ')}: ${r.stdout}`).toBe('EPIN_DIR');
        expect(r.json.error.message).toContain('layout version 999');
      }
    } finally {
      rewriteConfig(sb.pinDir, (c) => (c.version = L3_LAYOUT_VERSION));
    }
    expect((await sb.list()).map((c: { cell: string }) => c.cell)).toEqual(['a']);
  });

  it('a damaged map (right name, other shape) is refused, never used', async () => {
    const cells = path.join(sb.pinDir, 'maps', 'l3_cells');
    const saved = path.join(sb.extraPinDir(), 'l3_cells');
    fs.renameSync(cells, saved);
    pinMap(cells, MapType.HASH, 8, 4);
    try {
      const r = await sb.cli(['list'], { json: true });
      expect(r.json?.error?.code, r.stdout).toBe('EPIN_DIR');
      expect(r.json.error.message).toMatch(/l3_cells is not the engine's/);
      const up = await sb.cli(['up', '--cgroup-root', sb.root], { json: true });
      expect(up.json?.error?.code, up.stdout).toBe('EPIN_DIR');
    } finally {
      fs.unlinkSync(cells);
      fs.renameSync(saved, cells);
    }
    expect(await sb.list()).toHaveLength(1);
  });

  it('a live engine that lost its cell map: verbs and up refuse; up --repair rebuilds it', async () => {
    const before = await sb.list();
    const cells = path.join(sb.pinDir, 'maps', 'l3_cells');
    // Keep the map alive through a pin elsewhere: the programs still use it.
    const aside = path.join(sb.extraPinDir(), 'l3_cells');
    fs.renameSync(cells, aside);
    try {
      const r = await sb.cli(['list'], { json: true });
      expect(r.json?.error?.code, r.stdout).toBe('EPIN_PARTIAL');
      expect(r.json.error.message).toContain('l3_cells');
      const up = await sb.cli(['up', '--cgroup-root', sb.root], { json: true });
      expect(up.json?.error?.code, up.stdout).toBe('EPIN_PARTIAL');
      expect(up.json.error.message).toContain('l3_cells');
      expect(fs.existsSync(cells)).toBe(false); // nothing was created
      const fixed = await sb.cliOk(['up', '--cgroup-root', sb.root, '--repair', '--json']);
      expect(fixed.json.repaired).toEqual(['l3_cells']);
    } finally {
      fs.rmSync(aside, { force: true });
    }
    expect(await sb.list()).toEqual(before);
    expect((await sb.cli(['gc', '--check'])).status).toBe(0);
    // still confined by the rebuilt map
    const p = await sb.probe(
      'a',
      [
        { op: 'bind_new', fam: 4, addr: '0.0.0.0' },
        { op: 'bind_new', fam: 4, addr: V4(5) },
      ],
      { keepGoing: true },
    );
    expect(p.ops[0]).toMatchObject({ ok: true, addr: V4(1) });
    expect(p.ops[1]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
  });

  it('a lost owner map cannot be repaired: up --repair refuses', async () => {
    const owners = path.join(sb.pinDir, 'maps', 'l3_owners');
    const aside = path.join(sb.extraPinDir(), 'l3_owners');
    fs.renameSync(owners, aside);
    try {
      const up = await sb.cli(['up', '--cgroup-root', sb.root, '--repair'], { json: true });
      expect(up.json?.error?.code, up.stdout).toBe('EPIN_PARTIAL');
      expect(up.json.error.message).toContain('l3_owners');
    } finally {
      fs.renameSync(aside, owners);
    }
    expect(await sb.list()).toHaveLength(1);
  });

  it('a missing revocation iterator is named before anything changes', async () => {
    const link = path.join(sb.pinDir, 'revoke');
    const target = fs.readlinkSync(link);
    fs.unlinkSync(link);
    try {
      const r = await sb.cli(['release', 'a', V4(2)], { json: true });
      expect(r.json?.error?.code, r.stdout).toBe('EPIN_PARTIAL');
      expect(r.json.error.message).toContain('revocation iterator');
    } finally {
      fs.symlinkSync(target, link);
    }
    expect((await sb.list())[0].addresses).toContain(V4(2));
  });

  it('gc releases nothing when the recorded cgroup root cannot be resolved', async () => {
    const root = sb.root;
    // garbage, and a real cgroup that is not the root (walking it, every
    // cell would look dead)
    for (const garbage of ['/sys/fs/cgroup/garbage\nroot', sb.outsideCg('elsewhere')]) {
      rewriteConfig(sb.pinDir, (c) => (c.cgroupRoot = garbage));
      try {
        const r = await sb.cli(['gc']);
        expect(r.status).toBe(1);
        expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
        expect(r.stderr).toMatch(/cannot resolve the engine's cgroup root .*nothing was released/);
      } finally {
        rewriteConfig(sb.pinDir, (c) => (c.cgroupRoot = root));
      }
      expect(await sb.list()).toHaveLength(1);
    }
  });

  it('up with another --max-cells, --netns or cgroup root is refused', async () => {
    const mc = await sb.cli(['up', '--cgroup-root', sb.root, '--max-cells', '7'], { json: true });
    expect(mc.json?.error?.code, mc.stdout).toBe('EALREADY_UP');
    expect(mc.json.error.message).toMatch(/--max-cells \d+, not 7/);
    const other = `${sb.netns}-x`;
    spawnSync('ip', ['netns', 'add', other]);
    try {
      const ns = await sb.cli(['up', '--cgroup-root', sb.root, '--netns', `/run/netns/${other}`], {
        json: true,
      });
      expect(ns.json?.error?.code, ns.stdout).toBe('EALREADY_UP');
      expect(ns.json.error.message).toContain('network namespace');
    } finally {
      spawnSync('ip', ['netns', 'del', other]);
    }
    const rt = await sb.cli(['up', '--cgroup-root', sb.cg('b')], { json: true });
    expect(rt.json?.error?.code, rt.stdout).toBe('EALREADY_UP');
  });

  it('a second engine on the same cgroup root is refused', async () => {
    const dir = sb.extraPinDir();
    const r = await sb.cli(['up', '--cgroup-root', sb.root], { pinDir: dir, json: true });
    expect(r.json?.error?.code, r.stdout).toBe('EALREADY_UP');
    expect(r.json.error.message).toContain(sb.pinDir);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('down refuses while cells exist; with --force it removes only its own pins', async () => {
    const refused = await sb.cli(['down'], { json: true });
    expect(refused.json?.error?.code, refused.stdout).toBe('ECELLS_LIVE');
    expect(refused.json.error.message).toContain('(a)');
    pinMap(path.join(sb.pinDir, 'visitor'), MapType.HASH, 4, 4);
    const r = await sb.cliOk(['down', '--force', '--json']);
    expect(r.json.left).toEqual(['visitor']);
    expect(r.json.cells).toEqual(['a']);
    expect(fs.readdirSync(sb.pinDir)).toEqual(['visitor']);
    fs.unlinkSync(path.join(sb.pinDir, 'visitor'));
    await sb.up();
  });

  it('an engine of layout version 1 is refused by verbs and taken down by down', async () => {
    const dir = sb.extraPinDir();
    fs.mkdirSync(path.join(dir, 'maps'));
    const cfg = BpfMap.create({
      type: MapType.ARRAY,
      name: 'l3_config',
      keySize: 4,
      valueSize: 272,
      maxEntries: 1,
    });
    try {
      const v = Buffer.alloc(272);
      v.writeUInt32LE(1, 12);
      cfg.update(Buffer.alloc(4), v, MapUpdate.ANY);
      cfg.pin(path.join(dir, 'maps', 'l3_config'));
    } finally {
      cfg.close();
    }
    const r = await sb.cli(['list'], { pinDir: dir, json: true });
    expect(r.json?.error?.code, r.stdout).toBe('EPIN_DIR');
    expect(r.json.error.message).toContain('layout version 1');
    await sb.cliOk(['down'], { pinDir: dir });
    expect(fs.existsSync(dir)).toBe(false);
  });

  it('an engine of layout version 2 (every counter per CPU) is refused with the down + up hint, and taken down', async () => {
    const dir = sb.extraPinDir();
    fs.mkdirSync(path.join(dir, 'maps'));
    const maps = [
      BpfMap.create({
        type: MapType.ARRAY,
        name: 'l3_config',
        keySize: 4,
        valueSize: LAYOUT.l3_config.size,
        maxEntries: 1,
      }),
      // version 2's l3_cell_stats: refusals, drops and traffic, 256 bytes per CPU
      BpfMap.create({
        type: MapType.PERCPU_HASH,
        name: 'l3_cell_stats',
        keySize: 8,
        valueSize: 256,
        maxEntries: 16,
      }),
    ];
    try {
      const config = {
        rootCgroup: 1n,
        rootLevel: 0,
        version: 2,
        cgroupRoot: sb.root,
        flags: L3_CONFIG_COMPLETE,
      };
      maps[0]!.update(Buffer.alloc(4), encodeConfig(config), MapUpdate.ANY);
      maps[0]!.pin(path.join(dir, 'maps', 'l3_config'));
      maps[1]!.pin(path.join(dir, 'maps', 'l3_cell_stats'));
    } finally {
      for (const m of maps) m.close();
    }
    for (const verb of [['list'], ['stats'], ['up', '--cgroup-root', sb.root]]) {
      const r = await sb.cli(verb, { pinDir: dir, json: true });
      expect(r.json?.error?.code, `${verb[0]}: ${r.stdout}`).toBe('EPIN_DIR');
      expect(r.json.error.message).toContain('layout version 2, made by an older l3iso');
      expect(r.json.error.hint).toMatch(/l3iso down.*up/);
    }
    await sb.cliOk(['down'], { pinDir: dir });
    expect(fs.existsSync(dir)).toBe(false);
  });
});

// The built Engine: it loads each verb's module with require(), which the
// test runner's TypeScript transform does not serve.
const { Engine } =
  require('../../dist/src/engine/engine') as typeof import('../../src/engine/engine');
const { openFds } = require('../../dist/loader') as typeof import('../../loader');

// Issue 12: the lock is a flock on the pin dir itself (shared for readers,
// exclusive for writers, never a file that can be unlinked while held), and
// a fresh up is built aside and renamed into place.
describe('the pin dir is the lock', () => {
  let sb: Sandbox;
  const owners = (): number => {
    const m = BpfMap.openPinned(path.join(sb.pinDir, 'maps', 'l3_owners'));
    try {
      return m.count();
    } finally {
      m.close();
    }
  };
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('w1');
    sb.cg('w2');
    sb.cg('r');
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('a writer and a reader wait while the dir is locked exclusively; no lock file exists', async () => {
    const tag = createHash('sha256').update(path.resolve(sb.pinDir)).digest('hex').slice(0, 16);
    expect(fs.existsSync(`/run/l3iso/${tag}.lock`)).toBe(false);
    expect(lockFree(sb.pinDir, 'exclusive')).toBe(true);
    const before = owners();
    const holder = await holdLock(sb.pinDir, 'exclusive');
    const writer = spawnCli(sb.nsPath, sb.pinDir, ['assign', 'w1', V4(5)]);
    const reader = spawnCli(sb.nsPath, sb.pinDir, ['--json', 'list']);
    try {
      await until(() => inFlock(writer.child.pid!), 'the writer waits in flock');
      await until(() => inFlock(reader.child.pid!), 'the reader waits in flock');
      expect(owners()).toBe(before);
    } finally {
      await holder.release();
    }
    const [w, r] = await Promise.all([writer.done, reader.done]);
    expect(w.status, w.stderr).toBe(0);
    expect(r.status, r.stderr).toBe(0);
    expect(owners()).toBeGreaterThan(before);
  });

  it('readers share it: a reader runs while another reader holds it, a writer waits', async () => {
    const holder = await holdLock(sb.pinDir, 'shared');
    const writer = spawnCli(sb.nsPath, sb.pinDir, ['assign', 'w2', V4(6)]);
    try {
      const r = await spawnCli(sb.nsPath, sb.pinDir, ['--json', 'list']).done;
      expect(r.status, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).cells.map((c: { cell: string }) => c.cell)).toContain('w1');
      await until(() => inFlock(writer.child.pid!), 'the writer waits in flock');
      expect(JSON.stringify(await sb.list())).not.toContain(V4(6));
    } finally {
      await holder.release();
    }
    const w = await writer.done;
    expect(w.status, w.stderr).toBe(0);
    expect(JSON.stringify(await sb.list())).toContain(V4(6));
  });

  it('an Engine holds its fds until closed; a read-only one refuses every write', async () => {
    const names = (await sb.list()).map((c: { cell: string }) => c.cell);
    const before = openFds();
    const engine = Engine.open(sb.pinDir);
    try {
      expect(engine.list().cells.map((c) => c.cell)).toEqual(names);
      expect(openFds()).toBeGreaterThan(before);
      expect(() => engine.assign('r', [V4(9)])).toThrow(/read-only Engine/);
      expect(() => engine.gc()).toThrow(/read-only Engine/);
    } finally {
      engine.close();
    }
    expect(openFds()).toBe(before);
    using again = Engine.open(sb.pinDir);
    expect(JSON.stringify(again.list())).not.toContain(V4(9));
  });

  it('a writer that waited while the engine was removed and brought up again writes nothing', async () => {
    // The holder removes the whole pin dir under the lock, as down does.
    const holder = await holdLock(sb.pinDir, 'exclusive', `read x; rm -rf ${sb.pinDir}; cat`);
    const writer = spawnCli(sb.nsPath, sb.pinDir, ['--json', 'assign', 'r', V4(7)]);
    try {
      await until(() => inFlock(writer.child.pid!), 'the writer waits in flock');
      holder.send('go');
      await until(() => !fs.existsSync(sb.pinDir), 'the pin dir is gone');
      // A new engine at the same path: built aside, it needs no old lock.
      await sb.up();
    } finally {
      await holder.release();
    }
    const w = await writer.done;
    expect(w.status).toBe(1);
    expect(JSON.parse(w.stdout).error.code, w.stdout).toBe('ENOT_UP');
    expect(await sb.list()).toEqual([]);
  });
});

describe('a fresh up is built aside and renamed into place', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  const builds = (): string[] =>
    fs
      .readdirSync(path.dirname(sb.pinDir))
      .filter((e) => e.startsWith(`${path.basename(sb.pinDir)}-tmp-`));
  const attached = (): number => {
    const r = spawnSync('bpftool', ['-j', 'cgroup', 'show', sb.root], { encoding: 'utf8' });
    return (JSON.parse(r.stdout || '[]') as unknown[]).length;
  };

  it('up killed mid-way (programs attached) or at the rename leaves no engine at the pin dir', async () => {
    // A traced clean up: how many renames it makes (the last one is the
    // build dir's) and how many programs a complete engine attaches.
    const trace = `/tmp/l3iso-rename-${process.pid}.trace`;
    const args = ['up', '--cgroup-root', sb.root];
    await sb.cliOk(args, {
      wrap: ['strace', '-f', '-qq', '-o', trace, '-e', 'trace=rename,renameat,renameat2', '--'],
    });
    const renames = fs
      .readFileSync(trace, 'utf8')
      .split('\n')
      .filter((l) => /rename/.test(l) && !/= -1 /.test(l)).length;
    fs.rmSync(trace, { force: true });
    const programs = attached();
    expect(renames).toBeGreaterThan(2);
    expect(programs).toBeGreaterThan(0);
    await sb.cliOk(['down']);
    for (const when of [2, renames]) {
      fs.mkdirSync(sb.pinDir, { recursive: true });
      const r = await sb.cli(args, {
        wrap: [
          'strace',
          '-f',
          '-qq',
          '-o',
          '/dev/null',
          '-e',
          'trace=rename,renameat,renameat2',
          '-e',
          `inject=rename,renameat,renameat2:error=EINTR:signal=KILL:when=${when}`,
          '--',
        ],
      });
      expect(r.status, `killed at rename ${when}: ${r.stderr}`).not.toBe(0);
      // Nothing at the final path: no half engine any verb could see.
      expect(fs.readdirSync(sb.pinDir), `rename ${when}`).toEqual([]);
      expect(builds().length, `rename ${when}`).toBe(1);
      const list = await sb.cli(['list'], { json: true });
      expect(list.json?.error?.code, list.stdout).toBe('ENOT_UP');
      // The next up removes the dead build (detaching what it attached).
      await sb.cliOk(args);
      expect(builds()).toEqual([]);
      expect(attached()).toBe(programs);
      expect(await sb.list()).toEqual([]);
      await sb.cliOk(['down']);
    }
  });

  it('a pin dir an l3iso did not make is refused with a clear error, nothing renamed over it', async () => {
    fs.mkdirSync(sb.pinDir, { recursive: true });
    const m = BpfMap.create({
      type: MapType.ARRAY,
      name: 'x',
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
    });
    try {
      m.pin(path.join(sb.pinDir, 'someone-else'));
    } finally {
      m.close();
    }
    const r = await sb.cli(['up', '--cgroup-root', sb.root], { json: true });
    expect(r.json?.error?.code, r.stdout).toBe('EPIN_DIR');
    expect(fs.readdirSync(sb.pinDir)).toEqual(['someone-else']);
    expect(builds()).toEqual([]);
    fs.unlinkSync(path.join(sb.pinDir, 'someone-else'));
  });
});

/** An engine dir as a newer l3iso (layout version L3_LAYOUT_VERSION + 1)
 * could leave it: l3_config grown at its end, a map this version does not
 * know, and maps this version has that it dropped. */
function newerEngineDir(dir: string): number {
  const newer = L3_LAYOUT_VERSION + 1;
  fs.mkdirSync(path.join(dir, 'maps'));
  fs.mkdirSync(path.join(dir, 'links'));
  const size = LAYOUT.l3_config.size + 16;
  const cfg = BpfMap.create({
    type: MapType.ARRAY,
    name: 'l3_config',
    keySize: 4,
    valueSize: size,
    maxEntries: 1,
  });
  try {
    const v = Buffer.alloc(size);
    v.writeUInt32LE(newer, LAYOUT.l3_config.fields.version.offset);
    v.writeBigUInt64LE(L3_CONFIG_MAGIC, LAYOUT.l3_config.fields.magic.offset);
    cfg.update(Buffer.alloc(4), v, MapUpdate.ANY);
    cfg.pin(path.join(dir, 'maps', 'l3_config'));
  } finally {
    cfg.close();
  }
  for (const name of ['l3_cells', 'l3_owners'] as const) {
    const sh = SHARED_MAP_SHAPES[name];
    pinMap(path.join(dir, 'maps', name), sh.type, sh.keySize, sh.valueSize);
  }
  pinMap(path.join(dir, 'maps', 'l3_future'), MapType.HASH, 8, 8);
  return newer;
}

const tree = (dir: string): string[] => fs.readdirSync(dir, { recursive: true }).map(String).sort();

/** A copy of the package whose sock.bpf.o was built from layout 1's
 * headers (test/integration/fixtures/layout-v1): a stale build, or an older
 * package's objects. */
function staleInstall(): PackageCopy {
  const copy = packageCopy('stale');
  const fixture = path.join(__dirname, 'fixtures', 'layout-v1');
  compileBpf(path.join(fixture, 'sock.bpf.c'), path.join(copy.bpf, SOCK_OBJECT), [fixture]);
  return copy;
}

/** Program id behind each pinned link: what up would change. */
function linkedPrograms(pinDir: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of fs.readdirSync(path.join(pinDir, 'links'))) {
    const link = BpfLink.openPinned(path.join(pinDir, 'links', name));
    try {
      out[name] = link.info().progId;
    } finally {
      link.close();
    }
  }
  return out;
}

describe('downgrades', () => {
  let sb: Sandbox;
  let stale: PackageCopy | undefined;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('a');
    await sb.assign('a', V4(1), V6(1));
  });
  afterAll(async () => {
    stale?.remove();
    await sb?.destroy();
  });

  it('a newer layout (bigger l3_config, maps added and dropped) is refused by every verb by its version', async () => {
    const dir = sb.extraPinDir();
    const newer = newerEngineDir(dir);
    const before = tree(dir);
    for (const v of [...VERBS, ['up', '--cgroup-root', sb.root], ['down', '--force']]) {
      const r = await sb.cli(v, { pinDir: dir, json: true });
      expect(r.json?.error?.code, `${v.join(' ')}: ${r.stdout}`).toBe('EPIN_DIR');
      expect(r.json.error.message, v.join(' ')).toContain(
        `layout version ${newer}, made by a newer l3iso; this one uses version ${L3_LAYOUT_VERSION}`,
      );
    }
    expect(tree(dir)).toEqual(before);
  });

  it('objects built from the previous header: up refuses them before loading anything', async () => {
    stale = staleInstall();
    const links = linkedPrograms(sb.pinDir);
    const cells = await sb.list();
    const r = await sb.onHost([
      process.execPath,
      stale.cli,
      '--pin-dir',
      sb.pinDir,
      '--json',
      'up',
      '--cgroup-root',
      sb.root,
    ]);
    expect(r.status, r.stderr).toBe(1);
    const err = JSON.parse(r.stdout).error;
    expect(err.code).toBe('EPIN_DIR');
    expect(err.message).toMatch(
      /^sock\.bpf\.o was built for another layout than the engine's pinned maps: its l3_config is .* value 272 B; the pinned one .* value \d+ B; nothing was changed$/,
    );
    // nothing was swapped in or changed, and the cell is still confined
    expect(linkedPrograms(sb.pinDir)).toEqual(links);
    expect(await sb.list()).toEqual(cells);
    expect((await sb.cli(['gc', '--check'])).status).toBe(0);
    const p = await sb.probe('a', [{ op: 'bind_new', fam: 4, addr: V4(5) }], { keepGoing: true });
    expect(p.last).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
  });

  it('the way down: export, down --force, up (the older l3iso), apply gives the same cells', async () => {
    sb.cg('b');
    await sb.assign('b', V4(2));
    await sb.cliOk(['policy', 'b', '--allow-raw']);
    const before = await sb.list();
    const file = path.join(os.tmpdir(), `l3iso-downgrade-${sb.id}.json`);
    try {
      fs.writeFileSync(file, (await sb.cliOk(['export', '--json'])).stdout);
      await sb.cliOk(['down', '--force']);
      await sb.up();
      await sb.cliOk(['apply', '-f', file]);
    } finally {
      fs.rmSync(file, { force: true });
    }
    const strip = (cs: { id?: unknown; loopback?: unknown }[]) =>
      cs.map(({ id: _id, loopback: _lo, ...rest }) => rest);
    expect(strip(await sb.list())).toEqual(strip(before));
  });
});
