// Pool and block arithmetic (v4 and v6), pool definitions, and the state
// file's pool cells resolved against live owners. Pure: no kernel.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  blockAt,
  blockCount,
  blockIndexOf,
  blockKeyText,
  blockLength,
  contains,
  freeAddresses,
  fromInt,
  lowestFreeBlock,
  overlaps,
  parsePoolCidr,
  rangeText,
  sizeOf,
  toInt,
  type Range,
} from '../../src/pools/cidr';
import { clash, poolDef } from '../../src/pools/defs';
import { resolvePoolCells } from '../../src/declarative/pools';
import { validateState } from '../../src/declarative/schema';
import { parseAddress } from '../../src/model/address';

const v4Pool = fc
  .tuple(fc.integer({ min: 1, max: 0xdfffffff }), fc.integer({ min: 8, max: 30 }))
  .map(([n, len]) => {
    const base = BigInt(n) & ~((1n << BigInt(32 - len)) - 1n);
    return { family: 4, base, prefixLength: len } as Range;
  })
  .filter((r) => {
    const first = Number(r.base >> 24n);
    const last = Number((r.base + sizeOf(r) - 1n) >> 24n);
    return first !== 0 && first !== 127 && last !== 127 && last < 224;
  });
const v6Pool = fc
  .tuple(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.integer({ min: 48, max: 124 }))
  .map(([n, len]) => {
    const base = ((0x2001_0db8n << 96n) | (n << 32n)) & ~((1n << BigInt(128 - len)) - 1n);
    return { family: 6, base, prefixLength: len } as Range;
  });
const anyPool = fc.oneof(v4Pool, v6Pool);

describe('block arithmetic', () => {
  it('blocks tile the pool: each address is in exactly the block its index names', () => {
    fc.assert(
      fc.property(
        anyPool,
        fc.integer({ min: 0, max: 16 }),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        (pool, extra, pick) => {
          const bits = pool.family === 4 ? 32 : 128;
          const len = Math.min(bits, pool.prefixLength + extra);
          const count = blockCount(pool, len);
          expect(count).toBe(1n << BigInt(len - pool.prefixLength));
          const i = pick % count;
          const b = blockAt(pool, len, i);
          expect(b.prefixLength).toBe(len);
          expect(sizeOf(b) * count).toBe(sizeOf(pool));
          // first and last address of block i map back to i, and lie in the pool
          for (const n of [b.base, b.base + sizeOf(b) - 1n]) {
            const a = fromInt(pool.family, n);
            expect(contains(pool, a)).toBe(true);
            expect(blockIndexOf(pool, len, a)).toBe(i);
          }
          // neighbours do not overlap
          if (i + 1n < count) expect(overlaps(b, blockAt(pool, len, i + 1n))).toBe(false);
          expect(overlaps(b, pool)).toBe(true);
        },
      ),
    );
  });

  it('toInt and fromInt are inverse; a range prints as its CIDR and parses back', () => {
    fc.assert(
      fc.property(anyPool, (pool) => {
        const text = rangeText(pool);
        expect(parsePoolCidr(text)).toEqual(pool);
        expect(toInt(fromInt(pool.family, pool.base))).toBe(pool.base);
        expect(blockKeyText(pool)).toBe(text.replace('/', '-'));
      }),
    );
  });

  it('lowest free block skips the taken ones; none when all are', () => {
    const pool = parsePoolCidr('10.0.0.0/24');
    expect(lowestFreeBlock(pool, 26, new Set())).toBe(0n);
    expect(lowestFreeBlock(pool, 26, new Set([0n, 1n, 3n]))).toBe(2n);
    expect(lowestFreeBlock(pool, 26, new Set([0n, 1n, 2n, 3n]))).toBeUndefined();
    const v6 = parsePoolCidr('fd00::/64');
    expect(blockCount(v6, 122)).toBe(1n << 58n);
    expect(lowestFreeBlock(v6, 122, new Set([0n]))).toBe(1n);
    expect(rangeText(blockAt(v6, 122, 1n))).toBe('fd00::40/122');
    expect(blockKeyText(blockAt(v6, 122, 1n))).toBe('fd00::40-122');
    expect(rangeText(blockAt(pool, 26, 3n))).toBe('10.0.0.192/26');
  });

  it('free addresses: lowest first, skipping owned, lazily on a huge pool', () => {
    const r = parsePoolCidr('10.0.0.0/30');
    expect(
      [...freeAddresses(r, new Set([toInt(parseAddress('10.0.0.1'))]))].map((a) => a.text),
    ).toEqual(['10.0.0.0', '10.0.0.2', '10.0.0.3']);
    const full = parsePoolCidr('10.0.0.4/31');
    expect([
      ...freeAddresses(
        full,
        new Set([toInt(parseAddress('10.0.0.4')), toInt(parseAddress('10.0.0.5'))]),
      ),
    ]).toEqual([]);
    const it6 = freeAddresses(parsePoolCidr('fd00::/48'), new Set([toInt(parseAddress('fd00::'))]));
    expect(it6.next().value?.text).toBe('fd00::1');
  });

  it('block sizes: default /26 and /122 clamped to the pool, explicit ones checked', () => {
    expect(blockLength(parsePoolCidr('10.0.0.0/16'))).toBe(26);
    expect(blockLength(parsePoolCidr('10.0.0.0/28'))).toBe(28);
    expect(blockLength(parsePoolCidr('fd00::/64'))).toBe(122);
    expect(blockLength(parsePoolCidr('10.0.0.0/16'), 24)).toBe(24);
    expect(() => blockLength(parsePoolCidr('10.0.0.0/16'), 15)).toThrow(/from \/16 .* to \/32/);
    expect(() => blockLength(parsePoolCidr('fd00::/64'), 129)).toThrow(/to \/128/);
  });

  it('pool CIDRs: refused with one reason each', () => {
    expect(() => parsePoolCidr('10.0.0.1')).toThrow(/ADDRESS\/LENGTH/);
    expect(() => parsePoolCidr('10.0.0.1/24')).toThrow(/host bits are set/);
    expect(() => parsePoolCidr('0.0.0.0/0')).toThrow(/every address|no cell can own/);
    expect(() => parsePoolCidr('127.0.0.0/8')).toThrow(/no cell can own/);
    expect(() => parsePoolCidr('fe80::/64')).toThrow(/no cell can own/);
    expect(() => parsePoolCidr('224.0.0.0/24')).toThrow(/no cell can own/);
    expect(parsePoolCidr('::ffff:10.0.0.0/120')).toEqual(parsePoolCidr('10.0.0.0/24'));
  });
});

