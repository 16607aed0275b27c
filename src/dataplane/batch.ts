/** Chunked batch writes (apply, prune, the reverse index). */
import { BpfError, type BpfMap } from '../../loader';
import { L3isoError } from '../errors';
import { sleepSync } from '../sleep';

/** Entries per bpf_map_*_batch call. */
export const CHUNK = 8192;

/**
 * One bpf_map_update_batch per CHUNK entries, packed into one buffer per
 * chunk. Maps without preallocation draw on a per-CPU cache the kernel
 * refills asynchronously (per-CPU values from a workqueue): the kernel
 * stops at the first entry it cannot allocate (ENOMEM) and says how many
 * it wrote, so the write resumes from there, at once while the retries
 * make progress, after a pause when one wrote nothing (the refill needs
 * the CPU more than another try).
 */
export function writeBatch(map: BpfMap, keys: Buffer[], values: Buffer[], name: string): void {
  if (keys.length !== values.length)
    throw new RangeError(`writeBatch: ${keys.length} keys but ${values.length} values`);
  for (let i = 0; i < keys.length; i += CHUNK)
    writeChunk(map, pack(keys, i, map.keySize), pack(values, i, map.valueBufferSize), name);
}

/** Entries [from, from + CHUNK) of `list`, each exactly `size` bytes, in one buffer. */
function pack(list: Buffer[], from: number, size: number): Buffer {
  const n = Math.min(CHUNK, list.length - from);
  const out = Buffer.allocUnsafe(n * size);
  for (let j = 0; j < n; j++) {
    const b = list[from + j]!;
    if (b.length !== size)
      throw new RangeError(`writeBatch: entry of ${b.length} bytes, map wants ${size}`);
    b.copy(out, j * size);
  }
  return out;
}

function writeChunk(map: BpfMap, keys: Buffer, values: Buffer, name: string): void {
  const ks = map.keySize;
  const vs = map.valueBufferSize;
  const total = keys.length / ks;
  let done = 0;
  let idle = 0;
  while (done < total) {
    const r = map.updateBatchPacked(
      keys.subarray(done * ks),
      values.subarray(done * vs),
      total - done,
    );
    done += r.written;
    if (r.errno === 0) return;
    if (r.errno === E2BIG || r.errno === ENOSPC)
      throw new L3isoError(
        'EMAP_FULL',
        `map ${name} is full`,
        'bring the engine up with a larger --max-cells (run `down` first)',
        { cause: new BpfError('bpf_map_update_batch', -r.errno, name) },
      );
    if (r.errno !== ENOMEM) throw new BpfError('bpf_map_update_batch', -r.errno, name);
    if (r.written > 0) {
      idle = 0;
      continue;
    }
    if (++idle > MAX_IDLE) throw new BpfError('bpf_map_update_batch', -r.errno, name);
    // Per-CPU values come from percpu chunks the kernel populates from a
    // workqueue: give it time rather than tries.
    sleepSync(Math.min(idle, 20));
  }
}

const E2BIG = 7;
const ENOMEM = 12;
const ENOSPC = 28;
/** ENOMEMs in a row that wrote nothing before a write gives up (~1 s of waiting). */
const MAX_IDLE = 60;
