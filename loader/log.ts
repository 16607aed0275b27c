import ffi = require('@2060.io/ffi-napi');
import { Ptr, libbpf, libc } from './libbpf';

export type LibbpfLogLevel = 'warn' | 'info' | 'debug';
export type LibbpfLogger = (level: LibbpfLogLevel, msg: string) => void;

const LEVELS: readonly LibbpfLogLevel[] = ['warn', 'info', 'debug'];

// One line of libbpf output; longer messages are truncated, never overrun.
const lineBuf = Buffer.alloc(8192);
let logger: LibbpfLogger | undefined;
// libbpf's built-in stderr printer, restored when nobody needs ours.
let defaultPrinter: Ptr | undefined;
// Active captures (innermost last) of warn-level lines, see captureWarnings.
const captures: string[][] = [];

// Module-level so the garbage collector never frees the trampoline libbpf
// calls into; created once because libbpf keeps only the latest pointer.
const callback = ffi.Callback(
  'int',
  ['int', 'pointer', 'pointer'],
  (level: number, fmt: Ptr, ap: Ptr): number => {
    // Exceptions must not unwind through libbpf's C frames.
    try {
      const fn = logger;
      const lvl = LEVELS[level] ?? 'debug';
      if (!fn && captures.length === 0) return 0;
      const n = libc.vsnprintf(lineBuf, lineBuf.length, fmt, ap);
      if (n < 0) return 0;
      const msg = lineBuf.toString('utf8', 0, Math.min(n, lineBuf.length - 1)).replace(/\n+$/, '');
      if (lvl === 'warn') for (const c of captures) c.push(msg);
      if (fn) fn(lvl, msg);
      // Same filter as libbpf's own printer, whose place we took.
      else if (lvl !== 'debug') process.stderr.write(`${msg}\n`);
    } catch {
      // A broken logger must not break a bpf load.
    }
    return 0;
  },
);

/**
 * Routes libbpf's diagnostics (process-wide) to `fn`, one call per message
 * without the trailing newline. `null` restores libbpf's stderr printer.
 * `fn` runs synchronously inside libbpf calls: keep it cheap; its
 * exceptions are swallowed.
 */
export function setLibbpfLogger(fn: LibbpfLogger | null): void {
  logger = fn ?? undefined;
  syncPrinter();
}

function syncPrinter(): void {
  const needOurs = logger !== undefined || captures.length > 0;
  if (needOurs && defaultPrinter === undefined) {
    defaultPrinter = libbpf.libbpf_set_print(callback as unknown as Ptr);
  } else if (!needOurs && defaultPrinter !== undefined) {
    libbpf.libbpf_set_print(defaultPrinter);
    defaultPrinter = undefined;
  }
}

/**
 * @internal Runs `fn` while appending libbpf's warn-level lines to `sink`
 * (they still reach the logger or stderr as usual), so a failed load can say
 * which program or map it was about.
 */
export function captureWarnings<T>(sink: string[], fn: () => T): T {
  captures.push(sink);
  syncPrinter();
  try {
    return fn();
  } finally {
    captures.splice(captures.lastIndexOf(sink), 1);
    syncPrinter();
  }
}
