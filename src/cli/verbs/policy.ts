/** `l3iso policy`: a cell's raw-socket policy and uplink allow-list. */
import type { Command } from 'commander';
import type { PolicyChange } from '../../cells/policy';
import { L3isoError } from '../../errors';
import { withEngine, type Runner } from '../context';
import { examples, jsonOption } from '../options';
import { printJson } from '../output';

interface PolicyCliOptions {
  allowRaw?: boolean;
  denyRaw?: boolean;
  allowFrom?: string[];
  clear?: boolean;
}

function changeOf(opts: PolicyCliOptions): PolicyChange {
  if (opts.allowRaw && opts.denyRaw)
    throw new L3isoError('EUSAGE', '--allow-raw and --deny-raw exclude each other');
  const change: PolicyChange = {
    ...(opts.allowRaw ? { allowRaw: true } : opts.denyRaw ? { allowRaw: false } : {}),
    ...(opts.allowFrom ? { allowFrom: opts.allowFrom } : {}),
    ...(opts.clear ? { clearAllowList: true } : {}),
  };
  if (Object.keys(change).length === 0)
    throw new L3isoError('EUSAGE', 'policy needs --allow-raw, --deny-raw, --allow-from or --clear');
  return change;
}

export function registerPolicy(program: Command, run: Runner): void {
  program
    .command('policy')
    .summary("change a cell's policy")
    .description(
      'Raw sockets (SOCK_RAW) are denied in a cell by default: socket() fails with EPERM. ' +
        '--allow-raw lets the cell open them; its packets still cannot leave with a source ' +
        'address the cell does not own (egress anti-spoof).',
    )
    .argument('<cgroup>', 'cell cgroup')
    .option('--allow-raw', 'let the cell open raw IP sockets')
    .option('--deny-raw', 'refuse raw IP sockets (the default)')
    .option('--allow-from <cidr...>', 'at the uplink, admit only these source prefixes (v4 and v6)')
    .option('--clear', 'drop the allow-list: admit every source again')
    .addOption(jsonOption())
    .addHelpText(
      'after',
      examples([
        'l3iso policy web --allow-raw',
        'l3iso policy web --allow-from 198.51.100.0/24 2001:db8:100::/48',
        'l3iso policy web --clear',
      ]),
    )
    .action((cgroup: string, opts: PolicyCliOptions) =>
      run((g) => {
        const change = changeOf(opts);
        const r = withEngine(g, (e) => e.policy(cgroup, change), { write: 'policy' });
        if (g.json) return printJson(r);
        process.stdout.write(
          `${r.cell}: raw sockets ${r.allowRaw ? 'allowed' : 'denied'}; ` +
            `uplink sources ${r.allowFrom ? r.allowFrom.join(' ') : 'all'}\n`,
        );
      }),
    );
}
