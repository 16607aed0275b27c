/**
 * Revocation: after an address leaves a cell, destroy every TCP and UDP
 * socket still bound to it (bpf_sock_destroy from a socket iterator, Linux
 * 6.5+). The iterator walks the sockets of the calling process's network
 * namespace, so this runs where `up` ran (the engine's netns).
 */
import { MapUpdate, BpfObject, runIterator } from '../../loader';
import { encodeAddr } from '../maps/layout';
import type { CellAddress } from '../model/address';
import { bpfObjectPath } from './paths';
import { REVOKE_OBJECT } from './programs';

/** Returns how many sockets were destroyed. */
export function destroySockets(addresses: readonly CellAddress[]): number {
  if (addresses.length === 0) return 0;
  const obj = BpfObject.open(bpfObjectPath(REVOKE_OBJECT));
  try {
    obj.load();
    const target = obj.map('l3_revoke_target');
    const count = obj.map('l3_revoke_count');
    try {
      for (const address of addresses) {
        target.update(Buffer.alloc(4), encodeAddr(address), MapUpdate.ANY);
        runIterator(obj.program('l3_revoke_tcp'));
        runIterator(obj.program('l3_revoke_udp'));
      }
      return Number(count.lookup(Buffer.alloc(4))?.readBigUInt64LE(0) ?? 0n);
    } finally {
      target.close();
      count.close();
    }
  } finally {
    obj.close();
  }
}
