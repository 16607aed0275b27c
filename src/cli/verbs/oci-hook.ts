/**
 * `l3iso oci-hook`: the OCI runtime hook (createRuntime, poststop) and
 * `oci-hook install`, which writes the hooks.d files podman reads. A stage
 * reads the state and the container's cgroup itself, then has the agent do
 * the engine's part when its socket answers (the very functions it would
 * run itself, so the result and the errors are the same), or does it here.
 */
import type { Command } from 'commander';
import * as fs from 'node:fs';
import { L3isoError } from '../../errors';
import { DEFAULT_HOOKS_DIR } from '../../model/defaults';
import { DEFAULT_PIN_DIR } from '../../dataplane/paths';
import { log } from '../../log';
import type { HookResult } from '../../runtime/oci-hook';
import type { OciState } from '../../runtime/oci-state';
import {
  agentClient,
  ociHookModule,
  ociRequestModule,
  ociStateModule,
  prepareEngine,
} from '../../lazy';
import { asRoot, type GlobalOptions, type Runner } from '../context';
import { examples, jsonOption } from '../options';
import { ReportedError, printJson } from '../output';

function readStdin(): string {
  try {
    return fs.readFileSync(0, 'utf8');
  } catch (err) {
    throw new L3isoError('EUSAGE', `cannot read the OCI state from stdin: ${String(err)}`);
  }
}

/** The runtime shows this one line and the container does not start. */
function inContainer(id: string | undefined, err: unknown): unknown {
  if (id === undefined) return err;
  if (err instanceof ReportedError)
    return new ReportedError({ ...err.report, message: `container ${id}: ${err.message}` });
  if (!(err instanceof L3isoError)) return err;
  return new L3isoError(err.code, `container ${id}: ${err.message}`, err.hint, { cause: err });
}

/**
 * The agent's result for this stage, or, when no agent for this pin dir
 * answers, `direct()` run here. An error the agent reports is thrown as it
 * came (the same L3isoError code and text the direct call would throw).
 */
async function throughAgent(
  g: GlobalOptions,
  url: string,
  body: object,
  direct: () => HookResult | Promise<HookResult>,
): Promise<HookResult> {
  const a = g.agentSocket
    ? await agentClient().callAgent(g.agentSocket, g.pinDir, 'POST', url, body)
    : undefined;
  if (!a) {
    prepareEngine();
    asRoot(url.endsWith('poststop') ? 'release' : 'assign');
    return direct();
  }
  if (!a.ok) throw new ReportedError(a.error);
  return a.body as HookResult;
}

async function createRuntime(g: GlobalOptions, state: OciState): Promise<HookResult> {
  const req = ociRequestModule().createRequestOf(state);
  if (!req) return { container: state.id, action: 'none' };
  return throughAgent(g, '/v1/oci/create-runtime', req, () =>
    ociHookModule().ociAssign(g.pinDir, req),
  );
}

async function poststop(g: GlobalOptions, state: OciState): Promise<HookResult> {
  const req = ociRequestModule().poststopRequestOf(state);
  return throughAgent(g, '/v1/oci/poststop', req, () => ociHookModule().ociRelease(g.pinDir, req));
}

function report(r: HookResult, json: boolean): void {
  if (json) return printJson(r);
  if (r.action === 'assigned')
    log.info({ container: r.container, cell: r.cell.cell, id: r.cell.id }, 'cell assigned');
  if (r.action === 'released')
    log.info({ container: r.container, id: r.cgroupId, released: r.released }, 'cell released');
}

/**
 * Parses the OCI state on stdin and runs `fn` on it; a failure, of the
 * parse or of `fn`, goes to `failed` with the container id when it was read
 * (each stage decides whether a failure fails the runtime).
 */
async function onStdinState(
  fn: (state: OciState) => Promise<void>,
  failed: (id: string | undefined, err: unknown) => void,
): Promise<void> {
  let id: string | undefined;
  try {
    const state = ociStateModule().parseOciState(readStdin());
    id = state.id;
    await fn(state);
  } catch (err) {
    failed(id, err);
  }
}

export function registerOciHook(program: Command, run: Runner): void {
  const hook = program
    .command('oci-hook')
    .summary('OCI runtime hook: assign at createRuntime, release at poststop')
    .description(
      'Run by runc or podman with the container state on stdin. A container annotated ' +
        'io.l3iso.addresses=ADDR[,ADDR...] (optionally io.l3iso.allow-from=CIDR[,...]) becomes ' +
        'a cell at createRuntime, before any of its code runs; a failure there fails the start. ' +
        'At poststop its cell is released by the cgroup id recorded at createRuntime; a failure ' +
        'there is logged and left for `l3iso gc`. Containers without io.l3iso.* annotations are ' +
        'left alone.',
    );

  registerStages(hook, run);
  hook
    .command('install')
    .summary('write the hooks.d files that make podman run this hook')
    .option('--dir <dir>', 'hooks directory', DEFAULT_HOOKS_DIR)
    .addOption(jsonOption())
    .addHelpText(
      'after',
      examples([
        'l3iso oci-hook install',
        'l3iso --pin-dir /sys/fs/bpf/l3iso-lab oci-hook install --dir /etc/containers/oci/hooks.d',
      ]),
    )
    .action((opts: { dir: string }) => run((g) => install(g, opts.dir)));
}

/** The two stages a runtime runs: createRuntime (fails the start) and poststop (never does). */
function registerStages(hook: Command, run: Runner): void {
  hook
    .command('createRuntime')
    .summary('assign the annotated container its cell (state on stdin)')
    .addOption(jsonOption('print the result as JSON'))
    .action(() =>
      run(
        (g) =>
          onStdinState(
            async (state) => report(await createRuntime(g, state), g.json),
            (id, err) => {
              throw inContainer(id, err);
            },
          ),
        { lazyEngine: true },
      ),
    );

  hook
    .command('poststop')
    .summary('release the cell of the stopped container (state on stdin)')
    .addOption(jsonOption('print the result as JSON'))
    .action(() =>
      run(
        async (g) => {
          await onStdinState(
            async (state) => report(await poststop(g, state), g.json),
            (id, err) => {
              // The container is gone either way; gc finishes what failed here.
              const message = err instanceof Error ? err.message : String(err);
              log.warn({ container: id, err: message }, 'poststop: release failed; run `l3iso gc`');
            },
          );
          return 0;
        },
        { lazyEngine: true },
      ),
    );
}

function install(g: GlobalOptions, dir: string): void {
  // Hooks run with an empty environment: absolute node and script,
  // and the pin dir spelled out unless it is the default.
  const argv = [process.execPath, fs.realpathSync(process.argv[1] ?? '')];
  if (g.pinDir !== DEFAULT_PIN_DIR) argv.push('--pin-dir', g.pinDir);
  const files = ociHookModule().installHooks(dir, argv);
  if (g.json) return printJson({ files });
  process.stdout.write(files.map((f) => `wrote ${f}\n`).join(''));
}
