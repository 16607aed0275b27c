// The one place where native symbols are declared. Every other loader module
// goes through the typed `libbpf` / `libc` objects exported here, so a
// signature mistake can only live in this file.
//
// Conventions of the typed surface below:
// - `Ptr` arguments accept any Buffer (ffi passes its address) or `NULL`.
// - `Ptr` results are zero-length Buffers holding an address; test them with
//   `isNull()` before use.
// - u64 / size_t arguments are passed as JS numbers; every size we pass fits
//   in 2^53.

import ffi = require('@2060.io/ffi-napi');
import ref = require('@2060.io/ref-napi');

/** An opaque C pointer: a Buffer whose address is what matters. */
export type Ptr = Buffer;

/** The C NULL pointer. */
export const NULL: Ptr = ref.NULL;

export function isNull(p: Ptr): boolean {
  return ref.isNull(p);
}

/** Reads the errno left by the immediately preceding FFI call. */
export function lastErrno(): number {
  return ffi.errno();
}

/** Address of a Buffer, for writing pointers into opts structs. */
export function writePointer(dst: Buffer, offset: number, target: Buffer): void {
  // ref.writePointer keeps `target` alive as long as `dst` is alive, which is
  // what we want for log buffers referenced from opts structs.
  ref.writePointer(dst, offset, target);
}

export interface LibBpf {
  // bpf_object
  bpf_object__open_file(path: string, opts: Ptr): Ptr;
  bpf_object__load(obj: Ptr): number;
  bpf_object__close(obj: Ptr): void;
  bpf_object__next_program(obj: Ptr, prev: Ptr): Ptr;
  bpf_object__next_map(obj: Ptr, prev: Ptr): Ptr;
  bpf_object__find_program_by_name(obj: Ptr, name: string): Ptr;
  bpf_object__find_map_by_name(obj: Ptr, name: string): Ptr;
  // bpf_program
  bpf_program__name(prog: Ptr): string;
  bpf_program__section_name(prog: Ptr): string;
  bpf_program__fd(prog: Ptr): number;
  bpf_program__set_autoload(prog: Ptr, autoload: boolean): number;
  bpf_program__autoload(prog: Ptr): boolean;
  bpf_program__type(prog: Ptr): number;
  bpf_program__expected_attach_type(prog: Ptr): number;
  // bpf_map (object-owned definitions)
  bpf_map__name(map: Ptr): string;
  bpf_map__fd(map: Ptr): number;
  bpf_map__set_max_entries(map: Ptr, maxEntries: number): number;
  bpf_map__max_entries(map: Ptr): number;
  bpf_map__key_size(map: Ptr): number;
  bpf_map__value_size(map: Ptr): number;
  bpf_map__type(map: Ptr): number;
  bpf_map__map_flags(map: Ptr): number;
  bpf_map__reuse_fd(map: Ptr, fd: number): number;
  // low-level syscall wrappers
  bpf_obj_get(path: string): number;
  bpf_obj_pin(fd: number, path: string): number;
  bpf_map_create(
    type: number,
    name: string | null,
    keySize: number,
    valueSize: number,
    maxEntries: number,
    opts: Ptr,
  ): number;
  bpf_map_lookup_elem(fd: number, key: Ptr, value: Ptr): number;
  bpf_map_update_elem(fd: number, key: Ptr, value: Ptr, flags: number): number;
  bpf_map_delete_elem(fd: number, key: Ptr): number;
  bpf_map_get_next_key(fd: number, key: Ptr, nextKey: Ptr): number;
  bpf_map_lookup_batch(
    fd: number,
    inBatch: Ptr,
    outBatch: Ptr,
    keys: Ptr,
    values: Ptr,
    count: Ptr,
    opts: Ptr,
  ): number;
  bpf_map_update_batch(fd: number, keys: Ptr, values: Ptr, count: Ptr, opts: Ptr): number;
  bpf_map_delete_batch(fd: number, keys: Ptr, count: Ptr, opts: Ptr): number;
  bpf_link_create(progFd: number, targetFd: number, attachType: number, opts: Ptr): number;
  bpf_link_update(linkFd: number, newProgFd: number, opts: Ptr): number;
  bpf_link_detach(linkFd: number): number;
  bpf_iter_create(linkFd: number): number;
  bpf_obj_get_info_by_fd(fd: number, info: Ptr, infoLen: Ptr): number;
  bpf_prog_test_run_opts(progFd: number, opts: Ptr): number;
  // netlink attachments
  bpf_xdp_attach(ifindex: number, progFd: number, flags: number, opts: Ptr): number;
  bpf_xdp_detach(ifindex: number, flags: number, opts: Ptr): number;
  bpf_xdp_query_id(ifindex: number, flags: number, progId: Ptr): number;
  bpf_tc_hook_create(hook: Ptr): number;
  bpf_tc_hook_destroy(hook: Ptr): number;
  bpf_tc_attach(hook: Ptr, opts: Ptr): number;
  bpf_tc_detach(hook: Ptr, opts: Ptr): number;
  // BPF_MAP_TYPE_RINGBUF consumer (see ringbuf.ts)
  ring_buffer__new(mapFd: number, sampleCb: Ptr, ctx: Ptr, opts: Ptr): Ptr;
  ring_buffer__free(rb: Ptr): void;
  ring_buffer__consume(rb: Ptr): number;
  ring_buffer__poll(rb: Ptr, timeoutMs: number): number;
  ring_buffer__epoll_fd(rb: Ptr): number;
  // misc
  libbpf_num_possible_cpus(): number;
  libbpf_set_print(fn: Ptr): Ptr;
  libbpf_strerror(err: number, buf: Ptr, size: number): number;
}

