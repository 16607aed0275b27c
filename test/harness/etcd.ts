/**
 * A real etcd (Debian's etcd-server) for the fleet tests: client and peer
 * ports are random free ports on 127.0.0.1, the data dir is a temporary
 * directory, and destroy() removes both the process and the dir. It also
 * serves clients on a unix socket in that dir: agents run inside their
 * sandbox's network namespace, where the root namespace's 127.0.0.1 does not
 * exist, and a unix socket is reached by path from any namespace (no traffic
 * leaves loopback or the test's namespaces).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export interface TestEtcd {
  /** http://127.0.0.1:PORT */
  url: string;
  /** unix:///DIR/etcd.sock:0 (etcd's spelling of a unix listener) */
  unixUrl: string;
  dir: string;
  /** stops the server, keeping its data (a restart finds it again) */
  stop(): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
  log(): string;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.setTimeout(300, () => (c.destroy(), resolve(false)));
    c.on('connect', () => (c.destroy(), resolve(true)));
    c.on('error', () => resolve(false));
  });
}

export async function startEtcd(): Promise<TestEtcd> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l3iso-etcd-'));
  const [client, peer] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${client}`;
  // etcd names a unix listener host:port and creates the socket file
  // "host:port" relative to its working directory: run it in `dir`.
  const unixName = 'etcd.sock:0';
  const args = [
    '--name',
    'l3iso-test',
    '--data-dir',
    path.join(dir, 'data'),
    '--listen-client-urls',
    `${url},unix://${unixName}`,
    '--advertise-client-urls',
    url,
    '--listen-peer-urls',
    `http://127.0.0.1:${peer}`,
    '--initial-advertise-peer-urls',
    `http://127.0.0.1:${peer}`,
    '--initial-cluster',
    `l3iso-test=http://127.0.0.1:${peer}`,
    '--log-outputs',
    'stderr',
  ];
  let child: ChildProcess | undefined;
  let logText = '';
  const e: TestEtcd = {
    url,
    unixUrl: `unix://${path.join(dir, unixName)}`,
    dir,
    log: () => logText,
    async start() {
      const c = spawn('etcd', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
      child = c;
      c.stdout!.on('data', (d: Buffer) => (logText += d.toString()));
      c.stderr!.on('data', (d: Buffer) => (logText += d.toString()));
      const deadline = Date.now() + 20_000;
      while (!(await answers(client)) || !fs.existsSync(path.join(dir, unixName))) {
        if (c.exitCode !== null) throw new Error(`etcd exited: ${logText.slice(-2000)}`);
        if (Date.now() > deadline) throw new Error(`etcd did not start: ${logText.slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop() {
      const c = child;
      child = undefined;
      if (!c || c.exitCode !== null) return;
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await gone;
      fs.rmSync(path.join(dir, unixName), { force: true });
    },
    async destroy() {
      await e.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await e.start();
  } catch (err) {
    await e.destroy();
    throw err;
  }
  return e;
}
