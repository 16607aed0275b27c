import { hash } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import { L3isoError } from '../errors';

export type Family = 4 | 6;

export interface CellAddress {
  readonly family: Family;
  /** Canonical text: dotted quad for IPv4, RFC 5952 for IPv6. */
  readonly text: string;
  /** 4 or 16 bytes, network order: exactly what the BPF maps store. */
  readonly bytes: Buffer;
}

export interface CellPrefix {
  /** Network address (host bits are zero). */
  readonly address: CellAddress;
  readonly prefixLength: number;
}

/** 127.64.0.0/10: loopback aliases live here so they never meet 127.0.0.1
 * or the small 127.0.0.x ranges that host services commonly use. */
export const LOOPBACK_ALIAS_NET = '127.64.0.0';
export const LOOPBACK_ALIAS_PREFIX = 10;

type IpAddr = ipaddr.IPv4 | ipaddr.IPv6;

function invalid(text: string, reason: string, hint?: string): L3isoError {
  return new L3isoError('EADDR_INVALID', `invalid address "${text}": ${reason}`, hint);
}

function fromParsed(ip: IpAddr): CellAddress {
  if (ip.kind() === 'ipv4') {
    return { family: 4, text: ip.toString(), bytes: Buffer.from(ip.toByteArray()) };
  }
  const v6 = ip as ipaddr.IPv6;
  return { family: 6, text: v6.toRFC5952String(), bytes: Buffer.from(v6.toByteArray()) };
}

/**
 * Parses one address without judging whether a cell may own it. v4-mapped
 * IPv6 becomes IPv4 because the BPF side classifies mapped addresses as v4:
 * keeping both spellings would let one address have two owners.
 */
function parseSyntax(text: string, original: string): IpAddr {
  if (text.includes('%')) {
    throw invalid(original, 'zone indexes (%iface) are not supported');
  }
  if (ipaddr.IPv6.isValid(text)) {
    const v6 = ipaddr.IPv6.parse(text);
    return v6.isIPv4MappedAddress() ? v6.toIPv4Address() : v6;
  }
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) {
    return ipaddr.IPv4.parse(text);
  }
  // ipaddr.js (like inet_aton) also takes "127.1", "0x7f000001" and octal
  // "010.0.0.1"; such spellings hide which address is meant, so refuse them.
  if (ipaddr.IPv4.isValid(text)) {
    throw invalid(
      original,
      'IPv4 must be written as four decimal octets without leading zeros',
      `did you mean ${ipaddr.IPv4.parse(text).toString()}?`,
    );
  }
  throw invalid(original, 'not an IPv4 or IPv6 address');
}

function v4Refusal(a: number, b: number, c: number, d: number): string | undefined {
  if (a === 0 && b === 0 && c === 0 && d === 0) {
    return 'the unspecified address (wildcard) cannot be owned';
  }
  if (a === 0) return '0.0.0.0/8 ("this network") is not a valid source address';
  if (a === 127)
    return 'loopback addresses (127.0.0.0/8) cannot be owned; each cell gets a private loopback alias automatically';
  if (a >= 224 && a <= 239) return 'multicast addresses (224.0.0.0/4) cannot be owned';
  if (a === 255 && b === 255 && c === 255 && d === 255) {
    return 'the limited broadcast address cannot be owned';
  }
  return undefined;
}

/** Why a cell cannot own `ip`, or undefined when it can. */
function ownershipRefusal(ip: IpAddr): string | undefined {
  if (ip.kind() === 'ipv4') {
    const [a, b, c, d] = (ip as ipaddr.IPv4).octets as [number, number, number, number];
    return v4Refusal(a, b, c, d);
  }
  const v6 = ip as ipaddr.IPv6;
  switch (v6.range()) {
    case 'unspecified':
      return 'the unspecified address (wildcard) cannot be owned';
    case 'loopback':
      return 'the loopback address ::1 cannot be owned; each cell gets a private loopback alias automatically';
    case 'multicast':
      return 'multicast addresses (ff00::/8) cannot be owned';
    case 'linkLocal':
      return 'link-local addresses (fe80::/10) need a zone (interface) to be meaningful, which cells do not have';
    default:
      return undefined;
  }
}

/**
 * Parses a single address a cell may own. Refuses prefixes (see
 * parsePrefix) and addresses that can never be a unique unicast source.
 */
