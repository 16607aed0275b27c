/**
 * Serialises the writers of one engine instance. Ownership itself is decided
 * in the kernel (BPF_NOEXIST), but a cell's value is read-modify-written, and
 * two CLIs assigning to the same cell must not lose each other's address.
 * flock is released by the kernel when the process dies, so a crash never
 * leaves the lock held.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { flockExclusive, isErrno } from '../../loader';
import { bumpGeneration } from './generation';
import type { PinLayout } from './paths';

export function withLock<T>(layout: PinLayout, fn: () => T): T {
  fs.mkdirSync(path.dirname(layout.lockFile), { recursive: true, mode: 0o700 });
  const fd = fs.openSync(layout.lockFile, 'a', 0o600);
  try {
    flockExclusive(fd);
    try {
      return fn();
    } finally {
      // Whatever fn changed in l3_cells or l3_owners, sockets re-resolve.
      bumpGeneration(layout);
    }
  } finally {
    fs.closeSync(fd);
  }
}

function drainPrefix(layout: PinLayout): string {
  return `${path.basename(layout.lockFile, '.lock')}.drain.`;
}

/**
 * Taken (under the instance lock) by a `release --drain` for as long as it
 * waits out its deadline. A flock, so a killed drain lets go of it: gc and
 * reconcile then know its DRAINING owners are stale and finish them.
 * Returns the function that lets go.
 */
export function holdDrainLock(layout: PinLayout): () => void {
  const file = path.join(path.dirname(layout.lockFile), `${drainPrefix(layout)}${process.pid}`);
  const fd = fs.openSync(file, 'w', 0o600);
  flockExclusive(fd);
  return () => {
    fs.rmSync(file, { force: true });
    fs.closeSync(fd);
  };
}

/** Some `release --drain` of this instance is waiting (call under the lock). */
export function drainsRunning(layout: PinLayout): boolean {
  const dir = path.dirname(layout.lockFile);
  if (!fs.existsSync(dir)) return false;
  let running = false;
  for (const entry of fs.readdirSync(dir)) {
    if (!entry.startsWith(drainPrefix(layout))) continue;
    const file = path.join(dir, entry);
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch {
      continue;
    }
    try {
      flockExclusive(fd, { nonBlocking: true });
      fs.rmSync(file, { force: true }); // its drain died
    } catch (err) {
      if (!isErrno(err, 'EAGAIN') && !isErrno(err, 'EWOULDBLOCK')) throw err;
      running = true;
    } finally {
      fs.closeSync(fd);
    }
  }
  return running;
}
