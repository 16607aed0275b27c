/**
 * A throwaway world for the demo and benchmarks: its own network
 * namespace (addresses on its loopback device, so no traffic ever leaves
 * the machine), its own cgroup subtree and its own bpffs pin directory.
 * `destroy()` removes all three, whatever state they are in.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findCgroup2Mount, removeCgroupTree } from '../model/cgroup';
import { packageRoot } from '../dataplane/paths';

export interface Sandbox {
  netns: string;
  netnsPath: string;
  cgroupRoot: string;
  pinDir: string;
  /** argv prefix that runs a command inside the sandbox's netns (not in any cell) */
  inNetns(argv: string[]): string[];
  /** runs the l3iso CLI against this sandbox's engine, inside its netns */
  cli(args: string[]): { status: number; stdout: string; stderr: string };
  spawnCli(args: string[]): ChildProcess;
  destroy(): void;
}

function run(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export function createSandbox(tag: string, addresses: string[]): Sandbox {
  const name = `${tag}-${process.pid}`;
  const mount = findCgroup2Mount();
  const cgroupRoot = path.join(mount, name);
  const pinDir = path.join('/sys/fs/bpf', name);
  const netnsPath = `/run/netns/${name}`;
  const cliPath = path.join(packageRoot(), 'dist', 'src', 'cli', 'main.js');

  const sb: Sandbox = {
    netns: name,
    netnsPath,
    cgroupRoot,
    pinDir,
    // nsenter, not `ip netns exec`: the latter remounts /sys and would hide
    // the cgroup2 and bpffs mounts from the command.
    inNetns: (argv) => ['nsenter', `--net=${netnsPath}`, '--', ...argv],
    cli(args) {
      try {
        const stdout = execFileSync(
          'nsenter',
          [`--net=${netnsPath}`, '--', process.execPath, cliPath, '--pin-dir', pinDir, ...args],
          {
            encoding: 'utf8',
            stdio: ['ignore', 'pipe', 'pipe'],
            env: { ...process.env, L3ISO_LOG_LEVEL: 'warn' },
          },
        );
        return { status: 0, stdout, stderr: '' };
      } catch (err) {
        const e = err as { status?: number; stdout?: string; stderr?: string };
        return { status: e.status ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
      }
    },
    spawnCli(args) {
      return spawn(
        'nsenter',
        [`--net=${netnsPath}`, '--', process.execPath, cliPath, '--pin-dir', pinDir, ...args],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, L3ISO_LOG_LEVEL: 'warn' },
        },
      );
    },
    destroy() {
      if (fs.existsSync(pinDir)) sb.cli(['down', '--force']);
      removeCgroupTree(cgroupRoot);
      if (fs.existsSync(pinDir)) fs.rmSync(pinDir, { recursive: true, force: true });
      if (fs.existsSync(netnsPath)) run('ip', ['netns', 'del', name]);
    },
  };

  try {
    run('ip', ['netns', 'add', name]);
    run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    for (const a of addresses) {
      const v6 = a.includes(':');
      run('ip', [
        '-n',
        name,
        'addr',
        'add',
        `${a}/${v6 ? 128 : 32}`,
        'dev',
        'lo',
        ...(v6 ? ['nodad'] : []),
      ]);
    }
    fs.mkdirSync(cgroupRoot);
  } catch (err) {
    sb.destroy();
    throw err;
  }
  return sb;
}
