import * as fs from 'fs';
import * as path from 'path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  BpfError,
  BpfMap,
  MapFlags,
  MapType,
  MapUpdate,
  errnoName,
  getPinned,
  isErrno,
  perCpuValues,
  possibleCpus,
} from '../../loader';
import { libbpf } from '../../loader/libbpf';
import { bpffsTmpDir, rmTree, u32, u64 } from './helpers';

// Every map a test creates is closed afterwards so fds never leak across
// tests (the kernel frees unpinned maps on last close).
let open: BpfMap[] = [];
function track(m: BpfMap): BpfMap {
  open.push(m);
  return m;
}
afterEach(() => {
  for (const m of open) m.close();
  open = [];
});

function hash(maxEntries = 64, name = 'test_hash'): BpfMap {
  return track(BpfMap.create({ type: MapType.HASH, name, keySize: 4, valueSize: 8, maxEntries }));
}

describe('BpfError', () => {
  it('maps errno numbers to names and messages', () => {
    const e = new BpfError('bpf_map_update_elem', -17);
    expect(e.code).toBe('EEXIST');
    expect(e.errno).toBe(17);
    expect(e.call).toBe('bpf_map_update_elem');
    expect(e.message).toBe('bpf_map_update_elem: File exists (EEXIST)');
    expect(isErrno(e, 'EEXIST')).toBe(true);
    expect(isErrno(new Error('x'), 'EEXIST')).toBe(false);
    expect(errnoName(524)).toBe('ENOTSUPP');
    expect(errnoName(11)).toBe('EAGAIN');
    expect(errnoName(95)).toBe('EOPNOTSUPP');
  });
});

