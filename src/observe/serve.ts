/**
 * `serve`: the metrics over HTTP for a Prometheus scraper.
 *   GET /metrics  the exposition, counters read at scrape time
 *   GET /healthz  200 "ok" when the engine's pinned maps open, else 503
 * Anything else is 404 (405 for another method on a known path).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { L3isoError } from '../errors';
import { MetricsExporter, engineSnapshots } from './metrics';
import { EngineState } from '../dataplane/state';

export { DEFAULT_LISTEN } from '../model/defaults';

export interface ListenAddress {
  host: string;
  port: number;
}

/** "127.0.0.1:9469", "[::1]:9469", "localhost:0", ":9469" (all addresses). */
export function parseListen(text: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new L3isoError(
      'EUSAGE',
      `--listen wants ADDR:PORT (e.g. 127.0.0.1:9469 or [::1]:9469), not "${text}"`,
    );
  }
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '::' : host, port };
}

export interface MetricsServer {
  readonly address: ListenAddress;
  close(): Promise<void>;
}

export interface ServeOptions {
  pinDir: string;
  listen: ListenAddress;
  log: Logger;
}

function health(pinDir: string): { ok: boolean; detail: string } {
  try {
    const state = EngineState.open(pinDir);
    try {
      state.config();
    } finally {
      state.close();
    }
    return { ok: true, detail: 'ok' };
  } catch (err) {
    return { ok: false, detail: err instanceof Error ? err.message : String(err) };
  }
}

function send(
  res: http.ServerResponse,
  status: number,
  body: string,
  type = 'text/plain; charset=utf-8',
  head = false,
): void {
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(head ? undefined : body);
}

export function startMetricsServer(o: ServeOptions): Promise<MetricsServer> {
  const handle = handler(o, new MetricsExporter(engineSnapshots(o.pinDir)));
  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      o.log.error({ err: String(err) }, 'request failed');
      if (!res.headersSent) send(res, 500, 'internal error\n');
      else res.destroy();
    });
  });
  // Keep-alive scrapers must not hold the process open at shutdown.
  server.keepAliveTimeout = 5000;
  return listen(server, o);
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>;

/** GET or HEAD of /metrics (a scrape) and /healthz; everything else refused. */
function handler(o: ServeOptions, exporter: MetricsExporter): Handler {
  return async (req, res) => {
    const started = process.hrtime.bigint();
    const path = (req.url ?? '/').split('?')[0];
    const head = req.method === 'HEAD';
    const known = path === '/metrics' || path === '/healthz';
    if (!known) return send(res, 404, 'not found: try /metrics or /healthz\n');
    if (req.method !== 'GET' && !head) {
      res.setHeader('Allow', 'GET, HEAD');
      return send(res, 405, 'method not allowed\n');
    }
    if (path === '/healthz') {
      const h = health(o.pinDir);
      return send(res, h.ok ? 200 : 503, h.ok ? 'ok' : `${h.detail}\n`, undefined, head);
    }
    try {
      const body = await exporter.scrape();
      send(res, 200, body, exporter.contentType, head);
      o.log.debug(
        { path, bytes: body.length, ms: Number(process.hrtime.bigint() - started) / 1e6 },
        'scrape',
      );
    } catch (err) {
      const notUp = err instanceof L3isoError && err.code === 'ENOT_UP';
      const msg = err instanceof Error ? err.message : String(err);
      o.log.warn({ err: msg }, 'scrape failed');
      send(res, notUp ? 503 : 500, `${msg}\n`, undefined, head);
    }
  };
}

/** Listens on o.listen; a port that cannot be had is a usage error naming it. */
function listen(server: http.Server, o: ServeOptions): Promise<MetricsServer> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(
        new L3isoError(
          'EUSAGE',
          `cannot listen on ${o.listen.host}:${o.listen.port}: ${err.code ?? err.message}`,
          err.code === 'EADDRINUSE'
            ? 'another process has that port; pick another with --listen'
            : undefined,
        ),
      );
    };
    server.once('error', onError);
    server.listen(o.listen.port, o.listen.host, () => {
      server.off('error', onError);
      server.on('error', (err) => o.log.error({ err: String(err) }, 'server error'));
      const a = server.address() as AddressInfo;
      resolve({
        address: { host: a.address, port: a.port },
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
