/**
 * Address plumbing: a managed prefix is made local with one AnyIP route
 * (`local CIDR dev lo`) in the engine's network namespace, so a cell can
 * bind any address of it without an address per cell on an interface; and
 * `assign` can tell an address no bind could use (neither local nor
 * managed: the kernel answers EADDRNOTAVAIL).
 *
 * The routes `up` added, and only those, are recorded next to the lock
 * file (tmpfs /run, gone after a reboot like the routes themselves), with
 * the namespace's inode: `down` removes exactly them, from that namespace.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parsePrefix, type CellAddress, type CellPrefix } from '../model/address';
import type { PinLayout } from './paths';
import { managedPrefixes, prefixText } from './prefixes';
import type { EngineState } from './state';

const OWN_NETNS = '/proc/self/ns/net';

interface RouteRecord {
  netnsIno: string;
  /** the path `up` was given (meaningless for /proc/self/ns/net in another process) */
  netns: string;
  routes: string[];
}

export interface RouteChanges {
  added: string[];
  removed: string[];
  warnings: string[];
}

function recordFile(layout: PinLayout): string {
  return path.join(layout.runDir, `${layout.tag}.routes`);
}

function readRecord(layout: PinLayout): RouteRecord | undefined {
  try {
    const r = JSON.parse(fs.readFileSync(recordFile(layout), 'utf8')) as RouteRecord;
    return Array.isArray(r.routes) ? r : undefined;
  } catch {
    return undefined;
  }
}

function writeRecord(layout: PinLayout, r: RouteRecord): void {
  const file = recordFile(layout);
  if (r.routes.length === 0) return fs.rmSync(file, { force: true });
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(r), { mode: 0o600 });
  fs.renameSync(tmp, file);
}

function inode(p: string): bigint | undefined {
  try {
    return fs.statSync(p, { bigint: true }).ino;
  } catch {
    return undefined;
  }
}

/** `ip` in the namespace at `netns` (undefined: this process's). */
function ip(netns: string | undefined, args: string[]): { ok: boolean; out: string; err: string } {
  const argv = netns ? ['nsenter', `--net=${netns}`, '--', 'ip', ...args] : ['ip', ...args];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 10_000 });
  return {
    ok: r.status === 0,
    out: r.stdout ?? '',
    err: (r.stderr ?? String(r.error ?? '')).trim(),
  };
}

const family = (cidr: string): string[] => (cidr.includes(':') ? ['-6'] : ['-4']);

/** A path to the namespace whose inode is `ino`: ours, the recorded path, or /run/netns/*. */
export function findNetns(ino: bigint, hint: string): string | null | undefined {
  if (inode(OWN_NETNS) === ino) return undefined;
  if (hint !== OWN_NETNS && inode(hint) === ino) return hint;
  let names: string[] = [];
  try {
    names = fs.readdirSync('/run/netns');
  } catch {
    /* no named namespaces */
  }
  for (const n of names)
    if (inode(path.join('/run/netns', n)) === ino) return path.join('/run/netns', n);
  return null;
}

/**
 * Makes the AnyIP routes exactly the managed prefixes: adds the missing
 * ones (a route that already exists is someone else's and is not
 * recorded), removes those this engine added for prefixes no longer managed.
 */
export function syncPrefixRoutes(
  layout: PinLayout,
  netnsPath: string,
  netnsIno: bigint,
  prefixes: readonly CellPrefix[],
): RouteChanges {
  const ns = inode(OWN_NETNS) === netnsIno ? undefined : netnsPath;
  const prev = readRecord(layout);
  const mine = prev && prev.netnsIno === String(netnsIno) ? prev.routes : [];
  const wanted = prefixes.map(prefixText);
  const out: RouteChanges = { added: [], removed: [], warnings: [] };
  const keep: string[] = [];
  for (const cidr of wanted) {
    if (mine.includes(cidr)) {
      keep.push(cidr);
      continue;
    }
    const r = ip(ns, [...family(cidr), 'route', 'add', 'local', cidr, 'dev', 'lo']);
    if (r.ok) {
      out.added.push(cidr);
      keep.push(cidr);
    } else if (!/File exists/.test(r.err))
      out.warnings.push(
        `could not make ${cidr} local (ip route add local ${cidr} dev lo: ${r.err}); cells' binds to its addresses fail until it is`,
      );
  }
  for (const cidr of mine) {
    if (wanted.includes(cidr)) continue;
    const r = ip(ns, [...family(cidr), 'route', 'del', 'local', cidr, 'dev', 'lo']);
    if (r.ok || /No such process/.test(r.err)) out.removed.push(cidr);
    else out.warnings.push(`could not remove the route local ${cidr} dev lo: ${r.err}`);
  }
  writeRecord(layout, { netnsIno: String(netnsIno), netns: netnsPath, routes: keep });
  return out;
}