export function parseAddress(text: string): CellAddress {
  if (typeof text !== 'string' || text.length === 0) {
    throw invalid(String(text), 'empty');
  }
  if (text.includes('/')) {
    throw invalid(
      text,
      'expected a single address, not a prefix',
      `drop the /length, e.g. "${text.split('/')[0] ?? ''}"`,
    );
  }
  // The common case without ipaddr.js (a state file lists 100,000s of them).
  const quad = DOTTED_QUAD.exec(text);
  if (quad) {
    const o = [Number(quad[1]), Number(quad[2]), Number(quad[3]), Number(quad[4])] as const;
    const why = v4Refusal(...o);
    if (why !== undefined) throw invalid(text, why);
    return { family: 4, text, bytes: Buffer.from(o) };
  }
  const v6 = plainIPv6(text);
  if (v6) return v6;
  const ip = parseSyntax(text, text);
  const refusal = ownershipRefusal(ip);
  if (refusal !== undefined) throw invalid(text, refusal);
  return fromParsed(ip);
}

/**
 * Parses "addr/len" (or a bare address, meaning a host prefix). Any
 * syntactically valid network is accepted, 0.0.0.0/0 included, since
 * policies name remote networks rather than addresses to own; host bits
 * must be zero so that a typo does not silently widen or shift a rule.
 */
export function parsePrefix(text: string): CellPrefix {
  if (typeof text !== 'string' || text.length === 0) {
    throw invalid(String(text), 'empty');
  }
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const lenText = slash < 0 ? undefined : text.slice(slash + 1);
  const raw = parseSyntax(addrText, text);
  // Parse the family as written so a mapped /length is read in v6 bits.
  const writtenV6 = ipaddr.IPv6.isValid(addrText);
  const maxWritten = writtenV6 ? 128 : 32;
  let length = maxWritten;
  if (lenText !== undefined) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(lenText) || Number(lenText) > maxWritten) {
      throw invalid(text, `prefix length must be an integer from 0 to ${maxWritten}`);
    }
    length = Number(lenText);
  }
  if (writtenV6 && raw.kind() === 'ipv4') {
    if (length < 96) {
      throw invalid(
        text,
        'a v4-mapped prefix must be at least /96 (it is an IPv4 prefix in disguise)',
      );
    }
    length -= 96;
  }
  const bytes = Buffer.from(raw.toByteArray());
  const masked = maskBytes(bytes, length);
  if (!masked.equals(bytes)) {
    const net = formatAddress(raw.kind() === 'ipv4' ? 4 : 6, masked);
    throw invalid(text, 'host bits are set', `did you mean ${net}/${length}?`);
  }
  return { address: fromParsed(raw), prefixLength: length };
}

function maskBytes(bytes: Buffer, length: number): Buffer {
  const out = Buffer.from(bytes);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, length - i * 8));
    out[i] = (out[i] ?? 0) & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}

function checkBytes(family: Family, bytes: Uint8Array): void {
  const want = family === 4 ? 4 : family === 6 ? 16 : -1;
  if (want < 0) {
    throw new L3isoError(
      'EADDR_INVALID',
      `invalid address family ${String(family)}: expected 4 or 6`,
    );
  }
  if (bytes.length !== want) {
    throw new L3isoError(
      'EADDR_INVALID',
      `an IPv${family} address is ${want} bytes, got ${bytes.length}`,
    );
  }
}

/**
 * IPv6 written in hex groups only (no dotted tail, no zone), a global or
 * unique-local unicast address: what state files list by the 100,000, read
 * without ipaddr.js (~20 µs each). Anything else, v4-mapped and refused
 * ranges included, is undefined and goes the general way, so both ways
 * agree on every input.
 */
function plainIPv6(text: string): CellAddress | undefined {
  const len = text.length;
  if (len > 39) return undefined;
  const groups = [0, 0, 0, 0, 0, 0, 0, 0];
  let n = 0; // groups read
  let gap = -1; // the group "::" stands before
  let i = 0;
  if (text.startsWith('::')) {
    gap = 0;
    i = 2;
  }
  while (i < len) {
    let g = 0;
    const start = i;
    for (let v; i < len && i - start < 5 && (v = hexValue(text.charCodeAt(i))) >= 0; i++)
      g = (g << 4) | v;
    if (i === start || i - start > 4 || n === 8) return undefined;
    groups[n++] = g;
    if (i === len) break;
    if (text.charCodeAt(i++) !== 0x3a /* : */ || i === len) return undefined;
    if (text.charCodeAt(i) === 0x3a) {
      if (gap >= 0) return undefined;
      gap = n;
      i++;
    }
  }
  if (gap < 0 ? n !== 8 : n > 7) return undefined;
  if (gap >= 0) {
    // The groups after "::" go to the end, zeros in between.
    const after = n - gap;
    for (let k = 0; k < after; k++) groups[7 - k] = groups[n - 1 - k]!;
    for (let k = gap; k < 8 - after; k++) groups[k] = 0;
  }
  // Only 2000::/3 (global unicast) and fc00::/7 (unique local): no range
  // there is refused, and none is v4-mapped.
  const top = groups[0]! >> 8;
  if ((top & 0xe0) !== 0x20 && (top & 0xfe) !== 0xfc) return undefined;
  const bytes = Buffer.allocUnsafe(16);
  for (let k = 0; k < 8; k++) bytes.writeUInt16BE(groups[k]!, k * 2);
  return { family: 6, text: groupsText(groups), bytes };
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/** Four decimal octets without leading zeros: the only IPv4 spelling taken. */
const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const DOTTED_QUAD = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);

