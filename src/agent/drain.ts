/**
 * A release with a drain waits its seconds in the engine (a synchronous
 * wait between socket scans). The agent must keep answering meanwhile, so
 * it runs that release in a child `l3iso --no-agent --json release`, the
 * very verb the CLI runs alone, and answers what the child printed.
 */
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { ReportedError, type ErrorReport } from '../cli/output';
import type { ReleaseResult } from '../cells/cells';

/** dist/src/cli/main.js, next to this file's directory. */
const CLI_MAIN = path.join(__dirname, '..', 'cli', 'main.js');

export function drainInChild(
  pinDir: string,
  cgroup: string,
  addresses: readonly string[],
  drainSeconds: number,
): Promise<ReleaseResult> {
  const argv = [CLI_MAIN, '--pin-dir', pinDir, '--no-agent', '--json', 'release'];
  argv.push('--drain', String(drainSeconds), '--', cgroup, ...addresses);
  return new Promise((resolve, reject) => {
    execFile(process.execPath, argv, { maxBuffer: 64 << 20 }, (err, stdout) => {
      let v: { error?: ErrorReport } & Partial<ReleaseResult>;
      try {
        v = JSON.parse(stdout) as typeof v;
      } catch {
        const why = err ? err.message : 'no JSON on stdout';
        return reject(new Error(`release --drain in a child failed: ${why}`));
      }
      if (v.error) return reject(new ReportedError(v.error));
      resolve(v as ReleaseResult);
    });
  });
}
