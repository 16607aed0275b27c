/** `l3iso assign`: give addresses to a cell (through the agent when it answers). */
import type { Command } from 'commander';
import type { AssignRequest } from '../../agent/api';
import type { AssignResult } from '../../cells/cells';
import { L3isoError } from '../../errors';
import { log } from '../../log';
import { holdersModule } from '../../lazy';
import { viaAgent, withEngine, type GlobalOptions, type Runner } from '../context';
import { examples, jsonOption, positiveInt } from '../options';
import { printJson } from '../output';

export function registerAssign(program: Command, run: Runner): void {
  program
    .command('assign')
    .summary('give addresses to a cell')
    .description(
      'Make CGROUP a cell owning ADDR... (IPv4 and/or IPv6), or --count addresses of a pool ' +
        "(--from-pool: the lowest free ones; the cell ends up with --count of the pool's " +
        'addresses, so re-running takes none). The first address of each ' +
        'family a cell gets is its primary: wildcard binds land there. An address belongs to ' +
        'at most one cell; the claim is atomic in the kernel. Re-running is harmless. ' +
        'CGROUP is an absolute path or a path relative to the cgroup root.',
    )
    .argument('<cgroup>', 'cell cgroup (absolute or relative to the cgroup root)')
    .argument('[addr...]', 'IPv4 or IPv6 addresses (none with --from-pool)')
    .option('--from-pool <name>', 'take the addresses from this pool (see `l3iso pool`)')
    .option(
      '--count <k>',
      "with --from-pool: how many of the pool's addresses the cell holds (default 1)",
      positiveInt('--count'),
    )
    .option(
      '--force',
      'make the cgroup a cell although its processes already hold sockets (they keep what they are bound to; see doctor)',
    )
    .addOption(jsonOption())
    .addHelpText(
      'after',
      examples([
        'l3iso assign web 192.0.2.10 2001:db8::10',
        'l3iso assign /sys/fs/cgroup/unified/containers/db 192.0.2.11',
        'l3iso assign api --from-pool web --count 2',
      ]),
    )
    .action((cgroup: string, addrs: string[], opts: AssignFlags) =>
      run((g) => assign(g, cgroup, addrs, opts), { lazyEngine: true }),
    );
}

/** The verb: through the agent when it answers, else in this process. */
async function assign(
  g: GlobalOptions,
  cgroup: string,
  addrs: string[],
  opts: AssignFlags,
): Promise<void> {
  checkFlags(addrs, opts);
  const o = { force: opts.force === true, checkLocal: true };
  const pool = opts.fromPool !== undefined ? { pool: opts.fromPool, count: opts.count ?? 1 } : {};
  const r =
    (await viaAgent<AssignResult>(g, 'POST', '/v1/assign', {
      cgroup,
      ...(addrs.length ? { addresses: addrs } : pool),
      ...(opts.force ? { force: true } : {}),
      checkLocal: true,
    } satisfies AssignRequest)) ??
    withEngine(
      g,
      (e) =>
        opts.fromPool !== undefined
          ? e.assignFromPool(cgroup, opts.fromPool, opts.count ?? 1, o)
          : e.assign(cgroup, addrs, o),
      { write: 'assign' },
    );
  warnAssigned(r);
  if (g.json) return printJson(r);
  const added = r.added.length ? `assigned ${r.added.join(', ')}` : 'nothing new';
  const same = r.unchanged.length ? ` (already had ${r.unchanged.join(', ')})` : '';
  process.stdout.write(`${r.cell}: ${added}${same}; loopback 127.0.0.1 -> ${r.loopback4}\n`);
}

interface AssignFlags {
  force?: boolean;
  fromPool?: string;
  count?: number;
}

function checkFlags(addrs: readonly string[], opts: AssignFlags): void {
  if (opts.fromPool !== undefined && addrs.length)
    throw new L3isoError('EUSAGE', 'give addresses or --from-pool, not both');
  if (opts.fromPool === undefined && opts.count !== undefined)
    throw new L3isoError('EUSAGE', '--count needs --from-pool');
  if (opts.fromPool === undefined && !addrs.length)
    throw new L3isoError('EUSAGE', 'assign needs addresses or --from-pool NAME');
}

function warnAssigned(r: AssignResult): void {
  if (r.sockets.length)
    log.warn(`${r.cell} already had sockets: ${holdersModule().describeSockets(r.sockets)}`);
  const notLocal = r.notLocal ?? [];
  if (notLocal.length)
    log.warn(
      `${r.cell}: ${notLocal.join(', ')} ${notLocal.length > 1 ? 'are' : 'is'} neither local in the engine's network namespace nor in a managed prefix: binds to ${notLocal.length > 1 ? 'them' : 'it'} fail with EADDRNOTAVAIL until ${notLocal.length > 1 ? 'they are' : 'it is'} added to an interface, or the engine is brought up with --managed-prefix covering ${notLocal.length > 1 ? 'them' : 'it'}`,
    );
}
