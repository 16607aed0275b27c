/**
 * Pool and block arithmetic, pure. Addresses are unsigned integers of 32 or
 * 128 bits (bigint: an IPv6 pool may hold 2^64 addresses and 2^58 blocks),
 * so a block is just [base, base + 2^(bits - blockLength)).
 */
import { L3isoError } from '../errors';
import {
  addressFromBytes,
  parseAddress,
  parsePrefix,
  type CellAddress,
  type Family,
} from '../model/address';

export interface Range {
  family: Family;
  /** first address, as an integer */
  base: bigint;
  prefixLength: number;
}

/** Calico's defaults: 64 addresses per IPv4 block, 64 per IPv6 block. */
export const DEFAULT_BLOCK = { 4: 26, 6: 122 } as const;

export const bitsOf = (family: Family): number => (family === 4 ? 32 : 128);

export function sizeOf(r: Range): bigint {
  return 1n << BigInt(bitsOf(r.family) - r.prefixLength);
}

export function toInt(a: Pick<CellAddress, 'bytes'>): bigint {
  return BigInt(`0x${a.bytes.toString('hex')}`);
}

export function fromInt(family: Family, n: bigint): CellAddress {
  const bytes = Buffer.from(n.toString(16).padStart(family === 4 ? 8 : 32, '0'), 'hex');
  return addressFromBytes(family, bytes);
}

export function rangeText(r: Range): string {
  return `${fromInt(r.family, r.base).text}/${r.prefixLength}`;
}

export function contains(r: Range, a: CellAddress): boolean {
  if (a.family !== r.family) return false;
  const n = toInt(a);
  return n >= r.base && n < r.base + sizeOf(r);
}

export function overlaps(a: Range, b: Range): boolean {
  if (a.family !== b.family) return false;
  return a.base < b.base + sizeOf(b) && b.base < a.base + sizeOf(a);
}

/**
 * A pool's CIDR: a prefix whose every address a cell may own (its first and
 * last are checked: the ranges cells may not own, loopback, multicast,
 * link-local and the like, are aligned prefixes, so a pool that starts and
 * ends outside them lies outside them). A bare address is refused: a pool
 * of one is an assignment.
 */
export function parsePoolCidr(text: string): Range {
  // Parsed again for every allocation otherwise (about 0.1 ms: the checks of
  // parseAddress); a Range is never changed once made.
  let r = parsed.get(text);
  if (!r) {
    if (parsed.size >= 1024) parsed.clear();
    parsed.set(text, (r = parseFresh(text)));
  }
  return { ...r };
}

const parsed = new Map<string, Range>();

function parseFresh(text: string): Range {
  const bad = (why: string) =>
    new L3isoError('EADDR_INVALID', `pool CIDR ${JSON.stringify(text)} ${why}`);
  if (typeof text !== 'string' || !text.includes('/')) throw bad('must be ADDRESS/LENGTH');
  let p;
  try {
    p = parsePrefix(text);
  } catch (err) {
    throw bad(
      `is not a prefix: ${(err as Error).message.replace(/^invalid address "[^"]*": /, '')}`,
    );
  }
  const r: Range = {
    family: p.address.family,
    base: toInt(p.address),
    prefixLength: p.prefixLength,
  };
  if (p.prefixLength === 0) throw bad('covers every address of its family');
  for (const n of [r.base, r.base + sizeOf(r) - 1n]) {
    try {
      parseAddress(fromInt(r.family, n).text);
    } catch (err) {
      throw bad(`holds addresses no cell can own (${(err as Error).message})`);
    }
  }
  return r;
}

/** The block length of a pool: --block-size, or the default clamped to the pool. */
export function blockLength(pool: Range, requested?: number): number {
  const bits = bitsOf(pool.family);
  if (requested === undefined) return Math.max(DEFAULT_BLOCK[pool.family], pool.prefixLength);
  if (!Number.isInteger(requested) || requested < pool.prefixLength || requested > bits)
    throw new L3isoError(
      'EUSAGE',
      `block size /${requested} must be from /${pool.prefixLength} (the pool) to /${bits}`,
    );
  return requested;
}

export function blockCount(pool: Range, blockLen: number): bigint {
  return 1n << BigInt(blockLen - pool.prefixLength);
}

/** Block number `index` of the pool (0 is the lowest). */
export function blockAt(pool: Range, blockLen: number, index: bigint): Range {
  if (index < 0n || index >= blockCount(pool, blockLen))
    throw new L3isoError('EUSAGE', `block ${index} is outside pool ${rangeText(pool)}`);
  const size = 1n << BigInt(bitsOf(pool.family) - blockLen);
  return { family: pool.family, base: pool.base + index * size, prefixLength: blockLen };
}

/** The number of the block holding `a`, or undefined when `a` is not in the pool. */
export function blockIndexOf(pool: Range, blockLen: number, a: CellAddress): bigint | undefined {
  if (!contains(pool, a)) return undefined;
  return (toInt(a) - pool.base) >> BigInt(bitsOf(pool.family) - blockLen);
}

/** The lowest block number not in `taken`, or undefined when every block is. */
export function lowestFreeBlock(
  pool: Range,
  blockLen: number,
  taken: ReadonlySet<bigint>,
): bigint | undefined {
  const count = blockCount(pool, blockLen);
  // `taken` is small (blocks held by live hosts): the answer is at most its size.
  for (let i = 0n; i < count; i++) if (!taken.has(i)) return i;
  return undefined;
}

/**
 * The range's addresses from the lowest up, skipping `owned` (as integers,
 * see toInt). Lazy: a /64 is never walked further than the caller takes,
 * and a range whose every address is owned is skipped without a walk.
 */
export function* freeAddresses(r: Range, owned: ReadonlySet<bigint>): Generator<CellAddress> {
  const end = r.base + sizeOf(r);
  let inside = 0n;
  for (const n of owned) if (n >= r.base && n < end) inside++;
  if (inside >= sizeOf(r)) return;
  for (let n = r.base; n < end; n++) if (!owned.has(n)) yield fromInt(r.family, n);
}

/** Addresses as the integers freeAddresses skips (each family in its own space). */
export function ownedInts(
  addrs: Iterable<Pick<CellAddress, 'family' | 'bytes'>>,
  family: Family,
): Set<bigint> {
  const out = new Set<bigint>();
  for (const a of addrs) if (a.family === family) out.add(toInt(a));
  return out;
}

/** A block's text in a key (Calico's spelling, no slash): 10.1.0.64-26, fd00::40-122. */
export function blockKeyText(r: Range): string {
  return rangeText(r).replace('/', '-');
}
