import * as fs from 'fs';
import { AttachType, MapType, ProgType } from './constants';
import { BpfError, BpfLoadError, check } from './errors';
import { NULL, Ptr, isNull, lastErrno, libbpf, writePointer } from './libbpf';
import { BpfMap } from './map';
import { captureWarnings } from './log';
import { guardLeak } from './fd';
import { closeFd, dupFd, objInfo } from './sys';

// struct bpf_object_open_opts (libbpf 1.1).
const OPEN_OPTS_SIZE = 80;
const OPEN_OPTS = { kernelLogBuf: 56, kernelLogSize: 64, kernelLogLevel: 72 };

// struct bpf_prog_info: type at 0, id at 4.
const PROG_INFO_SIZE = 232;
const PROG_INFO_ID = 4;

const DEFAULT_KERNEL_LOG_SIZE = 1 << 20;

/** A map definition from the ELF file, as libbpf will create it. */
export interface MapSpec {
  name: string;
  type: MapType;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  /** libbpf-generated .data/.rodata/.bss/.kconfig map (name has a dot). */
  internal: boolean;
}

export interface OpenOptions {
  /**
   * Bytes reserved for the kernel verifier log of a failing load. Linux
   * 6.4+ keeps the tail when the log overflows; older kernels keep the head.
   * Default 1 MiB.
   */
  kernelLogSize?: number;
  /**
   * 0 (default): load silently and, on failure, let libbpf retry that
   * program with log level 1 into our buffer, so successful loads never
   * fail with ENOSPC from an overflowing log. 1 or 2: log from the first
   * attempt (the buffer then also holds logs of successful loads).
   */
  kernelLogLevel?: number;
}

/**
 * A program inside a BpfObject. It has no fd of its own: `fd` is valid only
 * after `load()` and until the object is closed.
 */
export class BpfProgram {
  /** Name of the C function. */
  readonly name: string;
  /** ELF section, e.g. 'cgroup/bind4'. */
  readonly sectionName: string;

  /** @internal */
  constructor(
    private readonly obj: BpfObject,
    private readonly ptr: Ptr,
  ) {
    this.name = libbpf.bpf_program__name(ptr);
    this.sectionName = libbpf.bpf_program__section_name(ptr);
  }

  private live(): Ptr {
    this.obj.assertOpen();
    return this.ptr;
  }

  /** Program type libbpf derived from the section name. */
  get type(): ProgType {
    return libbpf.bpf_program__type(this.live()) as ProgType;
  }

  /** Attach type libbpf derived from the section name (0 when none). */
  get expectedAttachType(): AttachType {
    return libbpf.bpf_program__expected_attach_type(this.live()) as AttachType;
  }

  /** Program fd, owned by the object. Before load: BpfError 'ENOENT'. */
  get fd(): number {
    return check('bpf_program__fd', libbpf.bpf_program__fd(this.live()), this.name);
  }

  /** Kernel id of the loaded program (what link and XDP queries report). */
  get id(): number {
    return objInfo(this.fd, PROG_INFO_SIZE).readUInt32LE(PROG_INFO_ID);
  }

  get autoload(): boolean {
    return libbpf.bpf_program__autoload(this.live());
  }

  /** Excludes (false) or includes the program in `load()`; before load only. */
  setAutoload(autoload: boolean): void {
    check(
      'bpf_program__set_autoload',
      libbpf.bpf_program__set_autoload(this.live(), autoload),
      this.name,
    );
  }
}

/**
 * A parsed BPF ELF object (libbpf's bpf_object): open, adjust map sizes or
 * reuse maps, load, then take programs and maps out. Closing the object
 * closes its program fds and any map fd not taken with `map()`. Links keep
 * their program alive on their own.
 */
export class BpfObject implements Disposable {
  private ptr: Ptr;
  private readonly disarm: () => void;
  // libbpf keeps a raw pointer to this buffer; it must outlive the object.
  private logBuf: Buffer | undefined;
  private loaded = false;
  readonly path: string;

  private constructor(ptr: Ptr, path: string, logBuf: Buffer) {
    this.ptr = ptr;
    this.path = path;
    this.logBuf = logBuf;
    // logBuf rides along: libbpf writes into it until the object is freed.
    this.disarm = guardLeak(this, `bpf_object ${path}`, () => {
      void logBuf;
      libbpf.bpf_object__close(ptr);
    });
  }

