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
import { gc } from '../engine/cells';
import { releaseCellById } from '../engine/release-id';
import { EngineState } from '../engine/state';
import { cgroupPathsById } from '../model/cgroup';

export interface WatchLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface CellWatcherOptions {
  pinDir: string;
  log: WatchLog;
  /** resync every this many ms (gc + re-list the cells) */
  resyncMs: number;
}

export class CellWatcher {
  /** cell id -> its cgroup path */
  private readonly cells = new Map<bigint, string>();
  private readonly watchers = new Map<string, fs.FSWatcher>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  released = 0;

  constructor(private readonly o: CellWatcherOptions) {}

  get watched(): number {
    return this.cells.size;
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
    this.cells.set(id, cgroupPath);
    const parent = path.dirname(cgroupPath);
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
  }

  private onEvent(parent: string, name: string | Buffer | null): void {
    if (this.stopped) return;
    const gone = [...this.cells].filter(
      ([, p]) =>
        path.dirname(p) === parent &&
        (name === null || path.basename(p) === String(name)) &&
        !fs.existsSync(p),
    );
    for (const [id, p] of gone) this.releaseGone(id, p);
    if (!fs.existsSync(parent)) this.dropWatch(parent);
  }

  /**
   * The path is gone. Its cell is released by id: a cgroup re-created under
   * the same name is another cgroup (another id) and keeps its cell, if any.
   */
  private releaseGone(id: bigint, p: string): void {
    this.cells.delete(id);
    try {
      const r = releaseCellById(this.o.pinDir, id);
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
    if (this.stopped || !EngineState.isUp(this.o.pinDir)) return;
    try {
      const r = gc(this.o.pinDir);
      if (r.cells.length) {
        this.released += r.cells.length;
        this.o.log.info({ cells: r.cells }, 'cgroups removed: cells released (resync)');
      }
      const state = EngineState.open(this.o.pinDir);
      let ids: bigint[];
      let root: string;
      try {
        ids = [...state.cells().keys()];
        root = state.config().cgroupRoot;
      } finally {
        state.close();
      }
      const paths = cgroupPathsById(root);
      this.cells.clear();
      for (const id of ids) {
        const p = paths.get(id);
        if (p) this.add(id, p);
      }
      for (const parent of [...this.watchers.keys()])
        if (![...this.cells.values()].some((p) => path.dirname(p) === parent))
          this.dropWatch(parent);
    } catch (err) {
      this.o.log.warn({ err: String(err) }, 'resync failed');
    }
  }
}
