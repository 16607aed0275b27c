/** `l3iso release`: take addresses (or the whole cell) back. */
import type { Command } from 'commander';
import type { ReleaseRequest } from '../../agent/api';
import type { ReleaseResult } from '../../cells/cells';
import { L3isoError } from '../../errors';
import { log } from '../../log';
import { holdersModule } from '../../lazy';
import { viaAgent, withEngine, type GlobalOptions, type Runner } from '../context';
import { examples, jsonOption, positiveSeconds } from '../options';
import { printJson } from '../output';

export function registerRelease(program: Command, run: Runner): void {
  program
    .command('release')
    .summary('take addresses (or the whole cell) back')
    .description(
      'Release ADDR... from the cell, or with no ADDR the whole cell: its cgroup becomes an ' +
        'ordinary, unconfined cgroup. New binds to a released address fail at once. Refuses ' +
        'while sockets are bound to the addresses, naming their processes, unless --force ' +
        '(TCP connections are reset and UDP sockets get ECONNABORTED; TCP listeners are left ' +
        'open but unreachable, so servers do not spin, until their process closes them) or ' +
        '--drain SECONDS (new connections are refused at once, established ones may finish; ' +
        'what is left at the deadline is reset).',
    )
    .argument('<cgroup>', 'cell cgroup')
    .argument('[addr...]', 'addresses to release (default: all, and the cell itself)')
    .option('--force', 'release although sockets use the addresses')
    .option(
      '--drain <seconds>',
      'refuse new connections now, reset what is left after SECONDS',
      positiveSeconds('--drain'),
    )
    .addOption(jsonOption())
    .addHelpText(
      'after',
      examples([
        'l3iso release web 2001:db8::10',
        'l3iso release web',
        'l3iso release web 192.0.2.10 --drain 30',
      ]),
    )
    .action((cgroup: string, addrs: string[], opts: ReleaseFlags) =>
      run((g) => release(g, cgroup, addrs, opts), { lazyEngine: true }),
    );
}

interface ReleaseFlags {
  force?: boolean;
  drain?: number;
}

/** The verb: through the agent when it answers, else in this process. */
async function release(
  g: GlobalOptions,
  cgroup: string,
  addrs: string[],
  opts: ReleaseFlags,
): Promise<void> {
  if (opts.force && opts.drain !== undefined)
    throw new L3isoError('EUSAGE', '--force and --drain exclude each other');
  const o = {
    force: opts.force === true,
    ...(opts.drain !== undefined ? { drainSeconds: opts.drain } : {}),
  };
  const r =
    (await viaAgent<ReleaseResult>(g, 'POST', '/v1/release', {
      cgroup,
      ...(addrs.length ? { addresses: addrs } : {}),
      ...(o.force ? { force: true } : {}),
      ...(opts.drain !== undefined ? { drainSeconds: opts.drain } : {}),
    } satisfies ReleaseRequest)) ??
    withEngine(g, (e) => e.release(cgroup, addrs, o), { write: 'release' });
  if (r.sockets.length)
    log.warn(
      `${r.cell}: took the addresses from live sockets (${holdersModule().describeSockets(r.sockets)}); listeners stay open but unreachable until their process closes them`,
    );
  if (g.json) return printJson(r);
  const what = r.released.length ? r.released.join(', ') : 'no addresses';
  process.stdout.write(
    `${r.cell}: released ${what}${r.removed ? '; cell removed' : ''}${r.socketsDestroyed ? `; ${r.socketsDestroyed} sockets destroyed` : ''}\n`,
  );
}
