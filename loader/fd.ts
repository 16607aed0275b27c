/**
 * One owned file descriptor. Every fd l3iso holds (maps, links, the pin-dir
 * lock, object-owned fds handed out) goes through this class, so an fd is
 * closed exactly once: a second close() is a no-op, never a close of
 * whatever number the kernel has since handed to someone else.
 */
import { BpfError } from './errors';
import { lastErrno, libc } from './libbpf';

/** Told about an fd the garbage collector found unclosed (debug only). */
export type LeakReporter = (fd: number, what: string) => void;

let reportLeak: LeakReporter | undefined;

/** Where leaked fds are reported; undefined: silently closed. */
export function setLeakReporter(fn: LeakReporter | undefined): void {
  reportLeak = fn;
}

interface Held {
  fd: number;
  what: string;
}

// The backstop: an Fd dropped without close() would keep a map, a link (so
// an attachment) or a lock alive until the process exits. The registry holds
// only the number and a label, never the Fd itself, or nothing would be
// collected.
const leaks = new FinalizationRegistry<Held>((held) => {
  if (held.fd < 0) return;
  libc.close(held.fd);
  openCount--;
  reportLeak?.(held.fd, held.what);
  held.fd = -1;
});

let openCount = 0;

export class Fd implements Disposable {
  private readonly held: Held;

  /** Takes ownership of `fd` (closed by close(), dispose, or the backstop). */
  constructor(fd: number, what = 'fd') {
    if (!Number.isInteger(fd) || fd < 0)
      throw new BpfError('Fd', 9 /* EBADF */, `${what}: not a file descriptor (${fd})`);
    this.held = { fd, what };
    leaks.register(this, this.held, this);
    openCount++;
  }

  /** The number, for syscalls. Throws after close(). */
  get fd(): number {
    if (this.held.fd < 0) throw new BpfError('Fd', 9 /* EBADF */, `${this.held.what} is closed`);
    return this.held.fd;
  }

  get closed(): boolean {
    return this.held.fd < 0;
  }

  get what(): string {
    return this.held.what;
  }

  /** Closes the fd once; later calls do nothing. An EBADF from the kernel
   * (someone closed our number behind our back) is reported. */
  close(): void {
    const fd = this.held.fd;
    if (fd < 0) return;
    this.held.fd = -1;
    leaks.unregister(this);
    openCount--;
    if (libc.close(fd) === -1) throw new BpfError('close', lastErrno() || 5, this.held.what);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Fds opened through Fd and not yet closed by close() (tests check leaks). */
export function openFds(): number {
  return openCount;
}

interface Guarded {
  what: string;
  release: () => void;
}

const guards = new FinalizationRegistry<Guarded>((g) => {
  g.release();
  reportLeak?.(-1, g.what);
});

/**
 * The same backstop for a resource that is not one fd (a libbpf
 * bpf_object, which owns several): `release` must not reference `owner`,
 * or it would never be collected. Returns the function close() calls first.
 */
export function guardLeak(owner: object, what: string, release: () => void): () => void {
  const token = {};
  guards.register(owner, { what, release }, token);
  return () => guards.unregister(token);
}
