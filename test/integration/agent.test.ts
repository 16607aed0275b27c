// The agent (src/agent/): the engine over HTTP + JSON on a unix socket, the
// CLI going through it (and working alone without it), cells released when
// their cgroup is removed, and a kill -9 that loses nothing.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawnAgent, startAgent as start } from '../harness/agent';
import { health as healthOf, post, request, type UnixAnswer } from '../harness/http-unix';
import { until } from '../harness/poll';
import { expectConfined, loseCellMapAndRepair } from '../harness/repair';
import { V4, V6, createSandbox, type BgProc, type Sandbox } from '../harness/sandbox';

describe('agent', () => {
  let sb: Sandbox;
  let dir: string;
  let sock: string;
  let agent: BgProc | undefined;

  const startAgent = async (resyncSeconds = 1): Promise<BgProc> => {
    agent = await start(sb, { socket: sock, args: ['--resync', String(resyncSeconds)] });
    return agent;
  };
  const stopAgent = async () => {
    await agent?.kill();
    agent = undefined;
  };
  const health = () => healthOf(sock);
  const viaAgent = { env: { L3ISO_AGENT_SOCKET: '' } };
  const cellNames = async () =>
    ((await sb.cliOk(['--no-agent', 'list', '--json'])).json.cells as { cell: string }[]).map(
      (c) => c.cell,
    );

  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l3iso-agent-'));
    sock = path.join(dir, 'agent.sock');
    viaAgent.env.L3ISO_AGENT_SOCKET = sock;
  });
  afterEach(stopAgent);
  afterAll(async () => {
    await stopAgent();
    await sb?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('assign, list, show, policy and release over HTTP; the socket is 0600', async () => {
    await startAgent();
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
    sb.cg('h1');
    const a = await post(sock, '/v1/assign', { cgroup: 'h1', addresses: [V4(1), V6(1)] });
    expect(a.status, a.text).toBe(200);
    expect(a.json).toMatchObject({ cell: 'h1', added: [V4(1), V6(1)], unchanged: [] });
    const l = await request(sock, 'GET', '/v1/cells');
    expect(l.json.cells.map((c: { cell: string }) => c.cell)).toEqual(['h1']);
    expect(l.json).toEqual((await sb.cliOk(['--no-agent', 'list', '--json'])).json);
    const s = await request(sock, 'GET', '/v1/cells/h1');
    expect(s.status).toBe(200);
    expect(s.json).toMatchObject({ cell: 'h1', addresses: [V4(1), V6(1)], allowRaw: false });
    const p = await post(sock, '/v1/policy', { cgroup: 'h1', allowRaw: true });
    expect(p.json).toMatchObject({ cell: 'h1', allowRaw: true });
    // the cell is really confined to its address: the kernel enforces it
    const probe = await sb.probe('h1', [{ op: 'bind_new', fam: 4, addr: '0.0.0.0' }]);
    expect(probe.last).toMatchObject({ ok: true, addr: V4(1) });
    const r1 = await post(sock, '/v1/release', { cgroup: 'h1', addresses: [V6(1)] });
    expect(r1.json).toMatchObject({ released: [V6(1)], removed: false });
    const r2 = await post(sock, '/v1/release', { cgroup: 'h1' });
    expect(r2.json).toMatchObject({ released: [V4(1)], removed: true });
    expect(await cellNames()).toEqual([]);
    const m = await request(sock, 'GET', '/metrics');
    expect(m.status).toBe(200);
    expect(m.text).toMatch(/^l3iso_cells 0$/m);
    expect((await health()).requests).toMatchObject({ 'POST /v1/assign': 1, 'GET /metrics': 1 });
  });

  it('apply, status and export over HTTP: the same results as the CLI, an invalid state changes nothing', async () => {
    await startAgent();
    sb.cg('d1');
    sb.cg('d2');
    const state = {
      version: 1,
      engine: {},
      cells: [
        { cgroup: 'd1', addresses: [V4(41)] },
        { cgroup: 'd2', addresses: [V4(42), V6(42)] },
      ],
    };
    const bad = await post(sock, '/v1/apply', {
      state: { ...state, cells: [...state.cells, { cgroup: 'd3', addresses: ['10.0.0.300'] }] },
    });
    expect(bad.status, bad.text).toBe(400);
    expect(bad.json.error.code).toBe('EUSAGE');
    expect(bad.json.error.message).toMatch(/state\.cells\[2\]\.addresses\[0\]/);
    expect(await cellNames()).toEqual([]);
    const a = await post(sock, '/v1/apply', { state });
    expect(a.status, a.text).toBe(200);
    expect(a.json.changed).toBe(true);
    expect((await cellNames()).sort()).toEqual(['d1', 'd2']);
    const again = await post(sock, '/v1/apply', { state });
    expect(again.json.changed).toBe(false);
    const st = await request(sock, 'GET', '/v1/status');
    expect(st.json.counts).toMatchObject({ cells: 2, addresses: 3 });
    expect(st.json).toEqual((await sb.cliOk(['--no-agent', 'status', '--json'])).json);
    const ex = await request(sock, 'GET', '/v1/export');
    expect(ex.json.document.cells.map((c: { cgroup: string }) => c.cgroup).sort()).toEqual([
      'd1',
      'd2',
    ]);
    const pruned = await post(sock, '/v1/apply', { state: { ...state, cells: [] }, prune: true });
    expect(pruned.status, pruned.text).toBe(200);
    expect(await cellNames()).toEqual([]);
  });

  it('errors: the code of src/errors.ts, its HTTP status, nothing changed', async () => {
    await startAgent();
    sb.cg('e1');
    sb.cg('e2');
    expect((await post(sock, '/v1/assign', { cgroup: 'e1', addresses: [V4(21)] })).status).toBe(
      200,
    );
    const cases: [Promise<UnixAnswer>, number, string][] = [
      [post(sock, '/v1/assign', { cgroup: 'e2', addresses: ['nope'] }), 400, 'EADDR_INVALID'],
      [post(sock, '/v1/assign', { cgroup: 'e2', addresses: [V4(21)] }), 409, 'EADDR_OWNED'],
      [post(sock, '/v1/assign', { cgroup: 'e2' }), 400, 'EUSAGE'],
      [post(sock, '/v1/assign', { cgroup: 'e2', addresses: [], x: 1 }), 400, 'EUSAGE'],
      [
        post(sock, '/v1/assign', { cgroup: 'missing', addresses: [V4(22)] }),
        404,
        'ECGROUP_MISSING',
      ],
      [request(sock, 'POST', '/v1/assign', '{not json'), 400, 'EUSAGE'],
      [post(sock, '/v1/release', { cgroup: 'e2' }), 404, 'ENOT_ASSIGNED'],
      [post(sock, '/v1/release', { cgroup: 'e1', id: '5' }), 400, 'EUSAGE'],
      [post(sock, '/v1/release', { cgroup: 'e1', force: true, drainSeconds: 1 }), 400, 'EUSAGE'],
      [request(sock, 'GET', '/v1/cells/e2'), 404, 'ENOT_ASSIGNED'],
      [request(sock, 'GET', '/v2/nothing'), 404, 'ENOT_FOUND'],
      [
        request(sock, 'GET', '/v1/cells', undefined, { 'x-l3iso-pin-dir': '/sys/fs/bpf/other' }),
        421,
        'EAGENT_MISMATCH',
      ],
    ];
    for (const [p, status, code] of cases) {
      const r = await p;
      expect(r.status, r.text).toBe(status);
      expect(r.json.error.code, r.text).toBe(code);
      expect(typeof r.json.error.message).toBe('string');
    }
    const cells = (await sb.cliOk(['--no-agent', 'list', '--json'])).json.cells;
    expect(cells.map((c: { cell: string; addresses: string[] }) => [c.cell, c.addresses])).toEqual([
      ['e1', [V4(21)]],
    ]);
    const byId = await post(sock, '/v1/release', { id: cells[0].id });
    expect(byId.json).toMatchObject({ found: true, released: [V4(21)] });
  });

  it('a second agent on the same socket refuses to start', async () => {
    await startAgent();
    const first = agent!;
    const second = spawnAgent(sb, { socket: sock });
    expect((await second.exited).status).toBe(1);
    expect(second.stderr).toMatch(/another agent answers on/);
    expect((await health()).pid).toBe(first.pid);
  });

  it('the CLI goes through the agent, prints the same, and works alone once it is gone', async () => {
    await startAgent();
    sb.cg('c1');
    sb.cg('c2');
    const before = (await health()).requests;
    const a = await sb.cliOk(['assign', 'c1', V4(31)], viaAgent);
    const alone = await sb.cliOk(['--no-agent', 'assign', 'c1', V4(31)]);
    expect(a.stdout).toMatch(
      new RegExp(`^c1: assigned ${V4(31)}; loopback 127\\.0\\.0\\.1 -> \\S+\n$`),
    );
    expect(alone.stdout).toBe(
      a.stdout.replace(`assigned ${V4(31)}`, `nothing new (already had ${V4(31)})`),
    );
    const again = await sb.cliOk(['assign', 'c1', V4(31)], viaAgent);
    expect(again.stdout).toBe(alone.stdout);
    const listA = await sb.cliOk(['list'], viaAgent);
    expect(listA.stdout).toBe((await sb.cliOk(['--no-agent', 'list'])).stdout);
    const showA = await sb.cliOk(['--json', 'show', 'c1'], viaAgent);
    expect(showA.json.addresses).toEqual([V4(31)]);
    const errA = await sb.cli(['assign', 'c2', V4(31)], viaAgent);
    const errAlone = await sb.cli(['--no-agent', 'assign', 'c2', V4(31)]);
    expect([errA.status, errA.stderr]).toEqual([errAlone.status, errAlone.stderr]);
    expect(errA.status).toBe(1);
    const jsonErr = await sb.cli(['--json', 'assign', 'c2', 'bad'], viaAgent);
    expect(jsonErr.json.error.code).toBe('EADDR_INVALID');
    const after = (await health()).requests;
    // the agent answered every one of them (and --no-agent never reached it)
    expect((after['POST /v1/assign'] ?? 0) - (before['POST /v1/assign'] ?? 0)).toBe(4);
    expect(after['GET /v1/cells']).toBe(1);
    expect(after['GET /v1/cells/c1']).toBe(1);

    await stopAgent();
    expect(fs.existsSync(sock)).toBe(true); // a killed agent leaves its socket file
    const r = await sb.cliOk(['release', 'c1'], viaAgent);
    expect(r.stdout).toBe(`c1: released ${V4(31)}; cell removed\n`);
    expect(await cellNames()).toEqual([]);
  });

  it('an up that re-pins the revocation iterator while the agent runs: the agent revokes with the new set and lets the old one go', async () => {
    await startAgent();
    const progId = (): number => {
      const pin = path.join(sb.pinDir, 'revoke', 'l3_revoke_tcp');
      const out = execFileSync('bpftool', ['-j', 'prog', 'show', 'pinned', pin], {
        encoding: 'utf8',
      });
      return (JSON.parse(out) as { id: number }).id;
    };
    const loaded = (id: number): boolean =>
      spawnSync('bpftool', ['prog', 'show', 'id', String(id)], { stdio: 'ignore' }).status === 0;
    sb.cg('rp1');
    sb.cg('rp2');
    await post(sock, '/v1/assign', { cgroup: 'rp1', addresses: [V4(7)] });
    await post(sock, '/v1/assign', { cgroup: 'rp2', addresses: [V4(6)] });
    // the agent's Engine opens the iterator (and keeps it) on this release
    const first = await post(sock, '/v1/release', { cgroup: 'rp1' });
    expect(first.status, first.text).toBe(200);
    const old = progId();
    await sb.up(); // a live engine: the iterator is re-pinned into a new set
    expect(progId()).not.toBe(old);
    const holder = sb.spawnProbe('rp2', [
      { op: 'socket', fam: 4, type: 'udp' },
      { op: 'bind', addr: V4(6), port: 0 },
      { op: 'wait_stdin' },
    ]);
    try {
      await holder.waitFor((l) => l.op === 'bind' && l.ok === true);
      const r = await post(sock, '/v1/release', { cgroup: 'rp2', force: true });
      expect(r.status, r.text).toBe(200);
      expect(r.json.socketsDestroyed).toBe(1);
      // nobody holds the old set's programs any more: the agent dropped them
      expect(loaded(old)).toBe(false);
    } finally {
      await holder.kill();
    }
  });

  // The agent used to keep the fds of the maps it opened first: after
  // `up --repair` re-created a lost map, its assigns went into the old one,
  // which no program reads, and the cell was not confined.
  it('up --repair re-creates a lost cell map while the agent runs: the agent writes to the new one', async () => {
    await startAgent();
    sb.cg('rr1');
    sb.cg('rr2');
    expect((await post(sock, '/v1/assign', { cgroup: 'rr1', addresses: [V4(5)] })).status).toBe(
      200,
    );
    await loseCellMapAndRepair(sb);
    const r = await post(sock, '/v1/assign', { cgroup: 'rr2', addresses: [V4(9)] });
    expect(r.status, r.text).toBe(200);
    expect(await cellNames()).toEqual(expect.arrayContaining(['rr1', 'rr2']));
    await expectConfined(sb, 'rr2', V4(9), V4(5));
    for (const c of ['rr1', 'rr2']) await post(sock, '/v1/release', { cgroup: c });
  });

  it('a release with a drain runs aside: the agent answers other requests meanwhile', async () => {
    await startAgent();
    sb.cg('d1');
    await post(sock, '/v1/assign', { cgroup: 'd1', addresses: [V4(8)] });
    // a UDP socket on the address keeps the drain waiting until its deadline
    const holder = sb.spawnProbe('d1', [
      { op: 'socket', fam: 4, type: 'udp' },
      { op: 'bind', addr: V4(8), port: 0 },
      { op: 'wait_stdin' },
    ]);
    try {
      await holder.waitFor((l) => l.op === 'bind' && l.ok === true);
      let settled = false;
      const drained = post(sock, '/v1/release', { cgroup: 'd1', drainSeconds: 4 }).finally(
        () => (settled = true),
      );
      const h = await request(sock, 'GET', '/v1/cells/d1');
      expect(h.status).toBe(200);
      expect(settled).toBe(false); // answered while the drain still waits
      const r = await drained;
      expect(r.status, r.text).toBe(200);
      expect(r.json).toMatchObject({ cell: 'd1', released: [V4(8)], removed: true });
      expect(r.json.socketsDestroyed).toBeGreaterThanOrEqual(1);
      const bad = await post(sock, '/v1/release', { cgroup: 'd1', drainSeconds: 1 });
      expect([bad.status, bad.json.error.code]).toEqual([404, 'ENOT_ASSIGNED']);
    } finally {
      await holder.kill();
    }
  });

  it('a removed cgroup is released: found at start, watched after assign, by inotify', async () => {
    const w0 = sb.cg('w0');
    const w2 = sb.cg('deep/w2');
    await sb.cliOk(['--no-agent', 'assign', 'w0', V4(40)]);
    await sb.cliOk(['--no-agent', 'assign', 'deep/w2', V4(42), V6(42)]);
    fs.rmdirSync(w0); // while no agent runs
    // no periodic resync within the test: only the start and inotify act
    await startAgent(3600);
    await until('w0 released at start', async () =>
      (await cellNames()).join() === 'deep/w2' ? true : undefined,
    );
    const w1 = sb.cg('w1');
    expect((await post(sock, '/v1/assign', { cgroup: 'w1', addresses: [V4(41)] })).status).toBe(
      200,
    );
    expect((await health()).watched).toBe(2);
    fs.rmdirSync(w1);
    fs.rmdirSync(w2);
    await until('both cells released', async () =>
      (await cellNames()).length === 0 ? true : undefined,
    );
    expect((await health()).releasedByWatch).toBe(3);
    // the addresses are free: another cell takes them
    sb.cg('w3');
    await sb.cliOk(['--no-agent', 'assign', 'w3', V4(40), V4(41), V4(42), V6(42)]);
    await sb.cliOk(['--no-agent', 'release', 'w3']);
  });

  it('the periodic resync watches cells assigned without the agent', async () => {
    await startAgent(1);
    const w4 = sb.cg('w4');
    await sb.cliOk(['--no-agent', 'assign', 'w4', V4(44)]);
    await until('the resync to watch w4', async () =>
      (await health()).watched === 1 ? true : undefined,
    );
    fs.rmdirSync(w4);
    await until('w4 released', async () => ((await cellNames()).length === 0 ? true : undefined));
    expect((await health()).releasedByWatch).toBe(1);
  });

  it('socket activation: the first request starts the agent on the socket systemd passes', async () => {
    const act = path.join(dir, 'act.sock');
    const p = spawnAgent(sb, { socket: act, wrap: ['systemd-socket-activate', '-l', act] });
    agent = p;
    await until('the activation socket', async () => (fs.existsSync(act) ? true : undefined));
    const ino = fs.statSync(act).ino;
    // this request is queued on the passed socket until the agent answers it
    const h = await request(act, 'GET', '/healthz');
    expect(h.status, h.text).toBe(200);
    expect(h.json.pid).toBe(p.pid); // systemd-socket-activate execs the agent in place
    sb.cg('s1');
    const a = await sb.cliOk(['assign', 's1', V4(61)], { env: { L3ISO_AGENT_SOCKET: act } });
    expect(a.stdout).toMatch(/^s1: assigned 192\.0\.2\.61;/);
    expect((await request(act, 'GET', '/healthz')).json.requests['POST /v1/assign']).toBe(1);
    expect(fs.statSync(act).ino).toBe(ino); // the agent listens on the passed socket itself
    await post(act, '/v1/release', { cgroup: 's1' });
  });

  it('kill -9 and restart: cells intact, the new agent watches them', async () => {
    await startAgent();
    const k1 = sb.cg('k1');
    sb.cg('k2');
    await post(sock, '/v1/assign', { cgroup: 'k1', addresses: [V4(51)] });
    await post(sock, '/v1/assign', { cgroup: 'k2', addresses: [V4(52), V6(52)] });
    const cells = (await sb.cliOk(['--no-agent', 'list', '--json'])).json;
    await stopAgent(); // SIGKILL
    expect((await sb.cliOk(['--no-agent', 'list', '--json'])).json).toEqual(cells);
    expect((await sb.cliOk(['--no-agent', 'gc', '--check'])).status).toBe(0);
    await startAgent(3600); // over the stale socket file
    expect((await request(sock, 'GET', '/v1/cells')).json).toEqual(cells);
    expect((await health()).watched).toBe(2);
    fs.rmdirSync(k1);
    await until('k1 released', async () =>
      (await cellNames()).join() === 'k2' ? true : undefined,
    );
    await post(sock, '/v1/release', { cgroup: 'k2' });
  });
});
