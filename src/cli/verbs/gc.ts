/** `l3iso gc`: release what nobody can release by name any more. */
import type { Command } from 'commander';
import type { GcResult } from '../../cells/cells';
import { ociHookModule } from '../../lazy';
import { withEngine, type Runner } from '../context';
import { examples, jsonOption } from '../options';
import { printJson } from '../output';

function gcText(r: GcResult & { ociRecords: string[] }): string {
  return (
    `gc: ${r.cells.length} stale cells released` +
    (r.cells.length
      ? ` (${r.cells.map((c) => `#${c.id}: ${c.addresses.join(',') || '-'}`).join('; ')})`
      : '') +
    `, ${r.orphanedAddresses.length} orphaned addresses freed` +
    `, ${r.repaired.length} cells repaired, ${r.staleCounters.length} stale counters removed` +
    `, ${r.ociRecords.length} stale container records removed\n`
  );
}

export function registerGc(program: Command, run: Runner): void {
  program
    .command('gc')
    .summary('release cells whose cgroup is gone, and claims of crashed assigns')
    .description(
      'A cgroup removed without `release` leaves its cell in the maps (its addresses stay ' +
        'owned). gc releases such cells, destroys their sockets, and frees addresses claimed ' +
        'by an assign that died before it finished. It also finishes releases that were ' +
        'interrupted and recomputes every derived field of every cell from the owner map. ' +
        'It refuses (releasing nothing) when the cgroup root cannot be resolved. --check only ' +
        'reports what is inconsistent. Last, it removes the OCI hook records ' +
        '(/run/l3iso/oci) of containers whose cell is gone.',
    )
    .option('--check', 'report inconsistencies, change nothing (exit 1 if there are any)')
    .addOption(jsonOption())
    .addHelpText('after', examples(['l3iso gc', 'l3iso gc --json', 'l3iso gc --check']))
    .action((opts: { check?: boolean }) =>
      run((g) => {
        if (opts.check) {
          const problems = withEngine(g, (e) => e.check());
          if (g.json) printJson({ inconsistencies: problems });
          else
            process.stdout.write(
              problems.length ? problems.map((p) => `${p}\n`).join('') : 'gc: state consistent\n',
            );
          return problems.length ? 1 : 0;
        }
        const r = withEngine(
          g,
          (e) => ({ ...e.gc(), ociRecords: ociHookModule().gcOciRecords(e) }),
          { write: 'gc' },
        );
        if (g.json) return printJson(r);
        process.stdout.write(gcText(r));
      }),
    );
}
