#!/usr/bin/env node
/**
 * l3iso: confine containers that share one network stack to their own IP
 * addresses, with BPF. Entry point: global options, error reporting, exit
 * status. The verbs live in verbs/, one file each.
 */
import { Command, CommanderError } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_PIN_DIR } from '../dataplane/paths';
import { prepareEngine } from '../lazy';
import { L3isoError } from '../errors';
import { agentSocket } from '../agent/api';
import type { GlobalOptions, Runner } from './context';
import { registerCommands } from './verbs';
import { EXIT_OK, EXIT_USAGE, reportError } from './output';

function wantsJson(argv: readonly string[]): boolean {
  return argv.includes('--json') || argv.includes('-j');
}

/** package.json's version: the nearest package.json named l3iso above this
 * file (dist/src/cli/ when built, src/cli/ under the test runner). */
export function packageVersion(from: string = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) {
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as {
        name?: unknown;
        version?: unknown;
      };
      if (pkg.name === 'l3iso' && typeof pkg.version === 'string') return pkg.version;
    }
    if (path.dirname(dir) === dir) return 'unknown';
  }
}

/**
 * A reader that goes away (`l3iso --help | head -1`) ends the output, not
 * the command with a stack trace: stop writing and exit as a finished
 * command does. Node ignores SIGPIPE, so the closed pipe arrives as EPIPE
 * on the stream, asynchronously, wherever the write happened.
 */
export function exitQuietlyOnEpipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      process.exit(typeof process.exitCode === 'number' ? process.exitCode : EXIT_OK);
    });
  }
}

/** The program with its global options and help, before the verbs. */
function topLevel(): Command {
  return new Command()
    .name('l3iso')
    .description(
      'Isolate containers at L3 in one shared network stack: each cell (a cgroup v2 ' +
        'subtree) owns its IP addresses, and BPF programs confine its sockets to them.',
    )
    .option(
      '--pin-dir <dir>',
      'bpffs directory of the engine instance (env L3ISO_PIN_DIR)',
      process.env.L3ISO_PIN_DIR ?? DEFAULT_PIN_DIR,
    )
    .option('-j, --json', 'print JSON instead of tables')
    .option(
      '--no-agent',
      'never ask the agent: do the work in this process (default: assign, release, list and show go through an agent when its socket answers; env L3ISO_AGENT_SOCKET)',
    )
    .version(packageVersion(), '-V, --version', 'print the version of l3iso')
    .exitOverride()
    .configureOutput({ outputError: () => {} })
    .addHelpText(
      'after',
      [
        '',
        'Examples:',
        '  $ l3iso up --cgroup-root /sys/fs/cgroup/unified/containers',
        '  $ l3iso assign web 192.0.2.10 2001:db8::10',
        '  $ l3iso exec --name api 192.0.2.11 -- python3 -m http.server 8080',
        '  $ l3iso list --json',
        '  $ l3iso doctor',
        '',
        'Every verb has --help. Errors: one line on stderr (with --json, a JSON error on stdout);',
        'exit status 1, or 2 for usage errors.',
      ].join('\n'),
    );
}

export async function main(argv: readonly string[]): Promise<number> {
  let status = EXIT_OK;
  const program = topLevel();
  const run: Runner = async (fn, o = {}) => {
    const cmdOpts = program.opts<{ pinDir: string; json?: boolean; agent: boolean }>();
    const g: GlobalOptions = {
      pinDir: cmdOpts.pinDir,
      json: Boolean(cmdOpts.json) || wantsJson(argv),
      argv,
      agentSocket: cmdOpts.agent ? agentSocket() : undefined,
    };
    try {
      if (!o.lazyEngine) prepareEngine();
      const r = await fn(g);
      if (typeof r === 'number') status = r;
    } catch (err) {
      status = reportError(err, g.json);
    }
  };
  registerCommands(program, run);

  try {
    await program.parseAsync(argv as string[], { from: 'node' });
  } catch (err) {
    return parseFailure(err, argv);
  }
  return status;
}

/** Exit status of a parse that threw: help and version are fine, the rest usage errors. */
function parseFailure(err: unknown, argv: readonly string[]): number {
  if (!(err instanceof CommanderError)) return reportError(err, wantsJson(argv));
  if (
    err.code === 'commander.helpDisplayed' ||
    err.code === 'commander.version' ||
    err.code === 'commander.help'
  ) {
    return EXIT_OK;
  }
  const message = `${err.message.replace(/^error: /, '')} (see --help)`;
  reportError(new L3isoError('EUSAGE', message), wantsJson(argv));
  return EXIT_USAGE;
}

if (require.main === module) {
  exitQuietlyOnEpipe();
  main(process.argv).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.exitCode = reportError(err, wantsJson(process.argv));
    },
  );
}
