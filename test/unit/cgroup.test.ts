import { randomBytes } from 'node:crypto';
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  rmdirSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { L3isoError } from '../../src/errors';
import {
  assertRecordableDepth,
  cgroupId,
  cgroupLevel,
  cgroupProcs,
  findCgroup2Mount,
  findCgroupById,
  relativeCellName,
  resolveCellPath,
} from '../../src/model/cgroup';

function errorOf(fn: () => unknown): L3isoError {
  try {
    fn();
  } catch (err) {
    if (err instanceof L3isoError) return err;
    throw err;
  }
  throw new Error('expected an L3isoError');
}

const HYBRID_MOUNTS = `sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
bpf /sys/fs/bpf bpf rw,relatime 0 0
`;

describe('findCgroup2Mount', () => {
  it.each([
    ['hybrid', HYBRID_MOUNTS, '/sys/fs/cgroup/unified'],
    [
      'unified',
      'cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n',
      '/sys/fs/cgroup',
    ],
    ['escaped', 'none /mnt/my\\040cgroups cgroup2 rw 0 0\n', '/mnt/my cgroups'],
    ['first wins', 'a /first cgroup2 rw 0 0\nb /second cgroup2 rw 0 0', '/first'],
  ])('%s', (_name, text, want) => {
    expect(findCgroup2Mount(text)).toBe(want);
  });

  it.each([
    ['v1 only', 'cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n'],
    ['empty', ''],
    // the fs type column, not the device name, decides
    ['device named cgroup2', 'cgroup2 /mnt tmpfs rw 0 0\n'],
  ])('refuses %s', (_name, text) => {
    const err = errorOf(() => findCgroup2Mount(text));
    expect(err.code).toBe('ECGROUP_NOT_V2');
    expect(err.hint).toBeTruthy();
  });

  it('reads /proc/mounts by default', () => {
    const mount = findCgroup2Mount();
    expect(path.isAbsolute(mount)).toBe(true);
  });
});

describe('cgroupLevel', () => {
  it.each([
    ['/sys/fs/cgroup/unified', 0],
    ['/sys/fs/cgroup/unified/', 0],
    ['/sys/fs/cgroup/unified/a', 1],
    ['/sys/fs/cgroup/unified/a/b/c', 3],
    ['/sys/fs/cgroup/unified/a/../b', 1],
    ['/sys/fs/cgroup/unified/..x', 1],
  ])('%s -> %i', (p, level) => {
    expect(cgroupLevel(p, '/sys/fs/cgroup/unified')).toBe(level);
  });

  it.each(['/sys/fs/cgroup', '/sys/fs/cgroup/unifiedx', '/sys/fs/cgroup/unified/..'])(
    'refuses %s',
    (p) => {
      expect(errorOf(() => cgroupLevel(p, '/sys/fs/cgroup/unified')).code).toBe('ECGROUP_NOT_V2');
    },
  );
});

