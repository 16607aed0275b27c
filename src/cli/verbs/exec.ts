/** `l3iso exec`: run a command in a new cell. */
import type { Command } from 'commander';
import { L3isoError } from '../../errors';
import { log } from '../../log';
import { withEngine, type Runner } from '../context';
import { examples } from '../options';

export function registerExec(program: Command, run: Runner): void {
  program
    .command('exec')
    .summary('run a command in a new cell (like `ip afnetns exec`)')
    .description(
      'Create a cell cgroup under the root, assign ADDR... to it, and run CMD inside it, ' +
        "confined as the threat model asks of a runtime: docker's default capabilities " +
        'without CAP_NET_RAW in every capability set, no_new_privs, every mount nosuid, no ' +
        'bpffs, read-only cgroup, sysfs and /proc/sys mounts, a cgroup namespace rooted ' +
        'at the cell, and a PID namespace of its own with tini as pid 1. --user drops root ' +
        "entirely. Exits with CMD's status (125 when the confinement itself fails: CMD is " +
        'then not run). Whatever CMD leaves running ends with it. Afterwards the cell is ' +
        'released and its cgroup removed, unless --keep.',
    )
    .option('--name <name>', 'cell cgroup name under the root (default exec-PID)')
    .option('--keep', 'keep the cell (cgroup and addresses) after the command exits', false)
    .option(
      '--user <user[:group]>',
      "run CMD as this user (name or uid) and group (default: the user's primary group)",
    )
    .argument('<addr...>', 'addresses, then -- and the command')
    .addHelpText(
      'after',
      examples([
        'l3iso exec 192.0.2.10 -- python3 -m http.server 8080',
        'l3iso exec --name api --keep 192.0.2.11 2001:db8::11 -- ./server',
        'l3iso exec --user www-data 192.0.2.12 -- nginx -g "daemon off;"',
      ]),
    )
    .action((_args: string[], o: { name?: string; keep: boolean; user?: string }, cmd: Command) =>
      run(async (g) => {
        const raw = g.argv;
        const dash = raw.indexOf('--');
        if (dash < 0 || dash === raw.length - 1) {
          throw new L3isoError(
            'EUSAGE',
            'exec needs the command after --, as in: l3iso exec ADDR -- CMD [ARGS]',
          );
        }
        const argv = raw.slice(dash + 1);
        const addresses = cmd.args.slice(0, cmd.args.length - argv.length);
        return withEngine(
          g,
          (e) =>
            e.exec({
              keep: o.keep,
              addresses,
              argv,
              ...(o.name !== undefined ? { name: o.name } : {}),
              ...(o.user !== undefined ? { user: o.user } : {}),
              onAssigned: (r) =>
                log.info({ cell: r.cell, addresses: [...r.added, ...r.unchanged] }, 'cell ready'),
            }),
          { write: 'exec' },
        );
      }),
    );
}
