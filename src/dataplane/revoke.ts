/**
 * Revocation: after an address leaves a cell, destroy every TCP connection
 * and UDP socket still bound to it (listeners stay, unreachable: see
 * bpf/revoke.bpf.c) (bpf_sock_destroy from a socket iterator, Linux
 * 6.5+). The iterator walks the sockets of the calling process's network
 * namespace, so this runs where `up` ran (the engine's netns).
 *
 * `up` loads the iterator once and pins its programs and maps: loading it
 * per release would verify it (and parse kernel BTF) every time, which
 * costs more than everything else a release does.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  BpfLink,
  BpfMap,
  BpfObject,
  MapUpdate,
  closeFd,
  getPinned,
  iteratorLink,
  pinObject,
  readIterator,
} from '../../loader';
import {
  LAYOUT,
  L3_FAMILY_V4,
  L3_FAMILY_V6,
  L3_REVOKE_BATCH,
  L3_REVOKE_COUNT,
  L3_REVOKE_DESTROY,
  encodeAddr,
} from '../codecs/layout';
import { L3isoError } from '../errors';
import type { CellAddress } from '../model/address';
import { bpfObjectPath, type PinLayout } from './paths';
import { REVOKE_OBJECT } from './programs';
import type { EngineState } from './state';

const PROGRAMS = ['l3_revoke_tcp', 'l3_revoke_udp'] as const;
const MAPS = ['l3_revoke_target', 'l3_revoke_count', 'l3_revoke_mode'] as const;
type Pinned = (typeof PROGRAMS)[number] | (typeof MAPS)[number];

/** The live set is revoke-<id>/, named by the symlink `revoke`. */
function pinPath(layout: PinLayout, name: Pinned): string {
  return path.join(layout.revokeDir, name);
}

/**
 * Loads the iterator and pins it into a fresh revoke-<id>/ dir, then points
 * the `revoke` symlink at it with one rename(2), then removes older sets:
 * a reader (under the instance lock) or a crash at any instant sees either
 * the old complete set or the new one, never a half-pinned one.
 */
export function pinRevoker(layout: PinLayout): void {
  const obj = BpfObject.open(bpfObjectPath(REVOKE_OBJECT));
  try {
    obj.load();
    const setName = `revoke-${process.pid}-${Date.now().toString(36)}`;
    const dir = path.join(layout.root, setName);
    fs.mkdirSync(dir);
    for (const name of PROGRAMS) pinObject(obj.program(name).fd, path.join(dir, name));
    for (const name of MAPS) {
      const map = obj.map(name);
      try {
        map.pin(path.join(dir, name));
      } finally {
        map.close();
      }
    }
    const tmp = `${layout.revokeDir}-tmp-${process.pid}`;
    fs.rmSync(tmp, { force: true });
    fs.symlinkSync(setName, tmp);
    // A `revoke` dir left by an older l3iso cannot be renamed over.
    if (fs.existsSync(layout.revokeDir) && !fs.lstatSync(layout.revokeDir).isSymbolicLink())
      fs.rmSync(layout.revokeDir, { recursive: true, force: true });
    fs.renameSync(tmp, layout.revokeDir);
    removeStaleRevokers(layout, setName);
  } finally {
    obj.close();
  }
}

/** revoke-* sets other than `keep` (older ones, or a crashed up's). */
function removeStaleRevokers(layout: PinLayout, keep?: string): void {
  for (const entry of fs.readdirSync(layout.root)) {
    if (/^revoke-/.test(entry) && entry !== keep)
      fs.rmSync(path.join(layout.root, entry), { recursive: true, force: true });
  }
}

export function unpinRevoker(layout: PinLayout): void {
  fs.rmSync(layout.revokeDir, { recursive: true, force: true });
  if (fs.existsSync(layout.root)) removeStaleRevokers(layout);
}

/** The revocation iterator is pinned and complete (checked before a
 * release changes anything, so it never fails halfway). */
export function revokerReady(layout: PinLayout): boolean {
  return [...PROGRAMS, ...MAPS].every((name) => fs.existsSync(pinPath(layout, name)));
}

export function requireRevoker(layout: PinLayout): void {
  if (!revokerReady(layout)) {
    throw new L3isoError(
      'EPIN_PARTIAL',
      `the revocation iterator is not pinned in ${layout.root}`,
      'run `l3iso up --repair --cgroup-root PATH`',
    );
  }
}

/** What a revocation runs on: an engine's state, which keeps one Revoker
 * open across verbs (see EngineState.revoker), or a bare pin layout, opened
 * for the one walk. */
export type RevokeTarget = PinLayout | { revoker(): Revoker };

/** Returns how many sockets were destroyed. */
export function destroySockets(on: RevokeTarget, addresses: readonly CellAddress[]): number {
  return walkOn(on, addresses, L3_REVOKE_DESTROY);
}

