/**
 * `exec`: the `ip afnetns exec` of l3iso, and its reference runtime. Makes a
 * cell cgroup, assigns it, runs a command inside it and, unless asked to
 * keep it, removes the cell when the command ends. The command's exit
 * status passes through; stdin, stdout and stderr are the caller's.
 *
 * The command gets what the threat model asks of any runtime (confine.ts):
 * docker's default capabilities without NET_RAW in every set, no_new_privs,
 * no bpffs, read-only cgroup and sysfs mounts, a cgroup namespace rooted at
 * the cell, a PID namespace of its own (tini as its pid 1) and, with
 * --user, no root at all. The PID namespace ends with the command: what it
 * left running there is killed by the kernel, --keep or not (--keep keeps
 * the cell, its cgroup and addresses, for processes put in it later).
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { L3isoError } from '../errors';
import { findCgroup2Mount, killCgroupTree, removeCgroupTree } from '../model/cgroup';
import { assign, parseAddresses, release, type AssignResult } from '../cells/cells';
import {
  CONFINE_SCRIPT,
  chainArgv,
  INIT_ARGV,
  JOIN_SCRIPT,
  LAUNCH_SCRIPT,
  type ExecUser,
} from './confine';
import { requireRoot } from '../dataplane/privilege';
import { EngineState } from '../dataplane/state';

export interface ExecOptions {
  pinDir: string;
  name?: string;
  keep: boolean;
  addresses: string[];
  argv: string[];
  /** USER[:GROUP], names or numbers */
  user?: string;
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
  const user = opts.user === undefined ? undefined : resolveUser(opts.user);
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
    return await runInCgroup(cellPath, chainArgv(user, opts.argv));
  } finally {
    if (!opts.keep) removeCell(opts.pinDir, cellPath);
  }
}

function runInCgroup(cellPath: string, setprivArgv: string[]): Promise<number> {
  const procs = path.join(cellPath, 'cgroup.procs');
  const child = spawn(
    '/bin/sh',
    ['-c', LAUNCH_SCRIPT, 'l3iso-exec', JOIN_SCRIPT, procs, CONFINE_SCRIPT, ...setprivArgv],
    { stdio: 'inherit' },
  );
  const restore = forwardSignals(child.pid);
  return new Promise<number>((resolve, reject) => {
    child.on('error', (err) => {
      restore();
      reject(err);
    });
    child.on('exit', (code, signal) => {
      restore();
      resolve(code ?? 128 + (signal ? os.constants.signals[signal] : 0));
    });
  });
}

/** Signals a terminal sends to its whole foreground process group. */
const TERMINAL_SIGNALS: ReadonlySet<NodeJS.Signals> = new Set(['SIGINT', 'SIGQUIT']);

/** How often a signal waits for the cell's init to be able to take it. */
const INIT_POLL_MS = 10;

/**
 * Passes signals on to the cell's init (tini, which passes them on to the
 * command's process group), and keeps l3iso alive until it exits so that
 * the cell is cleaned up. The process l3iso spawned is the forking unshare,
 * which ignores SIGINT and SIGTERM; the init is its only child. Until that
 * child is tini, a signal would be lost (pid 1 of a namespace ignores what
 * it has no handler for), so signals wait, in order, until tini has them in
 * hand (initReady).
 *
 * tini makes the command's process group the terminal's foreground group,
 * so a terminal's ^C reaches the command alone. Before that, l3iso's group
 * is the foreground one and ^C has reached l3iso's whole group, the
 * chain included: passing it on would deliver it twice.
 */
function forwardSignals(pid: number | undefined): () => void {
  const pending: NodeJS.Signals[] = [];
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    timer = undefined;
    const init = pid === undefined ? undefined : childOf(pid);
    while (pending.length > 0 && init !== undefined && initReady(init)) {
      try {
        process.kill(init, pending.shift());
      } catch {
        pending.length = 0; // it has exited; the exit handler cleans up
      }
    }
    if (pending.length > 0) timer = setTimeout(flush, INIT_POLL_MS);
  };
  const handlers = (['SIGINT', 'SIGQUIT', 'SIGTERM', 'SIGHUP'] as const).map((sig) => {
    const h = () => {
      if (TERMINAL_SIGNALS.has(sig) && inTerminalForeground()) return;
      pending.push(sig);
      if (timer === undefined) flush();
    };
    process.on(sig, h);
    return [sig, h] as const;
  });
  return () => {
    if (timer !== undefined) clearTimeout(timer);
    for (const [sig, h] of handlers) process.off(sig, h);
  };
}

