/**
 * `node dist/bench/fleet.js [--n 1000]`: fleet-mode allocation on one host,
 * side by side, against a real etcd (Debian's etcd-server, on 127.0.0.1 with
 * random ports and a temporary data dir, removed in `finally`):
 *   - blocks: what `agent --etcd` does. Addresses come from the blocks the
 *     host holds, claimed in the kernel; etcd is asked once per block
 *     (64 addresses of a /26);
 *   - per address: one etcd compare-and-create transaction per address
 *     (an IPAM that keeps each address in etcd), then the same kernel claim.
 *   - pool, one host: `assign --from-pool` through a held Engine (the agent
 *     without --etcd), no etcd at all.
 * N cells of one address each, in turn; allocations/s per host, the kernel
 * claim alone (explicit addresses, no etcd) as the floor all pay, what etcd
 * adds per allocation, and the median etcd transaction, so the figures can
 * be carried to a remote etcd (add its round trip per block, or per
 * address). Each mode runs in 5 rounds, interleaved with the others, and
 * the cells are released (by another Engine) after each round: a pool's
 * kept copy of the owned addresses is taken again once per round
 * (src/pools/free.ts). Printed, never asserted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Etcd3 } from 'etcd3';
import { createSandbox } from '../src/demo/sandbox';
import { Engine } from '../src/engine/engine';
import { FleetPools } from '../src/fleet/host';
import { freeAddresses, parsePoolCidr } from '../src/pools/cidr';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('--n', 1000);
const POOL = '198.18.0.0/16';

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

async function startEtcd(dir: string): Promise<{ url: string; proc: ChildProcess }> {
  const [c, p] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${c}`;
  const peer = `http://127.0.0.1:${p}`;
  const proc = spawn(
    'etcd',
    [
      ...['--name', 'bench', '--data-dir', path.join(dir, 'data')],
      ...['--listen-client-urls', url, '--advertise-client-urls', url],
      ...['--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer],
      ...['--initial-cluster', `bench=${peer}`, '--log-outputs', 'stderr'],
    ],
    { stdio: 'ignore' },
  );
  const kv = new Etcd3({ hosts: url });
  for (let i = 0; ; i++) {
    try {
      await kv.get('/ready').string();
      break;
    } catch (err) {
      if (i > 100 || proc.exitCode !== null) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  kv.close();
  return { url, proc };
}

const log = { info: () => undefined, warn: () => undefined, error: () => undefined };

type Mode = (cells: string[]) => Promise<void>;

/** What `agent --etcd` does: addresses from held blocks, a block per 64. */
async function blockMode(
  pinDir: string,
  url: string,
): Promise<{ run: Mode; close(): Promise<number> }> {
  const f = await FleetPools.start({
    pinDir,
    hostId: 'bench',
    endpoints: [url],
    timeoutMs: 5000,
    ttlSeconds: 30,
    resyncMs: 3_600_000,
    log,
  });
  await f.add({ name: 'bench', cidr: POOL, blockSize: 26 });
  return {
    run: async (cells) => {
      for (const c of cells) await f.assign(c, 'bench', 1, {});
    },
    close: async () => {
      const n = f.heldBlocks().length;
      await f.close();
      return n;
    },
  };
}

/** One etcd compare-and-create per address, then the kernel claim. */
async function addressMode(
  pinDir: string,
  url: string,
): Promise<{ run: Mode; txnMs(): number; close(): Promise<void> }> {
  const kv = new Etcd3({ hosts: url });
  const lease = kv.lease(60);
  const id = await lease.grant();
  const txn: number[] = [];
  const candidates = freeAddresses(parsePoolCidr('198.20.0.0/16'), new Set<bigint>());
  return {
    run: async (cells) => {
      for (const c of cells)
        for (;;) {
          const a = candidates.next().value!;
          const key = `/l3iso/bench/addrs/${a.text}`;
          const t0 = process.hrtime.bigint();
          const r = await kv
            .if(key, 'Create', '==', 0)
            .then(kv.put(key).value('bench').lease(id))
            .commit();
          txn.push(Number(process.hrtime.bigint() - t0) / 1e6);
          if (!r.succeeded) continue;
          assign(pinDir, c, [a.text]);
          break;
        }
    },
    txnMs: () => [...txn].sort((x, y) => x - y)[Math.floor(txn.length / 2)]!,
    close: async () => {
      await lease.revoke().catch(() => undefined);
      kv.close();
    },
  };
}

