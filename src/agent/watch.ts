/**
 * Releases cells whose cgroup is removed. A cgroup goes away only by
 * rmdir, which inotify reports on its parent directory: one fs.watch per
 * distinct parent of a cell's cgroup. A periodic resync runs gc (which
 * releases only cells it can prove dead: cgroup root resolved, id absent
 * below it) and picks up cells assigned without the agent, so a missed
 * event, or a removal while the agent was down, is caught at the next one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { HeldEngine } from '../engine/held';
import { cgroupPathsById } from '../model/cgroup';

export interface WatchLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface CellWatcherOptions {
  /** the agent's Engine */
  engine: HeldEngine;
  log: WatchLog;
  /** resync every this many ms (gc + re-list the cells) */
  resyncMs: number;
}

export class CellWatcher {
  /** parent directory -> (cgroup's name in it -> cell id) */
  private readonly byParent = new Map<string, Map<string, bigint>>();
  private count = 0;
  private readonly watchers = new Map<string, fs.FSWatcher>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  released = 0;

  constructor(private readonly o: CellWatcherOptions) {}

  get watched(): number {
    return this.count;
  }

  start(): void {
    this.resync();
    this.timer = setInterval(() => this.resync(), this.o.resyncMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }

  /** A cell the agent just assigned (or re-listed): watch its parent. */
  add(id: bigint, cgroupPath: string): void {
    if (this.stopped) return;
    const parent = path.dirname(cgroupPath);
    const names = this.byParent.get(parent) ?? new Map<string, bigint>();
    this.byParent.set(parent, names);
    if (names.get(path.basename(cgroupPath)) !== id) {
      if (!names.has(path.basename(cgroupPath))) this.count++;
      names.set(path.basename(cgroupPath), id);
    }
    this.watchParent(parent);
  }

  private watchParent(parent: string): void {
    if (this.watchers.has(parent)) return;
    try {
      const w = fs.watch(parent, { persistent: false }, (_ev, name) => this.onEvent(parent, name));
      w.on('error', () => this.dropWatch(parent));
      this.watchers.set(parent, w);
    } catch (err) {
      // The parent is gone too: the resync's gc settles its cells.
      this.o.log.warn({ parent, err: String(err) }, 'cannot watch cgroup directory');
    }
  }

  private dropWatch(parent: string): void {
    this.watchers.get(parent)?.close();
    this.watchers.delete(parent);
    this.count -= this.byParent.get(parent)?.size ?? 0;
    this.byParent.delete(parent);
  }

  private onEvent(parent: string, name: string | Buffer | null): void {
    if (this.stopped) return;
    const names = this.byParent.get(parent);
    if (!names) return;
    // No name: inotify overflowed or the kernel did not say; look at them all.
    const candidates = name === null ? [...names.keys()] : [String(name)];
    const gone = candidates.filter((n) => names.has(n) && !fs.existsSync(path.join(parent, n)));
    // cgroup v2 refuses rename (EPERM): a name that vanished is a removed cgroup.
    for (const n of gone) {
      const id = names.get(n)!;
      names.delete(n);
      this.count--;
      this.releaseGone(id, path.join(parent, n));
    }
  }

  /**
   * The path is gone. Its cell is released by id: a cgroup re-created under
   * the same name is another cgroup (another id) and keeps its cell, if any.
   */
  private releaseGone(id: bigint, p: string): void {
    try {
      const r = this.o.engine.get().releaseById(id);
      if (r.found) {
        this.released++;
        this.o.log.info(
          { cell: p, id: id.toString(), released: r.released },
          'cgroup removed: cell released',
        );
      }
    } catch (err) {
      this.o.log.warn({ cell: p, id: id.toString(), err: String(err) }, 'release failed');
    }
  }

  /** gc, then watch every live cell (also those assigned without the agent). */
  resync(): void {
    if (this.stopped || !this.o.engine.isUp()) return;
    try {
      const engine = this.o.engine.get();
      const r = engine.gc();
      if (r.cells.length) {
        this.released += r.cells.length;
        this.o.log.info({ cells: r.cells }, 'cgroups removed: cells released (resync)');
      }
      const { ids, root } = engine.cellsAndRoot();
      const paths = cgroupPathsById(root);
      const live = new Map<string, Map<string, bigint>>();
      for (const id of ids) {
        const p = paths.get(id);
        if (!p) continue;
        const names = live.get(path.dirname(p)) ?? new Map<string, bigint>();
        names.set(path.basename(p), id);
        live.set(path.dirname(p), names);
      }
      for (const [parent, w] of this.watchers)
        if (!live.has(parent)) {
          w.close();
          this.watchers.delete(parent);
        }
      this.byParent.clear();
      this.count = 0;
      for (const [parent, names] of live) {
        this.byParent.set(parent, names);
        this.count += names.size;
        this.watchParent(parent);
      }
    } catch (err) {
      this.o.log.warn({ err: String(err) }, 'resync failed');
    }
  }
}
