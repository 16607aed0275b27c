/**
 * `l3iso agent`: registration only; the server is loaded when the verb runs.
 */
import type { Command } from 'commander';
import { DEFAULT_AGENT_SOCKET } from '../agent/api';
import { agentClient, agentServer, logModule, privilege } from '../lazy';
import type { Runner } from './commands';
import { examples, positiveSeconds } from './options';

export function registerAgentCommand(program: Command, run: Runner): void {
  program
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
    )
    .addHelpText(
      'after',
      examples([
        'l3iso agent',
        'l3iso agent --watch-docker',
        'l3iso agent --socket /run/l3iso/lab.sock --resync 10',
        'curl -s --unix-socket /run/l3iso/agent.sock http://l3iso/v1/cells',
      ]),
    )
    .action((opts: { socket?: string; resync: number; watchDocker?: boolean }) =>
      run(async (g) => {
        const { activationFd, startAgent } = agentServer();
        const listenFd = activationFd();
        const { log } = logModule();
        privilege().requireRoot('agent');
        const agent = await startAgent({
          pinDir: g.pinDir,
          socket: opts.socket ?? agentClient().agentSocket(),
          log,
          resyncMs: opts.resync * 1000,
          watchDocker: opts.watchDocker === true,
          ...(listenFd !== undefined ? { listenFd } : {}),
        });
        await new Promise<void>((resolve) => {
          const stop = (sig: NodeJS.Signals) => {
            log.info({ signal: sig }, 'agent stopping');
            process.off('SIGINT', stop);
            process.off('SIGTERM', stop);
            resolve();
          };
          process.on('SIGINT', stop);
          process.on('SIGTERM', stop);
        });
        await agent.close();
      }),
    );
}