  /**
   * Parses the ELF file at `path` (nothing reaches the kernel yet). Missing
   * file: BpfError 'ENOENT'; not a BPF ELF: 'EINVAL' or a LIBBPF_ERRNO__*
   * code.
   */
  static open(path: string, opts: OpenOptions = {}): BpfObject {
    // libbpf's own ENOENT message would not say which file: check first
    // for a message that names it.
    if (!fs.existsSync(path)) throw new BpfError('bpf_object__open_file', 2, path);
    const logSize = opts.kernelLogSize ?? DEFAULT_KERNEL_LOG_SIZE;
    const logBuf = Buffer.alloc(logSize);
    const o = Buffer.alloc(OPEN_OPTS_SIZE);
    o.writeBigUInt64LE(BigInt(OPEN_OPTS_SIZE), 0);
    writePointer(o, OPEN_OPTS.kernelLogBuf, logBuf);
    o.writeBigUInt64LE(BigInt(logSize), OPEN_OPTS.kernelLogSize);
    o.writeUInt32LE(opts.kernelLogLevel ?? 0, OPEN_OPTS.kernelLogLevel);
    const ptr = libbpf.bpf_object__open_file(path, o);
    if (isNull(ptr)) {
      throw new BpfError('bpf_object__open_file', lastErrno() || 22, path);
    }
    return new BpfObject(ptr, path, logBuf);
  }

  /** @internal Throws once the object is closed (its pointers are freed). */
  assertOpen(): void {
    if (isNull(this.ptr)) throw new BpfError('BpfObject', 9 /* EBADF */, `${this.path} is closed`);
  }

  get isLoaded(): boolean {
    return this.loaded;
  }

  programs(): BpfProgram[] {
    this.assertOpen();
    const out: BpfProgram[] = [];
    for (let p = libbpf.bpf_object__next_program(this.ptr, NULL); !isNull(p);) {
      out.push(new BpfProgram(this, p));
      p = libbpf.bpf_object__next_program(this.ptr, p);
    }
    return out;
  }

  /** Program by C function name; unknown name: BpfError 'ENOENT'. */
  program(name: string): BpfProgram {
    this.assertOpen();
    const p = libbpf.bpf_object__find_program_by_name(this.ptr, name);
    if (isNull(p)) throw new BpfError('bpf_object__find_program_by_name', lastErrno() || 2, name);
    return new BpfProgram(this, p);
  }

  private mapPtr(name: string): Ptr {
    this.assertOpen();
    const m = libbpf.bpf_object__find_map_by_name(this.ptr, name);
    if (isNull(m)) throw new BpfError('bpf_object__find_map_by_name', lastErrno() || 2, name);
    return m;
  }

  mapSpecs(): MapSpec[] {
    this.assertOpen();
    const out: MapSpec[] = [];
    for (let m = libbpf.bpf_object__next_map(this.ptr, NULL); !isNull(m);) {
      const name = libbpf.bpf_map__name(m);
      out.push({
        name,
        type: libbpf.bpf_map__type(m) as MapType,
        keySize: libbpf.bpf_map__key_size(m),
        valueSize: libbpf.bpf_map__value_size(m),
        maxEntries: libbpf.bpf_map__max_entries(m),
        flags: libbpf.bpf_map__map_flags(m),
        internal: name.includes('.'),
      });
      m = libbpf.bpf_object__next_map(this.ptr, m);
    }
    return out;
  }

  /** Resizes a map before `load()`; after load: BpfError 'EBUSY'. */
  setMaxEntries(mapName: string, n: number): void {
    check(
      'bpf_map__set_max_entries',
      libbpf.bpf_map__set_max_entries(this.mapPtr(mapName), n),
      mapName,
    );
  }

  /**
   * Makes the object use an existing map instead of creating `mapName`
   * (before `load()`). libbpf dups the fd, so `map` may be closed after.
   */
  reuseMap(mapName: string, map: BpfMap): void {
    check('bpf_map__reuse_fd', libbpf.bpf_map__reuse_fd(this.mapPtr(mapName), map.fd), mapName);
  }

  /**
   * Creates the maps and loads every autoload program into the kernel.
   * Failure: BpfLoadError whose `verifierLog` has the verifier's last lines
   * (empty when the failure was not the verifier's, e.g. EPERM on a map).
   */
  load(): void {
    this.assertOpen();
    const log = this.logBuf as Buffer;
    log.fill(0, 0, Math.min(log.length, 64));
    const warnings: string[] = [];
    const ptr = this.ptr;
    const ret = captureWarnings(warnings, () => libbpf.bpf_object__load(ptr));
    if (ret < 0) {
      const nul = log.indexOf(0);
      const text = log.toString('utf8', 0, nul < 0 ? log.length : nul);
      throw new BpfLoadError('bpf_object__load', ret, text, this.path, warnings);
    }
    this.loaded = true;
  }

  /**
   * A loaded map as a BpfMap with its own (dup'ed) fd: it outlives the
   * object and must be closed by the caller. Before load: BpfError 'ENOENT'.
   */
  map(name: string): BpfMap {
    const fd = check('bpf_map__fd', libbpf.bpf_map__fd(this.mapPtr(name)), name);
    const own = dupFd(fd);
    try {
      return BpfMap.fromFd(own);
    } catch (e) {
      closeFd(own);
      throw e;
    }
  }

  /** Frees the object, its program fds and un-taken map fds (idempotent). */
  close(): void {
    if (isNull(this.ptr)) return;
    this.disarm();
    libbpf.bpf_object__close(this.ptr);
    this.ptr = NULL;
    this.logBuf = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
