import { describe, expect, it } from 'vitest';
import { parseLine } from '../../src/dataplane/preexisting';

describe('audit iterator lines', () => {
  it('turns little-endian address words back into network order (v4)', () => {
    // 192.0.2.4 loaded as a little-endian u32 is 0x040200c0.
    expect(parseLine('4242 2 6 040200c0000000000000000000000000 7101')).toEqual({
      cgroupId: 4242n,
      protocol: 'tcp',
      address: '192.0.2.4',
      port: 7101,
    });
  });

  it('does the same for all four words of an IPv6 address', () => {
    // 2001:db8::4 -> words 20 01 0d b8 | 0 | 0 | 00 00 00 04
    expect(parseLine('7 10 17 b80d0120000000000000000004000000 53')).toEqual({
      cgroupId: 7n,
      protocol: 'udp',
      address: '2001:db8::4',
      port: 53,
    });
  });

  it('refuses a malformed line instead of guessing', () => {
    expect(() => parseLine('1 2 6 abc 80')).toThrow(/malformed/);
    expect(() => parseLine('')).toThrow(/malformed/);
  });
});
