/**
 * Servers on the host side of a sandbox's netns (outside every cell), on
 * d0's unassigned .9 addresses with ephemeral ports: what cells connect and
 * send to when a test looks at the source address or the family they get.
 */
import { V4, V6, type BgProc, type Op, type Sandbox } from './sandbox';

export type HostServerKind = 'tcp4' | 'tcp6' | 'udp4' | 'udp6';

export interface HostServer {
  proc: BgProc;
  port: number;
}

/** TCP: a banner server answering "host4"/"host6"; UDP: an echo server. */
function ops(kind: HostServerKind): Op[] {
  const fam = kind.endsWith('4') ? 4 : 6;
  const socket: Op = {
    op: 'socket',
    fam,
    ...(kind.startsWith('udp') ? { type: 'udp' } : {}),
    ...(fam === 6 ? { v6only: true } : {}),
  };
  const bind: Op = { op: 'bind', addr: fam === 4 ? V4(9) : V6(9), port: 0 };
  return kind.startsWith('tcp')
    ? [socket, bind, { op: 'listen' }, { op: 'serve_banner', banner: `host${fam}` }]
    : [socket, bind, { op: 'serve_echo' }];
}

/** The servers asked for, each ready, with the port it got. */
export async function hostServers<K extends HostServerKind>(
  sb: Sandbox,
  kinds: readonly K[],
): Promise<Record<K, HostServer>> {
  const procs = kinds.map((k) => sb.spawnProbe(null, ops(k)));
  const ready = await Promise.all(procs.map((p) => p.ready()));
  return Object.fromEntries(
    kinds.map((k, i) => [k, { proc: procs[i]!, port: ready[i]!.port as number }]),
  ) as Record<K, HostServer>;
}
