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

/** Resolves true once stdout is closed under us (EPIPE: `| head`). */
export function watchStdout(): { closed: () => boolean } {
  let closed = false;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') closed = true;
    else throw err;
  });
  return { closed: () => closed };
}
