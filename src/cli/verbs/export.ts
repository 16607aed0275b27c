/** `l3iso export`: the live state in the format apply reads. */
import type { Command } from 'commander';
import { yamlModule } from '../../lazy';
import { log } from '../../log';
import { asRoot, withEngine, type Runner } from '../context';
import { printJson } from '../output';
import { examples } from '../options';

export function registerExport(program: Command, run: Runner): void {
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
        asRoot('export');
        const r = withEngine(g, (e) => e.export());
        for (const s of r.skipped)
          log.warn(`cell ${s} is not exported: its cgroup is gone (run \`l3iso gc\`)`);
        if (opts.yaml) process.stdout.write(yamlModule().stringify(r.document));
        else printJson(r.document);
      }),
    );
}
