// DESIGN.md: "raw sockets (AF_INET/6 SOCK_RAW) — EPERM unless the cell's
// policy allows them (cgroup/sock_create); packets leaving a cell with a
// foreign source address are dropped either way". bpf/sock.bpf.c
// (l3_sock_create) and bpf/skb.bpf.c (l3_egress anti-spoof).
// (AF_PACKET under `l3iso exec` is covered by exec.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, V6, type BgProc, type Op, type Sandbox } from '../harness/sandbox';

const U4 = 8201;
const U6 = 8202;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const rawOpens: Op[] = [
  { op: 'socket', id: 'icmp4', fam: 4, type: 'raw' }, // SOCK_RAW, IPPROTO_ICMP
  { op: 'socket', id: 'icmp6', fam: 6, type: 'raw' }, // SOCK_RAW, IPPROTO_ICMPV6
  { op: 'socket', id: 'ip4', fam: 4, type: 'ipraw' }, // SOCK_RAW, IPPROTO_RAW
  { op: 'socket', id: 'ip6', fam: 6, type: 'ipraw' },
];

describe('raw sockets and egress anti-spoof', () => {
  let sb: Sandbox;
  let rx4: BgProc;
  let rx6: BgProc;

  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('r');
    sb.cg('other');
    await sb.assign('r', V4(1), V6(1));
    await sb.assign('other', V4(2), V6(2));
    // UDP receivers on host addresses, outside the managed root.
    rx4 = sb.spawnProbe(null, [
      { op: 'socket', fam: 4, type: 'udp' },
      { op: 'bind', addr: V4(9), port: U4 },
      { op: 'serve_echo' },
    ]);
    rx6 = sb.spawnProbe(null, [
      { op: 'socket', fam: 6, type: 'udp', v6only: true },
      { op: 'bind', addr: V6(9), port: U6 },
      { op: 'serve_echo' },
    ]);
    await rx4.ready();
    await rx6.ready();
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  const show = (cg: string) => sb.show(cg);
  const got = (rx: BgProc, data: string) => rx.events().filter((e) => e.data === data);

  it('by default raw ICMP/ICMPv6/IPPROTO_RAW sockets are EPERM, counted as sock-raw', async () => {
    const before = (await show('r')).refused['sock-raw'] ?? 0;
    const r = await sb.probe('r', rawOpens, { keepGoing: true });
    expect(r.ops.map((o) => o.errno)).toEqual(['EPERM', 'EPERM', 'EPERM', 'EPERM']);
    const s = await show('r');
    expect(s.allowRaw).toBe(false);
    expect(s.refused['sock-raw']).toBe(before + 4);
    // datagram ICMP (ping) sockets are not raw and stay allowed
    const ping = await sb.probe('r', [{ op: 'socket', fam: 4, type: 'icmp' }]);
    expect(ping.last).toMatchObject({ ok: true });
  });

  it('policy --allow-raw: raw sockets open', async () => {
    const p = await sb.cliOk(['policy', 'r', '--allow-raw', '--json']);
    expect(p.json).toMatchObject({ cell: 'r', allowRaw: true });
    expect((await show('r')).allowRaw).toBe(true);
    const before = (await show('r')).refused['sock-raw'];
    const r = await sb.probe('r', rawOpens, { keepGoing: true });
    expect(r.ops.map((o) => o.ok)).toEqual([true, true, true, true]);
    expect((await show('r')).refused['sock-raw']).toBe(before);
    // the policy is per cell
    const o = await sb.probe('other', [rawOpens[0]], { keepGoing: true });
    expect(o.last).toMatchObject({ ok: false, errno: 'EPERM' });
  });

  const forge = (fam: 4 | 6, src: string, data: string) =>
    sb.probe(
      'r',
      [
        { op: 'socket', fam, type: 'ipraw' },
        {
          op: 'send_forged',
          src,
          dst: fam === 4 ? V4(9) : V6(9),
          dport: fam === 4 ? U4 : U6,
          sport: 9999,
          data,
        },
      ],
      { keepGoing: true },
    );

  for (const fam of [4, 6] as const) {
    const A = fam === 4 ? V4 : V6;
    const rx = () => (fam === 4 ? rx4 : rx6);

    it(`v${fam}: an IP_HDRINCL packet with a forged source is dropped, spoofed-source +1 each`, async () => {
      const before = (await show('r')).dropped['spoofed-source'];
      // a host address (nobody's), then another cell's address
      const r1 = await forge(fam, A(8), `forged-host-v${fam}`);
      expect(r1.last, JSON.stringify(r1.ops)).toMatchObject({ op: 'send_forged' });
      expect((await show('r')).dropped['spoofed-source']).toBe(before + 1);
      await forge(fam, A(2), `forged-cell-v${fam}`);
      expect((await show('r')).dropped['spoofed-source']).toBe(before + 2);
      await sleep(1000);
      expect(got(rx(), `forged-host-v${fam}`)).toEqual([]);
      expect(got(rx(), `forged-cell-v${fam}`)).toEqual([]);
      // and the other cell is not charged for it
      expect((await show('other')).dropped['spoofed-source']).toBe(0);
    });

    it(`v${fam}: the same packet with the cell’s own source arrives`, async () => {
      const before = (await show('r')).dropped['spoofed-source'];
      const r = await forge(fam, A(1), `genuine-v${fam}`);
      expect(r.last).toMatchObject({ ok: true, op: 'send_forged' });
      const ev = await rx().waitFor((e) => e.event === 'dgram' && e.data === `genuine-v${fam}`);
      expect(ev.peer).toMatchObject({ addr: A(1), port: 9999 });
      expect((await show('r')).dropped['spoofed-source']).toBe(before);
    });
  }

  it('policy --deny-raw restores EPERM', async () => {
    const p = await sb.cliOk(['policy', 'r', '--deny-raw', '--json']);
    expect(p.json).toMatchObject({ cell: 'r', allowRaw: false });
    const before = (await show('r')).refused['sock-raw'];
    const r = await sb.probe('r', rawOpens, { keepGoing: true });
    expect(r.ops.map((o) => o.errno)).toEqual(['EPERM', 'EPERM', 'EPERM', 'EPERM']);
    const s = await show('r');
    expect(s.allowRaw).toBe(false);
    expect(s.refused['sock-raw']).toBe(before + 4);
  });
});
