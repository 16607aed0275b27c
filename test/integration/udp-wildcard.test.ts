// Issue 7, item 3: "a wildcard UDP socket of a cell with two addresses
// answers only on the primary (a DNS server on 0.0.0.0:53 must answer on
// every cell address, as in a jail)". bpf/udp_steer.bpf.h, attached at tc
// ingress of the engine netns's lo (bpf/demux.bpf.c l3_udp_steer).
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttachType, BpfLink, LinkType } from '../../loader';
import { objInfo } from '../../loader/sys';
import { sandboxWithCells } from '../harness/cells';
import { createSandbox, V4, V6, type BgProc, type Op, type Sandbox } from '../harness/sandbox';

const P_PLAIN = 8201; // cell a: plain recvfrom/sendto wildcard servers
const P_PKTINFO = 8202; // cell a: IP_PKTINFO wildcard servers
const P_EXACT = 8203; // cell a: wildcard and an exact bind on its secondary
const P_OTHER = 8204; // cell b's wildcard only; cell a has nothing here
const P_SHARED = 8205; // wildcard servers of both a and b
const P_RELEASE = 8206; // cell r: wildcard, then its secondary is released
const P_DUAL = 8207; // cell a: one dual-stack `::` socket, not V6ONLY

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('UDP wildcard sockets serve every address of their cell', () => {
  let sb: Sandbox;
  const procs: BgProc[] = [];

  beforeAll(async () => {
    // First address of each family: the primary.
    sb = await sandboxWithCells({
      a: [V4(1), V6(1), V4(2), V6(2)],
      b: [V4(3), V6(3)],
      r: [V4(5), V4(6)],
    });
  });
  afterAll(async () => {
    for (const p of procs) await p.kill();
    await sb?.destroy();
  });

  const echo = async (
    cg: string,
    fam: 4 | 6,
    addr: string,
    port: number,
    extra: Record<string, unknown> = {},
  ): Promise<BgProc> => {
    const p = sb.spawnProbe(cg, [
      { op: 'socket', fam, type: 'udp', ...(fam === 6 ? { v6only: true } : {}) },
      { op: 'bind', addr, port },
      { op: 'serve_echo', ...extra },
    ]);
    procs.push(p);
    await p.ready();
    return p;
  };

  /** One datagram from cg (null: the netns's host side, from 192.0.2.9 or
   * 2001:db8::9) and the answer, if any. */
  const ask = async (cg: string | null, fam: 4 | 6, dst: string, port: number, data: string) => {
    const ops: Op[] = [{ op: 'socket', fam, type: 'udp' }];
    if (cg === null) ops.push({ op: 'bind', addr: fam === 4 ? V4(9) : V6(9), port: 0 });
    ops.push({ op: 'sendto', addr: dst, port, data }, { op: 'recvfrom', timeout: 1 });
    const r = await sb.probe(cg, ops, { keepGoing: true });
    const sent = r.ops[ops.length - 2];
    expect(sent).toMatchObject({ ok: true });
    return r.ops[ops.length - 1];
  };

  const got = (p: BgProc, data: string) =>
    p.events().filter((e) => e.event === 'dgram' && e.data === data);

  describe('a plain recvfrom/sendto server on the wildcard', () => {
    let s4: BgProc;
    let s6: BgProc;
    beforeAll(async () => {
      s4 = await echo('a', 4, '0.0.0.0', P_PLAIN);
      s6 = await echo('a', 6, '::', P_PLAIN);
    });

    it('v4: answers on the primary and on the secondary, from the host side', async () => {
      expect(await ask(null, 4, V4(1), P_PLAIN, 'h4-primary')).toMatchObject({
        ok: true,
        data: 'h4-primary',
        addr: V4(1),
      });
      // The socket is bound to the primary: without IP_PKTINFO its reply
      // leaves from there, as on a host whose socket is bound to it.
      expect(await ask(null, 4, V4(2), P_PLAIN, 'h4-second')).toMatchObject({
        ok: true,
        data: 'h4-second',
        addr: V4(1),
      });
      expect(got(s4, 'h4-second')).toHaveLength(1);
    });

    it('v6: answers on the primary and on the secondary, from the host side', async () => {
      expect(await ask(null, 6, V6(1), P_PLAIN, 'h6-primary')).toMatchObject({
        ok: true,
        addr: V6(1),
      });
      expect(await ask(null, 6, V6(2), P_PLAIN, 'h6-second')).toMatchObject({
        ok: true,
        data: 'h6-second',
        addr: V6(1),
      });
      expect(got(s6, 'h6-second')).toHaveLength(1);
    });

    it('v4/v6: answers datagrams another cell sends to the secondary', async () => {
      expect(await ask('b', 4, V4(2), P_PLAIN, 'b4-second')).toMatchObject({
        ok: true,
        data: 'b4-second',
      });
      expect(await ask('b', 6, V6(2), P_PLAIN, 'b6-second')).toMatchObject({
        ok: true,
        data: 'b6-second',
      });
      expect(got(s4, 'b4-second')[0]).toMatchObject({ peer: { addr: V4(3) } });
      expect(got(s6, 'b6-second')[0]).toMatchObject({ peer: { addr: V6(3) } });
    });

    it('v4: answers the cell’s own 127.0.0.1, as a host’s wildcard socket does', async () => {
      // The reply leaves from the primary, as for any secondary address.
      const r = await ask('a', 4, '127.0.0.1', P_PLAIN, 'lo4');
      expect(r).toMatchObject({ ok: true, data: 'lo4', addr: V4(1) });
      expect(got(s4, 'lo4')[0]).toMatchObject({ peer: { addr: '127.0.0.1' } });
    });

    it('counts each datagram once in the cell’s rx counters', async () => {
      const before = (await sb.show('a')).traffic.rxPackets;
      await ask(null, 4, V4(2), P_PLAIN, 'count1');
      await ask(null, 6, V6(2), P_PLAIN, 'count2');
      expect((await sb.show('a')).traffic.rxPackets).toBe(before + 2);
    });
  });

  it('v4/v6: an IP_PKTINFO server answers from the address the client sent to', async () => {
    const s4 = await echo('a', 4, '0.0.0.0', P_PKTINFO, { pktinfo: true });
    const s6 = await echo('a', 6, '::', P_PKTINFO, { pktinfo: true });
    expect(await ask(null, 4, V4(2), P_PKTINFO, 'pi4')).toMatchObject({
      ok: true,
      data: 'pi4',
      addr: V4(2),
    });
    expect(await ask(null, 6, V6(2), P_PKTINFO, 'pi6')).toMatchObject({
      ok: true,
      data: 'pi6',
      addr: V6(2),
    });
    expect(got(s4, 'pi4')[0]).toMatchObject({ dst: V4(2) });
    expect(got(s6, 'pi6')[0]).toMatchObject({ dst: V6(2) });
  });

  // bind6 puts a UDP `::` socket of a dual-stack cell on the v6 primary
  // (only TCP's goes to ::ffff:<primary4>): it serves every v6 address of
  // the cell, and no IPv4 (README, demux rules).
  it('a dual-stack `::` UDP socket (not V6ONLY) answers IPv6 on every address, not IPv4', async () => {
    const p = sb.spawnProbe('a', [
      { op: 'socket', fam: 6, type: 'udp', v6only: false },
      { op: 'bind', addr: '::', port: P_DUAL },
      { op: 'serve_echo' },
    ]);
    procs.push(p);
    expect(await p.ready()).toMatchObject({ addr: V6(1) });
    expect(await ask(null, 6, V6(1), P_DUAL, 'd6-primary')).toMatchObject({ ok: true });
    expect(await ask(null, 6, V6(2), P_DUAL, 'd6-second')).toMatchObject({
      ok: true,
      data: 'd6-second',
      addr: V6(1),
    });
    expect((await ask(null, 4, V4(2), P_DUAL, 'd4-second')).ok).toBe(false);
    expect(got(p, 'd6-second')).toHaveLength(1);
  });

  it('v4/v6: a socket bound exactly to the secondary wins over the wildcard one', async () => {
    const wild4 = await echo('a', 4, '0.0.0.0', P_EXACT);
    const wild6 = await echo('a', 6, '::', P_EXACT);
    const exact4 = await echo('a', 4, V4(2), P_EXACT);
    const exact6 = await echo('a', 6, V6(2), P_EXACT);
    expect(await ask(null, 4, V4(2), P_EXACT, 'x4')).toMatchObject({ ok: true, addr: V4(2) });
    expect(await ask(null, 6, V6(2), P_EXACT, 'x6')).toMatchObject({ ok: true, addr: V6(2) });
    expect(await ask(null, 4, V4(1), P_EXACT, 'w4')).toMatchObject({ ok: true, addr: V4(1) });
    expect(got(exact4, 'x4')).toHaveLength(1);
    expect(got(exact6, 'x6')).toHaveLength(1);
    expect(got(wild4, 'x4')).toEqual([]);
    expect(got(wild6, 'x6')).toEqual([]);
    expect(got(wild4, 'w4')).toHaveLength(1);
    // Once the exact sockets are gone, the wildcard ones serve the secondary.
    await exact4.kill();
    await exact6.kill();
    expect(await ask(null, 4, V4(2), P_EXACT, 'y4')).toMatchObject({ ok: true, addr: V4(1) });
    expect(await ask(null, 6, V6(2), P_EXACT, 'y6')).toMatchObject({ ok: true, addr: V6(1) });
    expect(got(wild4, 'y4')).toHaveLength(1);
    expect(got(wild6, 'y6')).toHaveLength(1);
  });

  it('v4/v6: another cell’s wildcard socket on the port never gets them', async () => {
    const b4 = await echo('b', 4, '0.0.0.0', P_OTHER);
    const b6 = await echo('b', 6, '::', P_OTHER);
    // Cell a has no socket on P_OTHER: nothing answers.
    expect((await ask(null, 4, V4(2), P_OTHER, 'o4')).ok).toBe(false);
    expect((await ask(null, 6, V6(2), P_OTHER, 'o6')).ok).toBe(false);
    const a4 = await echo('a', 4, '0.0.0.0', P_SHARED);
    const bs4 = await echo('b', 4, '0.0.0.0', P_SHARED);
    expect(await ask(null, 4, V4(2), P_SHARED, 's4')).toMatchObject({ ok: true, addr: V4(1) });
    expect(got(a4, 's4')).toHaveLength(1);
    await sleep(200);
    expect(got(b4, 'o4')).toEqual([]);
    expect(got(b6, 'o6')).toEqual([]);
    expect(got(bs4, 's4')).toEqual([]);
  });

  it('after release of the secondary, nothing sent to it is delivered', async () => {
    const s = await echo('r', 4, '0.0.0.0', P_RELEASE);
    expect(await ask(null, 4, V4(6), P_RELEASE, 'before')).toMatchObject({ ok: true });
    await sb.cliOk(['release', 'r', V4(6)]);
    expect((await ask(null, 4, V4(6), P_RELEASE, 'after')).ok).toBe(false);
    expect(await ask(null, 4, V4(5), P_RELEASE, 'primary')).toMatchObject({ ok: true });
    await sleep(200);
    expect(got(s, 'after')).toEqual([]);
  });
});

