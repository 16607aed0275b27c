// ICMP "ping" sockets (SOCK_DGRAM/IPPROTO_ICMP). The kernel runs the connect
// hook for them but not the bind hook (protocols with their own bind skip
// it) nor the sendmsg hook, so their confinement rests on the packet layer:
// a packet with a source the cell does not own never leaves (cgroup_skb
// egress). README "Known limits" states what this means for users.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, type Sandbox } from '../harness/sandbox';

const CELL = V4(3);
const HOST = V4(7);

const PY = `
import json, socket, struct, sys, errno
def echo():
    body = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + b"l3iso-ping"
    s = sum((body[i] << 8) + body[i + 1] for i in range(0, len(body), 2))
    s = (s >> 16) + (s & 0xffff); s = ~(s + (s >> 16)) & 0xffff
    return body[:2] + struct.pack("!H", s) + body[4:]
def run(step):
    try:
        return {"ok": True, "value": step()}
    except OSError as e:
        return {"ok": False, "errno": errno.errorcode.get(e.errno, str(e.errno))}
def sock():
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
mode = sys.argv[1]
if mode == "connect":
    s = sock()
    print(json.dumps(run(lambda: (s.connect((sys.argv[2], 0)), s.send(echo()), s.getsockname()[0])[2])))
elif mode == "bind-foreign-send":
    s = sock()
    print(json.dumps(run(lambda: (s.bind((sys.argv[2], 0)), s.getsockname()[0])[1])))
    print(json.dumps(run(lambda: s.sendto(echo(), (sys.argv[3], 0)))))
`;

describe('ping sockets in a cell', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    // ping sockets are off by default in a new netns; allow them for root.
    const r = await sb.onHost(['sysctl', '-qw', 'net.ipv4.ping_group_range=0 2147483647']);
    expect(r.status).toBe(0);
    await sb.up();
    sb.cg('p');
    await sb.assign('p', CELL);
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  const py = async (...args: string[]) => {
    const r = await sb.inCell('p', ['python3', '-c', PY, ...args]);
    return r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { ok: boolean; value?: string; errno?: string });
  };

  it('connect() forces the cell address as the source', async () => {
    const [r] = await py('connect', HOST);
    expect(r).toEqual({ ok: true, value: CELL });
  });

  it('ping -I <cell address> works from a cell', async () => {
    const r = await sb.inCell('p', ['ping', '-n', '-c', '1', '-W', '2', '-I', CELL, HOST]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/1 received/);
  });

  it('a ping socket bound to a foreign address cannot send from it', async () => {
    const before = (await sb.show('p')).dropped['spoofed-source'] as number;
    const [bound, sent] = await py('bind-foreign-send', HOST, HOST);
    // The kernel skips the bind hook for ping sockets...
    expect(bound).toEqual({ ok: true, value: HOST });
    // ...but the packet-layer anti-spoof drops what it sends.
    expect(sent).toEqual({ ok: false, errno: 'EPERM' });
    expect((await sb.show('p')).dropped['spoofed-source']).toBe(before + 1);
  });
});
