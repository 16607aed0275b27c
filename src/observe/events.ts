/**
 * `events`: the audit trail of refusals and drops, read from the l3_events
 * ring buffer. The BPF side stamps each record with bpf_ktime_get_ns
 * (CLOCK_MONOTONIC); user space turns that into wall-clock time with an
 * offset measured once at start.
 *
 * The ring has one consumer position, shared by every reader: two
 * `events` processes at once split the stream between them.
 */
import { RingBuffer } from '../../loader';
import { decodeEvent } from '../codecs/layout';
import { CellNamer, readSuppressed } from './counters';
import { recordedCellNames } from '../cells/names';
import { EngineState } from '../dataplane/state';

/** One event as `events` prints it. */
export interface EventView {
  /** wall-clock time, ISO 8601 UTC */
  time: string;
  /** the raw bpf_ktime_get_ns stamp (CLOCK_MONOTONIC ns), decimal */
  monotonicNs: string;
  /** cell name; '' outside every cell */
  cell: string;
  /** cgroup id of the cell (0: none), decimal */
  cellId: string;
  kind: 'refused' | 'dropped';
  reason: string;
  /** the address at stake; null when the hook had none (e.g. sock-raw) */
  address: string | null;
  port: number;
  /** tgid of the task; 0 for packet-layer events (no task context) */
  pid: number;
  comm: string;
}

/** Maps CLOCK_MONOTONIC nanoseconds to wall-clock milliseconds. */
export class MonotonicClock {
  /** wall-clock ns minus monotonic ns */
  readonly offsetNs: bigint;

  constructor(offsetNs?: bigint) {
    this.offsetNs = offsetNs ?? MonotonicClock.measure();
  }

  /** Brackets Date.now() between two process.hrtime readings (both are
   * CLOCK_MONOTONIC on Linux) and keeps the tightest of a few tries. */
  static measure(tries = 5): bigint {
    let best: { width: bigint; offset: bigint } | undefined;
    for (let i = 0; i < tries; i++) {
      const t0 = process.hrtime.bigint();
      const wall = BigInt(Date.now()) * 1_000_000n;
      const t1 = process.hrtime.bigint();
      const width = t1 - t0;
      const offset = wall - (t0 + t1) / 2n;
      if (!best || width < best.width) best = { width, offset };
    }
    return best!.offset;
  }

  wallMs(monotonicNs: bigint): number {
    return Number((monotonicNs + this.offsetNs) / 1_000_000n);
  }

  iso(monotonicNs: bigint): string {
    return new Date(this.wallMs(monotonicNs)).toISOString();
  }
}

/** One text line: time, cell, kind, reason, address:port, pid, comm. */
export function formatEventLine(e: EventView): string {
  const cell = e.cell === '' ? '-' : /\s/.test(e.cell) ? JSON.stringify(e.cell) : e.cell;
  const where =
    e.address === null
      ? '-'
      : e.address.includes(':')
        ? `[${e.address}]:${e.port}`
        : `${e.address}:${e.port}`;
  const who = e.pid === 0 ? 'pid=- comm=-' : `pid=${e.pid} comm=${e.comm || '-'}`;
  return `${e.time} ${cell} ${e.kind} ${e.reason} ${where} ${who}`;
}

export interface EventReaderOptions {
  clock?: MonotonicClock;
  /** least time between two cgroup walks for ids the name cache lacks */
  rewalkMs?: number;
}

/** A consumer of an engine's audit ring buffer. Close it when done. */
export class EventReader {
  private pending: Buffer[] = [];
  /** stop taking records from the ring once this many are pending */
  private limit = Infinity;
  private readonly ring: RingBuffer;

  private constructor(
    private readonly state: EngineState,
    private readonly namer: CellNamer,
    private readonly clock: MonotonicClock,
  ) {
    this.ring = RingBuffer.open(state.map('l3_events'), (record) => {
      this.pending.push(record);
      return this.pending.length < this.limit;
    });
  }

  static open(pinDir: string, opts: EventReaderOptions = {}): EventReader {
    const state = EngineState.open(pinDir);
    try {
      const namer = new CellNamer(state.config().cgroupRoot, { rewalkMs: opts.rewalkMs ?? 2000 });
      return new EventReader(state, namer, opts.clock ?? new MonotonicClock());
    } catch (err) {
      state.close();
      throw err;
    }
  }

  /** Every event the ring holds now, or the first `max` of them: the rest
   * stay in the ring (never waits). */
  read(max = Infinity): EventView[] {
    if (max <= 0) return [];
    this.limit = max;
    this.ring.consume();
    if (this.pending.length === 0) return [];
    const records = this.pending;
    this.pending = [];
    const decoded = records.map((r) => decodeEvent(r));
    const names = this.namer.resolve(decoded.map((e) => e.cell));
    // A cell whose cgroup is gone: the name assign recorded.
    if (names.some((n) => n.startsWith('#'))) {
      const recorded = recordedCellNames(this.state.layout);
      decoded.forEach((e, i) => {
        if (names[i]!.startsWith('#')) names[i] = recorded.get(e.cell) ?? names[i]!;
      });
    }
    return decoded.map((e, i) => ({
      time: this.clock.iso(e.timeNs),
      monotonicNs: e.timeNs.toString(),
      cell: names[i]!,
      cellId: e.cell.toString(),
      kind: e.kind,
      reason: e.reason,
      address: e.address ?? null,
      port: e.port,
      pid: e.pid,
      comm: e.comm,
    }));
  }

