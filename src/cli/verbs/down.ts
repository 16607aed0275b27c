/** `l3iso down`: detach everything and forget every assignment. */
import type { Command } from 'commander';
import { log } from '../../log';
import { engineModule } from '../../lazy';
import { asRoot, type Runner } from '../context';
import { examples, jsonOption } from '../options';
import { printJson } from '../output';

export function registerDown(program: Command, run: Runner): void {
  program
    .command('down')
    .summary('detach everything and forget every assignment of this instance')
    .description(
      'Detach the programs and remove the pinned links and maps of the instance\nselected by --pin-dir. Refuses while cells exist (they would be unconfined) unless\n--force. Removes only what l3iso created; anything else in the dir is left and named.',
    )
    .option('--force', 'go down although cells exist: they become ordinary, unconfined cgroups')
    .addOption(jsonOption())
    .addHelpText(
      'after',
      examples(['l3iso down', 'l3iso down --force', 'l3iso --pin-dir /sys/fs/bpf/l3iso-lab down']),
    )
    .action((opts: { force?: boolean }) =>
      run((g) => {
        asRoot('down');
        const r = engineModule().Engine.down(g.pinDir, { force: opts.force === true });
        for (const w of r.routes?.warnings ?? []) log.warn(w);
        if (g.json) return printJson(r);
        if (r.cells.length)
          log.warn({ cells: r.cells }, `${r.cells.length} cells are no longer confined`);
        process.stdout.write(
          `engine down: ${r.links} links detached, ${r.uplinks} uplinks detached, ${r.maps} maps removed from ${r.pinDir}` +
            (r.left.length ? `; left what l3iso did not create: ${r.left.join(', ')}` : '') +
            '\n',
        );
      }),
    );
}
