/**
 * `npm run bench [-- --quick]`: installs the bench-only tools, then runs the
 * data-path benchmark (writes BENCHMARKS.md and bench/datapath.png), the
 * isolation benchmark and the metrics-scrape benchmark, one after another
 * so that none disturbs another's figures. --quick runs the data path only.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { packageRoot } from '../src/dataplane/paths';

function step(what: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): void {
  process.stderr.write(`[bench] ${what}\n`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.status !== 0) {
    process.stderr.write(`[bench] ${what} failed (${r.status ?? r.signal})\n`);
    process.exit(1);
  }
}

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const dist = path.join(packageRoot(), 'dist', 'bench');
step('bench tools', 'bash', [path.join(packageRoot(), 'bench', 'setup.sh')]);
step('data path', process.execPath, [path.join(dist, 'datapath.js'), ...argv]);
// --quick is the data path alone (<= 3 minutes on 2 cores); the others have
// their own entry points (bench/README.md).
if (!quick) {
  step('isolation', process.execPath, [path.join(dist, 'isolation.js')]);
  step('metrics scrape', process.execPath, [path.join(dist, 'run.js')]);
  step('declarative apply/release', process.execPath, [path.join(dist, 'declarative.js')]);
}
