/**
 * Observability verbs: stats, metrics, serve, events.
 */
import type { Command } from 'commander';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EventView } from '../observe/events';
import { DEFAULT_LISTEN } from '../model/defaults';
import type { Rates, StatsReport } from '../observe/stats';
import {
  countersModule,
  eventsModule,
  metricsModule,
  serveModule,
  stateModule,
  statsModule,
} from '../lazy';
import { log } from '../log';
import type { Runner } from './commands';
import { examples, jsonOption, positiveInt, positiveSeconds } from './options';
import { printJson, table } from './output';

/** An AbortSignal that SIGINT or SIGTERM aborts; dispose() restores the
 * default handlers (a second Ctrl-C then kills at once). */
function interruptSignal(): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    log.debug({ signal: sig }, 'stopping');
    dispose();
    ac.abort();
  };
  const dispose = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return { signal: ac.signal, dispose };
}

/** Resolves false when the signal aborts before `ms`. */
async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

/** Resolves true once stdout is closed under us (EPIPE: `| head`). */
function watchStdout(): { closed: () => boolean } {
  let closed = false;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') closed = true;
    else throw err;
  });
  return { closed: () => closed };
}

function statsText(report: StatsReport, rates?: Map<string, Rates>): string {
  return table(
    statsModule().statsHeaders(rates !== undefined),
    statsModule().statsRows(report, rates),
  );
}

export function registerObserveCommands(program: Command, run: Runner): void {
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
      run(async (g) => {
        if (opts.watch === undefined) {
          const report = statsModule().readStats(g.pinDir);
          if (g.json) return printJson(report);
          process.stdout.write(statsText(report));
          return;
        }
        const out = watchStdout();
        const { signal, dispose } = interruptSignal();
        const tty = process.stdout.isTTY === true;
        const namers = new (countersModule().NamerCache)();
        let prev: { report: StatsReport; at: bigint } | undefined;
        try {
          do {
            const at = process.hrtime.bigint();
            const report = statsModule().readStats(g.pinDir, namers);
            const seconds = prev ? Number(at - prev.at) / 1e9 : 0;
            const rates = prev
              ? statsModule().ratesBetween(prev.report, report, seconds)
              : new Map();
            prev = { report, at };
            if (g.json) {
              const now = new Date().toISOString();
              process.stdout.write(
                JSON.stringify({ time: now, interval: seconds || null, ...report }) + '\n',
              );
            } else {
              const head =
                `l3iso stats  ${new Date().toLocaleTimeString()}  ${report.cells.length} cells  ` +
                `every ${opts.watch}s${seconds ? `  (rates over ${seconds.toFixed(1)}s)` : ''}\n`;
              const body = statsText(report, rates);
              process.stdout.write(tty ? `\x1b[H\x1b[2J${head}${body}` : `${head}${body}\n`);
            }
            if (out.closed()) break;
          } while (await pause(opts.watch * 1000, signal));
        } finally {
          dispose();
        }
      }),
    );

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

  program
    .command('serve')
    .summary('serve /metrics and /healthz over HTTP')
    .description(
      'Run an HTTP server for Prometheus: GET /metrics answers the exposition of `metrics`, ' +
        'read from the maps at scrape time; GET /healthz answers 200 "ok" when the engine is ' +
        'up (its pinned maps open), 503 otherwise. Runs until SIGINT or SIGTERM. Logs go to ' +
        'stderr. Port 0 picks a free port (logged).',
    )
    .option('--listen <addr:port>', 'address and port to listen on', DEFAULT_LISTEN)
    .addHelpText(
      'after',
      examples([
        'l3iso serve',
        'l3iso serve --listen [::]:9469',
        'curl -s localhost:9469/metrics | grep l3iso_cells',
      ]),
    )
    .action((opts: { listen: string }) =>
      run(async (g) => {
        const listen = serveModule().parseListen(opts.listen);
        if (!stateModule().EngineState.isUp(g.pinDir))
          log.warn({ pinDir: g.pinDir }, 'engine is not up yet: /healthz answers 503 until it is');
        const { signal, dispose } = interruptSignal();
        try {
          const server = await serveModule().startMetricsServer({ pinDir: g.pinDir, listen, log });
          log.info(
            { address: server.address.host, port: server.address.port, pinDir: g.pinDir },
            'serving /metrics and /healthz',
          );
          if (!signal.aborted)
            await new Promise((resolve) => signal.addEventListener('abort', resolve));
          log.info('shutting down');
          await server.close();
        } finally {
          dispose();
        }
      }),
    );

  program
    .command('events')
    .summary('stream audit events: refusals and drops')
    .description(
      'Print the audit events of the l3_events ring buffer, one per line: time, cell, kind ' +
        '(refused or dropped), reason, address:port, pid and comm (packet-layer drops have no ' +
        'task: pid=-). With --json, one JSON object per line.\n\n' +
        'Without --follow, print what is buffered and exit; with --follow (implied by --count ' +
        'and --timeout), keep streaming until SIGINT. The kernel sends at most 2000 events per ' +
        'second and CPU; when it suppresses some, a line says how many. The buffer has one ' +
        'read position: two `events` at once split the events between them.',
    )
    .option('-f, --follow', 'keep streaming new events until interrupted')
    .option('--count <n>', 'exit after N events', positiveInt('--count'))
    .option('--timeout <seconds>', 'exit after SECONDS', positiveSeconds('--timeout'))
    .addOption(jsonOption('print one JSON object per event, one per line'))
    .addHelpText(
      'after',
      examples([
        'l3iso events --follow',
        'l3iso events --follow --json | jq -c "select(.reason == \\"bind-foreign\\")"',
        'l3iso events --json --count 1 --timeout 5',
      ]),
    )
    .action((opts: { follow?: boolean; count?: number; timeout?: number }) =>
      run(async (g) => {
        const out = watchStdout();
        const follow =
          Boolean(opts.follow) || opts.count !== undefined || opts.timeout !== undefined;
        const { signal, dispose } = interruptSignal();
        const print = (e: EventView): boolean => {
          if (out.closed()) return false;
          process.stdout.write(
            g.json ? JSON.stringify(e) + '\n' : eventsModule().formatEventLine(e) + '\n',
          );
          return true;
        };
        try {
          const r = await eventsModule().streamEvents({
            pinDir: g.pinDir,
            follow,
            signal,
            ...(opts.count !== undefined ? { count: opts.count } : {}),
            ...(opts.timeout !== undefined ? { timeoutMs: opts.timeout * 1000 } : {}),
            onReady: () => log.info({ pinDir: g.pinDir, follow }, 'reading audit events'),
            onEvent: print,
            onSuppressed: (delta, total) => {
              const time = new Date().toISOString();
              process.stdout.write(
                g.json
                  ? JSON.stringify({ time, kind: 'suppressed', count: delta, total }) + '\n'
                  : `${time} - suppressed ${delta} events (kernel rate limit: 2000/s per CPU), ${total} in total\n`,
              );
            },
          });
          log.debug({ events: r.events, end: r.end }, 'events done');
          if (r.end === 'timeout' && opts.count !== undefined && r.events < opts.count) {
            process.stderr.write(
              `l3iso: timed out after ${opts.timeout}s with ${r.events} of ${opts.count} events\n`,
            );
            return 1;
          }
        } finally {
          dispose();
        }
      }),
    );
}
