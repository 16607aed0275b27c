/**
 * An "outside" network namespace wired to a sandbox by a veth pair: the
 * sandbox's end plays the uplink (e.g. `up0`), the outside end (`out0`) a
 * remote machine. Cells' addresses live on the sandbox's lo and the outside
 * routes them via the sandbox's end, so all traffic crosses the veth and
 * stays inside the two test namespaces.
 *
 * The outside is torn down with the sandbox: addOutside() chains its own
 * cleanup onto sb.destroy(), so afterAll(() => sb.destroy()) removes both
 * namespaces, the veth pair and the processes started here. Its name starts
 * with the sandbox id, so sweepStale() also removes it after a crash.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  BgProc,
  PROBE,
  python,
  run,
  type Op,
  type ProbeResult,
  type RunOpts,
  type RunResult,
  type Sandbox,
  mustSync,
  parseJsonLines,
} from './sandbox';

export interface OutsideOptions {
  /** Interface name on the sandbox side (default up0). */
  engineIf?: string;
  /** Interface name on the outside side (default out0). */
  outsideIf?: string;
  /** The /24 between them: .1 on the sandbox end, .2 outside (default 10.99.0). */
  subnet?: string;
  /** Extra addresses (same /24) on the outside end, e.g. for ping -I. */
  extraOutside?: string[];
  /** Addresses (/32) put on the sandbox's lo: the cells' addresses. */
  engineLoopback?: string[];
  /** Prefixes the outside routes via the sandbox end (default 192.0.2.0/24). */
  routes?: string[];
}

export interface Outside {
  readonly netns: string;
  readonly nsPath: string;
  readonly engineIf: string;
  readonly outsideIf: string;
  /** Address of the sandbox end (x.x.x.1). */
  readonly engineAddr: string;
  /** Primary address of the outside end (x.x.x.2). */
  readonly outsideAddr: string;
  readonly engineMac: string;
  readonly outsideMac: string;
  /** argv prefix that runs a command in the outside namespace. */
  argv(cmd: string[]): string[];
  run(cmd: string[], opts?: RunOpts): Promise<RunResult>;
  spawn(cmd: string[]): BgProc;
  probe(ops: Op[], opts?: RunOpts & { keepGoing?: boolean }): Promise<ProbeResult>;
  spawnProbe(ops: Op[]): BgProc;
  destroy(): Promise<void>;
}

function macOf(netns: string, iface: string): string {
  const out = mustSync(['ip', '-n', netns, '-j', 'link', 'show', 'dev', iface]);
  const [link] = JSON.parse(out) as { address: string }[];
  return link.address;
}

export async function addOutside(sb: Sandbox, o: OutsideOptions = {}): Promise<Outside> {
  const netns = `${sb.id}-out`;
  const nsPath = `/run/netns/${netns}`;
  const engineIf = o.engineIf ?? 'up0';
  const outsideIf = o.outsideIf ?? 'out0';
  const subnet = o.subnet ?? '10.99.0';
  const engineAddr = `${subnet}.1`;
  const outsideAddr = `${subnet}.2`;
  const procs: BgProc[] = [];
  let destroyed = false;

  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    await Promise.all(procs.map((p) => p.kill()));
    // Deleting either namespace takes the veth pair with it.
    spawnSync('ip', ['netns', 'del', netns], { timeout: 20_000 });
  };

  // Chain onto the sandbox's teardown (which never throws).
  const sbDestroy = sb.destroy.bind(sb);
  (sb as { destroy: () => Promise<void> }).destroy = async () => {
    try {
      await destroy();
    } finally {
      await sbDestroy();
    }
  };

  try {
    mustSync(['ip', 'netns', 'add', netns]);
    mustSync(
      ['ip', '-n', sb.netns, '-batch', '-'],
      [
        'link set lo up',
        `link add ${engineIf} type veth peer name ${outsideIf} netns ${netns}`,
        `address add ${engineAddr}/24 dev ${engineIf}`,
        ...(o.engineLoopback ?? []).map((a) => `address add ${a}/32 dev lo`),
        `link set ${engineIf} up`,
      ].join('\n') + '\n',
    );
    mustSync(
      ['ip', '-n', netns, '-batch', '-'],
      [
        'link set lo up',
        `address add ${outsideAddr}/24 dev ${outsideIf}`,
        ...(o.extraOutside ?? []).map((a) => `address add ${a}/24 dev ${outsideIf}`),
        `link set ${outsideIf} up`,
        ...(o.routes ?? ['192.0.2.0/24']).map((p) => `route add ${p} via ${engineAddr}`),
      ].join('\n') + '\n',
    );
  } catch (e) {
    await destroy();
    throw e;
  }

  const argv = (cmd: string[]): string[] => ['nsenter', `--net=${nsPath}`, '--', ...cmd];
  const spawnBg = (cmd: string[]): BgProc => {
    const full = argv(cmd);
    const child = spawn(full[0], full.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const p = new BgProc(child);
    procs.push(p);
    return p;
  };

  return {
    netns,
    nsPath,
    engineIf,
    outsideIf,
    engineAddr,
    outsideAddr,
    engineMac: macOf(sb.netns, engineIf),
    outsideMac: macOf(netns, outsideIf),
    argv,
    run: (cmd, opts = {}) => run(argv(cmd), opts),
    spawn: spawnBg,
    async probe(ops, opts = {}) {
      const spec = JSON.stringify({ ops, keep_going: !!opts.keepGoing });
      const r = await run(argv([python(), PROBE, spec]), opts);
      const lines = parseJsonLines(r.stdout);
      const opLines = lines.filter((l) => typeof l.i === 'number');
      return { ...r, lines, ops: opLines, last: opLines[opLines.length - 1] ?? {} };
    },
    spawnProbe: (ops) => spawnBg([python(), PROBE, JSON.stringify({ ops })]),
    destroy,
  };
}
