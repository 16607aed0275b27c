/**
 * Which addresses of a pool are free, without a walk of the owner map for
 * every allocation. A walk of l3_owners costs O(its capacity), not O(its
 * entries): a hash map's batch lookup visits every bucket, about 5 ms at the
 * default --max-cells whether it holds ten addresses or a million. So an
 * Engine that lives (the agent's, a fleet host's) keeps a copy of the owned
 * addresses, taken in one walk and kept right by its own claims.
 *
 * The copy is good for one generation of the maps: l3_generation, which
 * every writer bumps under the instance lock (dataplane/generation.ts). Any
 * other write in between, by this process or another, and the next
 * allocation walks again, so the lowest free address is still the one
 * handed out. The kernel stays the arbiter either way: every claim is
 * BPF_NOEXIST, and a candidate a wrong copy called free would be lost to its
 * owner and skipped, never shared.
 */
import { L3_FAMILY_V4, L3_FAMILY_V6, LAYOUT } from '../codecs/layout';
import type { AssignResult } from '../cells/cells';
import { nextGeneration } from '../dataplane/generation';
import { withLock } from '../dataplane/lock';
import type { EngineState } from '../dataplane/state';
import type { CellAddress, Family } from '../model/address';
import { fromInt, sizeOf, type Range } from './cidr';

interface Copy {
  /** every address with an l3_owners entry that a pool can hold, as
   * integers (see cidr.toInt) */
  owned: Record<Family, Set<bigint>>;
  /** per range: every address below this one is owned */
  floor: Map<string, bigint>;
}

interface Kept extends Copy {
  /** the value of l3_generation the copy matches */
  generation: bigint;
}

/** One per EngineState: it lives and dies with the Engine holding it. */
const kept = new WeakMap<EngineState, Kept>();

function generationOf(state: EngineState): bigint {
  return state.map('l3_generation').lookup(Buffer.alloc(4))?.readBigUInt64LE(0) ?? 0n;
}

const FAMILY = LAYOUT.l3_addr.fields.family.offset;
const ADDR = LAYOUT.l3_addr.fields.addr.offset;

/** One walk of the owner map, keys only, no Buffer per entry. */
function walk(state: EngineState): Copy {
  const owned: Copy['owned'] = { 4: new Set(), 6: new Set() };
  const size = LAYOUT.l3_addr.size;
  state.map('l3_owners').scan((keys, _values, n) => {
    for (let i = 0, at = 0; i < n; i++, at += size) {
      const family = keys[at + FAMILY];
      if (family === L3_FAMILY_V4) {
        const n = keys.readUInt32BE(at + ADDR);
        // Loopback aliases (127/8, one per cell): no pool holds them.
        if (n >>> 24 !== 127) owned[4].add(BigInt(n));
      } else if (family === L3_FAMILY_V6)
        owned[6].add(
          (keys.readBigUInt64BE(at + ADDR) << 64n) | keys.readBigUInt64BE(at + ADDR + 8),
        );
    }
  });
  return { owned, floor: new Map() };
}

/** The free addresses of one allocation, from the kept copy or a new walk. */
export class FreeAddresses {
  private copy: Copy | undefined;

  constructor(
    private readonly state: EngineState,
    kept: Copy | undefined,
  ) {
    this.copy = kept;
  }

  /**
   * The free addresses of `ranges`, lowest first, range by range. Each one
   * handed out counts as owned from then on: the caller claims it (or finds
   * that someone else did).
   */
  *of(ranges: readonly Range[]): Generator<CellAddress> {
    const copy = (this.copy ??= walk(this.state));
    for (const r of ranges) {
      const owned = copy.owned[r.family];
      const key = `${r.family}/${r.base}/${r.prefixLength}`;
      const end = r.base + sizeOf(r);
      let n = copy.floor.get(key) ?? r.base;
      while (n < end && owned.has(n)) n++;
      copy.floor.set(key, n);
      for (; n < end; n++) {
        if (owned.has(n)) continue;
        owned.add(n);
        yield fromInt(r.family, n);
      }
    }
  }

  /** What to keep for the next allocation (undefined: nothing was needed). */
  get taken(): Copy | undefined {
    return this.copy;
  }
}

/**
 * Runs one pool allocation under the instance lock with the free addresses
 * of the kept copy, when it is of the current generation. Afterwards the
 * copy is kept for the generation this write ends with, unless the write
 * failed (its claims were undone) or repaired the cell (a repair can free
 * addresses the copy still counts as owned).
 */
export function allocating<T extends AssignResult>(
  state: EngineState,
  fn: (free: FreeAddresses) => T,
): T {
  let next: Kept | undefined;
  const result = withLock(state, () => {
    const was = kept.get(state);
    kept.delete(state);
    const free = new FreeAddresses(
      state,
      was && was.generation === generationOf(state) ? was : undefined,
    );
    const r = fn(free);
    const copy = free.taken;
    // withLock bumps the generation once more as it lets go: the copy is
    // that generation's, and any other writer's bump comes after it.
    if (copy && r.repaired.length === 0)
      next = { ...copy, generation: nextGeneration(generationOf(state)) };
    return r;
  });
  if (next) kept.set(state, next);
  return result;
}
