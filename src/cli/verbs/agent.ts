/**
 * `l3iso agent`: registration only; the server is loaded when the verb runs.
 */
import type { Command } from 'commander';
import { DEFAULT_AGENT_SOCKET } from '../../agent/api';
import { L3isoError } from '../../errors';
import { agentClient, agentServer, announceModule, fleetModule, logModule } from '../../lazy';
import type { PoolBackend } from '../../agent/pools';
import type { FleetLog } from '../../fleet/host';
import { asRoot, type GlobalOptions, type Runner } from '../context';
import { examples, positiveInt, positiveSeconds } from '../options';

interface AgentFlags {
  socket?: string;
  resync: number;
  watchDocker?: boolean;
  etcd?: string;
  hostId?: string;
  leaseTtl: number;
  etcdTimeout: number;
  announceBird?: string;
  birdcSocket?: string;
}

/** Fleet mode's pools (etcd), or undefined for this host's own. */
async function fleetPools(
  pinDir: string,
  o: AgentFlags,
  log: FleetLog,
): Promise<PoolBackend | undefined> {
  if (o.etcd === undefined) {
    if (o.hostId !== undefined || o.announceBird !== undefined)
      throw new L3isoError('EUSAGE', '--host-id and --announce-bird need --etcd');
    return undefined;
  }
  if (o.hostId === undefined) throw new L3isoError('EUSAGE', '--etcd needs --host-id');
  const fleet = fleetModule();
  const endpoints = fleet.parseEndpoints(o.etcd);
  const bird = o.announceBird;
  const hostId = o.hostId;
  return fleet.FleetPools.start({
    pinDir,
    hostId,
    endpoints,
    timeoutMs: o.etcdTimeout * 1000,
    ttlSeconds: o.leaseTtl,
    resyncMs: Math.min(o.resync, 5) * 1000,
    log,
    ...(bird !== undefined
      ? {
          onBlocks: async (blocks) => {
            await announceModule().announceBird(
              { dir: bird, host: hostId, ...(o.birdcSocket ? { socket: o.birdcSocket } : {}) },
              blocks,
            );
          },
        }
      : {}),
  });
}

export function registerAgent(program: Command, run: Runner): void {
  const cmd = program
    .command('agent')
    .summary('run the agent: the engine over HTTP + JSON on a unix socket')
    .description(
      'Serve assign, release, list, show, policy, /metrics and /healthz over HTTP + JSON on ' +
        'a unix socket (mode 0600; or the socket systemd passes, LISTEN_FDS), and release cells whose cgroup is removed (inotify on ' +
        'their parent directories, plus a gc every --resync seconds). Refuses to start when ' +
        'another agent answers on the socket. Holds no state of its own: stopping or killing ' +
        'it changes no cell, and the next one resumes watching. The CLI uses it when its ' +
        'socket answers (L3ISO_AGENT_SOCKET, default ' +
        DEFAULT_AGENT_SOCKET +
        ') and works alone when not. Runs until SIGINT or SIGTERM.',
    )
    .option('--socket <path>', 'unix socket to listen on (env L3ISO_AGENT_SOCKET)')
    .option(
      '--resync <seconds>',
      'gc and re-list the cells this often',
      positiveSeconds('--resync'),
      30,
    )
    .option(
      '--watch-docker',
      'follow `docker events` (DOCKER_HOST picks the daemon): when a container dies or is destroyed, release its runtime record and the cell it names; never a --cgroup-parent cell',
    );
  fleetOptions(cmd)
    .addHelpText(
      'after',
      examples([
        'l3iso agent',
        'l3iso agent --etcd http://10.0.0.1:2379,http://10.0.0.2:2379 --host-id node-a',
        'l3iso agent --watch-docker',
        'l3iso agent --socket /run/l3iso/lab.sock --resync 10',
        'curl -s --unix-socket /run/l3iso/agent.sock http://l3iso/v1/cells',
      ]),
    )
    .action((opts: AgentFlags) => run((g) => serve(g, opts)));
}

/** The options of fleet mode (pools shared through etcd, blocks announced to BIRD). */
function fleetOptions(cmd: Command): Command {
  return cmd
    .option(
      '--etcd <urls>',
      'fleet mode: share pools through etcd (http://HOST:PORT, https://..., unix:///PATH; comma-separated)',
    )
    .option('--host-id <id>', "fleet mode: this host's name in etcd (unique in the fleet)")
    .option(
      '--lease-ttl <seconds>',
      "fleet mode: TTL of the host's lease; a host silent this long loses its blocks",
      positiveInt('--lease-ttl'),
      30,
    )
    .option(
      '--etcd-timeout <seconds>',
      'fleet mode: deadline of each etcd call',
      positiveSeconds('--etcd-timeout'),
      3,
    )
    .option(
      '--announce-bird <dir>',
      'fleet mode: write the held blocks as BIRD 2 static routes (DIR/l3iso4.conf, DIR/l3iso6.conf) and run `birdc configure`',
    )
    .option('--birdc-socket <path>', "BIRD's control socket for birdc -s");
}

/** The verb: serve until SIGINT or SIGTERM, then close. */
async function serve(g: GlobalOptions, opts: AgentFlags): Promise<void> {
  const { activationFd, startAgent } = agentServer();
  const listenFd = activationFd();
  const { log } = logModule();
  asRoot('agent');
  const socket = opts.socket ?? agentClient().agentSocket();
  // Before fleet mode registers this host: a second agent of the same
  // engine would take over the first one's host key.
  if (listenFd === undefined && (await agentServer().socketAnswers(socket)))
    throw new L3isoError('EAGENT_RUNNING', `another agent answers on ${socket}`);
  const pools = await fleetPools(g.pinDir, opts, log);
  const agent = await startAgent({
    ...(pools ? { pools } : {}),
    pinDir: g.pinDir,
    socket,
    log,
    resyncMs: opts.resync * 1000,
    watchDocker: opts.watchDocker === true,
    ...(listenFd !== undefined ? { listenFd } : {}),
  });
  await stopSignal(log);
  await agent.close();
}

/** Resolves on the first SIGINT or SIGTERM, logging which. */
function stopSignal(log: { info: (o: object, msg: string) => void }): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (sig: NodeJS.Signals) => {
      log.info({ signal: sig }, 'agent stopping');
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
