/** `l3iso apply`: converge the engine on a declarative state file. */
import type { Command } from 'commander';
import * as fs from 'node:fs';
import { L3isoError } from '../../errors';
import type { ApplyResult } from '../../declarative/apply';
import type { DesiredState, StateFileError } from '../../declarative/schema';
import { declarativeSchema, holdersModule } from '../../lazy';
import { log } from '../../log';
import { withEngine, type GlobalOptions, type Runner } from '../context';
import { EXIT_USAGE, printJson } from '../output';
import { examples, jsonOption } from '../options';

/** The schema (and its YAML parser) load when apply runs, not with the CLI. */
const isFileError = (err: unknown): err is StateFileError =>
  err instanceof declarativeSchema().StateFileError;

/** One line per problem, each naming its path in the file; exit 2. */
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

export function registerApply(program: Command, run: Runner): void {
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
    .action((opts: ApplyCliOptions) => run((g) => apply(g, opts)));
}

/** The verb: parse, converge (or plan with --dry-run), warn, print; exit 2 on a bad file. */
function apply(g: GlobalOptions, opts: ApplyCliOptions): number | void {
  let desired: DesiredState;
  try {
    desired = declarativeSchema().parseState(readFile(opts.file), opts.file);
  } catch (err) {
    if (isFileError(err)) return reportFileErrors(err, opts.file, g);
    throw err;
  }
  const o = {
    prune: opts.prune === true,
    dryRun: opts.dryRun === true,
    force: opts.force === true,
    createCgroups: opts.createCgroups === true,
  };
  let r: ApplyResult;
  try {
    r = withEngine(g, (e) => e.apply(desired, o), opts.dryRun ? {} : { write: 'apply' });
  } catch (err) {
    if (isFileError(err)) return reportFileErrors(err, opts.file, g);
    throw err;
  }
  warnApplied(r);
  if (g.json) return printJson(r);
  process.stdout.write(applyText(r));
}

function warnApplied(r: ApplyResult): void {
  if (r.sockets.length && !r.dryRun)
    log.warn(
      `apply took addresses from live sockets: ${holdersModule().describeSockets(r.sockets)}`,
    );
  if (r.notLocal.length)
    log.warn(
      `${r.notLocal.length} addresses are neither local in the engine's network namespace nor in a managed prefix (binds to them fail with EADDRNOTAVAIL): ${r.notLocal.slice(0, 8).join(', ')}${r.notLocal.length > 8 ? ', ...' : ''}`,
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
      ? `${verb}: ${s.create} created, ${s.update} updated, ${s.remove} removed, ${s.unchanged} unchanged, ${s.kept} kept; +${s.addressesAdded} -${s.addressesRemoved} addresses${r.poolsAdded.length ? `; pools added: ${r.poolsAdded.join(', ')}` : ''}`
      : `nothing to change: ${s.unchanged} cells as in the file${s.kept ? `, ${s.kept} not in it kept (--prune releases them)` : ''}`,
  );
  return lines.join('\n') + '\n';
}
