/** Signals and stdout for the verbs that run until interrupted. */
import { setTimeout as sleep } from 'node:timers/promises';
import { log } from '../log';

/** An AbortSignal that SIGINT or SIGTERM aborts; dispose() restores the
 * default handlers (a second Ctrl-C then kills at once). */
export function interruptSignal(): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    log.debug({ signal: sig }, 'stopping');
    dispose();
    ac.abort();
  };
  const dispose = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return { signal: ac.signal, dispose };
}

/** Resolves false when the signal aborts before `ms`. */
export async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

let stdoutClosed = false;
let watchingStdout = false;

/** Resolves true once stdout is closed under us (EPIPE: `| head`). One
 * listener per process, kept for its life (an EPIPE can still come while
 * the last output drains): main() may run many times in one process (the
 * fuzz driver, an embedding), and a listener per run would pile up into a
 * MaxListenersExceededWarning on stderr. */
export function watchStdout(): { closed: () => boolean } {
  if (!watchingStdout) {
    watchingStdout = true;
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') stdoutClosed = true;
      else throw err;
    });
  }
  return { closed: () => stdoutClosed };
}
