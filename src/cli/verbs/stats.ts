/** `l3iso stats`: per-cell traffic, drops and refusals. */
import type { Command } from 'commander';
import type { Rates, StatsReport } from '../../observe/stats';
import { countersModule, statsModule } from '../../lazy';
import { withEngine, type GlobalOptions, type Runner } from '../context';
import { examples, jsonOption, positiveSeconds } from '../options';
import { printJson, table } from '../output';
import { interruptSignal, pause, watchStdout } from '../signals';

function statsText(report: StatsReport, rates?: Map<string, Rates>): string {
  return table(
    statsModule().statsHeaders(rates !== undefined),
    statsModule().statsRows(report, rates),
  );
}

export function registerStats(program: Command, run: Runner): void {
  program
    .command('stats')
    .summary('per-cell traffic, drops and refusals')
    .description(
      'One line per cell: packets/bytes its sockets received (RX) and sent (TX) at the ' +
        'cgroup_skb hooks, the same at the uplink (XDP ingress / tc egress, when attached), ' +
        'packet drops and refused socket operations. Sorted by total bytes, largest first; the ' +
        'last line counts sockets outside every cell. --json gives exact numbers and the ' +
        'drops and refusals by reason.\n\n' +
        '--watch SECONDS redraws until interrupted, with per-second rates since the last draw ' +
        '(with --json: one JSON document per line each time).',
    )
    .option('-w, --watch <seconds>', 'redraw every SECONDS', positiveSeconds('--watch'))
    .addOption(jsonOption())
    .addHelpText(
      'after',
      examples(['l3iso stats', 'l3iso stats --watch 2', 'l3iso stats --json | jq ".cells[0]"']),
    )
    .action((opts: { watch?: number }) =>
      run((g) => (opts.watch === undefined ? statsOnce(g) : watchStats(g, opts.watch))),
    );
}

function statsOnce(g: GlobalOptions): void {
  const report = withEngine(g, (e) => e.stats());
  if (g.json) return printJson(report);
  process.stdout.write(statsText(report));
}

/** Redraws every `every` seconds with the rates since the last draw, until interrupted. */
async function watchStats(g: GlobalOptions, every: number): Promise<void> {
  const out = watchStdout();
  const { signal, dispose } = interruptSignal();
  const tty = process.stdout.isTTY === true;
  const namers = new (countersModule().NamerCache)();
  let prev: { report: StatsReport; at: bigint } | undefined;
  try {
    do {
      const at = process.hrtime.bigint();
      const report = withEngine(g, (e) => e.stats(namers));
      const seconds = prev ? Number(at - prev.at) / 1e9 : 0;
      const rates = prev ? statsModule().ratesBetween(prev.report, report, seconds) : new Map();
      prev = { report, at };
      if (g.json) {
        const now = new Date().toISOString();
        process.stdout.write(
          JSON.stringify({ time: now, interval: seconds || null, ...report }) + '\n',
        );
      } else {
        const head =
          `l3iso stats  ${new Date().toLocaleTimeString()}  ${report.cells.length} cells  ` +
          `every ${every}s${seconds ? `  (rates over ${seconds.toFixed(1)}s)` : ''}\n`;
        const body = statsText(report, rates);
        process.stdout.write(tty ? `\x1b[H\x1b[2J${head}${body}` : `${head}${body}\n`);
      }
      if (out.closed()) break;
    } while (await pause(every * 1000, signal));
  } finally {
    dispose();
  }
}
