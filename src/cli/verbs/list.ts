/** `l3iso list`: the cells and their addresses. */
import type { Command } from 'commander';
import type { CellsResponse } from '../../agent/api';
import type { CellView } from '../../cells/inventory';
import { viaAgent, withEngine, type Runner } from '../context';
import { examples, jsonOption } from '../options';
import { printJson, table } from '../output';

function cellRow(c: CellView): string[] {
  const policy = [c.allowRaw ? 'raw' : '', c.allowList ? 'allow-list' : '']
    .filter(Boolean)
    .join(',');
  return [c.cell, c.addresses.join(',') || '-', c.loopback4, policy || '-', c.id];
}

export function registerList(program: Command, run: Runner): void {
  program
    .command('list')
    .alias('ls')
    .summary('list the cells and their addresses')
    .addOption(jsonOption())
    .addHelpText('after', examples(['l3iso list', 'l3iso list --json | jq ".cells[].addresses"']))
    .action(() =>
      run(
        async (g) => {
          const r =
            (await viaAgent<CellsResponse>(g, 'GET', '/v1/cells')) ??
            withEngine(g, (e) => e.list());
          if (g.json) return printJson(r);
          if (r.cells.length === 0) {
            process.stdout.write(`no cells below ${r.root}\n`);
            return;
          }
          process.stdout.write(
            table(['CELL', 'ADDRESSES', 'LOOPBACK', 'POLICY', 'CGROUP-ID'], r.cells.map(cellRow)),
          );
        },
        { lazyEngine: true },
      ),
    );
}
