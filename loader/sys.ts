import * as fs from 'fs';
import { BpfError, check } from './errors';
import { lastErrno, libbpf, libc } from './libbpf';

const F_DUPFD_CLOEXEC = 1030;
const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const CLONE_NEWNET = 0x40000000;

/** libc convention: -1 and errno. */
function checkLibc(call: string, ret: number, detail?: string): number {
  if (ret === -1) throw new BpfError(call, lastErrno() || 5 /* EIO */, detail);
  return ret;
}

/** Closes a file descriptor; EBADF and friends are reported as BpfError. */
export function closeFd(fd: number): void {
  checkLibc('close', libc.close(fd));
}

/**
 * Duplicates `fd` with O_CLOEXEC, so the copy has a lifetime of its own
 * (e.g. a map fd that must outlive the bpf_object it came from).
 */
export function dupFd(fd: number): number {
  return checkLibc('fcntl', libc.fcntl(fd, F_DUPFD_CLOEXEC, 0));
}

/**
 * Takes an exclusive flock(2) on `fd`. Blocking mode blocks the whole event
 * loop until the lock is free: use `nonBlocking` and handle EAGAIN (code
 * 'EAGAIN', i.e. EWOULDBLOCK) in servers.
 */
export function flockExclusive(fd: number, opts: { nonBlocking?: boolean } = {}): void {
  checkLibc('flock', libc.flock(fd, LOCK_EX | (opts.nonBlocking ? LOCK_NB : 0)));
}

/** Takes a shared flock(2) on `fd`: any number of holders, none while an
 * exclusive one is held. Same blocking rules as flockExclusive. */
export function flockShared(fd: number, opts: { nonBlocking?: boolean } = {}): void {
  checkLibc('flock', libc.flock(fd, LOCK_SH | (opts.nonBlocking ? LOCK_NB : 0)));
}

/** Releases a flock(2) taken with flockExclusive or flockShared. */
export function unlock(fd: number): void {
  checkLibc('flock', libc.flock(fd, LOCK_UN));
}

let cpus: number | undefined;

/**
 * Number of possible CPUs (/sys/devices/system/cpu/possible), the stride
 * count of per-CPU map values. Cached: it cannot change while we run.
 */
export function possibleCpus(): number {
  cpus ??= check('libbpf_num_possible_cpus', libbpf.libbpf_num_possible_cpus());
  return cpus;
}

/**
 * Pins a bpf object (map, program, link) at `path` on bpffs. The parent
 * directory must exist; an existing path fails with EEXIST.
 */
export function pinObject(fd: number, path: string): void {
  check('bpf_obj_pin', libbpf.bpf_obj_pin(fd, path), path);
}

/**
 * Opens a pinned bpf object and returns a new fd the caller owns.
 * Missing path: BpfError 'ENOENT'.
 */
export function getPinned(path: string): number {
  return check('bpf_obj_get', libbpf.bpf_obj_get(path), path);
}

/**
 * Runs `fn` with the calling thread switched into the network namespace at
 * `nsPath` (e.g. /run/netns/NAME), then switches back. Netlink-based calls
 * (XDP, tc) made inside act on that namespace's devices.
 *
 * `fn` must be synchronous: only the JS thread moves, and awaiting inside
 * would run unrelated callbacks in the foreign namespace.
 */
export function inNetns<T>(nsPath: string, fn: () => T): T {
  const home = fs.openSync('/proc/thread-self/ns/net', 'r');
  try {
    const target = fs.openSync(nsPath, 'r');
    try {
      checkLibc('setns', libc.setns(target, CLONE_NEWNET), nsPath);
    } finally {
      fs.closeSync(target);
    }
    try {
      const out = fn();
      if (out instanceof Promise) {
        throw new TypeError('inNetns: fn must be synchronous');
      }
      return out;
    } finally {
      // Failing to return home would leave the whole process in the wrong
      // namespace; nothing sane can continue after that.
      if (libc.setns(home, CLONE_NEWNET) !== 0) {
        process.stderr.write(`l3iso: setns back to original netns failed (errno ${lastErrno()})\n`);
        process.abort();
      }
    }
  } finally {
    fs.closeSync(home);
  }
}

/**
 * Raw bpf_obj_get_info_by_fd into a zeroed buffer of `size` bytes. The
 * kernel fills at most `size` bytes, so passing our header's (older, smaller)
 * struct size to a newer kernel is fine.
 */
export function objInfo(fd: number, size: number): Buffer {
  const info = Buffer.alloc(size);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(size);
  check('bpf_obj_get_info_by_fd', libbpf.bpf_obj_get_info_by_fd(fd, info, len));
  return info;
}
