/**
 * What every verb shares: the global options, the runner that reports a
 * verb's errors, the agent round trip, and the Engine of the pin dir.
 */
import type { Engine } from '../engine/engine';
import { agentClient, engineModule, prepareEngine, privilege } from '../lazy';
import { ReportedError } from './output';

export interface GlobalOptions {
  pinDir: string;
  json: boolean;
  /** argv as given: exec needs to see where `--` was */
  argv: readonly string[];
  /** the agent's socket to try first; undefined with --no-agent */
  agentSocket: string | undefined;
}

/**
 * Runs a verb's action with the global options, reporting its errors.
 * `lazyEngine`: the action loads the engine itself only when it needs it
 * (a verb the agent may answer); otherwise it is prepared before the action.
 */
export type Runner = (
  fn: (g: GlobalOptions) => Promise<number | void> | number | void,
  o?: { lazyEngine?: boolean },
) => Promise<void>;

/**
 * The agent's answer to this request, or undefined when no agent for this
 * pin dir answers (then the verb runs in this process, printing the same).
 * An error the agent reports is thrown as it came.
 */
export async function viaAgent<T>(
  g: GlobalOptions,
  method: 'GET' | 'POST',
  url: string,
  body?: unknown,
): Promise<T | undefined> {
  const a = g.agentSocket
    ? await agentClient().callAgent(g.agentSocket, g.pinDir, method, url, body)
    : undefined;
  if (!a) {
    prepareEngine();
    return undefined;
  }
  if (!a.ok) throw new ReportedError(a.error);
  return a.body as T;
}

/** Refuses a non-root caller before anything is opened (the front ends'
 * check: the engine itself never asks who calls it). */
export function asRoot(action: string): void {
  privilege().requireRoot(action);
}

/** Runs fn with the Engine of the pin dir, closed after (also on error).
 * A write first checks the caller is root, naming `action`. */
export function withEngine<T>(
  g: GlobalOptions,
  fn: (engine: Engine) => T,
  o: { write?: string } = {},
): T {
  if (o.write !== undefined) asRoot(o.write);
  const engine = engineModule().Engine.open(g.pinDir, { write: o.write !== undefined });
  let async = false;
  try {
    const r = fn(engine);
    if (r instanceof Promise) {
      async = true;
      return r.finally(() => engine.close()) as T;
    }
    return r;
  } finally {
    if (!async) engine.close();
  }
}