  /** Events the kernel's rate limit suppressed, ever (all CPUs). */
  suppressed(): number {
    return readSuppressed(this.state.map('l3_event_budget'));
  }

  close(): void {
    this.ring.close();
    this.state.close();
  }
}

export interface StreamOptions {
  pinDir: string;
  /** keep reading after the backlog (else: print what is buffered, exit) */
  follow: boolean;
  /** stop after this many events */
  count?: number;
  /** stop after this long */
  timeoutMs?: number;
  /** how often the ring is drained while following (default 50 ms) */
  pollMs?: number;
  /** how often the suppressed counter is checked (default 1 s) */
  suppressedEveryMs?: number;
  /** aborting it (SIGINT) ends the stream */
  signal?: AbortSignal;
  onReady?: () => void;
  /** returning false (e.g. stdout closed) ends the stream */
  onEvent: (e: EventView) => boolean | void;
  /** the suppressed counter grew by `delta` since the last report */
  onSuppressed?: (delta: number, total: number) => void;
  readerOptions?: EventReaderOptions;
}

export type StreamEnd = 'drained' | 'count' | 'timeout' | 'signal' | 'output-closed';

export interface StreamResult {
  events: number;
  end: StreamEnd;
}

/**
 * Delivers events until the backlog is drained (no follow), `count` events
 * were delivered, `timeoutMs` passed, or `signal` aborts. The ring is
 * drained from a timer with a non-blocking consume, so the event loop stays
 * free for signals and the timeout.
 */
export function streamEvents(o: StreamOptions): Promise<StreamResult> {
  const reader = EventReader.open(o.pinDir, o.readerOptions);
  const d = deliverer(reader, o);
  return o.follow ? followRing(reader, o, d) : drainBacklog(reader, o, d);
}

/** Hands events to onEvent, counting them against --count. */
interface Deliverer {
  /** what is in the ring now; the end, if this ended the stream */
  deliver: () => StreamEnd | undefined;
  delivered: () => number;
}

function deliverer(reader: EventReader, o: StreamOptions): Deliverer {
  let delivered = 0;
  return {
    deliver: () => {
      // Take no more than --count from the ring: later events stay for the next reader.
      for (const e of reader.read(o.count === undefined ? Infinity : o.count - delivered)) {
        if (o.count !== undefined && delivered >= o.count) return 'count';
        delivered++;
        if (o.onEvent(e) === false) return 'output-closed';
      }
      if (o.count !== undefined && delivered >= o.count) return 'count';
      return undefined;
    },
    delivered: () => delivered,
  };
}

/** Without --follow: what is buffered, then the reader is closed. */
function drainBacklog(reader: EventReader, o: StreamOptions, d: Deliverer): Promise<StreamResult> {
  try {
    o.onReady?.();
    const end = d.deliver() ?? 'drained';
    return Promise.resolve({ events: d.delivered(), end });
  } catch (err) {
    return Promise.reject(err);
  } finally {
    reader.close();
  }
}

/** --follow: drain from timers until an end; every path closes the reader once. */
function followRing(reader: EventReader, o: StreamOptions, d: Deliverer): Promise<StreamResult> {
  let lastSuppressed = reader.suppressed();
  return new Promise<StreamResult>((resolve, reject) => {
    let done = false;
    const timers: NodeJS.Timeout[] = [];
    const checkSuppressed = (): undefined => {
      const now = reader.suppressed();
      if (now > lastSuppressed) o.onSuppressed?.(now - lastSuppressed, now);
      lastSuppressed = Math.max(lastSuppressed, now);
      return undefined;
    };
    const finish = (end: StreamEnd | undefined, err?: unknown): void => {
      if (done || (end === undefined && err === undefined)) return;
      done = true;
      for (const t of timers) clearTimeout(t);
      // A last look, so what was suppressed before the end is reported too.
      if (err === undefined && end !== 'output-closed') {
        try {
          checkSuppressed();
        } catch (checkErr) {
          err = checkErr;
        }
      }
      o.signal?.removeEventListener('abort', onAbort);
      try {
        reader.close();
      } catch (closeErr) {
        err ??= closeErr;
      }
      if (err !== undefined) reject(err);
      else resolve({ events: d.delivered(), end: end! });
    };
    const guarded =
      (fn: () => StreamEnd | undefined): (() => void) =>
      () => {
        if (done) return;
        try {
          finish(fn());
        } catch (err) {
          finish(undefined, err);
        }
      };
    const onAbort = guarded(() => d.deliver() ?? 'signal');
    if (o.signal?.aborted) return finish('signal');
    o.signal?.addEventListener('abort', onAbort, { once: true });

    timers.push(setInterval(guarded(d.deliver), o.pollMs ?? 50));
    timers.push(setInterval(guarded(checkSuppressed), o.suppressedEveryMs ?? 1000));
    if (o.timeoutMs !== undefined)
      timers.push(
        setTimeout(
          guarded(() => d.deliver() ?? 'timeout'),
          o.timeoutMs,
        ),
      );
    guarded(() => {
      o.onReady?.();
      return d.deliver();
    })();
  });
}