/** The one child of `pid`, if it has one yet. */
function childOf(pid: number): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return undefined;
    return childByScan(pid); // a kernel without CONFIG_PROC_CHILDREN, or pid gone
  }
  const first = text.trim().split(/\s+/)[0];
  return first ? Number(first) : undefined;
}

function childByScan(pid: number): number | undefined {
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) return Number(e);
    } catch {
      /* exited meanwhile */
    }
  }
  return undefined;
}

/**
 * Whether the cell's init is tini with signals taken in hand: tini blocks
 * every signal before it spawns the command, so once it has a child none is
 * lost. (SigBlk cannot tell: while tini waits in sigtimedwait, the signals
 * it waits for are not shown as blocked.)
 */
function initReady(init: number): boolean {
  try {
    const comm = fs.readFileSync(`/proc/${init}/comm`, 'utf8').trim();
    return comm === INIT_ARGV[0] && childOf(init) !== undefined;
  } catch {
    return false;
  }
}

/** Whether this process's group is the foreground group of its controlling
 * terminal (pgrp and tpgid of /proc/self/stat, fields 5 and 8). */
function inTerminalForeground(): boolean {
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const pgrp = Number(fields[2]);
  const tpgid = Number(fields[5]);
  return tpgid > 0 && tpgid === pgrp;
}

/** USER[:GROUP] as numbers, from the passwd and group databases (getent,
 * so NSS sources count). A uid with no passwd entry needs its group given. */
export function resolveUser(spec: string): ExecUser {
  const colon = spec.indexOf(':');
  const userPart = colon < 0 ? spec : spec.slice(0, colon);
  const groupPart = colon < 0 ? undefined : spec.slice(colon + 1);
  if (!ACCOUNT.test(userPart) || (groupPart !== undefined && !ACCOUNT.test(groupPart))) {
    throw new L3isoError('EUSAGE', `invalid --user "${spec}": use USER or USER:GROUP`);
  }
  const pw = getent('passwd', userPart);
  let uid: number;
  if (pw) uid = Number(pw[2]);
  else if (isId(userPart)) uid = Number(userPart);
  else throw new L3isoError('EUSAGE', `no such user "${userPart}"`);
  let gid: number;
  if (groupPart !== undefined) {
    const gr = getent('group', groupPart);
    if (gr) gid = Number(gr[2]);
    else if (isId(groupPart)) gid = Number(groupPart);
    else throw new L3isoError('EUSAGE', `no such group "${groupPart}"`);
  } else if (pw) {
    gid = Number(pw[3]);
  } else {
    throw new L3isoError(
      'EUSAGE',
      `uid ${uid} has no passwd entry, so it has no primary group`,
      `give one: --user ${uid}:GID`,
    );
  }
  return { uid, gid, initGroups: pw !== undefined };
}

/** What useradd and groupadd accept (a leading '-' would be an option to getent). */
const ACCOUNT = /^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}\$?$/;

/** A uid or gid the kernel accepts ((uid_t)-1 means "unchanged"). */
function isId(text: string): boolean {
  return /^\d{1,10}$/.test(text) && Number(text) < 0xffffffff;
}

function getent(db: 'passwd' | 'group', key: string): string[] | undefined {
  const r = spawnSync('getent', [db, key], { encoding: 'utf8' });
  if (r.error) throw new L3isoError('EKERNEL', `getent ${db}: ${r.error.message}`);
  if (r.status !== 0) return undefined;
  const fields = r.stdout.split('\n')[0]?.split(':');
  return fields && fields.length >= 4 ? fields : undefined;
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
