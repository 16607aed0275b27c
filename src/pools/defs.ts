/**
 * Pool definitions, pure: validation, clashes between pools, look-up by
 * name. The state file's parser uses these without loading the engine.
 */
import { L3isoError } from '../errors';
import { blockLength, overlaps, parsePoolCidr, rangeText } from './cidr';
import { checkPoolName, type PoolDef } from './store';

/** Validates a definition; the canonical form is what is stored and compared. */
export function poolDef(name: string, cidr: string, blockSize?: number): PoolDef {
  checkPoolName(name);
  const r = parsePoolCidr(cidr);
  return { name, cidr: rangeText(r), blockSize: blockLength(r, blockSize) };
}

/** Refuses a definition that clashes with the ones there: same name with
 * another CIDR or block size, or any overlap. Undefined: `def` is new. */
export function clash(def: PoolDef, pools: readonly PoolDef[]): L3isoError | 'same' | undefined {
  const same = pools.find((p) => p.name === def.name);
  if (same) {
    if (same.cidr === def.cidr && same.blockSize === def.blockSize) return 'same';
    return new L3isoError(
      'EPOOL_EXISTS',
      `pool ${def.name} exists as ${same.cidr} (blocks /${same.blockSize}), not ${def.cidr} (blocks /${def.blockSize})`,
      `delete it first: l3iso pool del ${def.name}`,
    );
  }
  const r = parsePoolCidr(def.cidr);
  const other = pools.find((p) => overlaps(r, parsePoolCidr(p.cidr)));
  if (other)
    return new L3isoError(
      'EPOOL_OVERLAP',
      `pool ${def.name} (${def.cidr}) overlaps pool ${other.name} (${other.cidr})`,
    );
  return undefined;
}

/** A pool's definition, or EPOOL_UNKNOWN naming the ones there are. */
export function findPool(pools: readonly PoolDef[], name: string): PoolDef {
  const p = pools.find((q) => q.name === name);
  if (p) return p;
  throw new L3isoError(
    'EPOOL_UNKNOWN',
    `no pool ${JSON.stringify(name)}${pools.length ? ` (pools: ${pools.map((q) => q.name).join(', ')})` : ' (no pools defined)'}`,
    `define it: l3iso pool add ${name} CIDR`,
  );
}
