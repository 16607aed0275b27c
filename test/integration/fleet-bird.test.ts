// Announcement: a fleet host's blocks become BGP routes. The host (a sandbox
// netns: engine, agent, BIRD) peers over a veth with a second netns the test
// creates (BIRD with a kernel protocol). The peer learns the host's block,
// in BIRD and in its kernel table, when the agent takes the block, and drops
// it when the agent gives it back. Debian's bird2 (scripts/setup.sh); if it
// cannot run here the test fails and says why.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent } from '../harness/agent';
import { call } from '../harness/http-unix';
import { until } from '../harness/poll';
import { BgProc, createSandbox, run, type Sandbox } from '../harness/sandbox';
import { startEtcd, type TestEtcd } from '../harness/etcd';
import { spawn } from 'node:child_process';

function which(cmd: string): string | undefined {
  for (const d of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin']))
    if (fs.existsSync(path.join(d, cmd))) return path.join(d, cmd);
  return undefined;
}

describe('fleet announcement to BIRD 2', () => {
  let etcd: TestEtcd;
  let sb: Sandbox;
  let dir: string;
  const peerNs = `l3t-${process.pid}-peer`;
  const procs: BgProc[] = [];
  let sockA = '';
  let sockB = '';
  let agentSock = '';
  let bird = '';
  let birdc = '';

  function startBird(netnsPath: string, conf: string, sock: string): BgProc {
    const p = new BgProc(
      spawn(
        'nsenter',
        [`--net=${netnsPath}`, '--', bird, '-f', '-c', conf, '-s', sock, '-P', `${sock}.pid`],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      ),
    );
    procs.push(p);
    return p;
  }

  const showB = async (): Promise<string> =>
    execFileSync(birdc, ['-s', sockB, 'show', 'route', 'protocol', 'host4'], { encoding: 'utf8' });
  const kernelB = async (): Promise<string> =>
    (await run(['ip', '-n', peerNs, 'route', 'show', 'proto', 'bird'])).stdout;

  beforeAll(async () => {
    bird = which('bird') ?? '';
    birdc = which('birdc') ?? '';
    if (!bird || !birdc)
      throw new Error(
        'bird2 is not installed: `apt-get install -y bird2` (scripts/setup.sh does it)',
      );
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l3iso-bird-'));
    etcd = await startEtcd();
    sb = await createSandbox();
    await sb.up(['--managed-prefix', '10.88.0.0/16']);
    // the peer: its own netns, a veth to the host's
    execFileSync('ip', ['netns', 'add', peerNs]);
    execFileSync('ip', [
      '-n',
      sb.netns,
      'link',
      'add',
      'bgpA',
      'type',
      'veth',
      'peer',
      'name',
      'bgpB',
      'netns',
      peerNs,
    ]);
    execFileSync('ip', ['-n', sb.netns, 'addr', 'add', '10.99.0.1/30', 'dev', 'bgpA']);
    execFileSync('ip', ['-n', peerNs, 'addr', 'add', '10.99.0.2/30', 'dev', 'bgpB']);
    for (const [ns, dev] of [
      [sb.netns, 'bgpA'],
      [peerNs, 'bgpB'],
      [peerNs, 'lo'],
    ] as const)
      execFileSync('ip', ['-n', ns, 'link', 'set', dev, 'up']);
    // the host's BIRD: the agent's include files in static protocols, exported to the peer
    const inc = path.join(dir, 'inc');
    fs.mkdirSync(inc);
    fs.writeFileSync(path.join(inc, 'l3iso4.conf'), '');
    fs.writeFileSync(path.join(inc, 'l3iso6.conf'), '');
    const confA = path.join(dir, 'a.conf');
    fs.writeFileSync(
      confA,
      `router id 10.99.0.1;
protocol device {}
protocol static l3iso4 {
  ipv4;
  include "${inc}/l3iso4.conf";
}
protocol static l3iso6 {
  ipv6;
  include "${inc}/l3iso6.conf";
}
protocol bgp peer { local 10.99.0.1 as 65001; neighbor 10.99.0.2 as 65002;
  ipv4 { import none; export where proto = "l3iso4"; }; }
`,
    );
    const confB = path.join(dir, 'b.conf');
    fs.writeFileSync(
      confB,
      `router id 10.99.0.2;
protocol device {}
protocol kernel { ipv4 { import none; export all; }; }
protocol bgp host4 { local 10.99.0.2 as 65002; neighbor 10.99.0.1 as 65001;
  ipv4 { import all; export none; }; }
`,
    );
    sockA = path.join(dir, 'a.ctl');
    sockB = path.join(dir, 'b.ctl');
    const a = startBird(sb.nsPath, confA, sockA);
    const b = startBird(`/run/netns/${peerNs}`, confB, sockB);
    const up = await until('both BIRDs to answer', async () => {
      for (const p of [a, b])
        if (p.child.exitCode !== null) return `bird could not run here: ${p.stderr}`;
      return fs.existsSync(sockA) && fs.existsSync(sockB) ? 'up' : undefined;
    });
    if (up !== 'up') throw new Error(up);
    await until(
      'the BGP session',
      async () => {
        const out = execFileSync(birdc, ['-s', sockB, 'show', 'protocols', 'host4'], {
          encoding: 'utf8',
        });
        return /Established/.test(out) ? true : undefined;
      },
      60_000,
    );
    agentSock = path.join(dir, 'agent.sock');
    const agent = await startAgent(sb, {
      socket: agentSock,
      args: [
        '--etcd',
        etcd.unixUrl,
        '--host-id',
        'bgp-host',
        '--lease-ttl',
        '10',
        '--announce-bird',
        inc,
        '--birdc-socket',
        sockA,
      ],
      ready: (p) => p.stderr.includes('fleet: lease granted'),
    });
    procs.push(agent);
    const r = await call(agentSock, 'POST', '/v1/pools/add', {
      name: 'bgp',
      cidr: '10.88.0.0/16',
      blockSize: 28,
    });
    expect(r.status, r.text).toBe(200);
  }, 120_000);

  afterAll(async () => {
    for (const p of procs.reverse()) await p.kill();
    try {
      execFileSync('ip', ['netns', 'del', peerNs], { stdio: 'ignore' });
    } catch {
      /* never made */
    }
    await sb?.destroy();
    await etcd?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('the peer learns the block when the agent takes it, and drops it when it is given back', async () => {
    expect(await showB()).not.toMatch(/10\.88\./);
    const cell = path.basename(sb.cg('web'));
    const r = await call(agentSock, 'POST', '/v1/assign', { cgroup: cell, pool: 'bgp', count: 17 });
    expect(r.status, r.text).toBe(200);
    // 17 addresses of /28 blocks: two blocks, both announced
    expect(fs.readFileSync(path.join(dir, 'inc', 'l3iso4.conf'), 'utf8')).toMatch(
      /route 10\.88\.0\.0\/28 blackhole;\nroute 10\.88\.0\.16\/28 blackhole;/,
    );
    await until('the peer to learn both blocks', async () => {
      const out = await showB();
      return /10\.88\.0\.0\/28/.test(out) && /10\.88\.0\.16\/28/.test(out) ? true : undefined;
    });
    await until('the peer\u2019s kernel to route them to the host', async () => {
      const k = await kernelB();
      return /10\.88\.0\.0\/28 via 10\.99\.0\.1/.test(k) &&
        /10\.88\.0\.16\/28 via 10\.99\.0\.1/.test(k)
        ? true
        : undefined;
    });
    // release: the blocks go back to the pool and out of BGP
    const rel = await call(agentSock, 'POST', '/v1/release', { cgroup: cell });
    expect(rel.status, rel.text).toBe(200);
    await until('the peer to drop the blocks', async () =>
      (await showB()).match(/10\.88\./) ? undefined : true,
    );
    await until('the peer\u2019s kernel to drop them', async () =>
      /10\.88\./.test(await kernelB()) ? undefined : true,
    );
    expect(fs.readFileSync(path.join(dir, 'inc', 'l3iso4.conf'), 'utf8')).not.toMatch(/route/);
  }, 120_000);
});
