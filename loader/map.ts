import { MapType, MapUpdate, PER_CPU_MAP_TYPES } from './constants';
import { BpfError, check } from './errors';
import { NULL, libbpf } from './libbpf';
import { Fd } from './fd';
import { closeFd, getPinned, objInfo, pinObject, possibleCpus } from './sys';

const ENOENT = 2;
const EINVAL = 22;
const ENOSPC = 28;
const EOPNOTSUPP = 95;
const ENOTSUPP = 524;

// struct bpf_map_info (linux/bpf.h): only the leading fields we read.
const MAP_INFO_SIZE = 88;
const MAP_INFO = { type: 0, id: 4, keySize: 8, valueSize: 12, maxEntries: 16, flags: 20, name: 24 };
// struct bpf_map_create_opts (bpf/bpf.h, libbpf 1.1).
const MAP_CREATE_OPTS_SIZE = 48;
const MAP_CREATE_OPTS = { innerMapFd: 24, mapFlags: 28, mapExtra: 32 };
// struct bpf_map_batch_opts.
const BATCH_OPTS_SIZE = 24;
const BATCH_OPTS = { elemFlags: 8, flags: 16 };

function batchOpts(elemFlags: number): Buffer {
  const o = Buffer.alloc(BATCH_OPTS_SIZE);
  o.writeBigUInt64LE(BigInt(BATCH_OPTS_SIZE), 0);
  o.writeBigUInt64LE(BigInt(elemFlags), BATCH_OPTS.elemFlags);
  return o;
}

function roundUp8(n: number): number {
  return (n + 7) & ~7;
}

/** The kernel says this map type has no batch operations. */
function batchUnsupported(errno: number): boolean {
  return errno === EINVAL || errno === ENOTSUPP || errno === EOPNOTSUPP;
}

export interface MapCreateSpec {
  type: MapType;
  /** At most 15 characters of [A-Za-z0-9_.]. */
  name: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  /** BPF_F_* (MapFlags); LPM_TRIE requires MapFlags.NO_PREALLOC. */
  flags?: number;
  /** Template inner map fd for ARRAY_OF_MAPS / HASH_OF_MAPS. */
  innerMapFd?: number;
  /** Type-specific: e.g. number of hash functions for BLOOM_FILTER. */
  mapExtra?: bigint;
}

/** Properties of a map as reported by the kernel. */
export interface MapInfo {
  type: MapType;
  id: number;
  name: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

/** Reads struct bpf_map_info for a map fd. */
export function mapInfo(fd: number): MapInfo {
  const b = objInfo(fd, MAP_INFO_SIZE);
  const nameRaw = b.subarray(MAP_INFO.name, MAP_INFO.name + 16);
  const nul = nameRaw.indexOf(0);
  return {
    type: b.readUInt32LE(MAP_INFO.type) as MapType,
    id: b.readUInt32LE(MAP_INFO.id),
    name: nameRaw.toString('utf8', 0, nul < 0 ? 16 : nul),
    keySize: b.readUInt32LE(MAP_INFO.keySize),
    valueSize: b.readUInt32LE(MAP_INFO.valueSize),
    maxEntries: b.readUInt32LE(MAP_INFO.maxEntries),
    flags: b.readUInt32LE(MAP_INFO.flags),
  };
}

/**
 * Splits a per-CPU value (as returned by `lookup` on a per-CPU map) into one
 * Buffer per possible CPU. `valueSize` trims the 8-byte alignment padding
 * the kernel puts between CPUs; without it each slice keeps its padding.
 */
export function perCpuValues(buf: Buffer, valueSize?: number): Buffer[] {
  const n = possibleCpus();
  if (buf.length % n !== 0) {
    throw new RangeError(`perCpuValues: ${buf.length} bytes is not a multiple of ${n} CPUs`);
  }
  const stride = buf.length / n;
  const size = valueSize ?? stride;
  if (size > stride) throw new RangeError(`perCpuValues: valueSize ${size} > stride ${stride}`);
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) out.push(buf.subarray(i * stride, i * stride + size));
  return out;
}

/**
 * A BPF map this object owns through a file descriptor. Close it when done;
 * a map lives on in the kernel while any fd, pin or program references it.
 *
 * Keys and values are raw Buffers in the kernel's layout (little-endian on
 * x86_64/aarch64). Values of per-CPU maps are `valueBufferSize` bytes: see
 * `perCpuValues`.
 */
export class BpfMap implements Disposable {
  private readonly handle: Fd;
  readonly type: MapType;
  readonly id: number;
  readonly name: string;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;

  /** Takes ownership of `fd`. Prefer `create`, `openPinned` or `fromFd`. */
  private constructor(fd: number, info: MapInfo) {
    this.handle = new Fd(fd, `map ${info.name || info.id}`);
    this.type = info.type;
    this.id = info.id;
    this.name = info.name;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.maxEntries = info.maxEntries;
    this.flags = info.flags;
  }