describe('pool definitions', () => {
  it('overlap and redefinition clash; the same definition is the same', () => {
    const a = poolDef('a', '10.0.0.0/16');
    expect(clash(poolDef('a', '10.0.0.0/16'), [a])).toBe('same');
    expect(clash(poolDef('a', '10.0.0.0/16', 24), [a])).toMatchObject({ code: 'EPOOL_EXISTS' });
    expect(clash(poolDef('b', '10.0.128.0/17'), [a])).toMatchObject({ code: 'EPOOL_OVERLAP' });
    expect(clash(poolDef('b', '10.1.0.0/16'), [a])).toBeUndefined();
    expect(clash(poolDef('b', 'fd00::/64'), [a])).toBeUndefined();
  });
});

describe('state file pool cells', () => {
  const doc = (cells: unknown[], pools?: unknown[]) =>
    validateState({ cells, ...(pools ? { pools } : {}) });

  it('parses pool cells and pools; errors name their path', () => {
    const s = doc([{ cgroup: 'a', pool: 'p', count: 2 }], [{ name: 'p', cidr: '10.0.0.0/29' }]);
    expect(s.cells[0]).toMatchObject({ cgroup: 'a', addresses: [], pool: 'p', count: 2 });
    expect(s.pools).toEqual([{ name: 'p', cidr: '10.0.0.0/29', blockSize: 29 }]);
    expect(validateState(s)).toEqual(s);
    expect(() =>
      doc(
        [
          { cgroup: 'a', pool: 'p', count: 0 },
          { cgroup: 'b', count: 2, addresses: ['10.0.0.1'] },
          { cgroup: 'c', pool: 'p', addresses: ['10.0.0.1'] },
        ],
        [
          { name: 'p', cidr: '10.0.0.0/29' },
          { name: 'q', cidr: '10.0.0.0/30' },
          { name: 'r', cidr: 'x' },
        ],
      ),
    ).toThrow(
      expect.objectContaining({
        errors: [
          'pools[1]: pool q (10.0.0.0/30) overlaps pool p (10.0.0.0/29)',
          expect.stringMatching(/^pools\[2\]: pool CIDR "x" must be ADDRESS\/LENGTH/),
          'cells[0].count: must be a positive integer, not 0',
          'cells[1].count: needs pool',
          'cells[2]: give addresses or pool, not both',
        ],
      }),
    );
  });

  it('resolves: keeps the cell’s own, takes the lowest free, skips what others hold or the file names', () => {
    const s = doc([
      { cgroup: 'a', pool: 'p', count: 3 },
      { cgroup: 'b', addresses: ['10.0.0.1'] },
      { cgroup: 'c', pool: 'p', count: 2 },
    ]);
    const pools = [poolDef('p', '10.0.0.0/29')];
    const live = [
      { id: 1n, cgroup: 'a', addresses: ['10.0.0.5', '9.9.9.9'], allowRaw: false, allowFrom: null },
      { id: 2n, cgroup: 'z', addresses: ['10.0.0.0'], allowRaw: false, allowFrom: null },
    ];
    const errs: string[] = [];
    const out = resolvePoolCells(s.cells, live, pools, errs);
    expect(errs).toEqual([]);
    expect(out.map((c) => c.addresses)).toEqual([
      ['10.0.0.5', '10.0.0.2', '10.0.0.3'],
      ['10.0.0.1'],
      ['10.0.0.4', '10.0.0.6'],
    ]);
    const short: string[] = [];
    resolvePoolCells(doc([{ cgroup: 'x', pool: 'p', count: 9 }]).cells, live, pools, short);
    expect(short).toEqual([
      'cells[0].pool: pool p (10.0.0.0/29) has no free address left (3 more needed)',
    ]);
    const unknown: string[] = [];
    resolvePoolCells(doc([{ cgroup: 'x', pool: 'nope' }]).cells, [], pools, unknown);
    expect(unknown[0]).toMatch(/^cells\[0\]\.pool: no pool "nope"/);
  });
});
