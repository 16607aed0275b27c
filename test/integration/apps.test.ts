// Issue 7 item 3: real applications (Debian packages, unmodified) run in
// v4-only, v6-only and dual-stack cells, serve through the cell's addresses
// and its private loopback, and see what they would see on a host owning
// only the cell's addresses.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSandbox,
  mapped,
  python,
  V4,
  V6,
  type BgProc,
  type Sandbox,
} from '../harness/sandbox';
import {
  curl,
  hostPart,
  NODE_SERVER,
  nginxArgv,
  nginxConfig,
  redisArgv,
  redisCli,
  tempDir,
  waitUntil,
} from '../harness/apps';

/** Debian's python3, as the package installs it. */
const PY = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : python();

interface CellSpec {
  v4: string[];
  v6: string[];
}
const CELLS: Record<string, CellSpec> = {
  c4: { v4: [V4(4), V4(5)], v6: [] },
  c4b: { v4: [V4(3)], v6: [] },
  d6: { v4: [], v6: [V6(6)] },
  ds: { v4: [V4(7), V4(8)], v6: [V6(7), V6(8)] },
};
const CLIENT4 = V4(9);
const CLIENT6 = V6(9);

describe('real applications in cells', () => {
  let sb: Sandbox;
  let tmp: { dir: string; remove: () => void };
  const procs: BgProc[] = [];
  const spawn = (cg: string, argv: string[]): BgProc => {
    const p = sb.spawnInCell(cg, argv);
    procs.push(p);
    return p;
  };
  /** curl from the host, from the given source address. */
  const curlFrom = async (src: string, addr: string, port: number) => {
    const r = await sb.onHost([
      'curl',
      '-sS',
      '-g',
      '-m',
      '3',
      '--interface',
      src,
      `http://${hostPart(addr)}:${port}/`,
    ]);
    return { ok: r.status === 0, body: r.stdout, stderr: r.stderr };
  };
  const stopAll = async () => {
    await Promise.all(procs.splice(0).map((p) => p.kill()));
  };

  beforeAll(async () => {
    sb = await createSandbox();
    tmp = tempDir('apps');
    await sb.up();
    for (const [cg, spec] of Object.entries(CELLS)) {
      sb.cg(cg);
      await sb.assign(cg, ...spec.v4, ...spec.v6);
    }
  });
  afterAll(async () => {
    await stopAll();
    await sb?.destroy();
    tmp?.remove();
  });

  describe('getaddrinfo (glibc) and getent', () => {
    // The same program, in every cell and outside them: AI_PASSIVE's RFC
    // 3484 sort connects an AF_INET6 UDP socket to :: and then to 0.0.0.0
    // and asserts a v4-mapped source (it used to abort in every cell).
    const GAI = `
import json, socket
def gai(host, flags):
    return [[a[0].name, a[4][0]] for a in socket.getaddrinfo(host, 8000, 0, socket.SOCK_STREAM, 0, flags)]
out = {
  "passive": gai(None, socket.AI_PASSIVE),
  "passive_addrconfig": gai(None, socket.AI_PASSIVE | socket.AI_ADDRCONFIG),
  "addrconfig": gai(None, socket.AI_ADDRCONFIG),
  "localhost": gai("localhost", 0),
}
s = socket.socket(getattr(socket, out["passive"][0][0]))
s.bind((out["passive"][0][1], 0))
s.listen()
print(json.dumps(out))
`;
    it('AI_PASSIVE and AI_ADDRCONFIG answer in every cell as outside them', async () => {
      const host = await sb.onHost([PY, '-c', GAI]);
      expect(host.status, host.stderr).toBe(0);
      for (const cg of Object.keys(CELLS)) {
        const r = await sb.inCell(cg, [PY, '-c', GAI]);
        expect(r.status, `${cg}: ${r.stderr}`).toBe(0);
        expect(JSON.parse(r.stdout), cg).toEqual(JSON.parse(host.stdout));
      }
    });

    it('getent ahosts sorts a dual-stack name without aborting', async () => {
      // A private /etc/hosts (mount namespace of the command only).
      const hosts = path.join(tmp.dir, 'hosts');
      fs.writeFileSync(
        hosts,
        `127.0.0.1 localhost\n::1 localhost\n${CLIENT4} dual.test\n${CLIENT6} dual.test\n`,
      );
      const argv = [
        'unshare',
        '-m',
        'sh',
        '-c',
        'mount --bind "$0" /etc/hosts && getent ahosts dual.test && getent ahosts localhost',
        hosts,
      ];
      const addrs = (out: string) => new Set(out.split('\n').map((l) => l.split(/\s+/)[0]));
      const host = await sb.onHost(argv);
      expect(host.status, host.stderr).toBe(0);
      for (const cg of Object.keys(CELLS)) {
        const r = await sb.inCell(cg, argv);
        expect(r.status, `${cg}: ${r.stderr}`).toBe(0);
        expect(addrs(r.stdout), cg).toEqual(addrs(host.stdout));
      }
    });
  });

  describe('python3 -m http.server', () => {
    afterAll(stopAll);

    it('starts in every cell and serves its v4 addresses and loopback', async () => {
      const port = 8000;
      for (const cg of Object.keys(CELLS)) {
        const srv = spawn(cg, [PY, '-m', 'http.server', String(port), '--directory', tmp.dir]);
        await waitUntil(
          `http.server in ${cg}`,
          async () => (await curl(sb, cg, '127.0.0.1', port)).ok,
          srv,
        );
      }
      for (const [cg, spec] of Object.entries(CELLS)) {
        // getaddrinfo(NULL, AI_PASSIVE) puts 0.0.0.0 first here, so python
        // binds IPv4, as it would on the host.
        for (const a of spec.v4) {
          const r = await curlFrom(CLIENT4, a, port);
          expect(r.ok, `${cg} ${a}: ${r.stderr}`).toBe(true);
          expect(r.body).toContain('Directory listing');
        }
        for (const lo of ['127.0.0.1', '::1']) {
          expect((await curl(sb, cg, lo, port)).ok, `${cg} ${lo}`).toBe(true);
        }
      }
    });

    it('--bind :: (dual-stack) serves both families in dual-stack and v6-only cells', async () => {
      const port = 8001;
      for (const cg of ['ds', 'd6']) {
        const srv = spawn(cg, [PY, '-m', 'http.server', String(port), '--bind', '::']);
        await waitUntil(
          `http.server :: in ${cg}`,
          async () => (await curl(sb, cg, '::1', port)).ok,
          srv,
        );
      }
      for (const a of CELLS.ds.v4) expect((await curlFrom(CLIENT4, a, port)).ok, a).toBe(true);
      for (const a of [...CELLS.ds.v6, ...CELLS.d6.v6]) {
        expect((await curlFrom(CLIENT6, a, port)).ok, a).toBe(true);
      }
      expect((await curl(sb, 'd6', '127.0.0.1', port)).ok).toBe(true);
    });
  });

  describe('nginx, stock `listen 80; listen [::]:80;`', () => {
    const port = 80;
    beforeAll(async () => {
      for (const cg of Object.keys(CELLS)) {
        const dir = path.join(tmp.dir, `nginx-${cg}`);
        fs.mkdirSync(dir, { mode: 0o755 });
        const srv = spawn(cg, nginxArgv(dir, nginxConfig(dir, port, cg)));
        await waitUntil(
          `nginx in ${cg}`,
          async () => (await curl(sb, cg, '127.0.0.1', port)).ok,
          srv,
        );
      }
    });
    afterAll(stopAll);

    it('starts in v4-only (two of them), v6-only and dual-stack cells', async () => {
      for (const cg of Object.keys(CELLS)) {
        const r = await curl(sb, cg, '127.0.0.1', port);
        expect(r.body).toBe(`${cg} server=127.0.0.1 remote=127.0.0.1\n`);
      }
    });

    it('serves every address of each cell, seeing the real local and peer address', async () => {
      for (const [cg, spec] of Object.entries(CELLS)) {
        for (const [addrs, client] of [
          [spec.v4, CLIENT4],
          [spec.v6, CLIENT6],
        ] as const) {
          for (const a of addrs) {
            const r = await curlFrom(client, a, port);
            expect(r.ok, `${cg} ${a}: ${r.stderr}`).toBe(true);
            expect(r.body).toBe(`${cg} server=${a} remote=${client}\n`);
          }
        }
      }
    });

    it("[::1] inside the cell reaches the cell's own nginx", async () => {
      // ::1 travels as the cell's v4 loopback alias, so nginx's IPv4 socket
      // answers and sees 127.0.0.1 (a host would show ::1 here).
      for (const cg of Object.keys(CELLS)) {
        const r = await curl(sb, cg, '::1', port);
        expect(r.body, cg).toBe(`${cg} server=127.0.0.1 remote=127.0.0.1\n`);
      }
    });
  });

  describe('redis-server (bind `* -::*`) and redis-cli', () => {
    const port = 6379;
    beforeAll(async () => {
      for (const cg of ['c4', 'd6', 'ds']) {
        const dir = path.join(tmp.dir, `redis-${cg}`);
        fs.mkdirSync(dir);
        const srv = spawn(cg, redisArgv(dir, port, true));
        await waitUntil(
          `redis in ${cg}`,
          async () => (await redisCli(sb, cg, '127.0.0.1', port, 'ping')).stdout.trim() === 'PONG',
          srv,
        );
      }
    });
    afterAll(stopAll);

    it('answers on loopback inside the cell, and sees the client as local', async () => {
      for (const cg of ['c4', 'd6', 'ds']) {
        for (const lo of ['127.0.0.1', '::1']) {
          const r = await redisCli(sb, cg, lo, port, 'ping');
          expect(r.stdout.trim(), `${cg} ${lo}: ${r.stderr}`).toBe('PONG');
        }
        const info = await redisCli(sb, cg, '127.0.0.1', port, 'client', 'info');
        expect(info.stdout).toMatch(/ addr=127\.0\.0\.1:\d+ laddr=127\.0\.0\.1:6379 /);
      }
    });

    it('protected mode sees a client on a cell address as remote, as on a host', async () => {
      for (const [cg, client, addr] of [
        ['c4', CLIENT4, V4(5)],
        ['d6', CLIENT6, V6(6)],
        ['ds', CLIENT4, V4(8)],
        ['ds', CLIENT6, V6(7)],
      ]) {
        const denied = await sb.onHost(['redis-cli', '-h', addr, '-p', String(port), 'ping'], {
          timeoutMs: 5000,
        });
        expect(denied.stdout + denied.stderr, `${cg} ${addr} from ${client}`).toMatch(/DENIED/);
      }
    });

    it('serves every cell address once protected mode is off', async () => {
      for (const cg of ['c4', 'd6', 'ds']) {
        const r = await redisCli(
          sb,
          cg,
          '127.0.0.1',
          port,
          'config',
          'set',
          'protected-mode',
          'no',
        );
        expect(r.stdout.trim()).toBe('OK');
      }
      for (const cg of ['c4', 'd6', 'ds']) {
        for (const a of [...CELLS[cg].v4, ...CELLS[cg].v6]) {
          const r = await redisCli(sb, null, a, port, 'ping');
          expect(r.stdout.trim(), `${cg} ${a}: ${r.stderr}`).toBe('PONG');
        }
      }
    });
  });

  describe('node http.createServer().listen(port) (dual-stack ::)', () => {
    const port = 3000;
    const servers: Record<string, BgProc> = {};
    beforeAll(async () => {
      for (const cg of ['c4', 'd6', 'ds']) {
        servers[cg] = spawn(cg, [process.execPath, '-e', NODE_SERVER, String(port)]);
        await servers[cg].ready();
      }
    });
    afterAll(stopAll);

    const ask = async (src: string, addr: string) => {
      const r = await curlFrom(src, addr, port);
      expect(r.ok, `${addr}: ${r.stderr}`).toBe(true);
      return JSON.parse(r.body) as { remote: string; local: string };
    };

    it('a dual-stack cell serves IPv4 and IPv6 on every address, v4 as v4-mapped', async () => {
      for (const a of CELLS.ds.v4) {
        expect(await ask(CLIENT4, a)).toEqual({ remote: mapped(CLIENT4), local: mapped(a) });
      }
      for (const a of CELLS.ds.v6) {
        expect(await ask(CLIENT6, a)).toEqual({ remote: CLIENT6, local: a });
      }
    });

    it('v4-only and v6-only cells serve their family', async () => {
      for (const a of CELLS.c4.v4) {
        expect(await ask(CLIENT4, a)).toEqual({ remote: mapped(CLIENT4), local: mapped(a) });
      }
      expect(await ask(CLIENT6, V6(6))).toEqual({ remote: CLIENT6, local: V6(6) });
    });

    it('loopback inside each cell: 127.0.0.1 as ::ffff:127.0.0.1, as on a host', async () => {
      for (const cg of ['c4', 'd6', 'ds']) {
        const r = await curl(sb, cg, '127.0.0.1', port);
        expect(JSON.parse(r.body), cg).toEqual({
          remote: mapped('127.0.0.1'),
          local: mapped('127.0.0.1'),
        });
      }
    });
  });
});
