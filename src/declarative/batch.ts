/** Chunked batch writes of the declarative verbs. */
import { MapUpdate, isErrno, type BpfMap } from '../../loader';
import { L3isoError } from '../errors';
import { sleepSync } from '../sleep';

/** Entries per bpf_map_*_batch call. */
export const CHUNK = 8192;

/**
 * One bpf_map_update_batch per CHUNK entries. Maps without preallocation
 * draw on a per-CPU cache the kernel refills asynchronously: a chunk that
 * outruns it (ENOMEM) is written again after a pause (ANY: rewriting the
 * entries it did write is harmless).
 */
export function writeBatch(map: BpfMap, keys: Buffer[], values: Buffer[], name: string): void {
  for (let i = 0; i < keys.length; i += CHUNK) {
    const k = keys.slice(i, i + CHUNK);
    const v = values.slice(i, i + CHUNK);
    for (let attempt = 1; ; attempt++) {
      try {
        map.updateBatch(k, v, MapUpdate.ANY);
        break;
      } catch (err) {
        if (isErrno(err, 'E2BIG') || isErrno(err, 'ENOSPC'))
          throw new L3isoError(
            'EMAP_FULL',
            `map ${name} is full`,
            'bring the engine up with a larger --max-cells (run `down` first)',
            { cause: err },
          );
        if (!(isErrno(err, 'ENOMEM') && attempt < 20)) throw err;
        sleepSync(attempt);
      }
    }
  }
}
