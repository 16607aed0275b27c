/**
 * Serialises the writers of one engine instance. Ownership itself is decided
 * in the kernel (BPF_NOEXIST), but a cell's value is read-modify-written, and
 * two CLIs assigning to the same cell must not lose each other's address.
 * flock is released by the kernel when the process dies, so a crash never
 * leaves the lock held.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { flockExclusive } from '../../loader';
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