/**
 * How many sockets a process can hold (listeners included; not time-wait
 * or request sockets) are bound to one of `addresses`, counted in the
 * kernel by the iterator: a release that finds none need not read and
 * parse the whole socket table to tell whose they are.
 */
export function countLiveSockets(on: RevokeTarget, addresses: readonly CellAddress[]): number {
  return walkOn(on, addresses, L3_REVOKE_COUNT);
}

function walkOn(on: RevokeTarget, addresses: readonly CellAddress[], mode: number): number {
  if (addresses.length === 0) return 0;
  if ('revoker' in on) return on.revoker().walk(addresses, mode);
  const r = Revoker.open(on);
  try {
    return r.walk(addresses, mode);
  } finally {
    r.close();
  }
}

/** The set the `revoke` symlink names now; undefined when there is none
 * (a `down` removes the symlink first) or it is an older l3iso's plain dir. */
export function revokerSet(layout: PinLayout): string | undefined {
  try {
    return fs.readlinkSync(layout.revokeDir);
  } catch {
    return undefined;
  }
}

/**
 * The pinned iterator set, opened: its maps, and one iterator link per
 * program. Opening costs a dozen bpf() calls through FFI, more than a
 * release's map work, so an engine keeps one and reuses it while the
 * `revoke` symlink still names the same set (`up` re-pins a new one).
 */
export class Revoker {
  private constructor(
    /** the revoke-* set it was opened from (undefined: an older plain dir) */
    readonly set: string | undefined,
    private readonly target: BpfMap,
    private readonly count: BpfMap,
    private readonly mode: BpfMap,
    private readonly links: readonly BpfLink[],
  ) {}

  static open(layout: PinLayout): Revoker {
    requireRevoker(layout);
    const set = revokerSet(layout);
    const maps: BpfMap[] = [];
    const links: BpfLink[] = [];
    try {
      for (const name of MAPS) maps.push(BpfMap.openPinned(pinPath(layout, name)));
      for (const name of PROGRAMS) {
        const fd = getPinned(pinPath(layout, name));
        try {
          links.push(iteratorLink(fd));
        } finally {
          closeFd(fd); // the link holds the program
        }
      }
    } catch (err) {
      for (const l of links) l.close();
      for (const m of maps) m.close();
      throw err;
    }
    const [target, count, mode] = maps as [BpfMap, BpfMap, BpfMap];
    return new Revoker(set, target, count, mode, links);
  }

  /** One walk of the TCP and UDP tables per L3_REVOKE_BATCH addresses. */
  walk(addresses: readonly CellAddress[], mode: number): number {
    if (addresses.length === 0) return 0;
    const zero = Buffer.alloc(4);
    // A killed run's targets must not be revoked by this one.
    clearTargets(this.target);
    const m = Buffer.alloc(4);
    m.writeUInt32LE(mode);
    this.mode.update(zero, m, MapUpdate.ANY);
    this.count.update(zero, Buffer.alloc(8), MapUpdate.ANY);
    const keys = addresses.map(encodeAddr);
    for (let i = 0; i < keys.length; i += L3_REVOKE_BATCH) {
      const chunk = keys.slice(i, i + L3_REVOKE_BATCH);
      this.target.updateBatch(
        chunk,
        chunk.map(() => Buffer.from([1])),
        MapUpdate.ANY,
      );
      for (const link of this.links) readIterator(link);
      this.target.deleteBatch(chunk);
    }
    return Number(this.count.lookup(zero)?.readBigUInt64LE(0) ?? 0n);
  }

  close(): void {
    for (const l of this.links) l.close();
    for (const m of [this.target, this.count, this.mode]) m.close();
  }
}

function clearTargets(target: BpfMap): void {
  const stale = [...target.keys()];
  if (stale.length > 0) target.deleteBatch(stale);
}

/**
 * Drops the sk_lookup entries of listeners bound exactly to these
 * addresses and ports: a listener kept after its address was released must
 * not keep catching the address's connections once it is another cell's
 * (that cell's wildcard listener would never be reached). Point deletes:
 * the callers know the ports from the kernel's socket tables.
 */
export function forgetListeners(
  state: EngineState,
  listeners: readonly { address: CellAddress; port: number }[],
): number {
  if (listeners.length === 0) return 0;
  const F = LAYOUT.l3_listen_key.fields;
  const map = state.map('l3_listeners');
  let n = 0;
  for (const { address, port } of listeners) {
    const key = Buffer.alloc(LAYOUT.l3_listen_key.size);
    address.bytes.copy(key, F.addr.offset);
    key.writeUInt16LE(port, F.port.offset);
    key.writeUInt8(address.family === 4 ? L3_FAMILY_V4 : L3_FAMILY_V6, F.family.offset);
    key.writeUInt8(6, F.protocol.offset); // IPPROTO_TCP
    if (map.delete(key)) n++;
  }
  return n;
}
