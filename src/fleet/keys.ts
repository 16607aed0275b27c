/**
 * The fleet's keys in etcd, in the spirit of Calico's /calico/ipam/v2/...
 * (README "Fleet"). Values are JSON. Every block and host key is attached to
 * its host's one lease, so when the host stops renewing it, etcd deletes them
 * and the blocks return to the pool.
 *
 *   /l3iso/ipam/v1/pools/<pool>                 {"name","cidr","blockSize"}
 *   /l3iso/ipam/v1/blocks/<pool>/<addr>-<len>   {"pool","cidr","host"}      (lease)
 *   /l3iso/ipam/v1/hosts/<host-id>              {"host","engine","pid","since"} (lease)
 */
import { L3isoError } from '../errors';
import { parsePoolCidr, type Range } from '../pools/cidr';

export const PREFIX = '/l3iso/ipam/v1';
export const POOLS = `${PREFIX}/pools/`;
export const BLOCKS = `${PREFIX}/blocks/`;
export const HOSTS = `${PREFIX}/hosts/`;

export const HOST_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export function checkHostId(id: string): void {
  if (!HOST_ID.test(id))
    throw new L3isoError(
      'EUSAGE',
      `host id ${JSON.stringify(id)} is not valid (letters, digits, _ . -, at most 63)`,
    );
}

export const poolKey = (name: string): string => `${POOLS}${name}`;
export const blocksOf = (pool: string): string => `${BLOCKS}${pool}/`;
export const hostKey = (id: string): string => `${HOSTS}${id}`;

/** 10.0.0.64/26 -> .../blocks/p/10.0.0.64-26 (Calico's spelling). */
export function blockKey(pool: string, cidr: string): string {
  return `${blocksOf(pool)}${cidr.replace('/', '-')}`;
}

/** The block a key names, or undefined for a key that is not a block's. */
export function blockOfKey(key: string): { pool: string; range: Range } | undefined {
  if (!key.startsWith(BLOCKS)) return undefined;
  const rest = key.slice(BLOCKS.length);
  const slash = rest.indexOf('/');
  const dash = rest.lastIndexOf('-');
  if (slash <= 0 || dash <= slash) return undefined;
  try {
    const cidr = `${rest.slice(slash + 1, dash)}/${rest.slice(dash + 1)}`;
    return { pool: rest.slice(0, slash), range: parsePoolCidr(cidr) };
  } catch {
    return undefined;
  }
}

export interface BlockValue {
  pool: string;
  cidr: string;
  host: string;
}

export interface HostValue {
  host: string;
  /** the engine instance (pin dir marker) the agent serves */
  engine: string;
  pid: number;
  since: string;
}

export function parseJson<T>(text: string | null | undefined): T | undefined {
  if (!text) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}
