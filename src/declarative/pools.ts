/**
 * Pool cells of a state file (`pool: NAME, count: K`) become address cells
 * against the live owners, under the instance lock, before the plan is
 * made: a cell keeps the pool addresses it has (the lowest K) and gets the
 * lowest free ones for what it lacks. Free means owned by no live cell and
 * named by no cell of the file; what --prune is about to free is not
 * counted, so a pool is never double-booked within one apply. Pure.
 */
import { contains, freeAddresses, ownedInts, parsePoolCidr, toInt } from '../pools/cidr';
import { clash } from '../pools/defs';
import type { PoolDef } from '../pools/store';
import type { LiveCell } from './diff';
import type { DesiredCell } from './schema';
import { parseAddress } from '../model/address';

/** The live pools and the file's, or the conflicts between them. */
export function mergePools(
  live: readonly PoolDef[],
  file: readonly PoolDef[],
  errs: string[],
): { pools: PoolDef[]; added: PoolDef[] } {
  const pools = [...live];
  const added: PoolDef[] = [];
  file.forEach((def, i) => {
    const c = clash(def, pools);
    if (c === 'same') return;
    if (c) return errs.push(`pools[${i}]: ${c.message}`);
    pools.push(def);
    added.push(def);
  });
  return { pools, added };
}

export function resolvePoolCells(
  cells: readonly DesiredCell[],
  live: readonly LiveCell[],
  pools: readonly PoolDef[],
  errs: string[],
): DesiredCell[] {
  // Most files name no pool: then nothing here needs the addresses parsed.
  if (!cells.some((d) => d.pool !== undefined)) return [...cells];
  const texts = [...live.flatMap((l) => l.addresses), ...cells.flatMap((d) => d.addresses)];
  const all = texts.map(parseAddress);
  const taken = { 4: ownedInts(all, 4), 6: ownedInts(all, 6) };
  const byName = new Map(live.map((l) => [l.cgroup, l]));
  return cells.map((d, i) => {
    if (d.pool === undefined) return d;
    const want = d.count ?? 1;
    const def = pools.find((p) => p.name === d.pool);
    if (!def) {
      errs.push(
        `cells[${i}].pool: no pool ${JSON.stringify(d.pool)} (define it under pools:, or \`l3iso pool add\`)`,
      );
      return d;
    }
    const r = parsePoolCidr(def.cidr);
    const mine = (byName.get(d.cgroup)?.addresses ?? [])
      .map(parseAddress)
      .filter((a) => contains(r, a))
      .sort((a, b) => (toInt(a) < toInt(b) ? -1 : 1))
      .slice(0, want)
      .map((a) => a.text);
    const addresses = [...mine];
    if (addresses.length < want)
      for (const a of freeAddresses(r, taken[r.family])) {
        taken[r.family].add(toInt(a));
        addresses.push(a.text);
        if (addresses.length === want) break;
      }
    if (addresses.length < want)
      errs.push(
        `cells[${i}].pool: pool ${def.name} (${def.cidr}) has no free address left (${want - addresses.length} more needed)`,
      );
    return { ...d, addresses };
  });
}
