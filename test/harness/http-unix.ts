/**
 * A client for the agent's HTTP + JSON API on its unix socket, as the
 * tests talk to it: one request, the whole answer.
 */
import * as http from 'node:http';

export interface UnixAnswer {
  status: number;
  /** the body parsed as JSON; undefined when it is not JSON */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
  text: string;
}

/** One request with a raw body (a malformed one included) and the headers given. */
export function request(
  socket: string,
  method: string,
  url: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<UnixAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, method, path: url, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => {
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, json, text });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** One request whose body, if any, is value as JSON. */
export function call(
  socket: string,
  method: string,
  url: string,
  value?: unknown,
): Promise<UnixAnswer> {
  if (value === undefined) return request(socket, method, url);
  return request(socket, method, url, JSON.stringify(value), {
    'content-type': 'application/json',
  });
}

export const post = (socket: string, url: string, value: unknown): Promise<UnixAnswer> =>
  call(socket, 'POST', url, value);

/** The agent's /healthz document. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function health(socket: string): Promise<any> {
  const r = await request(socket, 'GET', '/healthz');
  if (r.status !== 200 || r.json === undefined)
    throw new Error(`GET /healthz: ${r.status} ${r.text}`);
  return r.json;
}

/** Requests the agent has answered, by route ("POST /v1/assign": n). */
export async function answered(socket: string): Promise<Record<string, number>> {
  return (await health(socket)).requests as Record<string, number>;
}