/** Canonical text of raw network-order bytes (inverse of parseAddress):
 * dotted quad, or RFC 5952 (longest run of two or more zero groups as
 * "::", the first of equal runs; lowercase hex; a v4-mapped address keeps
 * its dotted-quad tail, section 5). */
export function formatAddress(family: Family, bytes: Uint8Array): string {
  checkBytes(family, bytes);
  if (family === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  const groups = new Array<number>(8);
  for (let i = 0; i < 8; i++) groups[i] = (bytes[2 * i]! << 8) | bytes[2 * i + 1]!;
  if (
    groups[0] === 0 &&
    groups[1] === 0 &&
    groups[2] === 0 &&
    groups[3] === 0 &&
    groups[4] === 0 &&
    groups[5] === 0xffff
  )
    return `::ffff:${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  return groupsText(groups);
}

/** RFC 5952 text of eight 16-bit groups: the longest run of two or more
 * zero groups as "::" (the first of equal runs), lowercase hex. */
function groupsText(groups: readonly number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === best) {
      out += i === 0 ? '::' : ':';
      i += bestLen - 1;
      continue;
    }
    out += groups[i]!.toString(16);
    if (i < 7) out += ':';
  }
  return out;
}

/**
 * Builds a CellAddress from map bytes without ownership checks: what the
 * kernel holds (loopback aliases, zeroed slots) must stay readable.
 */
export function addressFromBytes(family: Family, bytes: Uint8Array): CellAddress {
  return { family, text: formatAddress(family, bytes), bytes: Buffer.from(bytes) };
}

const ALIAS_HOST_BITS = 32 - LOOPBACK_ALIAS_PREFIX;
const ALIAS_SPACE = 1 << ALIAS_HOST_BITS;
const ALIAS_BASE = 0x7f400000; // 127.64.0.0
const U64_MAX = (1n << 64n) - 1n;
const ALIAS_SALT = Buffer.from('l3iso-loopback-alias\0');

/**
 * Candidate loopback aliases for a cell, in the order a claimer should try
 * them. Double hashing: the start and an odd stride both come from the cell
 * id, and an odd stride is coprime with the 2^22 space, so the walk visits
 * every alias exactly once while two cells that collide on the first slot
 * still diverge afterwards (no primary clustering as with +1 probing).
 */
export function* loopbackCandidates(cellId: bigint): Generator<CellAddress, void, undefined> {
  if (typeof cellId !== 'bigint' || cellId < 0n || cellId > U64_MAX) {
    throw new L3isoError(
      'EUSAGE',
      `cell id must be an unsigned 64-bit integer, got ${String(cellId)}`,
    );
  }
  // One-shot hash of the same bytes: half the cost of a Hash object (apply
  // picks an alias for each of 100,000s of new cells).
  const input = Buffer.alloc(ALIAS_SALT.length + 8);
  ALIAS_SALT.copy(input);
  input.writeBigUInt64LE(cellId, ALIAS_SALT.length);
  const digest = hash('sha256', input, 'buffer');
  const mask = ALIAS_SPACE - 1;
  let slot = digest.readUInt32LE(0) & mask;
  const stride = (digest.readUInt32LE(4) & mask) | 1;
  for (let i = 0; i < ALIAS_SPACE; i++) {
    const last = slot & 0xff;
    // .0 and .255 look like network/broadcast addresses to tools and humans.
    if (last !== 0 && last !== 0xff) {
      const bytes = Buffer.alloc(4);
      bytes.writeUInt32BE((ALIAS_BASE | slot) >>> 0);
      yield { family: 4, text: Array.from(bytes).join('.'), bytes };
    }
    slot = (slot + stride) & mask;
  }
}
