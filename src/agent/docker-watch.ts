/**
 * `agent --watch-docker`: follows `docker events` (the docker CLI, so
 * DOCKER_HOST and docker's own configuration pick the daemon) and cleans up
 * after containers that end (runtime/docker-events.ts says what goes away).
 * A lost stream (dockerd restarted, not yet up) is restarted with
 * `--since` the last event seen, after a pause that grows to 30 s.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  cleanUpDockerContainer,
  dockerEventsArgs,
  parseDockerEvent,
} from '../runtime/docker-events';
import type { WatchLog } from './watch';

export interface DockerWatcherOptions {
  pinDir: string;
  log: WatchLog;
  /** the docker CLI (default: `docker` on PATH) */
  docker?: string;
}

const MAX_BACKOFF_MS = 30_000;

export class DockerWatcher {
  private child: ChildProcess | undefined;
  private stopped = false;
  private since: number | undefined;
  private backoff = 1000;
  private timer: NodeJS.Timeout | undefined;
  /** clean-up events handled */
  events = 0;
  /** containers whose record (and recorded cell) this released */
  released = 0;

  constructor(private readonly o: DockerWatcherOptions) {}

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null;
  }

  start(): void {
    if (this.stopped) return;
    const child = spawn(this.o.docker ?? 'docker', dockerEventsArgs(this.since), {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    let buf = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        this.onLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-2000)));
    child.on('error', (e) => this.lost(`cannot run docker: ${e.message}`));
    child.on('exit', (code, signal) => this.lost(err.trim() || `exit ${code ?? signal}`));
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.child?.kill('SIGTERM');
  }

  private lost(why: string): void {
    if (this.stopped || this.timer) return;
    this.o.log.warn({ err: why, retryMs: this.backoff }, 'docker events stream lost');
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.start();
    }, this.backoff);
    this.timer.unref();
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
  }

  private onLine(line: string): void {
    const ev = parseDockerEvent(line);
    if (!ev) return;
    this.backoff = 1000;
    if (ev.time !== undefined) this.since = ev.time;
    this.events++;
    try {
      const r = cleanUpDockerContainer(this.o.pinDir, ev.container);
      if (r?.action !== 'released') return;
      this.released++;
      this.o.log.info(
        { container: ev.container, event: ev.action, id: r.cgroupId, released: r.released },
        'docker container ended: its recorded cell released',
      );
    } catch (err) {
      this.o.log.warn(
        { container: ev.container, event: ev.action, err: String(err) },
        'docker clean-up failed; `l3iso gc` finishes it',
      );
    }
  }
}