export interface LibC {
  close(fd: number): number;
  flock(fd: number, op: number): number;
  fcntl(fd: number, cmd: number, arg: number): number;
  setns(fd: number, nstype: number): number;
  vsnprintf(buf: Ptr, size: number, fmt: Ptr, ap: Ptr): number;
}

type Decl = Record<string, [string, string[]]>;

const P = 'pointer';
const libbpfDecl: Decl = {
  bpf_object__open_file: [P, ['string', P]],
  bpf_object__load: ['int', [P]],
  bpf_object__close: ['void', [P]],
  bpf_object__next_program: [P, [P, P]],
  bpf_object__next_map: [P, [P, P]],
  bpf_object__find_program_by_name: [P, [P, 'string']],
  bpf_object__find_map_by_name: [P, [P, 'string']],
  bpf_program__name: ['string', [P]],
  bpf_program__section_name: ['string', [P]],
  bpf_program__fd: ['int', [P]],
  bpf_program__set_autoload: ['int', [P, 'bool']],
  bpf_program__autoload: ['bool', [P]],
  bpf_program__type: ['int', [P]],
  bpf_program__expected_attach_type: ['int', [P]],
  bpf_map__name: ['string', [P]],
  bpf_map__fd: ['int', [P]],
  bpf_map__set_max_entries: ['int', [P, 'uint32']],
  bpf_map__max_entries: ['uint32', [P]],
  bpf_map__key_size: ['uint32', [P]],
  bpf_map__value_size: ['uint32', [P]],
  bpf_map__type: ['int', [P]],
  bpf_map__map_flags: ['uint32', [P]],
  bpf_map__reuse_fd: ['int', [P, 'int']],
  bpf_obj_get: ['int', ['string']],
  bpf_obj_pin: ['int', ['int', 'string']],
  bpf_map_create: ['int', ['int', 'string', 'uint32', 'uint32', 'uint32', P]],
  bpf_map_lookup_elem: ['int', ['int', P, P]],
  bpf_map_update_elem: ['int', ['int', P, P, 'uint64']],
  bpf_map_delete_elem: ['int', ['int', P]],
  bpf_map_get_next_key: ['int', ['int', P, P]],
  bpf_map_lookup_batch: ['int', ['int', P, P, P, P, P, P]],
  bpf_map_update_batch: ['int', ['int', P, P, P, P]],
  bpf_map_delete_batch: ['int', ['int', P, P, P]],
  bpf_link_create: ['int', ['int', 'int', 'int', P]],
  bpf_link_update: ['int', ['int', 'int', P]],
  bpf_link_detach: ['int', ['int']],
  bpf_iter_create: ['int', ['int']],
  bpf_obj_get_info_by_fd: ['int', ['int', P, P]],
  bpf_prog_test_run_opts: ['int', ['int', P]],
  bpf_xdp_attach: ['int', ['int', 'int', 'uint32', P]],
  bpf_xdp_detach: ['int', ['int', 'uint32', P]],
  bpf_xdp_query_id: ['int', ['int', 'int', P]],
  bpf_tc_hook_create: ['int', [P]],
  bpf_tc_hook_destroy: ['int', [P]],
  bpf_tc_attach: ['int', [P, P]],
  bpf_tc_detach: ['int', [P, P]],
  // sample_cb is an ffi.Callback('int', ['pointer', 'pointer', 'size_t']).
  ring_buffer__new: [P, ['int', P, P, P]],
  ring_buffer__free: ['void', [P]],
  ring_buffer__consume: ['int', [P]],
  ring_buffer__poll: ['int', [P, 'int']],
  ring_buffer__epoll_fd: ['int', [P]],
  libbpf_num_possible_cpus: ['int', []],
  libbpf_set_print: [P, [P]],
  libbpf_strerror: ['int', ['int', P, 'size_t']],
};