describe('BpfMap.create', () => {
  it('reports the kernel view of the map', () => {
    const m = hash(100, 'props');
    expect(m.name).toBe('props');
    expect(m.type).toBe(MapType.HASH);
    expect(m.keySize).toBe(4);
    expect(m.valueSize).toBe(8);
    expect(m.maxEntries).toBe(100);
    expect(m.flags).toBe(0);
    expect(m.id).toBeGreaterThan(0);
    expect(m.isPerCpu).toBe(false);
    expect(m.valueBufferSize).toBe(8);
  });

  it('rejects invalid specs with EINVAL', () => {
    let err: unknown;
    try {
      BpfMap.create({ type: MapType.HASH, name: 'bad', keySize: 0, valueSize: 8, maxEntries: 1 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BpfError);
    expect((err as BpfError).code).toBe('EINVAL');
    expect((err as BpfError).call).toBe('bpf_map_create');
  });

  it('creates LPM tries with NO_PREALLOC', () => {
    const m = track(
      BpfMap.create({
        type: MapType.LPM_TRIE,
        name: 'lpm',
        keySize: 8,
        valueSize: 4,
        maxEntries: 16,
        flags: MapFlags.NO_PREALLOC,
      }),
    );
    expect(m.flags).toBe(MapFlags.NO_PREALLOC);
    const key = Buffer.from([24, 0, 0, 0, 10, 1, 2, 0]); // 10.1.2.0/24
    m.update(key, u32(7));
    const hit = Buffer.from([32, 0, 0, 0, 10, 1, 2, 99]);
    expect(m.lookup(hit)?.readUInt32LE()).toBe(7);
    const all = m.lookupBatch();
    expect(all.keys).toEqual([key]);
    expect(all.values).toEqual([u32(7)]);
  });
});

describe('BpfMap element operations', () => {
  it('update / lookup / delete on a hash', () => {
    const m = hash();
    expect(m.lookup(u32(1))).toBeUndefined();
    m.update(u32(1), u64(10));
    expect(m.lookup(u32(1))?.readBigUInt64LE()).toBe(10n);
    m.update(u32(1), u64(11), MapUpdate.EXIST);
    expect(m.lookup(u32(1))?.readBigUInt64LE()).toBe(11n);
    expect(m.delete(u32(1))).toBe(true);
    expect(m.delete(u32(1))).toBe(false);
    expect(m.lookup(u32(1))).toBeUndefined();
  });

  it('NOEXIST on an existing key throws EEXIST, EXIST on a missing key ENOENT', () => {
    const m = hash();
    m.update(u32(5), u64(1), MapUpdate.NOEXIST);
    expect(() => m.update(u32(5), u64(2), MapUpdate.NOEXIST)).toThrow(
      expect.objectContaining({ code: 'EEXIST', call: 'bpf_map_update_elem' }),
    );
    expect(() => m.update(u32(6), u64(2), MapUpdate.EXIST)).toThrow(
      expect.objectContaining({ code: 'ENOENT' }),
    );
    expect(m.lookup(u32(5))?.readBigUInt64LE()).toBe(1n);
  });

  it('a full hash throws E2BIG', () => {
    const m = hash(2);
    m.update(u32(1), u64(1));
    m.update(u32(2), u64(2));
    expect(() => m.update(u32(3), u64(3))).toThrow(expect.objectContaining({ code: 'E2BIG' }));
  });

  it('refuses buffers of the wrong size instead of letting the kernel overrun them', () => {
    const m = hash();
    expect(() => m.lookup(Buffer.alloc(2))).toThrow(RangeError);
    expect(() => m.update(u32(1), Buffer.alloc(4))).toThrow(RangeError);
  });

  it('arrays: every index exists, delete is EINVAL', () => {
    const m = track(
      BpfMap.create({ type: MapType.ARRAY, name: 'arr', keySize: 4, valueSize: 4, maxEntries: 8 }),
    );
    expect(m.lookup(u32(3))).toEqual(u32(0));
    m.update(u32(3), u32(33));
    expect(m.lookup(u32(3))).toEqual(u32(33));
    expect(m.lookup(u32(8))).toBeUndefined();
    expect(() => m.delete(u32(3))).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect([...m.keys()].map((k) => k.readUInt32LE())).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('keys() walks every key once', () => {
    const m = hash(128);
    for (let i = 0; i < 100; i++) m.update(u32(i), u64(i));
    const seen = [...m.keys()].map((k) => k.readUInt32LE()).sort((a, b) => a - b);
    expect(seen).toEqual([...Array(100).keys()]);
    expect([...hash(4, 'empty').keys()]).toEqual([]);
  });

  it('operations on a closed map fail with EBADF', () => {
    const m = hash();
    m.close();
    m.close();
    expect(m.closed).toBe(true);
    expect(() => m.lookup(u32(1))).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });
});

describe('per-CPU maps', () => {
  it('values are nr_cpus * round_up(value_size, 8) bytes', () => {
    const cpus = possibleCpus();
    expect(cpus).toBeGreaterThan(0);
    const m = track(
      BpfMap.create({
        type: MapType.PERCPU_HASH,
        name: 'pcpu',
        keySize: 4,
        valueSize: 4,
        maxEntries: 8,
      }),
    );
    expect(m.isPerCpu).toBe(true);
    expect(m.valueBufferSize).toBe(cpus * 8);
    const v = Buffer.alloc(m.valueBufferSize);
    for (let c = 0; c < cpus; c++) v.writeUInt32LE(100 + c, c * 8);
    m.update(u32(1), v);
    const got = m.lookupPerCpu(u32(1));
    expect(got?.length).toBe(cpus);
    expect(got?.map((b) => b.readUInt32LE())).toEqual([...Array(cpus).keys()].map((c) => 100 + c));
    expect(got?.every((b) => b.length === 4)).toBe(true);
    expect(perCpuValues(v).every((b) => b.length === 8)).toBe(true);
    // The kernel wants the padded size; a plain value_size buffer is refused.
    expect(() => m.update(u32(2), Buffer.alloc(4))).toThrow(RangeError);
  });

  it('lookupBatch on per-CPU arrays returns padded per-CPU values', () => {
    const cpus = possibleCpus();
    const m = track(
      BpfMap.create({
        type: MapType.PERCPU_ARRAY,
        name: 'pcpu_arr',
        keySize: 4,
        valueSize: 8,
        maxEntries: 10,
      }),
    );
    const v = Buffer.alloc(m.valueBufferSize);
    for (let c = 0; c < cpus; c++) v.writeBigUInt64LE(BigInt(c + 1), c * 8);
    m.update(u32(4), v);
    const { keys, values } = m.lookupBatch(3);
    expect(keys.length).toBe(10);
    expect(values[4]).toEqual(v);
    expect(values[0]).toEqual(Buffer.alloc(cpus * 8));
  });
});

describe('batch operations', () => {
  it('lookupBatch reads a hash larger than one batch', () => {
    const n = 5000;
    const m = hash(8192, 'big_hash');
    const keys = [...Array(n).keys()].map(u32);
    const values = [...Array(n).keys()].map((i) => u64(i * 3));
    m.updateBatch(keys, values);
    for (const bs of [4096, 1000, 1]) {
      const got = m.lookupBatch(bs);
      expect(got.keys.length).toBe(n);
      const pairs = new Map(
        got.keys.map((k, i) => [k.readUInt32LE(), got.values[i]?.readBigUInt64LE()]),
      );
      expect(pairs.size).toBe(n);
      for (let i = 0; i < n; i += 499) expect(pairs.get(i)).toBe(BigInt(i * 3));
    }
  });

  it('count agrees with lookupBatch at every batch size, and with an empty map', () => {
    const n = 3000;
    const m = hash(4096, 'count_hash');
    m.updateBatch(
      [...Array(n).keys()].map(u32),
      [...Array(n).keys()].map((i) => u64(i)),
    );
    for (const bs of [4096, 700, 1]) expect(m.count(bs)).toBe(n);
    expect(hash(16, 'count_empty').count()).toBe(0);
    expect(() => m.count(0)).toThrow(RangeError);
  });

  it('lookupBatch on an empty map and on arrays', () => {
    expect(hash(16, 'empty_b').lookupBatch()).toEqual({ keys: [], values: [] });
    const a = track(
      BpfMap.create({
        type: MapType.ARRAY,
        name: 'arr_b',
        keySize: 4,
        valueSize: 4,
        maxEntries: 10,
      }),
    );
    a.update(u32(9), u32(99));
    const got = a.lookupBatch(4);
    expect(got.keys.map((k) => k.readUInt32LE())).toEqual([...Array(10).keys()]);
    expect(got.values[9]).toEqual(u32(99));
  });

  it('updateBatch honours NOEXIST and reports EEXIST', () => {
    const m = hash();
    m.updateBatch([u32(1), u32(2)], [u64(1), u64(2)]);
    expect(() => m.updateBatch([u32(3), u32(2)], [u64(3), u64(9)], MapUpdate.NOEXIST)).toThrow(
      expect.objectContaining({ code: 'EEXIST' }),
    );
    expect(m.lookup(u32(2))?.readBigUInt64LE()).toBe(2n);
    expect(m.lookup(u32(3))?.readBigUInt64LE()).toBe(3n);
    expect(() => m.updateBatch([u32(1)], [])).toThrow(RangeError);
  });

  it('the kernel batch update refuses BPF_NOEXIST elem flags (why apply claims under the lock)', () => {
    // generic_map_update_batch accepts only BPF_F_LOCK in elem_flags: a
    // batched NOEXIST claim is EINVAL before any element, so l3iso's apply
    // checks addresses free under the instance lock and writes with ANY.
    const m = hash();
    const opts = Buffer.alloc(24);
    opts.writeBigUInt64LE(24n, 0);
    opts.writeBigUInt64LE(BigInt(MapUpdate.NOEXIST), 8);
    const count = Buffer.alloc(4);
    count.writeUInt32LE(2);
    const ret = libbpf.bpf_map_update_batch(
      m.fd,
      Buffer.concat([u32(1), u32(2)]),
      Buffer.concat([u64(1), u64(2)]),
      count,
      opts,
    );
    expect(errnoName(-ret)).toBe('EINVAL');
    expect(m.lookup(u32(1))).toBeUndefined();
  });

  it('falls back to per-element ops where the kernel has no batch op (ENOTSUPP)', () => {
    // DEVMAP_HASH has no batch ops; values are ifindexes, and lo is 1 in
    // every netns.
    const m = track(
      BpfMap.create({
        type: MapType.DEVMAP_HASH,
        name: 'devs',
        keySize: 4,
        valueSize: 4,
        maxEntries: 8,
      }),
    );
    m.updateBatch([u32(10), u32(20)], [u32(1), u32(1)]);
    const got = m.lookupBatch();
    expect(got.keys.map((k) => k.readUInt32LE()).sort()).toEqual([10, 20]);
    expect(got.values).toEqual([u32(1), u32(1)]);
    expect(m.deleteBatch([u32(10), u32(30), u32(20)])).toBe(2);
    expect(m.lookupBatch().keys).toEqual([]);
  });

  it('updateBatchPacked says how many entries the kernel wrote before the one it refused', () => {
    const m = hash(4);
    const keys = Buffer.concat([1, 2, 3, 4, 5, 6].map(u32));
    const values = Buffer.concat([1, 2, 3, 4, 5, 6].map(u64));
    // Room for four: the fifth is refused (E2BIG), the first four stay.
    expect(m.updateBatchPacked(keys, values, 6)).toEqual({ written: 4, errno: 7 });
    expect([...m.keys()].map((k) => k.readUInt32LE()).sort()).toEqual([1, 2, 3, 4]);
    // Only `count` entries of longer buffers; rewriting existing keys fits.
    expect(m.updateBatchPacked(keys, Buffer.concat([9, 9, 9, 9].map(u64)), 2)).toEqual({
      written: 2,
      errno: 0,
    });
    expect(m.lookup(u32(2))).toEqual(u64(9));
    expect(m.lookup(u32(3))).toEqual(u64(3));
    expect(() => m.updateBatchPacked(keys, values.subarray(0, 8), 2)).toThrow(RangeError);
  });

  it('updateBatchPacked writes entry by entry where the kernel has no batch op', () => {
    const m = track(
      BpfMap.create({
        type: MapType.DEVMAP_HASH,
        name: 'devs',
        keySize: 4,
        valueSize: 4,
        maxEntries: 8,
      }),
    );
    const keys = Buffer.concat([10, 20].map(u32));
    expect(m.updateBatchPacked(keys, Buffer.concat([u32(1), u32(1)]), 2)).toEqual({
      written: 2,
      errno: 0,
    });
    expect([...m.keys()].map((k) => k.readUInt32LE()).sort()).toEqual([10, 20]);
  });

  it('deleteBatch skips absent keys', () => {
    const m = hash();
    m.updateBatch([1, 2, 3, 4].map(u32), [1, 2, 3, 4].map(u64));
    expect(m.deleteBatch([1, 9, 3, 10, 4].map(u32))).toBe(3);
    expect([...m.keys()].map((k) => k.readUInt32LE())).toEqual([2]);
  });
});

describe('pinning', () => {
  let dir: string | undefined;
  beforeEach(() => {
    dir = bpffsTmpDir();
  });
  afterEach(() => {
    rmTree(dir);
    dir = undefined;
  });

  it('pin + openPinned share the same map', () => {
    const m = hash(16, 'pinned');
    const p = path.join(dir as string, 'm');
    m.pin(p);
    expect(fs.existsSync(p)).toBe(true);
    expect(() => m.pin(p)).toThrow(
      expect.objectContaining({ code: 'EEXIST', call: 'bpf_obj_pin' }),
    );
    m.update(u32(1), u64(42));
    m.close();
    const again = track(BpfMap.openPinned(p));
    expect(again.name).toBe('pinned');
    expect(again.lookup(u32(1))?.readBigUInt64LE()).toBe(42n);
  });

  it('openPinned of a missing path throws ENOENT naming the path', () => {
    const p = path.join(dir as string, 'nope');
    let err: unknown;
    try {
      BpfMap.openPinned(p);
    } catch (e) {
      err = e;
    }
    expect(isErrno(err, 'ENOENT')).toBe(true);
    expect((err as BpfError).call).toBe('bpf_obj_get');
    expect((err as Error).message).toContain(p);
    expect(() => getPinned(p)).toThrow(BpfError);
  });
});
