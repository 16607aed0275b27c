// Issue 9: a fast-check fuzzer over the address, CIDR and codec parsers.
// Whatever the input, a parser returns a value or throws an L3isoError with
// a one-line message: never another exception (a stack trace at the CLI).
// Parsed values round-trip. 10,000 runs under L3ISO_LONG=1, 1,000 in CI.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { L3isoError } from '../../src/errors';
import * as L from '../../src/codecs/layout';
import { formatAddress, parseAddress, parsePrefix } from '../../src/model/address';

const RUNS = process.env.L3ISO_LONG === '1' ? 10_000 : 1_000;

/** Throws unless fn returns, or throws a one-line L3isoError. */
function clean<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof L3isoError)) throw err;
    expect(err.message).not.toMatch(/\n/);
    return undefined;
  }
}

const addressLike = fc.oneof(
  fc.string(),
  fc.ipV4(),
  fc.ipV6(),
  fc.ipV4Extended(),
  fc
    .tuple(fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: -5, max: 140 }))
    .map(([a, n]) => `${a}/${n}`),
  fc.constantFrom(
    '::ffff:192.0.2.1',
    '0.0.0.0',
    '::',
    '127.0.0.1',
    '::1',
    'fe80::1%eth0',
    ' 1.2.3.4',
  ),
);

describe('parser fuzz', () => {
  it('parseAddress: a value that round-trips, or a clean error', () => {
    fc.assert(
      fc.property(addressLike, (text) => {
        const a = clean(() => parseAddress(text));
        if (a) {
          expect(parseAddress(a.text).text).toBe(a.text);
          expect(formatAddress(a.family, a.bytes)).toBe(a.text);
          expect(L.decodeAddr(L.encodeAddr(a)).text).toBe(a.text);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('parsePrefix: a value that round-trips through the LPM keys, or a clean error', () => {
    fc.assert(
      fc.property(addressLike, fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (text, cell) => {
        const p = clean(() => parsePrefix(text));
        if (p) {
          expect(L.decodePrefixKey(L.encodePrefixKey(p))).toEqual(p);
          expect(L.decodeAllowKey(L.encodeAllowKey(cell, p))).toEqual({ cell, prefix: p });
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('every decoder: bytes of any length and content give a value or a clean error', () => {
    const decoders: ((b: Uint8Array) => unknown)[] = [
      L.decodeCellKey,
      L.decodeAddr,
      L.decodeOwner,
      L.decodeCell,
      L.decodeConfig,
      L.decodeCellStats,
      L.decodeCellStatsPerCpu,
      L.decodeSockOrigin,
      L.decodePrefixKey,
      L.decodeAllowKey,
      L.decodeEvent,
      L.decodeUplink,
    ];
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 400 }),
          fc
            .constantFrom(...Object.values(L.LAYOUT).map((s) => s.size))
            .chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
        ),
        (bytes) => {
          for (const d of decoders) clean(() => d(bytes));
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('encoders refuse out-of-range values cleanly', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.integer(), fc.double(), fc.constant(2 ** 32)),
        fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }),
        fc.string({ maxLength: 300 }),
        (n, big, text) => {
          clean(() => L.encodeOwner({ cell: big, flags: n }));
          clean(() => L.encodeCellKey(big));
          clean(() =>
            L.encodeConfig({ rootCgroup: big, rootLevel: n, version: n, cgroupRoot: text }),
          );
        },
      ),
      { numRuns: RUNS },
    );
  });
});
