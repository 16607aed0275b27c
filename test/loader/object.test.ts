import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AttachType,
  BpfError,
  BpfLink,
  BpfLoadError,
  BpfMap,
  BpfObject,
  LinkType,
  MapType,
  ProgType,
  isErrno,
  progTestRun,
  setLibbpfLogger,
} from '../../loader';
import { bpffsTmpDir, compileFixture, rmTree, tmpDir, u32, uniqueName } from './helpers';

let work: string;
let tinyObj: string;
let badObj: string;

beforeAll(() => {
  work = tmpDir();
  tinyObj = compileFixture('tiny', work);
  badObj = compileFixture('bad', work);
});

afterAll(() => {
  rmTree(work);
});

function counter(map: BpfMap, key: number): bigint {
  return map.lookup(u32(key))?.readBigUInt64LE() ?? 0n;
}

describe('BpfObject.open', () => {
  it('missing file: BpfError ENOENT naming the path', () => {
    const p = path.join(work, 'does-not-exist.bpf.o');
    let err: unknown;
    try {
      BpfObject.open(p);
    } catch (e) {
      err = e;
    }
    expect(isErrno(err, 'ENOENT')).toBe(true);
    expect((err as BpfError).call).toBe('bpf_object__open_file');
    expect((err as Error).message).toContain(p);
  });

  it('not an ELF file: BpfError', () => {
    const p = path.join(work, 'junk.o');
    fs.writeFileSync(p, 'not an elf file at all');
    expect(() => BpfObject.open(p)).toThrow(BpfError);
  });

  it('lists programs and map specs before load', () => {
    const obj = BpfObject.open(tinyObj);
    try {
      const progs = obj.programs();
      expect(progs.map((p) => p.name)).toEqual([
        'allow_bind4',
        'allow_bind4_v2',
        'xdp_pass',
        'tc_ok',
      ]);
      const bind = obj.program('allow_bind4');
      expect(bind.sectionName).toBe('cgroup/bind4');
      expect(bind.type).toBe(ProgType.CGROUP_SOCK_ADDR);
      expect(bind.expectedAttachType).toBe(AttachType.CGROUP_INET4_BIND);
      expect(bind.autoload).toBe(true);
      expect(() => bind.fd).toThrow(expect.objectContaining({ code: 'ENOENT' }));
      expect(() => obj.program('nope')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
      const counts = obj.mapSpecs().find((m) => m.name === 'counts');
      expect(counts).toEqual({
        name: 'counts',
        type: MapType.HASH,
        keySize: 4,
        valueSize: 8,
        maxEntries: 16,
        flags: 0,
        internal: false,
      });
      expect(() => obj.map('counts')).toThrow(BpfError);
    } finally {
      obj.close();
    }
  });
});

describe('BpfObject.load', () => {
  it('loads, resizes maps, skips non-autoload programs, hands out maps that outlive it', () => {
    const obj = BpfObject.open(tinyObj);
    let counts: BpfMap | undefined;
    try {
      obj.setMaxEntries('counts', 64);
      obj.program('tc_ok').setAutoload(false);
      obj.load();
      expect(obj.isLoaded).toBe(true);
      expect(() => obj.setMaxEntries('counts', 8)).toThrow(BpfError);
      expect(obj.program('xdp_pass').fd).toBeGreaterThan(0);
      expect(obj.program('xdp_pass').id).toBeGreaterThan(0);
      expect(() => obj.program('tc_ok').fd).toThrow(BpfError);
      counts = obj.map('counts');
      expect(counts.maxEntries).toBe(64);

      const pkt = Buffer.alloc(64, 0xab);
      const res = progTestRun(obj.program('xdp_pass').fd, pkt, { repeat: 5 });
      expect(res.retval).toBe(2); // XDP_PASS
      expect(res.dataOut).toEqual(pkt);
      expect(counter(counts, 3)).toBe(5n);
    } finally {
      obj.close();
    }
    // The object and its own fds are gone; our dup still works.
    expect(() => obj.programs()).toThrow(expect.objectContaining({ code: 'EBADF' }));
    counts.update(u32(9), Buffer.alloc(8));
    expect(counter(counts, 3)).toBe(5n);
    counts.close();
  });

  it('reuseMap makes the programs use an existing map', () => {
    const shared = BpfMap.create({
      type: MapType.HASH,
      name: 'counts',
      keySize: 4,
      valueSize: 8,
      maxEntries: 16,
    });
    const obj = BpfObject.open(tinyObj);
    try {
      obj.reuseMap('counts', shared);
      obj.load();
      progTestRun(obj.program('xdp_pass').fd, Buffer.alloc(14));
      expect(counter(shared, 3)).toBe(1n);
      const viaObj = obj.map('counts');
      expect(viaObj.id).toBe(shared.id);
      viaObj.close();
    } finally {
      obj.close();
      shared.close();
    }
  });

  it('verifier rejection: BpfLoadError with the verifier log tail', () => {
    const obj = BpfObject.open(badObj);
    let err: unknown;
    try {
      obj.load();
    } catch (e) {
      err = e;
    } finally {
      obj.close();
    }
    expect(err).toBeInstanceOf(BpfLoadError);
    const le = err as BpfLoadError;
    expect(le.code).toBe('EACCES');
    expect(le.call).toBe('bpf_object__load');
    expect(le.program).toBe('xdp_unchecked');
    expect(le.verifierLog).not.toBe('');
    expect(le.verifierLog).toMatch(/invalid access to packet/);
    expect(le.verifierLog.split('\n').length).toBeLessThanOrEqual(40);
    expect(le.message).toContain(le.verifierLog);
  });

  it('test run of a too-short XDP packet is EINVAL', () => {
    const obj = BpfObject.open(tinyObj);
    try {
      obj.load();
      expect(() => progTestRun(obj.program('xdp_pass').fd, Buffer.alloc(4))).toThrow(
        expect.objectContaining({ code: 'EINVAL', call: 'bpf_prog_test_run_opts' }),
      );
    } finally {
      obj.close();
    }
  });
});

describe('setLibbpfLogger', () => {
  it('routes libbpf messages through the callback and survives a throwing logger', () => {
    const seen: string[] = [];
    setLibbpfLogger((level, msg) => {
      seen.push(`${level} ${msg}`);
      throw new Error('logger bug must not reach libbpf');
    });
    try {
      BpfObject.open(tinyObj).close();
    } finally {
      setLibbpfLogger(null);
    }
    expect(seen.some((l) => l.startsWith('debug libbpf:'))).toBe(true);
    expect(seen.every((l) => !l.endsWith('\n'))).toBe(true);
    const n = seen.length;
    BpfObject.open(tinyObj).close();
    expect(seen.length).toBe(n);
  });
});

describe('BpfLink on a cgroup', () => {
  let cgroup: string | undefined;
  let pins: string | undefined;

  afterAll(() => {
    rmTree(pins);
    // A cgroup with no processes can be removed even with programs attached.
    if (cgroup && fs.existsSync(cgroup)) fs.rmdirSync(cgroup);
  });

  // Runs a bind() from a process placed in `cg`, so the hook fires.
  function bindFromCgroup(cg: string): void {
    execFileSync('sh', [
      '-c',
      `echo $$ > ${cg}/cgroup.procs && exec ${process.execPath} -e "require('net').createServer().listen(0, '127.0.0.1', function () { this.close(); })"`,
    ]);
  }

  it('create, pin, openPinned, update, detach', () => {
    cgroup = path.join('/sys/fs/cgroup/unified', uniqueName('l3iso-loader-test'));
    fs.mkdirSync(cgroup);
    pins = bpffsTmpDir();
    const obj = BpfObject.open(tinyObj);
    const cgFd = fs.openSync(cgroup, 'r');
    let link: BpfLink | undefined;
    let pinned: BpfLink | undefined;
    let counts: BpfMap | undefined;
    try {
      obj.load();
      counts = obj.map('counts');
      const v1 = obj.program('allow_bind4');
      const v2 = obj.program('allow_bind4_v2');

      link = BpfLink.create(v1, cgFd, AttachType.CGROUP_INET4_BIND);
      const info = link.info();
      expect(info.type).toBe(LinkType.CGROUP);
      expect(info.progId).toBe(v1.id);
      expect(info.id).toBeGreaterThan(0);

      bindFromCgroup(cgroup);
      expect(counter(counts, 1)).toBe(1n);

      const pinPath = path.join(pins, 'bind4');
      link.pin(pinPath);
      link.close();
      pinned = BpfLink.openPinned(pinPath);
      expect(pinned.info().id).toBe(info.id);
      bindFromCgroup(cgroup); // still attached through the pin
      expect(counter(counts, 1)).toBe(2n);

      pinned.update(v2.fd);
      expect(pinned.info().progId).toBe(v2.id);
      // Guarded replace: v1 is no longer the current program.
      expect(() => pinned?.update(v1.fd, { oldProgFd: v1.fd })).toThrow(
        expect.objectContaining({ code: 'EPERM', call: 'bpf_link_update' }),
      );
      pinned.update(v1.fd, { oldProgFd: v2.fd });
      pinned.update(v2.fd);
      bindFromCgroup(cgroup);
      expect(counter(counts, 2)).toBe(1n);
      expect(counter(counts, 1)).toBe(2n);

      pinned.detach();
      bindFromCgroup(cgroup);
      expect(counter(counts, 2)).toBe(1n);
      expect(() => pinned?.update(v1.fd)).toThrow(expect.objectContaining({ code: 'ENOLINK' }));
      fs.unlinkSync(pinPath);

      // A program of the wrong type for the attach point.
      expect(() =>
        BpfLink.create(obj.program('xdp_pass'), cgFd, AttachType.CGROUP_INET4_BIND),
      ).toThrow(expect.objectContaining({ code: 'EINVAL', call: 'bpf_link_create' }));
      expect(() => BpfLink.openPinned(pinPath)).toThrow(
        expect.objectContaining({ code: 'ENOENT' }),
      );
    } finally {
      link?.close();
      pinned?.close();
      counts?.close();
      fs.closeSync(cgFd);
      obj.close();
    }
  });
});
