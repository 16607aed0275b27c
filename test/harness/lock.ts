/**
 * Helpers for the pin-dir lock tests: processes that hold the lock (flock(1)
 * on the directory) or wait for it, and how to tell, from /proc, that a
 * process is blocked in flock(2) or stopped, without guessing at timings.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI } from './sandbox';

/** x86_64 syscall number of flock(2), as /proc/PID/syscall shows it. */
const SYS_FLOCK = 73;

/** flock(1) -n: can the lock be taken right now in `mode`? */
export function lockFree(dir: string, mode: 'shared' | 'exclusive'): boolean {
  const r = spawnSync('flock', ['-n', mode === 'shared' ? '-s' : '-x', dir, 'true']);
  return r.status === 0;
}

/** The flocks on dir (from /proc/locks: no probe that takes the lock itself). */
export function flocksOn(dir: string): { pid: number; mode: 'shared' | 'exclusive' }[] {
  const ino = fs.statSync(dir).ino;
  const out: { pid: number; mode: 'shared' | 'exclusive' }[] = [];
  for (const line of fs.readFileSync('/proc/locks', 'utf8').split('\n')) {
    // 1: FLOCK  ADVISORY  WRITE 1234 00:28:5678 0 EOF   ("->" marks a waiter)
    const m = /^\d+: FLOCK\s+\S+\s+(READ|WRITE)\s+(\d+)\s+[0-9a-f]+:[0-9a-f]+:(\d+)\s/.exec(line);
    if (m && Number(m[3]) === ino)
      out.push({ pid: Number(m[2]), mode: m[1] === 'READ' ? 'shared' : 'exclusive' });
  }
  return out;
}

/** A flock(1) holding dir's lock until release() (stdin closed). */
export async function holdLock(
  dir: string,
  mode: 'shared' | 'exclusive',
  script = 'cat',
): Promise<{ send(line: string): void; release(): Promise<void> }> {
  const child = spawn('flock', [mode === 'shared' ? '-s' : '-x', dir, 'sh', '-c', script], {
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  // Watched in /proc/locks: a probe taking the lock could starve the holder.
  await until(
    () => flocksOn(dir).some((l) => l.pid === child.pid && l.mode === mode),
    `flock ${mode} of ${dir} held`,
  );
  return {
    send: (line) => child.stdin!.write(line + '\n'),
    release: async () => {
      const gone = new Promise((r) => child.once('exit', r));
      child.stdin!.end();
      await gone;
    },
  };
}

export interface Cli {
  child: ChildProcess;
  /** what it printed so far */
  output(): string;
  done: Promise<{ status: number | null; stdout: string; stderr: string }>;
}

/** The CLI (no agent) in the sandbox netns; nsenter execs, so child.pid is node's. */
export function spawnCli(nsPath: string, pinDir: string, args: string[], wrap: string[] = []): Cli {
  const child = spawn(
    'nsenter',
    [
      `--net=${nsPath}`,
      '--',
      ...wrap,
      process.execPath,
      CLI,
      '--pin-dir',
      pinDir,
      '--no-agent',
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ status: number | null; stdout: string; stderr: string }>((r) =>
    child.once('exit', (status) => r({ status, stdout, stderr })),
  );
  return { child, done, output: () => stdout + stderr };
}

/** The main thread of pid is inside flock(2), waiting. */
export function inFlock(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/syscall`, 'utf8').split(' ')[0] === String(SYS_FLOCK);
  } catch {
    return false;
  }
}

/** pid is stopped (SIGSTOP, or a ptrace stop). */
export function stopped(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /^[Tt]$/.test(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!);
  } catch {
    return false;
  }
}

/** The children of pid (e.g. the node a strace runs). */
export function childrenOf(pid: number): number[] {
  try {
    return fs
      .readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** Waits for cond, polling; fails (naming what) after a generous bound. */
export async function until(cond: () => boolean, what: string, boundMs = 120_000): Promise<void> {
  const end = Date.now() + boundMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`never happened: ${what}`);
    await sleep(20);
  }
}