/** `down`: removes the routes `up` added, from the namespace it added them in. */
export function removePrefixRoutes(layout: PinLayout): RouteChanges {
  const out: RouteChanges = { added: [], removed: [], warnings: [] };
  const rec = readRecord(layout);
  if (!rec) return out;
  const ns = findNetns(BigInt(rec.netnsIno), rec.netns);
  if (ns === null) {
    out.warnings.push(
      `the network namespace the engine was brought up in (inode ${rec.netnsIno}) is not reachable from here; left its routes: ${rec.routes.map((c) => `local ${c} dev lo`).join(', ')}`,
    );
    fs.rmSync(recordFile(layout), { force: true });
    return out;
  }
  for (const cidr of rec.routes) {
    const r = ip(ns, [...family(cidr), 'route', 'del', 'local', cidr, 'dev', 'lo']);
    if (r.ok || /No such process/.test(r.err)) out.removed.push(cidr);
    else out.warnings.push(`could not remove the route local ${cidr} dev lo: ${r.err}`);
  }
  fs.rmSync(recordFile(layout), { force: true });
  return out;
}

interface LocalRoute {
  type?: string;
  dst?: string;
}

/** net.ipv6.ip_nonlocal_bind of the namespace (a per-netns sysctl). */
function nonlocalBind6(ns: string | undefined): boolean {
  const file = '/proc/sys/net/ipv6/ip_nonlocal_bind';
  if (!ns) {
    try {
      return fs.readFileSync(file, 'utf8').trim() === '1';
    } catch {
      return false;
    }
  }
  const r = spawnSync('nsenter', [`--net=${ns}`, '--', 'cat', file], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() === '1';
}

/** Adds the namespace's local routes; `prefixes`: whole local prefixes count, else host routes only. */
function addLocalRoutes(
  list: CellPrefix[],
  ns: string | undefined,
  fam: '-4' | '-6',
  prefixes: boolean,
): boolean {
  const r = ip(ns, ['-j', fam, 'route', 'show', 'table', 'local']);
  if (!r.ok) return false;
  for (const route of JSON.parse(r.out || '[]') as LocalRoute[]) {
    if (route.type !== 'local' || !route.dst) continue;
    try {
      const p = parsePrefix(route.dst);
      if (prefixes || p.prefixLength === (p.address.family === 4 ? 32 : 128)) list.push(p);
    } catch {
      /* a form parsePrefix does not take: ignore that route */
    }
  }
  return true;
}

function inPrefix(a: CellAddress, p: CellPrefix): boolean {
  if (a.family !== p.address.family) return false;
  const whole = p.prefixLength >> 3;
  if (a.bytes.compare(p.address.bytes, 0, whole, 0, whole) !== 0) return false;
  const bits = p.prefixLength & 7;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (a.bytes[whole]! & mask) === (p.address.bytes[whole]! & mask);
}

/**
 * The addresses no socket of the engine's namespace could bind: not on an
 * interface, not under a local route, not in a managed prefix. undefined
 * when the namespace is not reachable from here (nothing can be said).
 */
export function nonLocalAddresses(
  state: EngineState,
  addrs: readonly CellAddress[],
): CellAddress[] | undefined {
  const ino = state.config().netnsIno;
  if (ino === undefined) return undefined;
  const ns = findNetns(ino, OWN_NETNS);
  if (ns === null) return undefined;
  // IPv6 checks bind() against interface addresses only (inet6_bind ->
  // ipv6_chk_addr), not local routes: an AnyIP IPv6 prefix is bindable
  // only with IPV6_FREEBIND or net.ipv6.ip_nonlocal_bind=1.
  const v6Anyip = nonlocalBind6(ns);
  // Compared on the bytes: a BlockList check builds a SocketAddress per
  // call, and apply asks about every address it adds (100,000s).
  const managed = managedPrefixes(state).filter((p) => p.address.family === 4 || v6Anyip);
  const rest = addrs.filter((a) => !managed.some((p) => inPrefix(a, p)));
  // Asks the kernel only for the families still in question (an `ip` each).
  const local: CellPrefix[] = [];
  for (const fam of [4, 6] as const) {
    if (!rest.some((a) => a.family === fam)) continue;
    if (!addLocalRoutes(local, ns, fam === 4 ? '-4' : '-6', fam === 4 || v6Anyip)) return undefined;
  }
  return rest.filter((a) => !local.some((p) => inPrefix(a, p)));
}
