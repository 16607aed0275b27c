/**
 * Declarative verbs: apply, export, status.
 */
import type { Command } from 'commander';
import * as fs from 'node:fs';
import { L3isoError } from '../errors';
import type { ApplyResult } from '../declarative/apply';
import type { EngineStatus } from '../declarative/export';
import type { DesiredState, StateFileError } from '../declarative/schema';
import {
  declarativeApply,
  declarativeExport,
  declarativeSchema,
  holdersModule,
  privilege,
  yamlModule,
} from '../lazy';
import { log } from '../log';
import type { GlobalOptions, Runner } from './commands';
import { EXIT_USAGE, printJson } from './output';
import { examples, jsonOption } from './options';

export function registerDeclarativeCommands(program: Command, run: Runner): void {
  registerApply(program, run);
  registerExport(program, run);
  registerStatus(program, run);
}

/** One line per problem, each naming its path in the file; exit 2. */
/** The verbs' implementations load when one of them runs, not with the CLI. */
const requireRoot = (verb: string): void => privilege().requireRoot(verb);
const isFileError = (err: unknown): err is StateFileError =>
  err instanceof declarativeSchema().StateFileError;

function reportFileErrors(err: StateFileError, file: string, g: GlobalOptions): number {
  if (g.json) {
    printJson({ error: { code: 'EUSAGE', message: `${file}: invalid state`, errors: err.errors } });
  } else {
    for (const e of err.errors)
      process.stderr.write(`l3iso: ${file}: ${e.replace(/[\r\n]+/g, ' ')}\n`);
    process.stderr.write(`l3iso: ${file}: ${err.errors.length} problem(s); nothing was changed\n`);
  }
  return EXIT_USAGE;
}

function readFile(file: string): string {
  try {
    return file === '-' ? fs.readFileSync(0, 'utf8') : fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new L3isoError(
      'EUSAGE',
      `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    );
  }
}

interface ApplyCliOptions {
  file: string;
  prune?: boolean;
  dryRun?: boolean;
  force?: boolean;
  createCgroups?: boolean;
}

function registerApply(program: Command, run: Runner): void {
  program
    .command('apply')
    .summary('converge the engine on a declarative state file')
    .description(
      'Read FILE (JSON or YAML, the format `export` prints) and make the cells match it: ' +
        'assign missing addresses, set policies, and with --prune release addresses and cells ' +
        'the file does not list. Engine settings in the file (cgroupRoot, managedPrefixes, uplinks) ' +
        'are checked, never changed. Everything is validated first: an invalid file, a missing ' +
        'cgroup, an address another cell holds or live sockets change nothing. Idempotent.',
    )
    .requiredOption('-f, --file <file>', 'state file (JSON or YAML; - reads stdin)')
    .option('--prune', 'release addresses and whole cells the file does not list')
    .option('--dry-run', 'report what would change; change nothing')
    .option(
      '--force',
      'take pruned addresses from live sockets, and make cells of cgroups whose processes hold sockets',
    )
    .option('--create-cgroups', "create the cells' cgroup directories that do not exist")
    .addOption(jsonOption())
    .addHelpText(
      'after',
      examples([
        'l3iso apply -f state.yaml --dry-run',
        'l3iso export > state.json && l3iso apply -f state.json --prune',
      ]),
    )
    .action((opts: ApplyCliOptions) =>
      run((g) => {
        let desired: DesiredState;
        try {
          desired = declarativeSchema().parseState(readFile(opts.file), opts.file);
        } catch (err) {
          if (isFileError(err)) return reportFileErrors(err, opts.file, g);
          throw err;
        }
        if (!opts.dryRun) requireRoot('apply');
        let r: ApplyResult;
        try {
          r = declarativeApply().applyState(g.pinDir, desired, {
            prune: opts.prune === true,
            dryRun: opts.dryRun === true,
            force: opts.force === true,
            createCgroups: opts.createCgroups === true,
          });
        } catch (err) {
          if (isFileError(err)) return reportFileErrors(err, opts.file, g);
          throw err;
        }
        if (r.sockets.length && !r.dryRun)
          log.warn(
            `apply took addresses from live sockets: ${holdersModule().describeSockets(r.sockets)}`,
          );
        if (r.notLocal.length)
          log.warn(
            `${r.notLocal.length} addresses are neither local in the engine's network namespace nor in a managed prefix (binds to them fail with EADDRNOTAVAIL): ${r.notLocal.slice(0, 8).join(', ')}${r.notLocal.length > 8 ? ', ...' : ''}`,
          );
        if (g.json) return printJson(r);
        process.stdout.write(applyText(r));
      }),
    );
}

