/**
 * Revocation: after an address leaves a cell, destroy every TCP and UDP
 * socket still bound to it (bpf_sock_destroy from a socket iterator, Linux
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
  BpfMap,
  BpfObject,
  MapUpdate,
  closeFd,
  getPinned,
  pinObject,
  runIterator,
} from '../../loader';
import { encodeAddr } from '../maps/layout';
import { L3isoError } from '../errors';
import type { CellAddress } from '../model/address';
import { bpfObjectPath, type PinLayout } from './paths';
import { REVOKE_OBJECT } from './programs';

const PROGRAMS = ['l3_revoke_tcp', 'l3_revoke_udp'] as const;
const MAPS = ['l3_revoke_target', 'l3_revoke_count'] as const;
type Pinned = (typeof PROGRAMS)[number] | (typeof MAPS)[number];

function pinPath(layout: PinLayout, name: Pinned): string {
  return path.join(layout.revokeDir, name);
}

/** Loads the iterator and pins it, replacing an older pin (under the
 * instance lock, so no release runs meanwhile). */
export function pinRevoker(layout: PinLayout): void {
  const obj = BpfObject.open(bpfObjectPath(REVOKE_OBJECT));
  try {
    obj.load();
    fs.rmSync(layout.revokeDir, { recursive: true, force: true });
    fs.mkdirSync(layout.revokeDir);
    for (const name of PROGRAMS) pinObject(obj.program(name).fd, pinPath(layout, name));
    for (const name of MAPS) {
      const map = obj.map(name);
      try {
        map.pin(pinPath(layout, name));
      } finally {
        map.close();
      }
    }
  } finally {
    obj.close();
  }
}

export function unpinRevoker(layout: PinLayout): void {
  fs.rmSync(layout.revokeDir, { recursive: true, force: true });
}

/** Returns how many sockets were destroyed. */
export function destroySockets(layout: PinLayout, addresses: readonly CellAddress[]): number {
  if (addresses.length === 0) return 0;
  if (!fs.existsSync(pinPath(layout, 'l3_revoke_udp'))) {
    throw new L3isoError(
      'ENOT_UP',
      `the revocation iterator is not pinned in ${layout.root}`,
      'run `l3iso up` again',
    );
  }
  const target = BpfMap.openPinned(pinPath(layout, 'l3_revoke_target'));
  const count = BpfMap.openPinned(pinPath(layout, 'l3_revoke_count'));
  const progs = PROGRAMS.map((name) => getPinned(pinPath(layout, name)));
  try {
    count.update(Buffer.alloc(4), Buffer.alloc(8), MapUpdate.ANY);
    for (const address of addresses) {
      target.update(Buffer.alloc(4), encodeAddr(address), MapUpdate.ANY);
      for (const fd of progs) runIterator(fd);
    }
    return Number(count.lookup(Buffer.alloc(4))?.readBigUInt64LE(0) ?? 0n);
  } finally {
    for (const fd of progs) closeFd(fd);
    target.close();
    count.close();
  }
}
