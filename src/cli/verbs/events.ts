/** `l3iso events`: stream the audit events (refusals and drops). */
import type { Command } from 'commander';
import type { EventView } from '../../observe/events';
import { eventsModule } from '../../lazy';
import { log } from '../../log';
import type { GlobalOptions, Runner } from '../context';
import { examples, jsonOption, positiveInt, positiveSeconds } from '../options';
import { interruptSignal, watchStdout } from '../signals';

export function registerEvents(program: Command, run: Runner): void {
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
    .action((opts: EventsFlags) => run((g) => events(g, opts)));
}

interface EventsFlags {
  follow?: boolean;
  count?: number;
  timeout?: number;
}

/** The verb: stream until done; exit 1 when --timeout came before --count events. */
async function events(g: GlobalOptions, opts: EventsFlags): Promise<number | void> {
  const out = watchStdout();
  const follow = Boolean(opts.follow) || opts.count !== undefined || opts.timeout !== undefined;
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
      onSuppressed: (delta, total) => printSuppressed(g, delta, total),
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
}

/** The line that says the kernel's rate limit dropped events. */
function printSuppressed(g: GlobalOptions, delta: number, total: number): void {
  const time = new Date().toISOString();
  process.stdout.write(
    g.json
      ? JSON.stringify({ time, kind: 'suppressed', count: delta, total }) + '\n'
      : `${time} - suppressed ${delta} events (kernel rate limit: 2000/s per CPU), ${total} in total\n`,
  );
}
