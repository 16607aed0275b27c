/**
 * The generation of the engine's cells and owners (l3_generation, key 0).
 * Sockets cache their cell and their verified address per generation
 * (struct l3_sock_origin), so every change to l3_cells or l3_owners must be
 * followed by a bump, or a socket keeps acting on what it cached. Writers
 * are serialised by the engine lock, so read-modify-write cannot lose one.
 */
import * as fs from 'node:fs';
import { BpfMap } from '../../loader';
import type { PinLayout } from './paths';

/** Bits of the generation the cache words hold (64 - L3_CACHE_SHIFT). */
const GEN_MASK = (1n << 56n) - 1n;

function genKey(): Buffer {
  return Buffer.alloc(4);
}

/** The next generation: never 0, which turns the cache off. */
export function nextGeneration(current: bigint): bigint {
  const next = (current + 1n) & GEN_MASK;
  return next === 0n ? 1n : next;
}

export function readGeneration(layout: PinLayout): bigint | undefined {
  const pin = layout.map('l3_generation');
  if (!fs.existsSync(pin)) return undefined;
  const map = BpfMap.openPinned(pin);
  try {
    return map.lookup(genKey())?.readBigUInt64LE(0);
  } finally {
    map.close();
  }
}

/** Invalidates what every socket cached. A no-op before `up` pinned the map
 * (nothing can have cached anything then). */
export function bumpGeneration(layout: PinLayout): void {
  const pin = layout.map('l3_generation');
  if (!fs.existsSync(pin)) return;
  const map = BpfMap.openPinned(pin);
  try {
    bumpGenerationIn(map);
  } finally {
    map.close();
  }
}

/** bumpGeneration on an l3_generation map the caller holds open. */
export function bumpGenerationIn(map: BpfMap): void {
  const key = genKey();
  const value = Buffer.alloc(8);
  value.writeBigUInt64LE(nextGeneration(map.lookup(key)?.readBigUInt64LE(0) ?? 0n));
  map.update(key, value);
}
