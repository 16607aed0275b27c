/**
 * Serialises the writers of one engine instance. Ownership itself is decided
 * in the kernel (BPF_NOEXIST), but a cell's value is read-modify-written, and
 * two CLIs assigning to the same cell must not lose each other's address.
 *
 * The lock is a flock on the pin directory itself (an O_DIRECTORY fd):
 * exclusive for writers, shared for readers. Nothing is ever unlinked to
 * release it, so two processes can never both hold it: the one way the
 * directory goes away is `down` removing it while it holds the lock, and a
 * process that then gets the lock finds its fd no longer names the pin dir
 * and stops (ENOT_UP). flock is released by the kernel when the process
 * dies, so a crash never leaves the lock held.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Fd, flockExclusive, flockShared, isErrno, unlock } from '../../loader';
import { L3isoError } from '../errors';
import { bumpGeneration } from './generation';
import type { PinLayout } from './paths';

type Mode = 'shared' | 'exclusive';

export class PinDirLock implements Disposable {
  private mode: Mode | undefined;
  private depth = 0;

  private constructor(
    readonly root: string,
    private readonly dir: Fd,
    private readonly ino: bigint,
  ) {}

  /** The lock of the pin dir at root (not yet taken). No dir: ENOT_UP. */
  static open(root: string): PinDirLock {
    let fd: number;
    try {
      fd = fs.openSync(root, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR')
        throw new L3isoError('ENOT_UP', `engine is not up in ${root}`, undefined, { cause: err });
      throw new L3isoError('EPIN_DIR', `cannot open pin dir ${root}: ${(err as Error).message}`);
    }
    const dir = new Fd(fd, `pin dir ${root}`);
    return new PinDirLock(root, dir, fs.fstatSync(fd, { bigint: true }).ino);
  }

  /** Runs fn holding the lock exclusively (nested calls share the hold). */
  exclusive<T>(fn: () => T): T {
    return this.hold('exclusive', fn);
  }

  /** Runs fn holding the lock shared: writers wait, other readers do not. */
  shared<T>(fn: () => T): T {
    return this.hold('shared', fn);
  }

  /** Takes the lock without waiting; false if someone else holds it. */
  tryExclusive(): boolean {
    try {
      flockExclusive(this.dir.fd, { nonBlocking: true });
    } catch (err) {
      if (isErrno(err, 'EAGAIN') || isErrno(err, 'EWOULDBLOCK')) return false;
      throw err;
    }
    this.mode = 'exclusive';
    this.depth = 1;
    return true;
  }

  /** The fd still names the directory at root (no down, or down and up, since). */
  get current(): boolean {
    try {
      return fs.statSync(this.root, { bigint: true }).ino === this.ino;
    } catch {
      return false;
    }
  }

  get held(): Mode | undefined {
    return this.mode;
  }

  close(): void {
    this.dir.close();
    this.mode = undefined;
    this.depth = 0;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private hold<T>(mode: Mode, fn: () => T): T {
    if (this.mode === 'shared' && mode === 'exclusive')
      // flock converts a shared lock by dropping it first: another writer
      // could run in between, so a reader never becomes a writer in place.
      throw new L3isoError(
        'EKERNEL',
        `internal: exclusive lock of ${this.root} taken under a shared one`,
      );
    if (this.mode === undefined) {
      (mode === 'exclusive' ? flockExclusive : flockShared)(this.dir.fd);
      this.mode = mode;
      try {
        this.checkStillRoot();
      } catch (err) {
        this.letGo();
        throw err;
      }
    }
    this.depth++;
    try {
      return fn();
    } finally {
      if (--this.depth === 0) this.letGo();
    }
  }

  private letGo(): void {
    this.mode = undefined;
    this.depth = 0;
    if (!this.dir.closed) unlock(this.dir.fd);
  }

  /** `down` (or down and a new up) ran while we waited for the lock. */
  private checkStillRoot(): void {
    if (!this.current) throw new L3isoError('ENOT_UP', `engine in ${this.root} went down`);
  }
}

/** What a writer locks: an engine's state (its lock and layout). */
export interface Lockable {
  readonly layout: PinLayout;
  readonly lock: PinDirLock;
  /** bumps l3_generation through a map it holds open (else opened per bump) */
  bumpGeneration?(): void;
}

export function withLock<T>(engine: Lockable, fn: () => T): T {
  return engine.lock.exclusive(() => {
    try {
      return fn();
    } finally {
      // Whatever fn changed in l3_cells or l3_owners, sockets re-resolve.
      if (engine.bumpGeneration) engine.bumpGeneration();
      else bumpGeneration(engine.layout);
    }
  });
}

function drainPrefix(layout: PinLayout): string {
  return `${layout.tag}.drain.`;
}

/**
 * Taken (under the instance lock) by a `release --drain` for as long as it
 * waits out its deadline. A flock, so a killed drain lets go of it: gc and
 * reconcile then know its DRAINING owners are stale and finish them. In
 * runDir, not on bpffs: bpffs has no regular files.
 * Returns the function that lets go.
 */
export function holdDrainLock(layout: PinLayout): () => void {
  fs.mkdirSync(layout.runDir, { recursive: true, mode: 0o700 });
  const file = path.join(layout.runDir, `${drainPrefix(layout)}${process.pid}`);
  const fd = new Fd(fs.openSync(file, 'w', 0o600), `drain lock ${file}`);
  flockExclusive(fd.fd);
  return () => {
    fs.rmSync(file, { force: true });
    fd.close();
  };
}

/** Some `release --drain` of this instance is waiting (call under the lock). */
export function drainsRunning(layout: PinLayout): boolean {
  const dir = layout.runDir;
  if (!fs.existsSync(dir)) return false;
  let running = false;
  for (const entry of fs.readdirSync(dir)) {
    if (!entry.startsWith(drainPrefix(layout))) continue;
    const file = path.join(dir, entry);
    let fd: Fd;
    try {
      fd = new Fd(fs.openSync(file, 'r'), `drain lock ${file}`);
    } catch {
      continue;
    }
    try {
      flockExclusive(fd.fd, { nonBlocking: true });
      fs.rmSync(file, { force: true }); // its drain died
    } catch (err) {
      if (!isErrno(err, 'EAGAIN') && !isErrno(err, 'EWOULDBLOCK')) throw err;
      running = true;
    } finally {
      fd.close();
    }
  }
  return running;
}
