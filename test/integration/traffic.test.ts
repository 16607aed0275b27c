// DESIGN.md, packet layer: "cgroup_skb ingress/egress: per-cell packet and
// byte counters". bpf/skb.bpf.c counts skb->len from the network header on
// (IP header + transport header + payload), and GSO segments as packets.
// `show --json` reports them as traffic.{rx,tx}{Packets,Bytes}.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, V6, type BgProc, type Op, type Sandbox } from '../harness/sandbox';

const U = 8401;
const T = 8402;
const N = 7;
const S = 123;
const K = 300_000;

interface Traffic {
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
}

describe('per-cell traffic counters', () => {
  let sb: Sandbox;
  const echo: Record<number, BgProc> = {};

  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('t');
    sb.cg('idle');
    await sb.assign('t', V4(1), V6(1));
    await sb.assign('idle', V4(2), V6(2));
    for (const fam of [4, 6] as const) {
      echo[fam] = sb.spawnProbe(null, [
        { op: 'socket', fam, type: 'udp', ...(fam === 6 ? { v6only: true } : {}) },
        { op: 'bind', addr: fam === 4 ? V4(9) : V6(9), port: U },
        { op: 'serve_echo' },
      ]);
      await echo[fam].ready();
    }
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  const traffic = async (cg = 't'): Promise<Traffic> => (await sb.show(cg)).traffic;
  const delta = (a: Traffic, b: Traffic): Traffic => ({
    rxPackets: b.rxPackets - a.rxPackets,
    rxBytes: b.rxBytes - a.rxBytes,
    txPackets: b.txPackets - a.txPackets,
    txBytes: b.txBytes - a.txBytes,
  });

  it('show --json has the four traffic counters', async () => {
    const t = await traffic();
    for (const k of ['rxPackets', 'rxBytes', 'txPackets', 'txBytes'] as const) {
      expect(typeof t[k], k).toBe('number');
      expect(t[k]).toBeGreaterThanOrEqual(0);
    }
  });

  for (const fam of [4, 6] as const) {
    const overhead = fam === 4 ? 20 + 8 : 40 + 8;

    it(`v${fam}: N UDP datagrams of S bytes and their echoes: exact packet and byte deltas`, async () => {
      const before = await traffic();
      const idleBefore = await traffic('idle');
      const ops: Op[] = [{ op: 'socket', fam, type: 'udp' }];
      for (let i = 0; i < N; i++) {
        ops.push({ op: 'sendto', addr: fam === 4 ? V4(9) : V6(9), port: U, size: S });
        ops.push({ op: 'recvfrom', timeout: 5 });
      }
      const r = await sb.probe('t', ops);
      expect(r.status, r.stdout + r.stderr).toBe(0);
      const echoes = r.ops.filter((o) => o.op === 'recvfrom');
      expect(echoes).toHaveLength(N);
      for (const e of echoes) expect(e.data).toHaveLength(S);
      const d = delta(before, await traffic());
      expect(d).toEqual({
        txPackets: N,
        txBytes: N * (S + overhead),
        rxPackets: N,
        rxBytes: N * (S + overhead),
      });
      // nothing is charged to another cell
      expect(delta(idleBefore, await traffic('idle'))).toEqual({
        rxPackets: 0,
        rxBytes: 0,
        txPackets: 0,
        txBytes: 0,
      });
    });

    it(`v${fam}: a TCP upload of K bytes from the cell counts at least K tx bytes`, async () => {
      const srv = sb.spawnProbe(null, [
        { op: 'socket', fam, ...(fam === 6 ? { v6only: true } : {}) },
        { op: 'bind', addr: fam === 4 ? V4(9) : V6(9), port: T + fam },
        { op: 'listen' },
        { op: 'accept', as: 'c', timeout: 10 },
        { op: 'recv', id: 'c', timeout: 10, quiet: true },
      ]);
      await srv.waitFor((l) => l.op === 'listen');
      const before = await traffic();
      const r = await sb.probe('t', [
        { op: 'socket', fam },
        { op: 'connect', addr: fam === 4 ? V4(9) : V6(9), port: T + fam },
        { op: 'send', size: K },
        { op: 'shutdown' },
        { op: 'recv', timeout: 10 },
      ]);
      expect(r.status, r.stdout + r.stderr).toBe(0);
      const got = await srv.waitFor((l) => l.op === 'recv');
      expect(got).toMatchObject({ ok: true, len: K });
      const d = delta(before, await traffic());
      expect(d.txPackets).toBeGreaterThan(0);
      expect(d.txBytes).toBeGreaterThanOrEqual(K);
      // SYN, ACKs, FIN come back
      expect(d.rxPackets).toBeGreaterThan(0);
      expect(d.rxBytes).toBeGreaterThan(0);
    });

    it(`v${fam}: a TCP download of K bytes into the cell counts at least K rx bytes`, async () => {
      const srv = sb.spawnProbe('t', [
        { op: 'socket', fam, ...(fam === 6 ? { v6only: true } : {}) },
        { op: 'bind', addr: fam === 4 ? V4(1) : V6(1), port: T + 10 + fam },
        { op: 'listen' },
        { op: 'accept', as: 'c', timeout: 10 },
        { op: 'recv', id: 'c', timeout: 10, quiet: true },
      ]);
      await srv.waitFor((l) => l.op === 'listen');
      const before = await traffic();
      const r = await sb.probe(null, [
        { op: 'socket', fam },
        { op: 'bind', addr: fam === 4 ? V4(9) : V6(9), port: 0 },
        { op: 'connect', addr: fam === 4 ? V4(1) : V6(1), port: T + 10 + fam },
        { op: 'send', size: K },
        { op: 'shutdown' },
        { op: 'recv', timeout: 10 },
      ]);
      expect(r.status, r.stdout + r.stderr).toBe(0);
      const got = await srv.waitFor((l) => l.op === 'recv');
      expect(got).toMatchObject({ ok: true, len: K });
      await srv.exited;
      const d = delta(before, await traffic());
      expect(d.rxPackets).toBeGreaterThan(0);
      expect(d.rxBytes).toBeGreaterThanOrEqual(K);
      expect(d.txPackets).toBeGreaterThan(0);
    });
  }
});
