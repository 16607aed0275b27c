/**
 * The etcd client of fleet mode (npm etcd3, loaded only with `agent --etcd`:
 * this module is reached through src/lazy.ts alone). Every call has a
 * deadline, and whatever goes wrong on the way to etcd is one error,
 * EFLEET_UNAVAILABLE, naming the endpoints and what was being done.
 */
import { Etcd3 } from 'etcd3';
import { L3isoError } from '../errors';

export interface EtcdOptions {
  /** http://host:port, https://..., or unix:///path (grpc's unix target) */
  endpoints: string[];
  /** per call */
  timeoutMs: number;
}

export function parseEndpoints(text: string): string[] {
  const list = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (list.length === 0) throw new L3isoError('EUSAGE', '--etcd needs at least one URL');
  for (const u of list)
    if (!/^(https?:\/\/[^/\s]+\/?|unix:\/\/\/\S+)$/.test(u))
      throw new L3isoError(
        'EUSAGE',
        `--etcd: ${JSON.stringify(u)} is not http://HOST:PORT, https://HOST:PORT or unix:///PATH`,
      );
  return list;
}

export function connectEtcd(o: EtcdOptions): Etcd3 {
  return new Etcd3({
    hosts: o.endpoints,
    dialTimeout: o.timeoutMs,
    // Streams (lease keepalives) live on; unary calls end at their deadline.
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + o.timeoutMs }),
  });
}

/** `p`, or EFLEET_UNAVAILABLE when it fails or outlives the deadline. */
export async function withDeadline<T>(
  o: EtcdOptions,
  what: string,
  p: Promise<T>,
  timeoutMs = o.timeoutMs,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new L3isoError(
            'EFLEET_UNAVAILABLE',
            `etcd (${o.endpoints.join(',')}) did not answer within ${timeoutMs} ms: cannot ${what}`,
          ),
        ),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([p, late]);
  } catch (err) {
    if (err instanceof L3isoError) throw err;
    const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new L3isoError(
      'EFLEET_UNAVAILABLE',
      `etcd (${o.endpoints.join(',')}) is unavailable: cannot ${what} (${why})`,
      undefined,
      { cause: err },
    );
  } finally {
    clearTimeout(timer);
  }
}
