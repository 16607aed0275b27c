/**
 * What the control-plane benches share: their command-line numbers, the
 * state file of N cells (two addresses each, IPv4 + IPv6 from the managed
 * prefixes below), and an optional CPU profile of a phase.
 */
import * as fs from 'node:fs';
import * as inspector from 'node:inspector';
import * as path from 'node:path';
import type { DesiredState } from '../src/declarative/schema';

/** The prefixes every cell of desiredCells() takes its addresses from. */
export const CELL_PREFIXES = ['10.0.0.0/8', 'fd00::/64'];

export function numberArg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

export function stringArg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** Cell i is cgroup `c<i>` with 10.x.y.z and fd00::x:y (i < 2^24). */
export function desiredCells(n: number): DesiredState {
  const cells = Array.from({ length: n }, (_, i) => ({
    cgroup: `c${i}`,
    addresses: [
      `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
      `fd00::${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}`,
    ],
    allowRaw: false,
    allowFrom: null,
  }));
  return { version: 1, engine: {}, cells };
}

/**
 * Runs fn, profiled into DIR/NAME.cpuprofile when DIR is given. An
 * inspector session rather than `node --cpu-prof`: SIGPROF during `up`
 * makes the verifier give up (EAGAIN), so only the measured phase is
 * sampled. The session's calls complete synchronously.
 */
export function profiled<T>(dir: string | undefined, name: string, fn: () => T): T {
  if (!dir) return fn();
  const session = new inspector.Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 200 });
  session.post('Profiler.start');
  try {
    return fn();
  } finally {
    session.post('Profiler.stop', (err, res) => {
      if (err) throw err;
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, `${name}.cpuprofile`), JSON.stringify(res.profile));
    });
    session.disconnect();
  }
}
