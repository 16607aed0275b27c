/**
 * Container id -> cell records, so that poststop (which runs after the
 * container's cgroup is gone) still knows which cell to release. The cell
 * key IS the cgroup id, so a record holds only what cannot be derived from
 * the maps. They live on tmpfs under /run (gone on reboot, like bpffs and
 * the maps they point into), one directory per engine instance, one file
 * per container written by rename so a reader never sees half a record.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { L3isoError } from '../errors';
import { pinLayout } from '../dataplane/paths';
import { pidAlive } from '../model/process';

export const RECORDS_ROOT = '/run/l3iso/oci';

export interface ContainerRecord {
  container: string;
  /** the cell: cgroup id of the container's cgroup, decimal */
  cgroupId: string;
  cgroupPath: string;
  addresses: string[];
  created: string;
}

/** Per instance: named by the same pin-dir hash as the instance's lock. */
export function recordsDir(pinDir: string): string {
  return path.join(RECORDS_ROOT, path.basename(pinLayout(pinDir).lockFile, '.lock'));
}

function recordPath(pinDir: string, container: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.+-]*$/.test(container))
    throw new L3isoError('EUSAGE', `container id ${JSON.stringify(container)} is not valid`);
  return path.join(recordsDir(pinDir), `${container}.json`);
}

export function writeRecord(pinDir: string, rec: ContainerRecord): void {
  const final = recordPath(pinDir, rec.container);
  fs.mkdirSync(path.dirname(final), { recursive: true, mode: 0o700 });
  const tmp = path.join(path.dirname(final), `.${rec.container}.${process.pid}.tmp`);
  fs.writeFileSync(tmp, JSON.stringify(rec) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, final);
}

function decode(text: string, container: string): ContainerRecord | undefined {
  try {
    const o = JSON.parse(text) as Partial<ContainerRecord>;
    if (
      o.container === container &&
      typeof o.cgroupId === 'string' &&
      /^[1-9]\d*$/.test(o.cgroupId) &&
      typeof o.cgroupPath === 'string' &&
      Array.isArray(o.addresses) &&
      typeof o.created === 'string'
    )
      return o as ContainerRecord;
  } catch {
    /* malformed: below */
  }
  return undefined;
}

/** The record of a container; undefined when there is none. A malformed
 * one is an error (poststop must not guess which cell to release). */
export function readRecord(pinDir: string, container: string): ContainerRecord | undefined {
  const file = recordPath(pinDir, container);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const rec = decode(text, container);
  if (!rec) throw new L3isoError('EKERNEL', `record ${file} is malformed`, 'run `l3iso gc`');
  return rec;
}

export function removeRecord(pinDir: string, container: string): void {
  fs.rmSync(recordPath(pinDir, container), { force: true });
}

export interface RecordEntry {
  container: string;
  file: string;
  /** undefined: the file is malformed */
  record: ContainerRecord | undefined;
}

export function listRecords(pinDir: string): RecordEntry[] {
  const dir = recordsDir(pinDir);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: RecordEntry[] = [];
  for (const name of names) {
    if (!name.endsWith('.json') || name.startsWith('.')) continue;
    const container = name.slice(0, -'.json'.length);
    const file = path.join(dir, name);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue; // removed meanwhile
    }
    out.push({ container, file, record: decode(text, container) });
  }
  return out;
}

/**
 * Removes the records no cell answers to any more (poststop never ran, or
 * its release happened but the removal did not), malformed ones, and the
 * temporary files of writers that died. `liveCells` must be read AFTER the
 * records are listed: a record is written only once its cell exists, so a
 * record listed first whose cell is missing later was released.
 */
export function gcRecords(pinDir: string, liveCells: () => Set<bigint>): string[] {
  const entries = listRecords(pinDir);
  const cells = liveCells();
  const removed: string[] = [];
  for (const e of entries) {
    if (e.record && cells.has(BigInt(e.record.cgroupId))) continue;
    fs.rmSync(e.file, { force: true });
    removed.push(e.container);
  }
  const dir = recordsDir(pinDir);
  for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    const m = /^\..*\.(\d+)\.tmp$/.exec(name);
    if (m && !pidAlive(Number(m[1]))) fs.rmSync(path.join(dir, name), { force: true });
  }
  return removed;
}
