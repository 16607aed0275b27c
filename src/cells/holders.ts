/**
 * Which live sockets an operation would affect, and which processes hold
 * them: release and down refuse to take addresses from live sockets, and
 * assign to take over a cgroup's sockets, unless the operator says so.
 *
 * The kernel's own tables (/proc/net/{tcp,tcp6,udp,udp6}, of the calling
 * process's network namespace, where the engine runs) give every socket's
 * bound address, state and inode; /proc/PID/fd links (socket:[INODE]) give
 * the processes holding it. Time-wait and request sockets have no inode
 * and no process: they are not "live" here (the revocation sweep still
 * takes them).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatAddress, type CellAddress } from '../model/address';

export type SocketKind = 'tcp-listen' | 'tcp' | 'udp';

export interface LiveSocket {
  kind: SocketKind;
  address: string;
  port: number;
  inode: number;
  /** processes holding an fd of it, with their command names */
  holders: { pid: number; comm: string }[];
}

const TCP_LISTEN = 0x0a;
const TCP_TIME_WAIT = 0x06;

interface TableRow {
  family: 4 | 6;
  protocol: 'tcp' | 'udp';
  /** local address bytes, network order */
  bytes: Buffer;
  port: number;
  state: number;
  inode: number;
}

/** /proc/net prints each 32-bit word of an address as the host-order hex
 * of what the kernel stored (little-endian here): turn words back. */
function hexAddress(hex: string): Buffer {
  const out = Buffer.alloc(hex.length / 2);
  for (let w = 0; w < hex.length / 8; w++)
    out.writeUInt32LE(Number.parseInt(hex.slice(8 * w, 8 * w + 8), 16), 4 * w);
  return out;
}

export function parseNetTable(text: string, family: 4 | 6, protocol: 'tcp' | 'udp'): TableRow[] {
  const rows: TableRow[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [addrHex, portHex] = (f[1] ?? '').split(':');
    if (!addrHex || !portHex) continue;
    rows.push({
      family,
      protocol,
      bytes: hexAddress(addrHex),
      port: Number.parseInt(portHex, 16),
      state: Number.parseInt(f[3] ?? '0', 16),
      inode: Number(f[9]),
    });
  }
  return rows;
}

function readTable(name: string, family: 4 | 6, protocol: 'tcp' | 'udp'): TableRow[] {
  try {
    return parseNetTable(fs.readFileSync(`/proc/self/net/${name}`, 'utf8'), family, protocol);
  } catch {
    return []; // a family the kernel does not have
  }
}

function allRows(): TableRow[] {
  return [
    ...readTable('tcp', 4, 'tcp'),
    ...readTable('tcp6', 6, 'tcp'),
    ...readTable('udp', 4, 'udp'),
    ...readTable('udp6', 6, 'udp'),
  ];
}

/** The IPv4 address a row is bound to, v4-mapped v6 sockets included. */
function v4Of(row: TableRow): Buffer | undefined {
  if (row.family === 4) return row.bytes;
  const b = row.bytes;
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff)
    return b.subarray(12);
  return undefined;
}

function rowMatches(row: TableRow, a: CellAddress): boolean {
  if (a.family === 4) return v4Of(row)?.equals(a.bytes) ?? false;
  return row.family === 6 && row.bytes.equals(a.bytes);
}

function kindOf(row: TableRow): SocketKind {
  if (row.protocol === 'udp') return 'udp';
  return row.state === TCP_LISTEN ? 'tcp-listen' : 'tcp';
}

function comm(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

/** inode -> pids holding it, scanning `pids` (all of /proc when undefined). */
function holdersOf(inodes: Set<number>, pids?: readonly number[]): Map<number, number[]> {
  const out = new Map<number, number[]>();
  // No socket to look for: skip the walk of every process's fds (an assign of
  // fresh addresses asks this on each call, and it is most of its time).
  if (inodes.size === 0) return out;
  const list =
    pids ??
    fs
      .readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .map(Number);
  for (const pid of list) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // exited
    }
    const seen = new Set<number>();
    for (const fd of fds) {
      let target: string;
      try {
        target = fs.readlinkSync(path.join(`/proc/${pid}/fd`, fd));
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (!m) continue;
      const ino = Number(m[1]);
      if (!inodes.has(ino) || seen.has(ino)) continue;
      seen.add(ino);
      out.set(ino, [...(out.get(ino) ?? []), pid]);
    }
  }
  return out;
}

