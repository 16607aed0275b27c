/** `l3iso up`: load the programs and attach them at the cgroup root. */
import type { Command } from 'commander';
import { log } from '../../log';
import { engineModule } from '../../lazy';
import { asRoot, type GlobalOptions, type Runner } from '../context';
import { examples, jsonOption, positiveInt } from '../options';
import { printJson } from '../output';

interface UpCliOptions {
  cgroupRoot: string;
  maxCells?: number;
  netns: string;
  managedPrefix?: string[];
  repair?: boolean;
}

export function registerUp(program: Command, run: Runner): void {
  program
    .command('up')
    .summary('load the programs and attach them at the cgroup root')
    .description(
      'Load the BPF programs, pin them and their maps under the pin dir, and attach them ' +
        'once at --cgroup-root, so every cgroup below it is covered. Idempotent: on a live ' +
        'engine it keeps every assignment and replaces the programs in place (atomically, ' +
        'through bpf_link_update). Refuses to start when a required kernel feature is missing.',
    )
    .requiredOption('--cgroup-root <path>', 'cgroup v2 directory whose subtree holds the cells')
    .option(
      '--managed-prefix <cidr...>',
      'prefixes whose addresses belong to cells: the uplink drops traffic to (and frames from) unowned ones',
    )
    .option(
      '--netns <path>',
      "network namespace for the sk_lookup demux (default: this process's)",
      '/proc/self/ns/net',
    )
    .option(
      '--max-cells <n>',
      'capacity of the cell maps (no memory is preallocated)',
      positiveInt('--max-cells'),
    )
    .option(
      '--repair',
      'on a live engine that lost pinned maps: re-create them, rebuilding the cell map from the owner map',
    )
    .addOption(jsonOption())
    .addHelpText(
      'after',
      examples([
        'l3iso up --cgroup-root /sys/fs/cgroup/unified/containers',
        'l3iso --pin-dir /sys/fs/bpf/l3iso-lab up --cgroup-root /sys/fs/cgroup/lab --max-cells 200000',
      ]),
    )
    .action((opts: UpCliOptions) => run((g) => up(g, opts)));
}

function up(g: GlobalOptions, opts: UpCliOptions): void {
  asRoot('up');
  const r = engineModule().Engine.up({
    pinDir: g.pinDir,
    cgroupRoot: opts.cgroupRoot,
    netns: opts.netns,
    repair: opts.repair === true,
    ...(opts.managedPrefix ? { managedPrefixes: opts.managedPrefix } : {}),
    ...(opts.maxCells !== undefined ? { maxCells: opts.maxCells } : {}),
    onProgress: (step) => log.info({ pinDir: g.pinDir }, step),
  });
  for (const w of r.routes?.warnings ?? []) log.warn(w);
  if (g.json) return printJson(r);
  const verb = r.fresh ? 'up' : 'already up; programs replaced in place';
  if (r.repaired.length) log.warn({ maps: r.repaired }, 'repaired missing maps');
  process.stdout.write(
    `engine ${verb}: ${r.programs.length} programs at ${r.cgroupRoot}, state in ${r.pinDir}\n` +
      r.maps
        .map((m) => `  map ${m.name.padEnd(15)} ${m.action.padEnd(7)} max ${m.maxEntries}\n`)
        .join(''),
  );
}
