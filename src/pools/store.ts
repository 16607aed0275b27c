/**
 * Where a single host keeps its pool definitions: one JSON record on tmpfs
 * beside the instance's lock (`/run/l3iso/<tag>.pools`), as the cell-names
 * file is, not in bpffs. Why a file and not a pinned map: no BPF program
 * reads a pool, bpffs holds no regular files, and a new pinned map would be
 * a new layout version (every live pin dir refused until down/up) for data
 * the kernel never needs. The record carries the engine's instance id, so it
 * follows the engine's lifecycle exactly as the maps do: a record of another
 * instance (a down and up since) is never adopted, down removes it, and a
 * reboot clears it with bpffs. Written by rename under the instance lock, so
 * a reader never sees half a record; a malformed one is refused, not guessed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { L3isoError } from '../errors';
import type { PinLayout } from '../dataplane/paths';

export interface PoolDef {
  name: string;
  /** canonical CIDR */
  cidr: string;
  /** prefix length of a block (fleet mode leases pools by blocks) */
  blockSize: number;
}

interface PoolRecord {
  instance: string;
  pools: PoolDef[];
}

export const POOL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export function checkPoolName(name: string): void {
  if (typeof name !== 'string' || !POOL_NAME.test(name))
    throw new L3isoError(
      'EUSAGE',
      `pool name ${JSON.stringify(name)} is not valid (letters, digits, _ . -, at most 63, starting with a letter or digit)`,
    );
}

function isPoolDef(v: unknown): v is PoolDef {
  const o = v as Partial<PoolDef>;
  return (
    typeof o === 'object' &&
    o !== null &&
    typeof o.name === 'string' &&
    POOL_NAME.test(o.name) &&
    typeof o.cidr === 'string' &&
    Number.isInteger(o.blockSize)
  );
}

/** The pools of `instance`; none when the record is another instance's. */
export function readPools(layout: PinLayout, instance: string): PoolDef[] {
  let text: string;
  try {
    text = fs.readFileSync(layout.poolsFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  let rec: Partial<PoolRecord>;
  try {
    rec = JSON.parse(text) as Partial<PoolRecord>;
  } catch {
    rec = {};
  }
  if (typeof rec.instance !== 'string' || !Array.isArray(rec.pools) || !rec.pools.every(isPoolDef))
    throw new L3isoError(
      'EKERNEL',
      `pool record ${layout.poolsFile} is malformed`,
      'remove it and add the pools again (`l3iso pool add`)',
    );
  return rec.instance === instance ? rec.pools : [];
}

/** Call under the instance lock. */
export function writePools(layout: PinLayout, instance: string, pools: readonly PoolDef[]): void {
  fs.mkdirSync(path.dirname(layout.poolsFile), { recursive: true, mode: 0o700 });
  const tmp = `${layout.poolsFile}.tmp-${process.pid}`;
  const rec: PoolRecord = { instance, pools: [...pools] };
  fs.writeFileSync(tmp, JSON.stringify(rec) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, layout.poolsFile);
}
