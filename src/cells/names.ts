/**
 * Names of cells, remembered outside the cgroup tree: an audit event can
 * outlive its cell's cgroup (the ring buffer is read later), and `events`
 * must still say which cell it was. assign records "<id> <JSON name>" lines
 * under the instance lock; gc keeps only the lines of cells that still
 * exist or whose counters were just removed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { PinLayout } from '../dataplane/paths';

function namesFile(layout: PinLayout): string {
  return path.join(layout.runDir, `${layout.tag}.cells`);
}

/** The instance is gone (down removed its pin dir): so are the names it kept. */
export function forgetCellNames(layout: PinLayout): void {
  fs.rmSync(namesFile(layout), { force: true });
}

export function recordCellName(layout: PinLayout, id: bigint, name: string): void {
  if (recordedCellNames(layout).get(id) === name) return;
  fs.mkdirSync(path.dirname(namesFile(layout)), { recursive: true, mode: 0o700 });
  fs.appendFileSync(namesFile(layout), `${id} ${JSON.stringify(name)}\n`, { mode: 0o600 });
}

/**
 * recordCellName for a new cell, without reading the file first (it holds
 * every cell's name: reading it made each assign O(all cells)). A stale
 * line of the same id is harmless: the last line wins, and gc compacts.
 * The leading newline ends a line a crash cut short.
 */
export function appendCellName(layout: PinLayout, id: bigint, name: string): void {
  const line = `\n${id} ${JSON.stringify(name)}\n`;
  try {
    fs.appendFileSync(namesFile(layout), line, { mode: 0o600 });
  } catch (err) {
    // The dir is made once, not per assign (the agent's hot path).
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    fs.mkdirSync(path.dirname(namesFile(layout)), { recursive: true, mode: 0o700 });
    fs.appendFileSync(namesFile(layout), line, { mode: 0o600 });
  }
}

/** recordCellName for many cells: one read and one append. */
export function recordCellNames(
  layout: PinLayout,
  entries: readonly (readonly [bigint, string])[],
): void {
  const known = recordedCellNames(layout);
  const lines = entries
    .filter(([id, name]) => known.get(id) !== name)
    .map(([id, name]) => `${id} ${JSON.stringify(name)}\n`);
  if (lines.length === 0) return;
  fs.mkdirSync(path.dirname(namesFile(layout)), { recursive: true, mode: 0o700 });
  fs.appendFileSync(namesFile(layout), lines.join(''), { mode: 0o600 });
}

export function recordedCellNames(layout: PinLayout): Map<bigint, string> {
  const out = new Map<bigint, string>();
  let text: string;
  try {
    text = fs.readFileSync(namesFile(layout), 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const sp = line.indexOf(' ');
    if (sp <= 0) continue;
    try {
      const name: unknown = JSON.parse(line.slice(sp + 1));
      if (typeof name === 'string') out.set(BigInt(line.slice(0, sp)), name);
    } catch {
      /* a line a crash cut short */
    }
  }
  return out;
}

/** Keeps the names of `keep` only (call under the instance lock). */
export function pruneCellNames(layout: PinLayout, keep: ReadonlySet<bigint>): void {
  const names = recordedCellNames(layout);
  if ([...names.keys()].every((id) => keep.has(id))) return;
  const lines = [...names]
    .filter(([id]) => keep.has(id))
    .map(([id, n]) => `${id} ${JSON.stringify(n)}\n`);
  const tmp = `${namesFile(layout)}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, lines.join(''), { mode: 0o600 });
  fs.renameSync(tmp, namesFile(layout));
}
