/**
 * Waiting for something the test cannot be told about (a process's
 * readiness, a watcher's effect, a route that BGP brings): poll, and fail
 * naming what never came and the last error on the way. A bound, not a
 * timed assertion: it only decides when to give up.
 */
import { setTimeout as sleep } from 'node:timers/promises';

/** f's first defined value; a throw from f counts as not yet. */
export async function until<T>(
  what: string,
  f: () => Promise<T | undefined>,
  boundMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + boundMs;
  let last: unknown;
  for (;;) {
    const v = await f().catch((err: unknown) => ((last = err), undefined));
    if (v !== undefined) return v;
    if (Date.now() > deadline)
      throw new Error(
        `timed out waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}`,
      );
    await sleep(100);
  }
}