function applyText(r: ApplyResult): string {
  const lines: string[] = [];
  for (const c of r.cells) {
    if (c.action === 'unchanged' || c.action === 'kept') continue;
    const parts = [...c.added.map((a) => `+${a}`), ...c.removed.map((a) => `-${a}`)];
    if (c.policy)
      parts.push(
        `policy allowRaw=${c.policy.allowRaw} allowFrom=${c.policy.allowFrom?.join(',') ?? 'any'}`,
      );
    lines.push(`${c.cgroup}: ${c.action} ${parts.join(' ')}`.trimEnd());
  }
  const s = r.summary;
  const verb = r.dryRun ? 'would change' : 'changed';
  lines.push(
    r.changed
      ? `${verb}: ${s.create} created, ${s.update} updated, ${s.remove} removed, ${s.unchanged} unchanged, ${s.kept} kept; +${s.addressesAdded} -${s.addressesRemoved} addresses`
      : `nothing to change: ${s.unchanged} cells as in the file${s.kept ? `, ${s.kept} not in it kept (--prune releases them)` : ''}`,
  );
  return lines.join('\n') + '\n';
}

function registerExport(program: Command, run: Runner): void {
  program
    .command('export')
    .summary('print the live state in the format apply reads')
    .description(
      'Print the engine settings and every cell (cgroup relative to the root, addresses with ' +
        'the primaries first, policy) as JSON, or YAML with --yaml. bpffs does not survive a ' +
        'reboot: `export > state.json` before, `up` and `apply -f state.json` after, restore the cells.',
    )
    .option('--yaml', 'print YAML instead of JSON')
    .addHelpText(
      'after',
      examples(['l3iso export > /var/lib/l3iso/state.json', 'l3iso export --yaml']),
    )
    .action((opts: { yaml?: boolean }) =>
      run((g) => {
        requireRoot('export');
        const r = declarativeExport().exportState(g.pinDir);
        for (const s of r.skipped)
          log.warn(`cell ${s} is not exported: its cgroup is gone (run \`l3iso gc\`)`);
        if (opts.yaml) process.stdout.write(yamlModule().stringify(r.document));
        else printJson(r.document);
      }),
    );
}

function registerStatus(program: Command, run: Runner): void {
  program
    .command('status')
    .summary("show the engine's settings, counts and map pressure")
    .addOption(jsonOption())
    .addHelpText('after', examples(['l3iso status', 'l3iso status --json']))
    .action(() =>
      run((g) => {
        requireRoot('status');
        const r = declarativeExport().engineStatus(g.pinDir);
        if (g.json) return printJson(r);
        process.stdout.write(statusText(r));
      }),
    );
}

function statusText(r: EngineStatus): string {
  const uplinks = r.uplinks.map((u) => `${u.iface} (${u.mode})`).join(', ') || '-';
  const lines = [
    `engine in ${r.pinDir}`,
    `  cgroup root     ${r.cgroupRoot} (cgroup id ${r.rootCgroupId})`,
    `  netns           inode ${r.netnsInode}${r.inEngineNetns ? ' (this one)' : " (not this process's)"}`,
    `  max cells       ${r.maxCells ?? '-'}`,
    `  managed         ${r.managedPrefixes.join(', ') || '-'}`,
    `  uplinks         ${uplinks}`,
    `  cells           ${r.counts.cells}`,
    `  addresses       ${r.counts.addresses} (IPv4 ${r.counts.addresses4}, IPv6 ${r.counts.addresses6})`,
    '  map pressure',
    ...r.maps.map(
      (m) =>
        `    ${m.map.padEnd(15)} ${String(m.entries).padStart(8)} / ${String(m.maxEntries).padEnd(8)} ${(m.pressure * 100).toFixed(1)} %`,
    ),
  ];
  return lines.join('\n') + '\n';
}
