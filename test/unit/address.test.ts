import { describe, expect, it } from 'vitest';
import { L3isoError } from '../../src/errors';
import ipaddr from 'ipaddr.js';
import {
  addressFromBytes,
  formatAddress,
  loopbackCandidates,
  parseAddress,
  parsePrefix,
  type CellAddress,
} from '../../src/model/address';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof L3isoError) return err.code;
    throw err;
  }
  return undefined;
}

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof L3isoError) return err.message;
    throw err;
  }
  throw new Error('expected a throw');
}

function take<T>(gen: Iterator<T>, n: number): T[] {
  const out: T[] = [];
  for (let i = 0; i < n; i++) {
    const r = gen.next();
    if (r.done === true) break;
    out.push(r.value);
  }
  return out;
}

describe('parseAddress: valid forms', () => {
  it.each([
    ['10.0.0.1', 4, '10.0.0.1', '0a000001'],
    ['192.0.2.7', 4, '192.0.2.7', 'c0000207'],
    ['169.254.1.2', 4, '169.254.1.2', 'a9fe0102'],
    ['255.255.255.254', 4, '255.255.255.254', 'fffffffe'],
    ['1.0.0.0', 4, '1.0.0.0', '01000000'],
    ['240.0.0.1', 4, '240.0.0.1', 'f0000001'],
    ['2001:db8::1', 6, '2001:db8::1', '20010db8000000000000000000000001'],
    ['2001:DB8:0:0:0:0:0:1', 6, '2001:db8::1', '20010db8000000000000000000000001'],
    [
      '2001:0db8:0000:0000:0000:0000:0000:0001',
      6,
      '2001:db8::1',
      '20010db8000000000000000000000001',
    ],
    // RFC 5952: the longest zero run is compressed, first one on a tie; a
    // single zero field is not compressed.
    ['2001:db8:0:0:1:0:0:1', 6, '2001:db8::1:0:0:1', '20010db8000000000001000000000001'],
    ['2001:db8:0:1:1:1:1:1', 6, '2001:db8:0:1:1:1:1:1', '20010db8000000010001000100010001'],
    ['fd00::abcd', 6, 'fd00::abcd', 'fd00000000000000000000000000abcd'],
    ['fec0::1', 6, 'fec0::1', 'fec00000000000000000000000000001'],
    ['64:ff9b::1.2.3.4', 6, '64:ff9b::102:304', '0064ff9b000000000000000001020304'],
    // v4-mapped input normalizes to the IPv4 address it stands for.
    ['::ffff:10.1.2.3', 4, '10.1.2.3', '0a010203'],
    ['::FFFF:a01:203', 4, '10.1.2.3', '0a010203'],
    ['0:0:0:0:0:ffff:192.0.2.1', 4, '192.0.2.1', 'c0000201'],
  ] as const)('%s', (input, family, text, hex) => {
    const a = parseAddress(input);
    expect(a.family).toBe(family);
    expect(a.text).toBe(text);
    expect(a.bytes.toString('hex')).toBe(hex);
    expect(parseAddress(a.text)).toEqual(a);
  });
});

