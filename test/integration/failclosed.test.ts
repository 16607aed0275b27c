// DESIGN.md "Fail closed": a socket whose cell cannot be proven confined is
// refused, never treated as a host socket (issue 7, item 1).
//   - cgroup/sock_create lets a cell create only TCP, UDP and ICMP ping
//     sockets (raw ones by policy); MPTCP, UDP-Lite, SCTP... get
//     EPROTONOSUPPORT, counted and reported as proto-refused;
//   - a socket with no origin record, or one made outside every cell, used
//     by a task inside a cell is that cell's (bpf/cell.bpf.h hook_cell);
//   - nothing below the recorded ancestry: assign refuses such cgroups and
//     sock_create refuses sockets there (too-deep);
//   - loopback privacy holds at cgroup_skb: from a cell, 127/8 and ::1 mean
//     its own alias only, raw sockets with the policy included
//     (loopback-foreign), and an alias takes packets only from its cell;
//   - after release, ping and raw sockets (which bpf_sock_destroy cannot
//     reach) send nothing from the released address; dual-stack and v6 UDP
//     sockets are destroyed.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  PROBE,
  createSandbox,
  mapped,
  python,
  V4,
  V6,
  type BgProc,
  type Op,
  type ProbeLine,
  type Sandbox,
} from '../harness/sandbox';

const HOST4 = V4(12);
const P_HOST = 8601; // host TCP banner on HOST4
const U_HOST = 8602; // host UDP echo on HOST4
const U_LO = 8603; // UDP receivers on 127.0.0.1 (host, cell c, cell o)
const U_LO6 = 8604; // host UDP receiver on [::1]
const P_LO = 8605; // host TCP banner on 127.0.0.1
const P_LATE = 8606;
const U_REV = 8607;
const IPPROTO_MPTCP = 262;
const IPPROTO_UDPLITE = 136;
const IPPROTO_SCTP = 132;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** rel/l1/l2/... with `levels` path components in all. */
const chain = (rel: string, levels: number): string =>
  [rel, ...Array.from({ length: levels - 1 }, (_, i) => `l${i + 1}`)].join('/');

