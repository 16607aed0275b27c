/**
 * The demo's and the benchmarks' sandbox: the hermetic world of
 * src/sandbox (addresses on its loopback device, so no traffic ever leaves
 * the machine) plus a runner for this checkout's CLI inside it. `destroy()`
 * takes the engine down, then removes the sandbox, whatever state it is in.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot, pinLayout } from '../dataplane/paths';
import * as hermetic from '../sandbox';

export interface Sandbox extends hermetic.Sandbox {
  /** runs the l3iso CLI against this sandbox's engine, inside its netns */
  cli(args: string[]): { status: number; stdout: string; stderr: string };
  spawnCli(args: string[]): ChildProcess;
}

export function createSandbox(prefix: string, addresses: string[]): Sandbox {
  const world = hermetic.createSandbox({ prefix, addresses });
  const cliPath = path.join(packageRoot(), 'dist', 'src', 'cli', 'main.js');
  const argv = (args: string[]): string[] =>
    world.inNetns([process.execPath, cliPath, '--pin-dir', world.pinDir, ...args]);
  const env = { ...process.env, L3ISO_LOG_LEVEL: 'warn' };

  const sb: Sandbox = {
    ...world,
    cli(args) {
      const [cmd, ...rest] = argv(args);
      try {
        const stdout = execFileSync(cmd!, rest, {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
          env,
        });
        return { status: 0, stdout, stderr: '' };
      } catch (err) {
        const e = err as { status?: number; stdout?: string; stderr?: string };
        return { status: e.status ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
      }
    },
    spawnCli(args) {
      const [cmd, ...rest] = argv(args);
      return spawn(cmd!, rest, { stdio: ['ignore', 'pipe', 'pipe'], env });
    },
    destroy() {
      // Down first, so the engine detaches its own links; what it cannot,
      // removing the cgroups and the netns takes with them.
      if (fs.existsSync(pinLayout(world.pinDir).mapsDir)) sb.cli(['down', '--force']);
      world.destroy();
    },
  };
  return sb;
}