describe('parseAddress: refusals', () => {
  it.each([
    // garbage
    ['', /empty/],
    ['hello', /not an IPv4 or IPv6 address/],
    ['1.2.3.4.5', /not an IPv4 or IPv6 address/],
    ['256.1.1.1', /not an IPv4 or IPv6 address/],
    ['1.2.3.4 ', /not an IPv4 or IPv6 address/],
    [' 1.2.3.4', /not an IPv4 or IPv6 address/],
    ['2001:db8:::1', /not an IPv4 or IPv6 address/],
    ['2001:db8::1::2', /not an IPv4 or IPv6 address/],
    ['12345::1', /not an IPv4 or IPv6 address/],
    ['[2001:db8::1]', /not an IPv4 or IPv6 address/],
    ['10.0.0.1:80', /not an IPv4 or IPv6 address/],
    // ambiguous inet_aton spellings
    ['127.1', /four decimal octets/],
    ['0x0a000001', /four decimal octets/],
    ['010.0.0.1', /four decimal octets/],
    ['10.0.0.01', /four decimal octets/],
    ['167772161', /four decimal octets/],
    // prefixes belong to parsePrefix
    ['10.0.0.0/8', /not a prefix/],
    ['2001:db8::/32', /not a prefix/],
    // zones
    ['fe80::1%eth0', /zone/],
    ['2001:db8::1%1', /zone/],
    // not ownable
    ['0.0.0.0', /unspecified/],
    ['::', /unspecified/],
    ['::ffff:0.0.0.0', /unspecified/],
    ['0.1.2.3', /this network/],
    ['127.0.0.1', /loopback/],
    ['127.64.0.1', /loopback/],
    ['127.255.255.254', /loopback/],
    ['::1', /loopback/],
    ['::ffff:127.0.0.1', /loopback/],
    ['224.0.0.1', /multicast/],
    ['239.255.255.250', /multicast/],
    ['::ffff:224.0.0.251', /multicast/],
    ['ff02::1', /multicast/],
    ['ff0e::1234', /multicast/],
    ['255.255.255.255', /broadcast/],
    ['fe80::1', /link-local.*zone/],
    ['febf:ffff::1', /link-local/],
  ])('%j', (input, reason) => {
    expect(codeOf(() => parseAddress(input))).toBe('EADDR_INVALID');
    const msg = messageOf(() => parseAddress(input));
    expect(msg).toContain(`invalid address "${input}"`);
    expect(msg).toMatch(reason);
  });

  it('gives the canonical spelling as a hint for ambiguous IPv4', () => {
    try {
      parseAddress('10.1');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(L3isoError);
      expect((err as L3isoError).hint).toContain('10.0.0.1');
    }
  });

  it('each refusal class has its own message', () => {
    const inputs = [
      '0.0.0.0',
      '0.1.2.3',
      '127.0.0.1',
      '224.0.0.1',
      '255.255.255.255',
      'ff02::1',
      'fe80::1',
      '::1',
    ];
    const reasons = inputs.map((i) =>
      messageOf(() => parseAddress(i)).replace(/^invalid address "[^"]*": /, ''),
    );
    expect(new Set(reasons).size).toBe(inputs.length);
  });
});

describe('parsePrefix', () => {
  it.each([
    ['10.0.0.0/8', 4, '10.0.0.0', 8],
    ['0.0.0.0/0', 4, '0.0.0.0', 0],
    ['192.0.2.1/32', 4, '192.0.2.1', 32],
    ['192.0.2.1', 4, '192.0.2.1', 32],
    ['127.0.0.0/8', 4, '127.0.0.0', 8],
    ['2001:db8::/32', 6, '2001:db8::', 32],
    ['::/0', 6, '::', 0],
    ['2001:DB8::1', 6, '2001:db8::1', 128],
    ['2001:db8::8000:0/97', 6, '2001:db8::8000:0', 97],
    ['::ffff:10.0.0.0/104', 4, '10.0.0.0', 8],
    ['::ffff:0:0/96', 4, '0.0.0.0', 0],
    ['::ffff:192.0.2.1', 4, '192.0.2.1', 32],
  ] as const)('%s', (input, family, text, len) => {
    const p = parsePrefix(input);
    expect(p.address.family).toBe(family);
    expect(p.address.text).toBe(text);
    expect(p.prefixLength).toBe(len);
  });

  it.each([
    ['10.0.0.1/8', /host bits/],
    ['2001:db8::1/32', /host bits/],
    ['10.0.0.0/33', /0 to 32/],
    ['2001:db8::/129', /0 to 128/],
    ['10.0.0.0/08', /0 to 32/],
    ['10.0.0.0/', /0 to 32/],
    ['10.0.0.0/-1', /0 to 32/],
    ['10.0.0.0/8/8', /0 to 32/],
    ['10.1/8', /four decimal octets/],
    ['fe80::%eth0/64', /zone/],
    ['::ffff:10.0.0.0/64', /at least \/96/],
    ['junk/8', /not an IPv4 or IPv6/],
    ['', /empty/],
  ])('refuses %j', (input, reason) => {
    expect(codeOf(() => parsePrefix(input))).toBe('EADDR_INVALID');
    expect(messageOf(() => parsePrefix(input))).toMatch(reason);
  });

  it('suggests the network for host bits', () => {
    try {
      parsePrefix('10.1.2.3/16');
      expect.unreachable();
    } catch (err) {
      expect((err as L3isoError).hint).toBe('did you mean 10.1.0.0/16?');
    }
  });
});

