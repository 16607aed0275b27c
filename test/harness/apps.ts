/**
 * Real applications (Debian packages, unmodified) for the integration
 * tests: each gets its own config and data in a temp dir, and runs inside a
 * cell of a sandbox, never as a host service.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { BgProc, RunResult, Sandbox } from './sandbox';

/** A temp dir removed by the returned cleanup (call it from afterAll). */
export function tempDir(tag: string): { dir: string; remove: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `l3t-${tag}-`));
  // nginx workers drop to www-data and must read what the master wrote.
  fs.chmodSync(dir, 0o755);
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** `[addr]` for IPv6 literals in URLs and host:port strings. */
export const hostPart = (addr: string): string => (addr.includes(':') ? `[${addr}]` : addr);

export interface HttpAnswer {
  ok: boolean;
  code: string;
  body: string;
  stderr: string;
}

/** curl (a real client) from cell cg, or from the host (null). */
export async function curl(
  sb: Sandbox,
  cg: string | null,
  addr: string,
  port: number,
): Promise<HttpAnswer> {
  const argv = ['curl', '-sS', '-g', '-m', '3', `http://${hostPart(addr)}:${port}/`];
  const r: RunResult = cg === null ? await sb.onHost(argv) : await sb.inCell(cg, argv);
  return { ok: r.status === 0, code: String(r.status), body: r.stdout, stderr: r.stderr };
}

/** Poll until probe() succeeds: a server's readiness, not a timing check. */
export async function waitUntil(
  what: string,
  probe: () => Promise<boolean>,
  proc?: BgProc,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return;
    if (proc && proc.child.exitCode !== null) {
      throw new Error(`${what}: the server exited: ${proc.stdout} ${proc.stderr}`);
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: not ready: ${proc?.stdout ?? ''} ${proc?.stderr ?? ''}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Debian's stock server block style (`listen 80; listen [::]:80;`, which
 * nginx opens with IPV6_V6ONLY), answering with the addresses nginx sees
 * on the accepted connection (getsockname / getpeername).
 */
export function nginxConfig(dir: string, port: number, name: string): string {
  const conf = path.join(dir, 'nginx.conf');
  const temp = ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((t) => `  ${t === 'body' ? 'client_body' : t}_temp_path ${path.join(dir, t)};`)
    .join('\n');
  fs.writeFileSync(
    conf,
    `worker_processes 1;
pid ${path.join(dir, 'nginx.pid')};
error_log stderr;
events { worker_connections 64; }
http {
  access_log off;
${temp}
  server {
    listen ${port} default_server;
    listen [::]:${port} default_server;
    location / { return 200 "${name} server=$server_addr remote=$remote_addr\\n"; }
  }
}
`,
  );
  return conf;
}

export function nginxArgv(dir: string, conf: string): string[] {
  return ['nginx', '-p', dir, '-e', 'stderr', '-c', conf, '-g', 'daemon off;'];
}

/** redis-server with its default bind (`* -::*`), data in dir. */
export function redisArgv(dir: string, port: number, protectedMode: boolean): string[] {
  return [
    'redis-server',
    '--port',
    String(port),
    '--bind',
    '*',
    '-::*',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    'no',
    '--daemonize',
    'no',
    '--protected-mode',
    protectedMode ? 'yes' : 'no',
  ];
}

export async function redisCli(
  sb: Sandbox,
  cg: string | null,
  addr: string,
  port: number,
  ...cmd: string[]
): Promise<RunResult> {
  const argv = ['redis-cli', '-h', addr, '-p', String(port), ...cmd];
  return cg === null ? sb.onHost(argv, { timeoutMs: 5000 }) : sb.inCell(cg, argv);
}

/** node's http server on the default host (a dual-stack `::` socket),
 * printing what each request's socket reports. */
export const NODE_SERVER = `
const http = require('node:http');
const port = Number(process.argv[1]);
const server = http.createServer((req, res) => {
  const s = req.socket;
  res.end(JSON.stringify({ remote: s.remoteAddress, local: s.localAddress }));
});
server.listen(port, () => console.log(JSON.stringify({ ready: true, ...server.address() })));
`;
