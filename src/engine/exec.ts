/**
 * `exec`: the `ip afnetns exec` of l3iso. Makes a cell cgroup, assigns it,
 * runs a command inside it and, unless asked to keep it, removes the cell
 * when the command ends. The command's exit status passes through.
 *
 * The child joins the cgroup before it execs the command, so every socket
 * the command creates belongs to the cell. CAP_NET_RAW, CAP_NET_ADMIN,
 * CAP_SYS_ADMIN and CAP_BPF leave the bounding set: with them a process could
 * sniff or reconfigure the shared stack whatever BPF does (threat model).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { L3isoError } from '../errors';
import { findCgroup2Mount, killCgroupTree, removeCgroupTree } from '../model/cgroup';
import { assign, parseAddresses, release, type AssignResult } from './cells';
import { requireRoot } from './privilege';
import { EngineState } from './state';

export const DROPPED_CAPABILITIES = ['net_raw', 'net_admin', 'sys_admin', 'bpf'] as const;

export interface ExecOptions {
  pinDir: string;
  name?: string;
  keep: boolean;
  addresses: string[];
  argv: string[];
  onAssigned?: (r: AssignResult) => void;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export async function execInCell(opts: ExecOptions): Promise<number> {
  requireRoot('exec');
  if (opts.argv.length === 0) throw new L3isoError('EUSAGE', 'exec needs a command after --');
  if (opts.addresses.length === 0)
    throw new L3isoError('EUSAGE', 'exec needs at least one address');
  parseAddresses(opts.addresses); // refuse bad input before creating anything
  const name = opts.name ?? `exec-${process.pid}`;
  if (!NAME.test(name)) {
    throw new L3isoError(
      'EUSAGE',
      `invalid cell name "${name}": use letters, digits, '.', '_' and '-' (at most 64)`,
    );
  }
  const state = EngineState.open(opts.pinDir);
  let root: string;
  try {
    root = state.config().cgroupRoot;
  } finally {
    state.close();
  }
  findCgroup2Mount();
  const cellPath = path.join(root, name);
  try {
    fs.mkdirSync(cellPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new L3isoError(
        'EUSAGE',
        `cgroup ${cellPath} already exists`,
        'pick another --name, or assign it and run the command yourself',
      );
    }
    throw err;
  }
  try {
    opts.onAssigned?.(assign(opts.pinDir, cellPath, opts.addresses));
  } catch (err) {
    fs.rmdirSync(cellPath);
    throw err;
  }

  try {
    return await runInCgroup(cellPath, opts.argv);
  } finally {
    if (!opts.keep) removeCell(opts.pinDir, cellPath);
  }
}

function runInCgroup(cellPath: string, argv: string[]): Promise<number> {
  const procs = path.join(cellPath, 'cgroup.procs');
  const bounding = DROPPED_CAPABILITIES.map((c) => `-${c}`).join(',');
  // sh moves itself into the cell, then becomes setpriv, then the command.
  const script = 'echo $$ > "$0" && exec setpriv --bounding-set="$L3ISO_BOUNDING" -- "$@"';
  const child = spawn('/bin/sh', ['-c', script, procs, ...argv], {
    stdio: 'inherit',
    env: { ...process.env, L3ISO_BOUNDING: bounding },
  });
  const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((sig) => {
    const h = forward(sig);
    process.on(sig, h);
    return [sig, h] as const;
  });
  return new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      for (const [sig, h] of handlers) process.off(sig, h);
      resolve(code ?? 128 + (signal ? os.constants.signals[signal] : 0));
    });
  });
}

/** Kills what the command left behind, releases the cell (its sockets are
 * destroyed with it) and removes its cgroups. */
function removeCell(pinDir: string, cellPath: string): void {
  // Processes first: release resolves the cell by its cgroup, which must
  // still exist, and no process may create a socket after it.
  killCgroupTree(cellPath);
  try {
    release(pinDir, cellPath, []);
  } catch (err) {
    if (!(err instanceof L3isoError && err.code === 'ENOT_ASSIGNED')) throw err;
  }
  removeCgroupTree(cellPath);
}
