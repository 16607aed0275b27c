/**
 * Fills an engine's maps with synthetic cells for the benchmark: made-up
 * cgroup ids (no cgroup exists for them) written with batch updates into
 * l3_cells, l3_owners, l3_cell_stats and (for the cells with refusals or
 * drops) l3_cell_denials, with non-zero counters.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { MapUpdate, isErrno, possibleCpus, type BpfMap } from '../loader';
import { W } from '../src/observe/counters';
import type { EngineState } from '../src/dataplane/state';
import {
  LAYOUT,
  emptyCellDenials,
  encodeAddr,
  encodeCell,
  encodeCellDenials,
  encodeCellKey,
  encodeOwner,
} from '../src/codecs/layout';
import { addressFromBytes } from '../src/model/address';

/** Synthetic cgroup ids: far above any real kernfs inode number. */
export const ID_BASE = 1n << 40n;

export interface Profile {
  name: string;
  /** uplink counters non-zero on every cell (an uplink attached, all busy) */
  uplink: boolean;
}

export const PROFILES: readonly Profile[] = [
  { name: 'socket counters on every cell, no uplink attached', uplink: false },
  { name: 'every counter non-zero on every cell (uplink attached, all busy)', uplink: true },
];

function statsValue(i: number, cpus: number, uplink: boolean): Buffer {
  const stride = Math.ceil(LAYOUT.l3_cell_stats.size / 8) * 8;
  const buf = Buffer.alloc(cpus * stride);
  for (let c = 0; c < cpus; c++) {
    const o = c * stride;
    const put = (word: number, v: number) => buf.writeBigUInt64LE(BigInt(v), o + word * 8);
    // Some values above 2^32, so the high halves are exercised too.
    put(W.rxPackets, 1000 + i);
    put(W.rxBytes, 2 ** 33 + i * 1500);
    put(W.txPackets, 900 + i);
    put(W.txBytes, 700_000 + i * 1400);
    if (uplink) {
      put(W.uplinkRxPackets, 1100 + i);
      put(W.uplinkRxBytes, 1_600_000 + i * 1500);
      put(W.uplinkTxPackets, 950 + i);
      put(W.uplinkTxBytes, 1_300_000 + i * 1400);
    }
  }
  return buf;
}

/** The shared refusal/drop entry of cell i, or undefined: most cells have none. */
function denialsValue(i: number, cpus: number): Buffer | undefined {
  if (i % 10 && i % 25 && i % 20) return undefined;
  const d = emptyCellDenials();
  if (i % 10 === 0) d.refused[0] = BigInt(3 * cpus + (cpus * (cpus - 1)) / 2); // bind-foreign on 10% of cells
  if (i % 25 === 0) d.refused[8] = BigInt(cpus); // sock-raw on 4%
  if (i % 20 === 0) d.dropped[0] = BigInt(5 * cpus); // spoofed-source on 5%
  return encodeCellDenials(d);
}

/**
 * bpf_map_update_batch in chunks. l3_cell_stats is a per-CPU hash without
 * preallocation: the kernel's per-CPU allocator refills its pool in the
 * background and answers ENOMEM when a burst outruns it, so a failed chunk
 * is retried after a pause (BPF_ANY updates are idempotent). Returns how
 * many retries that took.
 */
export async function putAll(map: BpfMap, keys: Buffer[], values: Buffer[]): Promise<number> {
  const CHUNK = 1000;
  let retries = 0;
  for (let i = 0; i < keys.length; i += CHUNK) {
    for (let attempt = 0; ; attempt++) {
      try {
        map.updateBatch(keys.slice(i, i + CHUNK), values.slice(i, i + CHUNK), MapUpdate.ANY);
        break;
      } catch (err) {
        if (!isErrno(err, 'ENOMEM') || attempt > 500) throw err;
        retries++;
        await sleep(20);
      }
    }
  }
  return retries;
}

/** Writes `cells` synthetic cells (cells and owners only when `withCells`). */
export async function populate(
  state: EngineState,
  cells: number,
  profile: Profile,
  withCells: boolean,
): Promise<{ ms: number; retries: number }> {
  const cpus = possibleCpus();
  const t = process.hrtime.bigint();
  const ids: Buffer[] = [];
  for (let i = 0; i < cells; i++) ids.push(encodeCellKey(ID_BASE + BigInt(i)));
  let retries = 0;
  if (withCells) {
    const values: Buffer[] = [];
    const ownerKeys: Buffer[] = [];
    const owners: Buffer[] = [];
    for (let i = 0; i < cells; i++) {
      const b = [(i >> 16) & 255, (i >> 8) & 255, i & 255] as const;
      const a = addressFromBytes(4, Buffer.from([10, ...b]));
      const lo = addressFromBytes(4, Buffer.from([127, 64 + (b[0] & 63), b[1], b[2]]));
      values.push(encodeCell({ primary4: a, loopback4: lo, flags: 0, addrs4: 1, addrs6: 0 }));
      ownerKeys.push(encodeAddr(a));
      owners.push(encodeOwner({ cell: ID_BASE + BigInt(i), flags: 0 }));
    }
    retries += await putAll(state.map('l3_cells'), ids, values);
    retries += await putAll(state.map('l3_owners'), ownerKeys, owners);
  }
  const stats = ids.map((_, i) => statsValue(i, cpus, profile.uplink));
  retries += await putAll(state.map('l3_cell_stats'), ids, stats);
  const denied = ids.flatMap((k, i) => {
    const v = denialsValue(i, cpus);
    return v ? [[k, v] as const] : [];
  });
  retries += await putAll(
    state.map('l3_cell_denials'),
    denied.map(([k]) => k),
    denied.map(([, v]) => v),
  );
  return { ms: Number(process.hrtime.bigint() - t) / 1e6, retries };
}