/** One Engine per pin dir for the whole run, as the agent holds one. */
const engines = new Map<string, Engine>();
function engineOf(pinDir: string): Engine {
  let e = engines.get(pinDir);
  if (!e) engines.set(pinDir, (e = Engine.open(pinDir, { write: true })));
  return e;
}
const assign = (pinDir: string, cgroup: string, addrs: string[]) =>
  engineOf(pinDir).assign(cgroup, addrs);
const release = (pinDir: string, cgroup: string, addrs: string[]) =>
  engineOf(pinDir).release(cgroup, addrs);

/** The kernel claim alone (explicit addresses, no etcd): the floor both modes pay. */
function kernelMode(pinDir: string): Mode {
  const candidates = freeAddresses(parsePoolCidr('198.19.0.0/16'), new Set<bigint>());
  return (cells) => {
    for (const c of cells) assign(pinDir, c, [candidates.next().value!.text]);
    return Promise.resolve();
  };
}

/** `assign --from-pool` on one host, through the held Engine. */
function poolMode(pinDir: string): Mode {
  engineOf(pinDir).poolAdd('local', '198.21.0.0/16');
  return (cells) => {
    for (const c of cells) engineOf(pinDir).assignFromPool(c, 'local', 1);
    return Promise.resolve();
  };
}

/** Rounds of the modes in turn, so load that comes and goes on a
 * shared machine weighs on all of them alike. Seconds per mode. */
async function interleaved(pinDir: string, cells: string[], modes: Mode[]): Promise<number[]> {
  const rounds = 5;
  const per = Math.ceil(cells.length / rounds);
  const seconds = modes.map(() => 0);
  for (let r = 0; r < rounds; r++) {
    const chunk = cells.slice(r * per, (r + 1) * per);
    for (const [i, m] of modes.entries()) {
      const t = process.hrtime.bigint();
      await m(chunk);
      seconds[i]! += Number(process.hrtime.bigint() - t) / 1e9;
      for (const c of chunk) release(pinDir, c, []);
    }
  }
  return seconds;
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l3iso-bench-fleet-'));
  const sb = createSandbox('l3if', []);
  let etcd: ChildProcess | undefined;
  try {
    const e = await startEtcd(dir);
    etcd = e.proc;
    Engine.up({ pinDir: sb.pinDir, cgroupRoot: sb.cgroupRoot, netns: sb.netnsPath });
    const cells = Array.from({ length: N }, (_, i) => `c${i}`);
    for (const c of cells) fs.mkdirSync(path.join(sb.cgroupRoot, c));
    const blocks = await blockMode(sb.pinDir, e.url);
    const perAddr = await addressMode(sb.pinDir, e.url);
    const [k, b, p, l] = await interleaved(sb.pinDir, cells, [
      kernelMode(sb.pinDir),
      blocks.run,
      perAddr.run,
      poolMode(sb.pinDir),
    ]);
    const held = await blocks.close();
    const txnMs = perAddr.txnMs();
    await perAddr.close();
    const r = (x: number) => Math.round(x);
    const ms = (x: number) => Math.round(x * 100) / 100;
    const report = {
      n: N,
      etcd: 'local (127.0.0.1), one member',
      allocationsPerSecond: {
        etcdPerBlock: r(N / b!),
        etcdPerAddress: r(N / p!),
        kernelClaimOnly: r(N / k!),
        poolOneHost: r(N / l!),
        ratio: ms(p! / b!),
      },
      // what etcd adds to each allocation, over the kernel claim alone
      etcdMsPerAllocation: {
        etcdPerBlock: ms(((b! - k!) / N) * 1000),
        etcdPerAddress: ms(((p! - k!) / N) * 1000),
      },
      etcdTransactionMedianMs: ms(txnMs),
      blocksTaken: held,
    };
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } finally {
    for (const e of engines.values()) e.close();
    engines.clear();
    etcd?.kill('SIGKILL');
    sb.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench fleet: ${String(err)}\n`);
  process.exitCode = 1;
});