describe('formatAddress / addressFromBytes', () => {
  it.each(['10.0.0.1', '192.0.2.255', '2001:db8::1', 'fd00:1:2:3:4:5:6:7', '2001:db8::1:0:0:1'])(
    'inverts parseAddress for %s',
    (text) => {
      const a = parseAddress(text);
      expect(formatAddress(a.family, a.bytes)).toBe(a.text);
      expect(addressFromBytes(a.family, a.bytes)).toEqual(a);
    },
  );

  it('formats what the kernel holds even when a cell could not own it', () => {
    expect(formatAddress(4, Buffer.from([127, 64, 0, 1]))).toBe('127.64.0.1');
    expect(formatAddress(4, Buffer.alloc(4))).toBe('0.0.0.0');
    expect(formatAddress(6, Buffer.alloc(16))).toBe('::');
    expect(formatAddress(6, Buffer.from('00000000000000000000ffff0a000001', 'hex'))).toBe(
      '::ffff:10.0.0.1',
    );
  });

  it('copies the bytes it is given', () => {
    const raw = Buffer.from([10, 0, 0, 1]);
    const a = addressFromBytes(4, raw);
    raw[3] = 9;
    expect(a.text).toBe('10.0.0.1');
    expect(a.bytes[3]).toBe(1);
  });

  it.each([
    [4, 3],
    [4, 16],
    [6, 4],
    [6, 15],
  ] as const)('refuses IPv%i with %i bytes', (family, n) => {
    expect(codeOf(() => formatAddress(family, Buffer.alloc(n)))).toBe('EADDR_INVALID');
  });
});

describe('loopbackCandidates', () => {
  const inAliasNet = (a: CellAddress): boolean =>
    a.family === 4 && a.bytes[0] === 127 && ((a.bytes[1] ?? 0) & 0xc0) === 64;

  it('yields distinct addresses in 127.64.0.0/10, never .0/.255 or 127.0.0.1', () => {
    const seen = new Set<string>();
    const bad: string[] = [];
    for (const a of take(loopbackCandidates(12345n), 50_000)) {
      const ok =
        inAliasNet(a) &&
        a.bytes.length === 4 &&
        a.bytes[3] !== 0 &&
        a.bytes[3] !== 255 &&
        a.text !== '127.0.0.1' &&
        formatAddress(4, a.bytes) === a.text;
      if (!ok) bad.push(a.text);
      seen.add(a.text);
    }
    expect(bad).toEqual([]);
    expect(seen.size).toBe(50_000);
  });

  it('is deterministic per cell id', () => {
    const a = take(loopbackCandidates(0xdeadbeefn), 100).map((x) => x.text);
    const b = take(loopbackCandidates(0xdeadbeefn), 100).map((x) => x.text);
    expect(a).toEqual(b);
  });

  it('spreads first candidates over cells, and colliding cells diverge', () => {
    const firsts = new Set<string>();
    const ids = Array.from({ length: 1000 }, (_, i) => BigInt(i + 1));
    for (const id of ids) firsts.add(take(loopbackCandidates(id), 1)[0]?.text ?? '');
    // 1000 draws from ~4M slots: a handful of collisions at most.
    expect(firsts.size).toBeGreaterThan(995);

    const seqs = ids.slice(0, 50).map((id) =>
      take(loopbackCandidates(id), 5)
        .map((x) => x.text)
        .join(','),
    );
    expect(new Set(seqs).size).toBe(50);
  });

  it('handles the extremes of u64 and covers the whole range', () => {
    for (const id of [0n, 1n, (1n << 64n) - 1n]) {
      const [first] = take(loopbackCandidates(id), 1);
      expect(first && inAliasNet(first)).toBe(true);
    }
    // full period: 2^22 slots minus the .0 and .255 ones
    let n = 0;
    for (const a of loopbackCandidates(7n)) {
      void a;
      n++;
    }
    expect(n).toBe((1 << 22) - 2 * (1 << 14));
  });

  it.each([-1n, 1n << 64n])('refuses cell id %s', (id) => {
    expect(codeOf(() => loopbackCandidates(id).next())).toBe('EUSAGE');
  });
});

describe('formatAddress without ipaddr.js', () => {
  it('spells random addresses as ipaddr.js does (RFC 5952, mapped tails)', () => {
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    for (let n = 0; n < 3000; n++) {
      const b = Buffer.alloc(16);
      // Mostly zero groups, so that runs of every length and position occur.
      for (let g = 0; g < 8; g++) if (next() % 3 === 0) b.writeUInt16BE(next() % 0x10000, 2 * g);
      if (n % 10 === 0) b.fill(0, 0, 10).writeUInt16BE(0xffff, 10);
      const ip = ipaddr.fromByteArray([...b]) as ipaddr.IPv6;
      const want = ip.isIPv4MappedAddress()
        ? `::ffff:${ip.toIPv4Address().toString()}`
        : ip.toRFC5952String();
      expect(formatAddress(6, b)).toBe(want);
      const v4 = b.subarray(12);
      expect(formatAddress(4, v4)).toBe(ipaddr.fromByteArray([...v4]).toString());
    }
  });
});