  /**
   * Wraps an fd the caller hands over (it is closed by `close()`). Not a
   * map fd: BpfError 'EINVAL' from bpf_obj_get_info_by_fd, fd left open.
   */
  static fromFd(fd: number): BpfMap {
    return new BpfMap(fd, mapInfo(fd));
  }

  /** Opens a map pinned on bpffs. Missing pin: BpfError 'ENOENT'. */
  static openPinned(path: string): BpfMap {
    const fd = getPinned(path);
    try {
      return BpfMap.fromFd(fd);
    } catch (e) {
      closeFd(fd);
      throw e;
    }
  }

  /**
   * Creates a new map (bpf_map_create). Names: at most 15 characters of
   * [A-Za-z0-9_.], else BpfError 'EINVAL'.
   */
  static create(spec: MapCreateSpec): BpfMap {
    const opts = Buffer.alloc(MAP_CREATE_OPTS_SIZE);
    opts.writeBigUInt64LE(BigInt(MAP_CREATE_OPTS_SIZE), 0);
    opts.writeUInt32LE(spec.innerMapFd ?? 0, MAP_CREATE_OPTS.innerMapFd);
    opts.writeUInt32LE(spec.flags ?? 0, MAP_CREATE_OPTS.mapFlags);
    opts.writeBigUInt64LE(spec.mapExtra ?? 0n, MAP_CREATE_OPTS.mapExtra);
    const fd = check(
      'bpf_map_create',
      libbpf.bpf_map_create(
        spec.type,
        spec.name || null,
        spec.keySize,
        spec.valueSize,
        spec.maxEntries,
        opts,
      ),
      spec.name,
    );
    try {
      return BpfMap.fromFd(fd);
    } catch (e) {
      closeFd(fd);
      throw e;
    }
  }

  /** The owned fd. Throws after `close()`. */
  get fd(): number {
    if (this.handle.closed) throw new BpfError('BpfMap', 9 /* EBADF */, `${this.name} is closed`);
    return this.handle.fd;
  }

  get closed(): boolean {
    return this.handle.closed;
  }

  /** Values are stored once per possible CPU. */
  get isPerCpu(): boolean {
    return PER_CPU_MAP_TYPES.has(this.type);
  }

  /** Bytes of one value as user space reads/writes it. */
  get valueBufferSize(): number {
    return this.isPerCpu ? possibleCpus() * roundUp8(this.valueSize) : this.valueSize;
  }

  private checkKey(key: Buffer): void {
    // The kernel reads exactly keySize bytes from our pointer: a short
    // buffer would leak or fault on adjacent memory.
    if (key.length !== this.keySize) {
      throw new RangeError(`${this.name}: key is ${key.length} bytes, map wants ${this.keySize}`);
    }
  }

  private checkValue(value: Buffer): void {
    if (value.length !== this.valueBufferSize) {
      throw new RangeError(
        `${this.name}: value is ${value.length} bytes, map wants ${this.valueBufferSize}`,
      );
    }
  }

  /** Value for `key`, or undefined when the key is absent. */
  lookup(key: Buffer): Buffer | undefined {
    this.checkKey(key);
    const value = Buffer.alloc(this.valueBufferSize);
    const ret = libbpf.bpf_map_lookup_elem(this.fd, key, value);
    if (ret === -ENOENT) return undefined;
    check('bpf_map_lookup_elem', ret, this.name);
    return value;
  }

  /** Per-CPU lookup split into one Buffer of `valueSize` bytes per CPU. */
  lookupPerCpu(key: Buffer): Buffer[] | undefined {
    const v = this.lookup(key);
    return v && perCpuValues(v, this.valueSize);
  }

  /**
   * Inserts or replaces. NOEXIST on an existing key: BpfError 'EEXIST';
   * EXIST on a missing key: 'ENOENT'; full map: 'E2BIG'.
   */
  update(key: Buffer, value: Buffer, flags: MapUpdate = MapUpdate.ANY): void {
    this.checkKey(key);
    this.checkValue(value);
    check('bpf_map_update_elem', libbpf.bpf_map_update_elem(this.fd, key, value, flags), this.name);
  }

  /** Deletes `key`; false when it was absent. ARRAY maps: BpfError 'EINVAL'. */
  delete(key: Buffer): boolean {
    this.checkKey(key);
    const ret = libbpf.bpf_map_delete_elem(this.fd, key);
    if (ret === -ENOENT) return false;
    check('bpf_map_delete_elem', ret, this.name);
    return true;
  }

