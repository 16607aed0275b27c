/** `l3iso serve`: /metrics and /healthz over HTTP. */
import type { Command } from 'commander';
import { DEFAULT_LISTEN } from '../../model/defaults';
import { engineModule, serveModule } from '../../lazy';
import { log } from '../../log';
import type { Runner } from '../context';
import { examples } from '../options';
import { interruptSignal } from '../signals';

export function registerServe(program: Command, run: Runner): void {
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
        if (!engineModule().Engine.isUp(g.pinDir))
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
}