const libcDecl: Decl = {
  close: ['int', ['int']],
  flock: ['int', ['int', 'int']],
  // fcntl and vsnprintf are variadic / take va_list; on the x86_64 and
  // aarch64 Linux ABIs integer varargs travel exactly like fixed ones, and a
  // va_list received from libbpf is forwarded untouched as a pointer.
  fcntl: ['int', ['int', 'int', 'int']],
  setns: ['int', ['int', 'int']],
  vsnprintf: ['int', [P, 'size_t', P, P]],
};

function open<T>(name: string | null, decl: Decl): T {
  try {
    return ffi.Library(name, decl) as T;
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    const hint = name === 'libbpf.so.1' ? ' (install libbpf1 >= 1.1)' : '';
    throw new Error(`l3iso loader: cannot load ${name}: ${why}${hint}`, { cause: e });
  }
}

/** The native half of ffi-napi: ffi_call(cif, fn, result, argPointers). */
interface FfiBindings {
  ffi_call(cif: Buffer, fn: Buffer, result: Buffer, args: Buffer): void;
}
const bindings = require('@2060.io/ffi-napi/lib/bindings') as FfiBindings;

/**
 * Functions of the control plane's hot paths (one call per map element),
 * called through ffi_call directly. ffi-napi's generic proxy allocates and
 * type-coerces a Buffer per argument, ~20 µs each (a 3-argument
 * bpf_map_lookup_elem cost ~45 µs; this path ~2 µs). Only int-returning
 * functions whose arguments are integers or Buffers, that never call back
 * into JS (so the per-function argument storage cannot be reentered).
 */
const FAST: readonly string[] = [
  'bpf_map_lookup_elem',
  'bpf_map_update_elem',
  'bpf_map_delete_elem',
  'bpf_map_get_next_key',
  'bpf_map_lookup_batch',
  'bpf_map_update_batch',
  'bpf_map_delete_batch',
  'bpf_obj_get_info_by_fd',
  'bpf_iter_create',
  'bpf_link_create',
  'bpf_link_detach',
  'bpf_obj_get',
  'close',
  'flock',
];

type FastFn = (...args: (number | string | Buffer)[]) => number;

function fastCall(lib: ffi.DynamicLibrary, name: string, argTypes: readonly string[]): FastFn {
  const kinds = argTypes.map((t) =>
    t === P || t === 'string' ? 'p' : t === 'int' ? 'i' : t === 'uint32' ? 'u' : 'q',
  );
  const n = kinds.length;
  const cif = ffi.CIF('int', [...argTypes]);
  const fn = lib.get(name);
  // One 8-byte slot per argument, and the array of pointers to the slots.
  const store = Buffer.alloc(8 * n);
  const list = Buffer.alloc(8 * n);
  for (let i = 0; i < n; i++) ref.writePointer(list, 8 * i, ref.reinterpret(store, 8, 8 * i));
  const result = Buffer.alloc(8);
  const TWO32 = 4294967296;
  return (...args) => {
    if (args.length !== n) throw new TypeError(`${name}: expected ${n} arguments`);
    for (let i = 0; i < n; i++) {
      let v = args[i]!;
      // A C string: NUL-terminated bytes, kept alive by `args` until the call returns.
      if (typeof v === 'string') v = args[i] = Buffer.from(`${v}\0`, 'utf8');
      const off = 8 * i;
      if (kinds[i] === 'p' || kinds[i] === 'q') {
        // A pointer (a Buffer's address) or a u64 number below 2^53.
        const x = typeof v === 'number' ? v : ref.address(v);
        store.writeUInt32LE(x % TWO32, off);
        store.writeUInt32LE(Math.floor(x / TWO32), off + 4);
      } else if (kinds[i] === 'i') store.writeInt32LE(v as number, off);
      else store.writeUInt32LE(v as number, off);
    }
    bindings.ffi_call(cif, fn, result, list);
    // Buffers passed by address stay reachable (args) until here.
    return result.readInt32LE(0);
  };
}

function withFastCalls<T extends object>(target: T, path: string, decl: Decl): T {
  const lib = ffi.DynamicLibrary(path, ffi.DynamicLibrary.FLAGS.RTLD_NOW);
  const out = target as Record<string, unknown>;
  for (const name of FAST) {
    const d = decl[name];
    if (!d || d[0] !== 'int') continue;
    if (!d[1].every((t) => [P, 'string', 'int', 'uint32', 'uint64', 'size_t'].includes(t)))
      continue;
    out[name] = fastCall(lib, name, d[1]);
  }
  return target;
}

export const libbpf: LibBpf = withFastCalls(
  open<LibBpf>('libbpf.so.1', libbpfDecl),
  'libbpf.so.1',
  libbpfDecl,
);
export const libc: LibC = withFastCalls(open<LibC>('libc.so.6', libcDecl), 'libc.so.6', libcDecl);

/** Declared symbol names, for tests that check the typed surface matches. */
export const declaredSymbols: { libbpf: string[]; libc: string[] } = {
  libbpf: Object.keys(libbpfDecl),
  libc: Object.keys(libcDecl),
};