describe('fail closed: every socket a cell can make is confined', () => {
  let sb: Sandbox;
  let early: BgProc;
  const rx: Record<string, BgProc> = {};
  let aliasC: string;
  let aliasO: string;

  /** A probe that keeps going past failures, so every op reports. */
  const spawnAll = (cg: string | null, ops: Op[]): BgProc => {
    const argv = [python(), PROBE, JSON.stringify({ ops, keep_going: true })];
    return cg === null ? sb.spawnOnHost(argv) : sb.spawnInCell(cg, argv);
  };
  const opLine = (p: BgProc, i: number): ProbeLine | undefined => p.lines.find((l) => l.i === i);
  const refused = async (cg: string, reason: string): Promise<number> =>
    ((await sb.show(cg)).refused[reason] as number) ?? 0;
  const dropped = async (cg: string, reason: string): Promise<number> =>
    ((await sb.show(cg)).dropped[reason] as number) ?? 0;
  const got = (p: BgProc, data: string) => p.events().filter((e) => e.data === data);

  beforeAll(async () => {
    sb = await createSandbox({ hosts: [1, 2, 3, 4, 5, 6, 7, 8, 12] });
    // Before `up`: a process in what will be a cell opens sockets. They never
    // pass cgroup/sock_create, so they have no origin record.
    sb.cg('late');
    early = spawnAll('late', [
      { op: 'socket', id: 't', fam: 4 },
      { op: 'socket', id: 'u', fam: 4, type: 'udp' },
      { op: 'socket', id: 'l', fam: 4 },
      { op: 'socket', id: 'lo', fam: 4 },
      { op: 'socket', id: 'x', fam: 4 },
      { op: 'wait_stdin' },
      { op: 'connect', id: 't', addr: HOST4, port: P_HOST },
      { op: 'sendto', id: 'u', addr: HOST4, port: U_HOST, data: 'from-late' },
      { op: 'bind', id: 'l', addr: '0.0.0.0', port: P_LATE },
      { op: 'listen', id: 'l' },
      { op: 'serve_banner', id: 'l', banner: 'late', count: 1 },
      { op: 'connect', id: 'lo', addr: '127.0.0.1', port: P_LO },
      { op: 'bind', id: 'x', addr: HOST4, port: 0 },
    ]);
    await early.waitFor((l) => l.i === 4);

    await sb.up();
    for (const cg of ['c', 'o', 'moved', 'hostcg', 'r']) sb.cg(cg);
    await sb.assign('c', V4(1), V6(1));
    await sb.assign('o', V4(2), V6(2));
    await sb.assign('late', V4(3));
    await sb.assign('moved', V4(4));
    await sb.assign('r', V4(7), V4(8), V6(7), V6(8));
    aliasC = (await sb.show('c')).loopback4;
    aliasO = (await sb.show('o')).loopback4;

    const serve = (key: string, cg: string | null, ops: Op[]) => (rx[key] = sb.spawnProbe(cg, ops));
    serve('tcp', null, [
      { op: 'socket', fam: 4 },
      { op: 'bind', addr: HOST4, port: P_HOST },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'host' },
    ]);
    serve('udp', null, [
      { op: 'socket', fam: 4, type: 'udp' },
      { op: 'bind', addr: HOST4, port: U_HOST },
      { op: 'serve_echo' },
    ]);
    serve('lo4', null, [
      { op: 'socket', fam: 4, type: 'udp' },
      { op: 'bind', addr: '127.0.0.1', port: U_LO },
      { op: 'serve_echo' },
    ]);
    serve('lo6', null, [
      { op: 'socket', fam: 6, type: 'udp', v6only: true },
      { op: 'bind', addr: '::1', port: U_LO6 },
      { op: 'serve_echo' },
    ]);
    serve('lotcp', null, [
      { op: 'socket', fam: 4 },
      { op: 'bind', addr: '127.0.0.1', port: P_LO },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'host-loopback' },
    ]);
    // Each cell's 127.0.0.1:U_LO is its own alias.
    serve('c', 'c', [
      { op: 'socket', fam: 4, type: 'udp' },
      { op: 'bind', addr: '127.0.0.1', port: U_LO },
      { op: 'serve_echo' },
    ]);
    serve('o', 'o', [
      { op: 'socket', fam: 4, type: 'udp' },
      { op: 'bind', addr: '127.0.0.1', port: U_LO },
      { op: 'serve_echo' },
    ]);
    await Promise.all(Object.values(rx).map((p) => p.ready()));
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  describe('socket kinds', () => {
    it('MPTCP and UDP-Lite in a cell: EPROTONOSUPPORT, counted as proto-refused', async () => {
      const before = await refused('c', 'proto-refused');
      const r = await sb.probe(
        'c',
        [
          { op: 'socket', fam: 4, type: 'stream', proto: IPPROTO_MPTCP },
          { op: 'socket', fam: 6, type: 'stream', proto: IPPROTO_MPTCP },
          { op: 'socket', fam: 4, type: 'dgram', proto: IPPROTO_UDPLITE },
          { op: 'socket', fam: 6, type: 'dgram', proto: IPPROTO_UDPLITE },
        ],
        { keepGoing: true },
      );
      expect(r.ops.map((o) => o.errno)).toEqual([
        'EPROTONOSUPPORT',
        'EPROTONOSUPPORT',
        'EPROTONOSUPPORT',
        'EPROTONOSUPPORT',
      ]);
      expect(await refused('c', 'proto-refused')).toBe(before + 4);
      const show = await sb.cliOk(['show', 'c']);
      expect(show.stdout).toMatch(/refused +.*proto-refused=\d+/);
    });

    it('the refusal is an audit event naming the cell and the task', async () => {
      await sb.probe('c', [{ op: 'socket', fam: 4, type: 'stream', proto: IPPROTO_MPTCP }], {
        keepGoing: true,
      });
      const r = await sb.cliOk(['events', '--json']);
      const evs = r.stdout
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((e) => e.reason === 'proto-refused');
      expect(evs.length).toBeGreaterThanOrEqual(1);
      expect(evs[evs.length - 1]).toMatchObject({ cell: 'c', kind: 'refused' });
      expect(evs[evs.length - 1].comm).toMatch(/^python/);
    });

    it('SCTP in a cell never yields a socket (refused, or absent from this kernel)', async () => {
      const r = await sb.probe(
        'c',
        [
          { op: 'socket', fam: 4, type: 'stream', proto: IPPROTO_SCTP },
          { op: 'socket', fam: 4, type: 'seqpacket', proto: IPPROTO_SCTP },
          { op: 'socket', fam: 6, type: 'stream', proto: IPPROTO_SCTP },
        ],
        { keepGoing: true },
      );
      expect(r.ops).toHaveLength(3);
      for (const o of r.ops) expect(o.ok, JSON.stringify(o)).toBe(false);
    });

    it('TCP, UDP and ping sockets, protocol 0 or explicit, still open in a cell', async () => {
      const before = await refused('c', 'proto-refused');
      const r = await sb.probe('c', [
        { op: 'socket', id: 'a', fam: 4, type: 'stream', proto: 0 },
        { op: 'socket', id: 'b', fam: 4, type: 'stream', proto: 6 },
        { op: 'socket', id: 'c', fam: 6, type: 'stream', proto: 6 },
        { op: 'socket', id: 'd', fam: 4, type: 'dgram', proto: 0 },
        { op: 'socket', id: 'e', fam: 6, type: 'dgram', proto: 17 },
        { op: 'socket', id: 'f', fam: 4, type: 'icmp' },
        { op: 'socket', id: 'g', fam: 6, type: 'icmp' },
      ]);
      expect(r.ops.map((o) => o.ok)).toEqual([true, true, true, true, true, true, true]);
      expect(await refused('c', 'proto-refused')).toBe(before);
    });

    it('outside every cell MPTCP still works, and cannot bind a cell address', async () => {
      const r = await sb.probe(
        'hostcg',
        [
          { op: 'fetch', fam: 4, type: 'stream', proto: IPPROTO_MPTCP, addr: HOST4, port: P_HOST },
          { op: 'bind_new', fam: 4, type: 'stream', proto: IPPROTO_MPTCP, addr: V4(1) },
        ],
        { keepGoing: true },
      );
      expect(r.ops[0]).toMatchObject({ ok: true, data: 'host', local: { addr: HOST4 } });
      expect(r.ops[1]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    });
  });

  describe('sockets without a cell origin used from a cell', () => {
    it('a socket made before `up` is confined as the cell of the task using it', async () => {
      early.child.stdin?.end();
      const ready = await early.waitFor((l) => l.ready === true);
      expect(ready).toMatchObject({ addr: V4(3), port: P_LATE });
      // connect pinned the cell's source; the datagram left from the cell
      expect(opLine(early, 6)).toMatchObject({ ok: true, local: { addr: V4(3) } });
      const dgram = await rx.udp.waitFor((e) => e.event === 'dgram' && e.data === 'from-late');
      expect(dgram.peer.addr).toBe(V4(3));
      // the wildcard listener was adopted: sk_lookup steers the cell's
      // address to it (a host socket would have got a RST here)
      const f = await sb.probe(null, [{ op: 'fetch', fam: 4, addr: V4(3), port: P_LATE }]);
      expect(f.last).toMatchObject({ ok: true, data: 'late' });
      await early.exited;
      // 127.0.0.1 is the cell's own loopback, not the host's service
      expect(opLine(early, 11)).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
      // and the host's address is not the cell's to bind
      expect(opLine(early, 12)).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    });

    it('a socket made outside every cell, then carried into one, is the cell’s', async () => {
      const p = spawnAll('hostcg', [
        { op: 'socket', id: 't', fam: 4 },
        { op: 'socket', id: 'b', fam: 4 },
        { op: 'socket', id: 'u', fam: 6, type: 'udp' },
        { op: 'wait_stdin' },
        { op: 'connect', id: 't', addr: HOST4, port: P_HOST },
        { op: 'bind', id: 'b', addr: '0.0.0.0', port: 0 },
        { op: 'sendto', id: 'u', addr: mapped(HOST4), port: U_HOST, data: 'from-moved' },
      ]);
      await p.waitFor((l) => l.i === 2);
      fs.writeFileSync(path.join(sb.root, 'moved', 'cgroup.procs'), String(p.pid));
      p.child.stdin?.end();
      await p.exited;
      expect(opLine(p, 4)).toMatchObject({ ok: true, local: { addr: V4(4) } });
      expect(opLine(p, 5)).toMatchObject({ ok: true, addr: V4(4) });
      expect(opLine(p, 6)).toMatchObject({ ok: true });
      const dgram = await rx.udp.waitFor((e) => e.event === 'dgram' && e.data === 'from-moved');
      expect(dgram.peer.addr).toBe(V4(4));
    });
  });

  describe('depth', () => {
    beforeAll(async () => {
      sb.cg(chain('d', 16));
      sb.cg(chain('h', 16));
      sb.cg(chain('e', 16));
      await sb.assign('d', V4(5));
    });

    it('assign refuses a cgroup 16 levels below the root, and takes one 15 levels down', async () => {
      const deep = chain('e', 16);
      const names = async () => (await sb.list()).map((c: { cell: string }) => c.cell);
      const before = await names();
      const r = await sb.cli(['assign', deep, V4(6)]);
      expect(r.status).toBe(1);
      const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/^l3iso: .*16 levels below the managed root.*at most 15/);
      const js = await sb.cli(['assign', deep, V4(6)], { json: true });
      expect(js.json?.error?.code).toBe('ECGROUP_TOO_DEEP');
      expect(await names()).toEqual(before);

      await sb.assign(chain('e', 15), V4(6));
      const b = await sb.probe(chain('e', 15), [{ op: 'bind_new', fam: 4, addr: '0.0.0.0' }]);
      expect(b.last).toMatchObject({ ok: true, addr: V4(6) });
    });

    it('a process 16 levels below the root cannot create inet sockets', async () => {
      const before = await refused('d', 'too-deep');
      const ops: Op[] = [
        { op: 'socket', fam: 4 },
        { op: 'socket', fam: 6, type: 'udp' },
      ];
      const inCell = await sb.probe(chain('d', 16), ops, { keepGoing: true });
      expect(inCell.ops.map((o) => o.errno)).toEqual(['EPERM', 'EPERM']);
      expect(await refused('d', 'too-deep')).toBe(before + 2);
      const noCell = await sb.probe(chain('h', 16), ops, { keepGoing: true });
      expect(noCell.ops.map((o) => o.errno)).toEqual(['EPERM', 'EPERM']);
      // one level up the cell's sockets work, confined as usual
      const ok = await sb.probe(chain('d', 15), [{ op: 'bind_new', fam: 4, addr: '0.0.0.0' }]);
      expect(ok.last).toMatchObject({ ok: true, addr: V4(5) });
    });
  });

  describe('loopback privacy at the packet layer', () => {
    beforeAll(async () => {
      await sb.cliOk(['policy', 'c', '--allow-raw']);
    });

    const forge = (fam: 4 | 6, src: string, dst: string, dport: number, data: string) =>
      sb.probe(
        'c',
        [
          { op: 'socket', fam, type: 'ipraw' },
          { op: 'send_forged', src, dst, dport, data },
        ],
        { keepGoing: true },
      );

    it('IP_HDRINCL with the cell’s own source reaches neither the host’s 127.0.0.1 nor another cell’s alias', async () => {
      const before = await dropped('c', 'loopback-foreign');
      await forge(4, V4(1), '127.0.0.1', U_LO, 'raw-to-host-lo');
      expect(await dropped('c', 'loopback-foreign')).toBe(before + 1);
      await forge(4, V4(1), aliasO, U_LO, 'raw-to-other-alias');
      expect(await dropped('c', 'loopback-foreign')).toBe(before + 2);
      await forge(6, V6(1), '::1', U_LO6, 'raw-to-host-lo6');
      expect(await dropped('c', 'loopback-foreign')).toBe(before + 3);
      // the cell's own alias is its loopback: that one arrives
      await forge(4, V4(1), aliasC, U_LO, 'raw-to-own-alias');
      await rx.c.waitFor((e) => e.event === 'dgram' && e.data === 'raw-to-own-alias');
      await sleep(500);
      expect(got(rx.lo4, 'raw-to-host-lo')).toEqual([]);
      expect(got(rx.o, 'raw-to-other-alias')).toEqual([]);
      expect(got(rx.lo6, 'raw-to-host-lo6')).toEqual([]);
      expect(await dropped('c', 'loopback-foreign')).toBe(before + 3);
      const show = await sb.cliOk(['show', 'c']);
      expect(show.stdout).toMatch(/dropped +.*loopback-foreign=\d+/);
    });

    it('a ping socket bound to the cell’s alias cannot reach the host’s 127.0.0.1', async () => {
      const before = await dropped('c', 'loopback-foreign');
      const r = await sb.probe(
        'c',
        [
          { op: 'socket', fam: 4, type: 'icmp' },
          { op: 'bind', addr: aliasC, port: 0 },
          { op: 'echo', addr: '127.0.0.1' },
        ],
        { keepGoing: true },
      );
      // getsockname hides the alias, as everywhere in a cell
      expect(r.ops[1]).toMatchObject({ ok: true, addr: '127.0.0.1' });
      expect(r.ops[2]).toMatchObject({ ok: false, errno: 'EPERM' });
      expect(await dropped('c', 'loopback-foreign')).toBe(before + 1);
    });

    it('a cell’s alias takes no datagram from outside the cell', async () => {
      const before = await dropped('o', 'loopback-foreign');
      const r = await sb.probe(null, [
        { op: 'socket', fam: 4, type: 'udp' },
        { op: 'sendto', addr: aliasO, port: U_LO, data: 'host-to-alias' },
      ]);
      expect(r.last).toMatchObject({ ok: true });
      await sleep(500);
      expect(got(rx.o, 'host-to-alias')).toEqual([]);
      expect(await dropped('o', 'loopback-foreign')).toBe(before + 1);
      // while the cell itself still reaches its own loopback
      const own = await sb.probe('o', [
        { op: 'socket', fam: 4, type: 'udp' },
        { op: 'sendto', addr: '127.0.0.1', port: U_LO, data: 'o-to-own' },
        { op: 'recvfrom' },
      ]);
      expect(own.last).toMatchObject({ ok: true, data: 'o-to-own', addr: '127.0.0.1' });
    });
  });

  describe('revocation covers every socket kind a cell can have', () => {
    it('release: ping and raw sockets on the address send nothing more; v6 and dual-stack UDP are destroyed', async () => {
      await sb.cliOk(['policy', 'r', '--allow-raw']);
      const icmp = spawnAll('r', [
        { op: 'socket', id: 'p', fam: 4, type: 'icmp' },
        { op: 'bind', id: 'p', addr: V4(8), port: 0 },
        { op: 'socket', id: 'w', fam: 4, type: 'raw' },
        { op: 'bind', id: 'w', addr: V4(8), port: 0 },
        { op: 'echo', id: 'p', addr: HOST4 },
        { op: 'echo', id: 'w', addr: HOST4 },
        { op: 'wait_stdin' },
        { op: 'echo', id: 'p', addr: HOST4 },
        { op: 'echo', id: 'w', addr: HOST4 },
      ]);
      const udp = spawnAll('r', [
        { op: 'socket', id: 'm', fam: 6, type: 'udp', v6only: false },
        { op: 'bind', id: 'm', addr: mapped(V4(8)), port: U_REV },
        { op: 'socket', id: 's', fam: 6, type: 'udp', v6only: true },
        { op: 'bind', id: 's', addr: V6(8), port: U_REV },
        { op: 'recvfrom', id: 'm', timeout: 20 },
        { op: 'recvfrom', id: 's', timeout: 20 },
      ]);
      await icmp.waitFor((l) => l.i === 5);
      await udp.waitFor((l) => l.i === 3);
      expect(opLine(icmp, 4)).toMatchObject({ ok: true });
      expect(opLine(icmp, 5)).toMatchObject({ ok: true });
      const before = await dropped('r', 'spoofed-source');

      const rel = await sb.cliOk(['release', 'r', V4(8), V6(8), '--force'], { json: true });
      expect(rel.json.released).toEqual([V4(8), V6(8)]);
      // Ping and raw sockets have no iterator and bpf_sock_destroy does not
      // take them: they live on, but the source is nobody's now, so egress
      // anti-spoof drops what they send.
      icmp.child.stdin?.end();
      await icmp.exited;
      expect(opLine(icmp, 7)).toMatchObject({ ok: false, errno: 'EPERM' });
      expect(opLine(icmp, 8)).toMatchObject({ ok: false, errno: 'EPERM' });
      expect(await dropped('r', 'spoofed-source')).toBe(before + 2);
      // dual-stack and v6-only UDP sockets on the released addresses are gone
      await udp.exited;
      expect(opLine(udp, 4)).toMatchObject({ ok: false, errno: 'ECONNABORTED' });
      expect(opLine(udp, 5)).toMatchObject({ ok: false, errno: 'ECONNABORTED' });
    });
  });
});
