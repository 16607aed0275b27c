/** `l3iso metrics`: the counters in Prometheus text format. */
import type { Command } from 'commander';
import { metricsModule } from '../../lazy';
import type { Runner } from '../context';
import { examples } from '../options';

export function registerMetrics(program: Command, run: Runner): void {
  program
    .command('metrics')
    .summary('print the counters in Prometheus text format')
    .description(
      'Print every counter in the Prometheus text exposition format (what `serve` answers ' +
        'on /metrics), read from the maps now:\n' +
        '  l3iso_cells                                    cells in this instance\n' +
        '  l3iso_cell_{rx,tx}_{packets,bytes}_total{cell}  socket-level traffic, every cell\n' +
        '  l3iso_cell_uplink_{rx,tx}_{packets,bytes}_total{cell}  uplink traffic (when non-zero)\n' +
        '  l3iso_cell_refusals_total{cell,reason}         refused socket operations (non-zero)\n' +
        '  l3iso_cell_drops_total{cell,reason}            dropped packets (non-zero)\n' +
        '  l3iso_events_suppressed_total                  audit events over the rate limit\n' +
        'cell="" counts sockets outside every cell; a cell whose cgroup is gone is "#<id>".',
    )
    .addHelpText(
      'after',
      examples([
        'l3iso metrics',
        'l3iso metrics | grep l3iso_cell_refusals_total',
        'l3iso metrics > /var/lib/node_exporter/textfile/l3iso.prom',
      ]),
    )
    .action(() =>
      run(async (g) => {
        const exporter = new (metricsModule().MetricsExporter)(
          metricsModule().engineSnapshots(g.pinDir),
        );
        process.stdout.write(await exporter.scrape());
      }),
    );
}
