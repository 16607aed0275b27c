/** Chunked batch writes (apply, prune, the reverse index). */
import { MapUpdate, isErrno, type BpfMap } from '../../loader';
import { L3isoError } from '../errors';
import { sleepSync } from '../sleep';

/** Entries per bpf_map_*_batch call. */
export const CHUNK = 8192;

/**
 * One bpf_map_update_batch per CHUNK entries. Maps without preallocation
 * draw on a per-CPU cache the kernel refills asynchronously (per-CPU
 * values especially): a chunk that outruns it (ENOMEM) is written again in
 * halves after a pause, down to MIN_CHUNK (ANY: rewriting the entries it
 * did write is harmless); each chunk that goes through lets the size grow
 * back.
 */
export function writeBatch(map: BpfMap, keys: Buffer[], values: Buffer[], name: string): void {
  let size = CHUNK;
  let failures = 0;
  for (let i = 0; i < keys.length;) {
    const k = keys.slice(i, i + size);
    try {
      map.updateBatch(k, values.slice(i, i + size), MapUpdate.ANY);
    } catch (err) {
      if (isErrno(err, 'E2BIG') || isErrno(err, 'ENOSPC'))
        throw new L3isoError(
          'EMAP_FULL',
          `map ${name} is full`,
          'bring the engine up with a larger --max-cells (run `down` first)',
          { cause: err },
        );
      if (!isErrno(err, 'ENOMEM') || ++failures > MAX_FAILURES) throw err;
      size = Math.max(MIN_CHUNK, size >> 1);
      // Per-CPU values come from percpu chunks the kernel populates from a
      // workqueue: give it time rather than tries.
      sleepSync(Math.min(2 * failures, 20));
      continue;
    }
    i += k.length;
    failures = 0;
    size = Math.min(CHUNK, size * 2);
  }
}

const MIN_CHUNK = 256;
/** ENOMEMs in a row (no chunk written in between) before a write gives up. */
const MAX_FAILURES = 50;
