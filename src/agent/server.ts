/**
 * `l3iso agent`: one long-running process answering HTTP + JSON on a unix
 * socket (mode 0600: only root talks to it). It holds no state of its own:
 * the pinned maps are the state, so killing it loses nothing, and a new
 * agent picks up where the last one stopped.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { L3isoError } from '../errors';
import type { MetricsExporter } from '../observe/metrics';
import { metricsModule } from '../lazy';
import { PIN_DIR_HEADER } from './api';
import { errorReply, route, type Reply, type RouteContext } from './routes';
import { HeldEngine } from '../engine/held';
import { DockerWatcher } from './docker-watch';
import { CellWatcher, type WatchLog } from './watch';
import { localPools, type PoolBackend } from './pools';

export interface AgentOptions {
  pinDir: string;
  socket: string;
  log: WatchLog;
  /** periodic gc + re-list of the cells, ms */
  resyncMs?: number;
  /** a listening socket handed over by systemd (socket activation) */
  listenFd?: number;
  /** pool requests: default this host's record (no etcd) */
  pools?: PoolBackend;
  /** follow `docker events` and clean up after containers that end */
  watchDocker?: boolean;
}

/**
 * The fd of a socket systemd passed (LISTEN_FDS, for this very process), or
 * undefined. sd_listen_fds(3): the first passed fd is 3.
 */
export function activationFd(env: NodeJS.ProcessEnv = process.env): number | undefined {
  if (env.LISTEN_PID !== String(process.pid)) return undefined;
  const n = Number(env.LISTEN_FDS);
  return Number.isInteger(n) && n >= 1 ? 3 : undefined;
}

export interface Agent {
  readonly socket: string;
  close(): Promise<void>;
}

const MAX_BODY = 1 << 20;

/** Resolves true when something accepts a connection on `socket`. */
export function socketAnswers(socket: string, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(socket);
    const done = (v: boolean) => {
      c.destroy();
      resolve(v);
    };
    c.setTimeout(timeoutMs, () => done(false));
    c.on('connect', () => done(true));
    c.on('error', () => done(false));
  });
}

/**
 * Refuses when another agent answers; removes a socket file nobody listens
 * on (a killed agent's). Anything else at the path is not ours to remove.
 */
async function claimSocket(socket: string): Promise<void> {
  fs.mkdirSync(path.dirname(socket), { recursive: true, mode: 0o700 });
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socket);
  } catch {
    return;
  }
  if (!st.isSocket())
    throw new L3isoError('EUSAGE', `${socket} exists and is not a socket; not removing it`);
  if (await socketAnswers(socket))
    throw new L3isoError(
      'EAGENT_RUNNING',
      `another agent answers on ${socket}`,
      'stop it first, or give this one another --socket',
    );
  fs.unlinkSync(socket);
}

function readBody(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new L3isoError('EUSAGE', 'request body over 1 MiB'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('error', reject);
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return resolve({});
      let v: unknown;
      try {
        v = JSON.parse(text);
      } catch {
        return reject(new L3isoError('EUSAGE', 'request body is not JSON'));
      }
      if (typeof v !== 'object' || v === null || Array.isArray(v))
        return reject(new L3isoError('EUSAGE', 'request body must be a JSON object'));
      resolve(v as Record<string, unknown>);
    });
  });
}

function send(res: http.ServerResponse, r: Reply): void {
  const text = typeof r.body === 'string' ? r.body : JSON.stringify(r.body) + '\n';
  res.writeHead(r.status, {
    'content-type': r.contentType ?? 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function metricsOf(pinDir: string): RouteContext['metrics'] {
  // prom-client is loaded on the first scrape only.
  let exporter: MetricsExporter | undefined;
  return async () => {
    if (!exporter) {
      const m = metricsModule();
      exporter = new m.MetricsExporter(m.engineSnapshots(pinDir));
    }
    const e = exporter;
    return { text: await e.scrape(), contentType: e.contentType };
  };
}

export async function startAgent(o: AgentOptions): Promise<Agent> {
  if (o.listenFd === undefined) await claimSocket(o.socket);
  const requests: Record<string, number> = {};
  const engine = new HeldEngine(o.pinDir);
  const watcher = new CellWatcher({ engine, log: o.log, resyncMs: o.resyncMs ?? 30_000 });
  const docker = o.watchDocker ? new DockerWatcher({ pinDir: o.pinDir, log: o.log }) : undefined;
  const ctx: RouteContext = {
    pinDir: o.pinDir,
    engine: () => engine.get(),
    onAssigned: (id, p) => watcher.add(id, p),
    health: () => ({
      pid: process.pid,
      requests: { ...requests },
      watched: watcher.watched,
      releasedByWatch: watcher.released,
      ...(docker
        ? { docker: { running: docker.running, events: docker.events, released: docker.released } }
        : {}),
    }),
    metrics: metricsOf(o.pinDir),
    pools: o.pools ?? localPools(() => engine.get()),
  };
  const server = http.createServer((req, res) => {
    const key = `${req.method} ${(req.url ?? '/').split('?')[0]}`;
    requests[key] = (requests[key] ?? 0) + 1;
    void handle(ctx, req).then((r) => send(res, r));
  });
  server.keepAliveTimeout = 5000;
  await listen(server, o);
  watcher.start();
  docker?.start();
  o.log.info({ socket: o.socket, pinDir: o.pinDir, watched: watcher.watched }, 'agent listening');
  return {
    socket: o.socket,
    close: () =>
      new Promise<void>((resolve) => {
        watcher.stop();
        docker?.stop();
        server.close(() => {
          void ctx.pools.close().then(
            () => engine.close(),
            () => engine.close(),
          );
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}

function listen(server: http.Server, o: AgentOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (o.listenFd !== undefined) {
      server.listen({ fd: o.listenFd }, () => resolve());
      return;
    }
    // umask keeps the socket 0600 from its first instant (no chmod race).
    const old = process.umask(0o177);
    try {
      server.listen(o.socket, () => {
        fs.chmodSync(o.socket, 0o600);
        resolve();
      });
    } finally {
      process.umask(old);
    }
  });
}

async function handle(ctx: RouteContext, req: http.IncomingMessage): Promise<Reply> {
  try {
    const want = req.headers[PIN_DIR_HEADER];
    if (typeof want === 'string' && path.resolve(want) !== path.resolve(ctx.pinDir))
      throw new L3isoError(
        'EAGENT_MISMATCH',
        `this agent serves ${ctx.pinDir}, not ${want}`,
        'start an agent for that pin dir, or talk to the engine directly (--no-agent)',
      );
    const body = req.method === 'POST' ? await readBody(req) : {};
    return await route(ctx, req.method ?? 'GET', req.url ?? '/', body);
  } catch (err) {
    return errorReply(err);
  }
}