function toLive(rows: TableRow[], likelyPids?: readonly number[]): LiveSocket[] {
  const inodes = new Set(rows.map((r) => r.inode));
  const held = holdersOf(inodes, likelyPids);
  // A socket passed to a process outside the cell: look everywhere.
  if (likelyPids && [...inodes].some((i) => !held.has(i))) {
    const rest = new Set([...inodes].filter((i) => !held.has(i)));
    for (const [ino, pids] of holdersOf(rest)) held.set(ino, pids);
  }
  return rows.map((r) => ({
    kind: kindOf(r),
    // A dual-stack socket on ::ffff:a.b.c.d holds the IPv4 address.
    address:
      r.family === 6 && v4Of(r) ? formatAddress(4, v4Of(r)!) : formatAddress(r.family, r.bytes),
    port: r.port,
    inode: r.inode,
    holders: (held.get(r.inode) ?? []).map((pid) => ({ pid, comm: comm(pid) })),
  }));
}

/**
 * Local addresses of every inet socket of this network namespace, any
 * state (v4-mapped ones as IPv4): the revocation iterator walks the same
 * namespace, so an address not in here has no socket to destroy.
 */
export function boundAddresses(): Set<string> {
  const out = new Set<string>();
  for (const r of allRows()) {
    const v4 = v4Of(r);
    out.add(v4 ? formatAddress(4, v4) : formatAddress(r.family, r.bytes));
  }
  return out;
}

/** Live sockets bound to any of `addresses` (in this network namespace). */
export function socketsOn(
  addresses: readonly CellAddress[],
  likelyPids?: readonly number[],
): LiveSocket[] {
  if (addresses.length === 0) return [];
  const rows = allRows().filter(
    (r) => r.inode !== 0 && r.state !== TCP_TIME_WAIT && addresses.some((a) => rowMatches(r, a)),
  );
  return toLive(rows, likelyPids);
}

/**
 * TCP listeners bound exactly to one of `addresses`: their address and
 * port only. Reads just the TCP tables and never looks for holders, so it
 * stays cheap enough for every assign.
 */
export function listenersOn(
  addresses: readonly CellAddress[],
): { address: CellAddress; port: number }[] {
  if (addresses.length === 0) return [];
  const out: { address: CellAddress; port: number }[] = [];
  for (const r of [...readTable('tcp', 4, 'tcp'), ...readTable('tcp6', 6, 'tcp')]) {
    if (r.state !== TCP_LISTEN) continue;
    const a = addresses.find((x) => rowMatches(r, x));
    if (a) out.push({ address: a, port: r.port });
  }
  return out;
}

/** Live inet sockets held by `pids` (the processes of a cgroup). */
export function socketsOfProcesses(pids: readonly number[]): LiveSocket[] {
  if (pids.length === 0) return [];
  const rows = allRows().filter((r) => r.inode !== 0 && r.state !== TCP_TIME_WAIT);
  const held = holdersOf(new Set(rows.map((r) => r.inode)), pids);
  return toLive(
    rows.filter((r) => held.has(r.inode)),
    pids,
  );
}

/** One line naming the sockets and who holds them, for an error message. */
export function describeSockets(sockets: readonly LiveSocket[], max = 6): string {
  const one = (s: LiveSocket): string => {
    const where = s.address.includes(':') ? `[${s.address}]:${s.port}` : `${s.address}:${s.port}`;
    const who = s.holders.length
      ? s.holders.map((h) => `pid ${h.pid} (${h.comm})`).join(', ')
      : 'no process';
    return `${s.kind} ${where} held by ${who}`;
  };
  const shown = sockets.slice(0, max).map(one);
  if (sockets.length > max) shown.push(`and ${sockets.length - max} more`);
  return shown.join('; ');
}