  /**
   * Iterates keys with bpf_map_get_next_key, one syscall per key. Deleting
   * the current key of a hash map while iterating restarts the walk from the
   * first bucket (kernel behaviour), so collect first, then delete.
   */
  *keys(): Generator<Buffer> {
    let cur: Buffer | undefined;
    for (;;) {
      const next = Buffer.alloc(this.keySize);
      const ret = libbpf.bpf_map_get_next_key(this.fd, cur ?? NULL, next);
      if (ret === -ENOENT) return;
      check('bpf_map_get_next_key', ret, this.name);
      yield next;
      cur = next;
    }
  }

  /**
   * Reads every entry. Uses bpf_map_lookup_batch (Linux 5.6+, hash and
   * array maps) `batchSize` entries per syscall, and falls back to
   * `keys()` + `lookup` for map types without batch support.
   */
  lookupBatch(batchSize = 4096): { keys: Buffer[]; values: Buffer[] } {
    const keys: Buffer[] = [];
    const values: Buffer[] = [];
    const vsize = this.valueBufferSize;
    const done = this.eachBatch('lookupBatch', batchSize, (kbuf, vbuf, n) => {
      for (let i = 0; i < n; i++) {
        keys.push(Buffer.from(kbuf.subarray(i * this.keySize, (i + 1) * this.keySize)));
        values.push(Buffer.from(vbuf.subarray(i * vsize, (i + 1) * vsize)));
      }
    });
    return done ? { keys, values } : this.lookupAllSlow();
  }

  /**
   * Hands every batch of bpf_map_lookup_batch to `each` as raw buffers (valid
   * only until it returns; entry i's key at i * keySize, value at
   * i * valueBufferSize): whole-map reads that decode a field or two per
   * entry, without a Buffer per entry. Falls back to keys() + lookup, one
   * entry per call, for map types without batch support.
   */
  scan(each: (keys: Buffer, values: Buffer, n: number) => void, batchSize = 4096): void {
    if (this.eachBatch('scan', batchSize, each)) return;
    const { keys, values } = this.lookupAllSlow();
    keys.forEach((k, i) => each(k, values[i] as Buffer, 1));
  }

  /**
   * Number of entries, as lookupBatch would return them, without keeping
   * them: the batch buffers are reused, so counting a large map allocates
   * nothing per entry. Map types without batch support are walked key by key.
   */
  count(batchSize = 4096): number {
    let total = 0;
    if (this.eachBatch('count', batchSize, (_k, _v, n) => (total += n))) return total;
    let n = 0;
    for (let it = this.keys(); !it.next().done;) n++;
    return n;
  }