describe('the tcx link on lo', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  /** The pinned link: its id, and the interface and attach type the kernel
   * reports for it (struct bpf_link_info's tcx member). */
  const pinned = (): { id: number; ifindex: number; attachType: number } => {
    const link = BpfLink.openPinned(path.join(sb.pinDir, 'links', 'l3_udp_steer'));
    try {
      const info = link.info();
      expect(info.type).toBe(LinkType.TCX);
      const raw = objInfo(link.fd, 48);
      return { id: info.id, ifindex: raw.readUInt32LE(16), attachType: raw.readUInt32LE(20) };
    } finally {
      link.close();
    }
  };
  const linkExists = (id: number): boolean =>
    spawnSync('bpftool', ['link', 'show', 'id', String(id)], { stdio: 'ignore' }).status === 0;

  it('up attaches it on lo, a second up replaces it in place, down removes it', async () => {
    await sb.up();
    const first = pinned();
    expect(first).toMatchObject({ ifindex: 1, attachType: AttachType.TCX_INGRESS });
    const again = await sb.cliOk(['up', '--cgroup-root', sb.root], { json: true });
    expect(again.json.programs).toContainEqual({ name: 'l3_udp_steer', action: 'replaced' });
    expect(pinned().id).toBe(first.id);
    await sb.cliOk(['down']);
    expect(linkExists(first.id)).toBe(false);
  });
});
