// Issue 7 item 4: operations a real service survives. release of an address
// with live sockets refuses without --force, naming the processes; with
// --force a real nginx and redis-server (Debian's) do not spin: their
// listeners stay open but unreachable (connections are refused), where a
// destroyed listener made nginx loop on accept4() = EINVAL. --drain refuses
// new connections at once, lets established ones finish, and resets what is
// left at the deadline.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { L3_OWNER_DRAINING } from '../../src/codecs/layout';
import { parseAddress } from '../../src/model/address';
import { EngineState } from '../../src/dataplane/state';
import { createSandbox, V4, type BgProc, type Sandbox } from '../harness/sandbox';

/** How many times `pid` enters each of `syscalls` in `seconds` (strace -c). */
function syscallCounts(pid: number, syscalls: string[], seconds: number): Map<string, number> {
  const out = `/tmp/l3iso-spin-${process.pid}-${pid}.txt`;
  spawnSync('timeout', [
    '-s',
    'INT',
    String(seconds),
    'strace',
    '-f',
    '-qq',
    '-o',
    out,
    '-e',
    `trace=${syscalls.join(',')}`,
    '-p',
    String(pid),
  ]);
  const counts = new Map<string, number>();
  const text = readFileSync(out, 'utf8');
  rmSync(out, { force: true });
  for (const line of text.split('\n')) {
    const m = /^\d+\s+(\w+)\(/.exec(line);
    if (m) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
  }
  return counts;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** pid of the process (a child of the cell's sh wrapper) whose comm is `comm`. */
async function pidOf(sb: Sandbox, cell: string, comm: string): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const show = await sb.show(cell);
    for (const pid of show.processes as number[]) {
      try {
        if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm) return pid;
      } catch {
        /* gone */
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no ${comm} in cell ${cell}`);
}

async function curl(sb: Sandbox, url: string): Promise<{ ok: boolean; out: string }> {
  const r = await sb.onHost(['curl', '-s', '-S', '--max-time', '5', url]);
  return { ok: r.status === 0, out: r.stdout + r.stderr };
}

describe('operations a real service survives', () => {
  let sb: Sandbox;
  let dir: string;
  const procs: BgProc[] = [];
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    dir = mkdtempSync('/tmp/l3iso-ops-');
  });
  afterAll(async () => {
    for (const p of procs) await p.kill();
    await sb?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('nginx: release refuses naming it; --force leaves it serving nothing and not spinning', async () => {
    sb.cg('web');
    await sb.assign('web', V4(2));
    const conf = path.join(dir, 'nginx.conf');
    writeFileSync(
      conf,
      `daemon off; master_process off; worker_processes 1; pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log info;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  server { listen ${V4(2)}:8080; location / { return 200 "nginx-ok\\n"; } }
}
`,
    );
    const nginx = sb.spawnInCell('web', [
      'nginx',
      '-p',
      dir,
      '-e',
      `${dir}/nginx-error.log`,
      '-c',
      conf,
    ]);
    procs.push(nginx);
    const pid = await pidOf(sb, 'web', 'nginx');
    let served = { ok: false, out: '' };
    for (let i = 0; i < 50 && !served.ok; i++) {
      served = await curl(sb, `http://${V4(2)}:8080/`);
      if (!served.ok) await new Promise((r) => setTimeout(r, 100));
    }
    expect(served.out).toContain('nginx-ok');

    const refused = await sb.cli(['release', 'web', V4(2)]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(
      new RegExp(`tcp-listen ${V4(2).replace(/\./g, '\\.')}:8080 held by pid ${pid} \\(nginx\\)`),
    );

    await sb.cliOk(['release', 'web', V4(2), '--force']);
    const after = await curl(sb, `http://${V4(2)}:8080/`);
    expect(after.ok).toBe(false);
    expect(after.out).toMatch(/refused|Couldn't connect/i);
    const counts = syscallCounts(pid, ['accept4', 'accept'], 2);
    expect(counts.get('accept4') ?? 0).toBe(0);
    expect(counts.get('accept') ?? 0).toBe(0);
    expect(alive(pid)).toBe(true);
    const log = readFileSync(`${dir}/nginx-error.log`, 'utf8');
    expect(log).not.toMatch(/accept4\(\) failed/);
  });

  it('redis-server: a client is reset, the server keeps running without spinning', async () => {
    sb.cg('kv');
    await sb.assign('kv', V4(3));
    const redis = sb.spawnInCell('kv', [
      'redis-server',
      '--port',
      '6390',
      '--bind',
      V4(3),
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--protected-mode',
      'no',
      '--dir',
      dir,
    ]);
    procs.push(redis);
    const pid = await pidOf(sb, 'kv', 'redis-server');
    let pong = '';
    for (let i = 0; i < 50 && pong !== 'PONG'; i++) {
      pong = (await sb.onHost(['redis-cli', '-h', V4(3), '-p', '6390', 'ping'])).stdout.trim();
      if (pong !== 'PONG') await new Promise((r) => setTimeout(r, 100));
    }
    expect(pong).toBe('PONG');
    const sub = sb.spawnOnHost(['redis-cli', '-h', V4(3), '-p', '6390', 'subscribe', 'ch']);
    procs.push(sub);
    for (let i = 0; i < 50 && !sub.stdout.includes('subscribe'); i++)
      await new Promise((r) => setTimeout(r, 100));

    const refused = await sb.cli(['release', 'kv', '--json']);
    expect(refused.json?.error?.code, refused.stdout).toBe('ESOCKETS_LIVE');
    expect(refused.json.error.message).toContain(`pid ${pid} (redis-server)`);

    const rel = await sb.cliOk(['release', 'kv', '--force', '--json']);
    expect(rel.json.socketsDestroyed).toBeGreaterThanOrEqual(1);
    const end = await Promise.race([
      sub.exited,
      new Promise((r) => setTimeout(() => r('still running'), 5000)),
    ]);
    expect(end).not.toBe('still running'); // its connection was reset
    const counts = syscallCounts(pid, ['accept', 'accept4'], 2);
    expect((counts.get('accept') ?? 0) + (counts.get('accept4') ?? 0)).toBe(0);
    expect(alive(pid)).toBe(true);
    const ping = await sb.onHost(['redis-cli', '-h', V4(3), '-p', '6390', 'ping']);
    expect(ping.stdout.trim()).not.toBe('PONG');
  });

  const draining = (addr: string): boolean => {
    const state = EngineState.open(sb.pinDir);
    try {
      return ((state.owner(parseAddress(addr))?.flags ?? 0) & L3_OWNER_DRAINING) !== 0;
    } finally {
      state.close();
    }
  };

  it('release --drain: new connections refused at once, established ones finish', async () => {
    sb.cg('d');
    await sb.assign('d', V4(4), V4(5));
    const server = sb.spawnProbe('d', [
      { op: 'socket', id: 'l', fam: 4 },
      { op: 'bind', id: 'l', addr: V4(4), port: 8400 },
      { op: 'listen', id: 'l' },
      { op: 'accept', id: 'l', as: 'c', timeout: 30 },
      { op: 'recv', id: 'c', timeout: 30 },
      { op: 'send', id: 'c', data: 'pong' },
      { op: 'close', id: 'c' },
      { op: 'wait_stdin' },
    ]);
    procs.push(server);
    await server.waitFor((l) => l.op === 'listen');
    const client = sb.spawnProbe(null, [
      { op: 'socket', fam: 4 },
      { op: 'bind', addr: V4(9), port: 0 },
      { op: 'connect', addr: V4(4), port: 8400 },
      { op: 'wait_stdin' },
      { op: 'send', data: 'ping' },
      { op: 'shutdown' },
      { op: 'recv', timeout: 10 },
    ]);
    procs.push(client);
    await client.waitFor((l) => l.op === 'connect');
    await server.waitFor((l) => l.op === 'accept');

    const drain = sb.cli(['release', 'd', V4(4), '--drain', '60', '--json'], { timeoutMs: 90_000 });
    for (let i = 0; i < 100 && !draining(V4(4)); i++) await new Promise((r) => setTimeout(r, 50));
    expect(draining(V4(4))).toBe(true);
    const fresh = await sb.probe(null, [{ op: 'fetch', addr: V4(4), port: 8400, timeout: 5 }], {
      keepGoing: true,
    });
    expect(fresh.last).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
    // the established connection still works, then ends: the drain finishes early
    client.child.stdin!.end();
    const got = await client.waitFor((l) => l.op === 'recv', 10_000);
    expect(got).toMatchObject({ ok: true, data: 'pong' });
    const r = await drain;
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.released).toEqual([V4(4)]);
    expect((await sb.show('d')).addresses).toEqual([V4(5)]);
    expect((await sb.cli(['gc', '--check'])).status).toBe(0);
  });

  it('release --drain: what is left at the deadline is reset', async () => {
    const server = sb.spawnProbe('d', [
      { op: 'socket', id: 'l', fam: 4 },
      { op: 'bind', id: 'l', addr: V4(5), port: 8401 },
      { op: 'listen', id: 'l' },
      { op: 'accept', id: 'l', as: 'c', timeout: 30 },
      { op: 'recv', id: 'c', timeout: 30 },
    ]);
    procs.push(server);
    await server.waitFor((l) => l.op === 'listen');
    const client = sb.spawnProbe(null, [
      { op: 'socket', fam: 4 },
      // bound to a host address: the revocation takes the cell's side only
      { op: 'bind', addr: V4(9), port: 0 },
      { op: 'connect', addr: V4(5), port: 8401 },
      { op: 'recv', timeout: 30 },
    ]);
    procs.push(client);
    await server.waitFor((l) => l.op === 'accept');
    const r = await sb.cliOk(['release', 'd', V4(5), '--drain', '1', '--json'], {
      timeoutMs: 60_000,
    });
    expect(r.json.socketsDestroyed).toBeGreaterThanOrEqual(1);
    const end = await server.waitFor((l) => l.op === 'recv', 5000);
    expect(end, JSON.stringify(end)).toMatchObject({ ok: false, errno: 'ECONNABORTED' });
  });

  it('a kept listener does not catch the connections of the next owner of its address', async () => {
    sb.cg('old');
    sb.cg('new');
    await sb.assign('old', V4(6));
    const kept = sb.spawnProbe('old', [
      { op: 'socket', fam: 4 },
      { op: 'bind', addr: V4(6), port: 8600 },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'old' },
    ]);
    procs.push(kept);
    await kept.ready();
    await sb.cliOk(['release', 'old', V4(6), '--force']);
    await sb.assign('new', V4(7), V4(6));
    const fresh = sb.spawnProbe('new', [
      { op: 'socket', fam: 4 },
      { op: 'bind', addr: '0.0.0.0', port: 8600 },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'new' },
    ]);
    procs.push(fresh);
    expect(await fresh.ready()).toMatchObject({ addr: V4(7) });
    const r = await sb.probe(null, [{ op: 'fetch', addr: V4(6), port: 8600 }], { keepGoing: true });
    expect(r.last).toMatchObject({ ok: true, data: 'new' });
  });
});
