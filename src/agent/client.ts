/**
 * The CLI's side of the agent: one request over the unix socket, or
 * `undefined` when no agent (for this pin dir) answers, so the caller does
 * the work itself. Only node's http and net are loaded here: a verb the
 * agent answers never loads libbpf.
 */
import * as http from 'node:http';
import * as path from 'node:path';
import type { ErrorReport } from '../cli/output';
import { PIN_DIR_HEADER } from './api';
export { agentSocket } from './api';

/** A connect that takes longer than this means: no agent. */
export const CONNECT_TIMEOUT_MS = 200;

export type AgentAnswer = { ok: true; body: unknown } | { ok: false; error: ErrorReport };

/**
 * Sends one request. Resolves undefined when nothing listens (no socket
 * file, refused, connect timeout) or the agent serves another pin dir.
 * Once connected it waits as long as the verb takes (a drain takes its
 * seconds): a request the agent received is never redone here.
 */
export function callAgent(
  socket: string,
  pinDir: string,
  method: 'GET' | 'POST',
  url: string,
  body?: unknown,
): Promise<AgentAnswer | undefined> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    let connected = false;
    const req = http.request({
      socketPath: socket,
      method,
      path: url,
      agent: false,
      headers: {
        [PIN_DIR_HEADER]: path.resolve(pinDir),
        ...(payload !== undefined
          ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }
          : {}),
      },
    });
    // The timer runs before the loop's I/O phase: after a stall of this
    // process (a loaded host), it can fire while a connect that finished
    // long ago waits to be delivered. setImmediate runs after that phase,
    // so only a connect still pending then counts as no agent.
    const timer = setTimeout(() => {
      setImmediate(() => {
        if (!connected) req.destroy(new Error('agent connect timeout'));
      });
    }, CONNECT_TIMEOUT_MS);
    req.on('socket', (s) => s.once('connect', () => (connected = true)));
    req.on('error', (err) => {
      clearTimeout(timer);
      if (!connected) resolve(undefined);
      else reject(new Error(`the agent on ${socket} dropped the request: ${err.message}`));
    });
    req.on('response', (res) => {
      clearTimeout(timer);
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => resolve(decode(res.statusCode ?? 500, Buffer.concat(chunks))));
    });
    req.end(payload);
  });
}

function decode(status: number, raw: Buffer): AgentAnswer | undefined {
  let v: unknown;
  try {
    v = JSON.parse(raw.toString('utf8'));
  } catch {
    return {
      ok: false,
      error: { code: 'EINTERNAL', message: `agent answered ${status} without JSON` },
    };
  }
  if (status < 300) return { ok: true, body: v };
  const error = (v as { error?: ErrorReport }).error;
  if (!error || typeof error.code !== 'string')
    return { ok: false, error: { code: 'EINTERNAL', message: `agent answered ${status}` } };
  if (error.code === 'EAGENT_MISMATCH') return undefined;
  return { ok: false, error };
}