describe('assertRecordableDepth', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(path.join(tmpdir(), 'l3iso-depth-'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const below = (levels: number): string =>
    path.join(root, ...Array.from({ length: levels }, (_, i) => `l${i}`));

  it('takes cells up to 15 levels below the root, refuses 16 and deeper', () => {
    expect(() => assertRecordableDepth(below(1), root)).not.toThrow();
    expect(() => assertRecordableDepth(below(15), root)).not.toThrow();
    for (const levels of [16, 40]) {
      const err = errorOf(() => assertRecordableDepth(below(levels), root));
      expect(err.code).toBe('ECGROUP_TOO_DEEP');
      expect(err.message).toContain(`${levels} levels below the managed root`);
    }
  });
});

describe('resolveCellPath and relativeCellName (temp tree)', () => {
  // mount/
  //   root/            managed root
  //     web/a/         cells
  //     file           not a directory
  //     link-in -> web/a
  //     link-out -> ../outside
  //     link-root -> .
  //   outside/
  //   rootlink -> root
  let base: string;
  let mount: string;
  let root: string;

  beforeAll(() => {
    base = mkdtempSync(path.join(tmpdir(), 'l3iso-cgroup-'));
    mount = path.join(base, 'mount');
    root = path.join(mount, 'root');
    mkdirSync(path.join(root, 'web', 'a'), { recursive: true });
    mkdirSync(path.join(root, '..dots'));
    mkdirSync(path.join(mount, 'outside'));
    writeFileSync(path.join(root, 'file'), '');
    symlinkSync('web/a', path.join(root, 'link-in'));
    symlinkSync('../outside', path.join(root, 'link-out'));
    symlinkSync('.', path.join(root, 'link-root'));
    symlinkSync('root', path.join(mount, 'rootlink'));
  });

  afterAll(() => {
    if (base) rmSync(base, { recursive: true, force: true });
  });

  it.each([
    ['web', 'web'],
    ['web/a', 'web/a'],
    ['web/a/', 'web/a'],
    ['./web//a', 'web/a'],
    ['web/a/../a', 'web/a'],
    ['link-in', 'web/a'],
    ['..dots', '..dots'],
  ])('relative %j', (arg, rel) => {
    expect(resolveCellPath(arg, root, mount)).toBe(path.join(root, rel));
  });

  it('accepts absolute paths inside the root, also through a symlinked root', () => {
    expect(resolveCellPath(path.join(root, 'web', 'a'), root, mount)).toBe(
      path.join(root, 'web', 'a'),
    );
    expect(resolveCellPath(path.join(mount, 'rootlink', 'web'), root, mount)).toBe(
      path.join(root, 'web'),
    );
    expect(resolveCellPath('web', path.join(mount, 'rootlink'), mount)).toBe(
      path.join(root, 'web'),
    );
    expect(resolveCellPath(path.join(root, 'web'), path.join(mount, 'rootlink'), mount)).toBe(
      path.join(root, 'web'),
    );
  });

  it.each([
    ['..', 'ECGROUP_OUTSIDE_ROOT'],
    ['../outside', 'ECGROUP_OUTSIDE_ROOT'],
    ['web/../../outside', 'ECGROUP_OUTSIDE_ROOT'],
    ['link-out', 'ECGROUP_OUTSIDE_ROOT'],
    ['/etc', 'ECGROUP_OUTSIDE_ROOT'],
    ['/nonexistent/cell', 'ECGROUP_OUTSIDE_ROOT'],
    ['missing', 'ECGROUP_MISSING'],
    ['web/missing', 'ECGROUP_MISSING'],
    ['file', 'ECGROUP_MISSING'],
    ['file/x', 'ECGROUP_MISSING'],
    ['.', 'EUSAGE'],
    ['link-root', 'EUSAGE'],
    ['', 'EUSAGE'],
  ])('refuses %j with %s', (arg, code) => {
    const err = errorOf(() => resolveCellPath(arg, root, mount));
    expect(err.code).toBe(code);
  });

  it('names the missing path in the message', () => {
    const err = errorOf(() => resolveCellPath('web/nope', root, mount));
    expect(err.message).toContain(path.join(root, 'web', 'nope'));
    expect(errorOf(() => resolveCellPath(root, root, mount)).message).toContain(
      'cannot itself be a cell',
    );
  });

  it('refuses a root that is not under the cgroup2 mount, or is missing', () => {
    expect(errorOf(() => resolveCellPath('x', path.join(mount, 'outside'), root)).code).toBe(
      'ECGROUP_NOT_V2',
    );
    expect(errorOf(() => resolveCellPath('x', path.join(mount, 'gone'), mount)).code).toBe(
      'ECGROUP_MISSING',
    );
  });

  it.each([
    ['web/a', 'web/a'],
    ['web', 'web'],
    ['', '.'],
  ])('relativeCellName %j', (rel, name) => {
    expect(relativeCellName(path.join(root, rel), root)).toBe(name);
  });

  it('relativeCellName leaves paths outside the root as they are', () => {
    expect(relativeCellName('/elsewhere/x', root)).toBe('/elsewhere/x');
  });

  it('findCgroupById walks the tree by inode', () => {
    const target = path.join(root, 'web', 'a');
    expect(findCgroupById(root, statSync(target, { bigint: true }).ino)).toBe(target);
    expect(findCgroupById(root, statSync(root, { bigint: true }).ino)).toBe(root);
    expect(findCgroupById(root, 0n)).toBeUndefined();
    expect(findCgroupById(path.join(mount, 'gone'), 1n)).toBeUndefined();
  });

  it('cgroupProcs parses cgroup.procs and reports a missing cgroup', () => {
    writeFileSync(path.join(root, 'web', 'cgroup.procs'), '1\n42\n31337\n');
    expect(cgroupProcs(path.join(root, 'web'))).toEqual([1, 42, 31337]);
    writeFileSync(path.join(root, 'web', 'a', 'cgroup.procs'), '');
    expect(cgroupProcs(path.join(root, 'web', 'a'))).toEqual([]);
    expect(errorOf(() => cgroupProcs(path.join(root, 'nope'))).code).toBe('ECGROUP_MISSING');
  });

  it('cgroupId refuses paths that are not on cgroup2', () => {
    expect(errorOf(() => cgroupId(path.join(root, 'web'))).code).toBe('ECGROUP_NOT_V2');
    expect(errorOf(() => cgroupId(path.join(root, 'nope'))).code).toBe('ECGROUP_MISSING');
    expect(errorOf(() => cgroupId(path.join(root, 'file'))).code).toBe('ECGROUP_MISSING');
  });
});

// Not skipped when cgroup2 is missing: the engine cannot work without it,
// so its absence must fail the run loudly.
describe('on the real cgroup2 mount', () => {
  const mount = findCgroup2Mount();

  it('is writable (tests run as root)', () => {
    expect(() => accessSync(mount, constants.W_OK)).not.toThrow();
  });

  it('the hierarchy root has cgroup id 1', () => {
    expect(cgroupId(mount)).toBe(1n);
    expect(cgroupLevel(mount, mount)).toBe(0);
  });

  it('ids, levels, lookup and procs of a fresh cgroup tree', () => {
    const top = path.join(mount, `l3iso-unit-${randomBytes(4).toString('hex')}`);
    const child = path.join(top, 'cell');
    mkdirSync(top);
    try {
      mkdirSync(child);
      const topId = cgroupId(top);
      const childId = cgroupId(child);
      expect(topId).toBeGreaterThan(1n);
      expect(childId).not.toBe(topId);
      expect(childId).toBe(statSync(child, { bigint: true }).ino);
      expect(cgroupLevel(top, mount)).toBe(1);
      expect(cgroupLevel(child, mount)).toBe(2);
      expect(findCgroupById(top, childId)).toBe(child);
      expect(findCgroupById(mount, childId)).toBe(child);
      expect(resolveCellPath('cell', top, mount)).toBe(child);
      expect(errorOf(() => resolveCellPath('.', top, mount)).code).toBe('EUSAGE');
      expect(cgroupProcs(child)).toEqual([]);
      expect(cgroupProcs(mount)).toContain(1);
    } finally {
      if (existsSync(child)) rmdirSync(child);
      rmdirSync(top);
    }
  });
});
