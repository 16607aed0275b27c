/**
 * The demo's cell workload: an HTTP server on 0.0.0.0:8080 (the engine
 * rewrites that to the cell's address) plus a "private admin" service on
 * 127.0.0.1:9000 (the cell's own loopback). Two endpoints let the demo act
 * from inside the cell: /bind tries to bind an address, /local fetches
 * from 127.0.0.1.
 */
import * as http from 'node:http';
import * as net from 'node:net';

const name = process.argv[2] ?? 'cell';

function tryBind(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    s.listen(port, host, () => s.close(() => resolve('bound')));
  });
}

function fetchLocal(port: number): Promise<string> {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port, path: '/', timeout: 2000 }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body.trim()));
      })
      .on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

const admin = http.createServer((_req, res) => res.end(`${name}'s private admin page\n`));
admin.listen(9000, '127.0.0.1');

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  if (url.pathname === '/bind') {
    void tryBind(url.searchParams.get('addr') ?? '', Number(url.searchParams.get('port'))).then(
      (r) => res.end(r),
    );
  } else if (url.pathname === '/local') {
    void fetchLocal(Number(url.searchParams.get('port'))).then((r) => res.end(r));
  } else {
    res.end(`hello from ${name}\n`);
  }
});
server.listen(8080, '0.0.0.0', () => {
  const a = server.address() as net.AddressInfo;
  process.stdout.write(JSON.stringify({ ready: name, address: a.address, port: a.port }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));