  /**
   * Walks the map with bpf_map_lookup_batch, handing each batch's buffers
   * (valid until the callback returns) and entry count to `each`. Returns
   * false, having read nothing, for a map type without batch support.
   */
  private eachBatch(
    what: string,
    batchSize: number,
    each: (kbuf: Buffer, vbuf: Buffer, n: number) => void,
  ): boolean {
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new RangeError(`${what}: batchSize must be a positive integer`);
    }
    // The batch cursor is opaque: a bucket index for hashes, a key for
    // arrays. It must hold max(keySize, 4) bytes.
    const tokSize = Math.max(this.keySize, 4);
    let inTok = Buffer.alloc(tokSize);
    let outTok = Buffer.alloc(tokSize);
    const count = Buffer.alloc(4);
    const opts = batchOpts(0);
    let first = true;
    let size = batchSize;
    let kbuf = Buffer.alloc(size * this.keySize);
    let vbuf = Buffer.alloc(size * this.valueBufferSize);
    for (;;) {
      count.writeUInt32LE(size);
      const ret = libbpf.bpf_map_lookup_batch(
        this.fd,
        first ? NULL : inTok,
        outTok,
        kbuf,
        vbuf,
        count,
        opts,
      );
      const errno = ret < 0 ? -ret : 0;
      if (errno === ENOSPC) {
        // A hash bucket holds more entries than fit in one batch; nothing
        // was consumed, retry the same cursor with room for it.
        size *= 2;
        kbuf = Buffer.alloc(size * this.keySize);
        vbuf = Buffer.alloc(size * this.valueBufferSize);
        continue;
      }
      if (errno && errno !== ENOENT) {
        if (first && batchUnsupported(errno)) return false;
        throw new BpfError('bpf_map_lookup_batch', errno, this.name);
      }
      each(kbuf, vbuf, count.readUInt32LE());
      // ENOENT: end of map; `count` still described the final partial batch.
      if (errno === ENOENT) return true;
      first = false;
      [inTok, outTok] = [outTok, inTok];
    }
  }

  private lookupAllSlow(): { keys: Buffer[]; values: Buffer[] } {
    const keys: Buffer[] = [];
    const values: Buffer[] = [];
    for (const k of this.keys()) {
      const v = this.lookup(k);
      // Deleted between get_next_key and lookup: skip, like a batch would.
      if (v === undefined) continue;
      keys.push(k);
      values.push(v);
    }
    return { keys, values };
  }

  /**
   * Writes many entries with one bpf_map_update_batch (Linux 5.6+). The
   * kernel's batch path accepts no NOEXIST/EXIST semantics, so those flags
   * (and map types without batch support) use one update per entry, which
   * stops at the first failing entry with its BpfError (e.g. 'EEXIST').
   * Either way, entries before a failure stay written.
   */
  updateBatch(keys: Buffer[], values: Buffer[], flags: MapUpdate = MapUpdate.ANY): void {
    if (keys.length !== values.length) {
      throw new RangeError(`updateBatch: ${keys.length} keys but ${values.length} values`);
    }
    keys.forEach((k) => this.checkKey(k));
    values.forEach((v) => this.checkValue(v));
    if (keys.length === 0) return;
    const perElement = () => keys.forEach((k, i) => this.update(k, values[i] as Buffer, flags));
    if (flags & (MapUpdate.NOEXIST | MapUpdate.EXIST)) return perElement();
    const count = Buffer.alloc(4);
    count.writeUInt32LE(keys.length);
    const ret = libbpf.bpf_map_update_batch(
      this.fd,
      Buffer.concat(keys),
      Buffer.concat(values),
      count,
      batchOpts(flags),
    );
    // The kernel rewrites `count` once it starts on elements; an untouched
    // count means the whole call was refused up front.
    if (ret < 0 && batchUnsupported(-ret) && count.readUInt32LE() === keys.length) {
      return perElement();
    }
    check('bpf_map_update_batch', ret, this.name);
  }

  /**
   * bpf_map_update_batch (flag ANY) of the first `count` entries of packed
   * buffers (entry i's key at i * keySize, its value at i * valueBufferSize),
   * without a Buffer per entry. The kernel stops at the first entry it
   * cannot write: returns how many it wrote, and that entry's errno (0 when
   * all were). So a caller resumes after an ENOMEM of a map without
   * preallocation instead of writing the whole batch again. Map types
   * without batch support are written entry by entry, alike.
   */
  updateBatchPacked(
    keys: Buffer,
    values: Buffer,
    count: number,
  ): { written: number; errno: number } {
    if (keys.length < count * this.keySize || values.length < count * this.valueBufferSize)
      throw new RangeError(`updateBatchPacked: buffers hold fewer than ${count} entries`);
    if (count === 0) return { written: 0, errno: 0 };
    const n = Buffer.alloc(4);
    n.writeUInt32LE(count);
    const ret = libbpf.bpf_map_update_batch(this.fd, keys, values, n, batchOpts(0));
    const written = n.readUInt32LE();
    if (ret >= 0) return { written: count, errno: 0 };
    if (!(batchUnsupported(-ret) && written === count)) return { written, errno: -ret };
    const vsize = this.valueBufferSize;
    for (let i = 0; i < count; i++) {
      const r = libbpf.bpf_map_update_elem(
        this.fd,
        keys.subarray(i * this.keySize, (i + 1) * this.keySize),
        values.subarray(i * vsize, (i + 1) * vsize),
        MapUpdate.ANY,
      );
      if (r < 0) return { written: i, errno: -r };
    }
    return { written: count, errno: 0 };
  }

  /**
   * Deletes many keys (bpf_map_delete_batch, Linux 5.6+). Absent keys are
   * skipped; returns how many were deleted.
   */
  deleteBatch(keys: Buffer[]): number {
    keys.forEach((k) => this.checkKey(k));
    let deleted = 0;
    let rest = keys;
    const count = Buffer.alloc(4);
    const opts = batchOpts(0);
    while (rest.length > 0) {
      count.writeUInt32LE(rest.length);
      const ret = libbpf.bpf_map_delete_batch(this.fd, Buffer.concat(rest), count, opts);
      const done = count.readUInt32LE();
      if (ret >= 0) return deleted + done;
      if (-ret === ENOENT) {
        // The kernel stops at the first missing key: skip it and go on.
        deleted += done;
        rest = rest.slice(done + 1);
        continue;
      }
      // Untouched count: refused before any element (no batch support).
      if (done === rest.length && batchUnsupported(-ret)) {
        for (const k of rest) if (this.delete(k)) deleted++;
        return deleted;
      }
      throw new BpfError('bpf_map_delete_batch', ret, this.name);
    }
    return deleted;
  }

  /** Pins the map at `path` on bpffs; existing path: BpfError 'EEXIST'. */
  pin(path: string): void {
    pinObject(this.fd, path);
  }

  /** Closes the fd (idempotent). The map survives if pinned or in use. */
  close(): void {
    this.handle.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
