// The CLI in pipelines: a reader that goes away early (`| head -1`) ends the
// output quietly, and `--version` says which l3iso this is.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, createSandbox, python, REPO, run, type Sandbox } from '../harness/sandbox';

// Runs argv with stdout on a pipe whose read end is already closed, so every
// write fails with EPIPE (deterministic, unlike racing a real `head`).
const CLOSED_PIPE = String.raw`
import json, os, subprocess, sys
r, w = os.pipe()
os.close(r)
p = subprocess.run(sys.argv[1:], stdout=w, stderr=subprocess.PIPE)
print(json.dumps({"status": p.returncode, "stderr": p.stderr.decode(errors="replace")}))
`;

async function intoClosedPipe(argv: string[]): Promise<{ status: number; stderr: string }> {
  const r = await run([python(), '-c', CLOSED_PIPE, ...argv]);
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { status: number; stderr: string };
}

describe('the CLI in a pipeline', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('web');
    await sb.assign('web', '192.0.2.5');
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('--version prints package.json’s version', async () => {
    const version = (
      JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }
    ).version;
    for (const flag of ['--version', '-V']) {
      const r = await run([process.execPath, CLI, flag]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe(`${version}\n`);
    }
  });

  it('help into a closed pipe: exit 0, no stack trace', async () => {
    for (const args of [['--help'], ['list', '--help'], ['exec', '--help'], ['--version']]) {
      const r = await intoClosedPipe([process.execPath, CLI, ...args]);
      expect(r, args.join(' ')).toEqual({ status: 0, stderr: '' });
    }
  });

  it('`l3iso --help | head -1` exits 0 with the first line', async () => {
    const r = await run([
      'bash',
      '-c',
      'set -o pipefail; "$0" "$1" --help | head -1; "$0" "$1" list --help | head -1',
      process.execPath,
      CLI,
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n')[0]).toMatch(/^Usage: l3iso /);
  });

  it('output of a live engine into a closed pipe: exit 0, no stack trace', async () => {
    for (const args of [['metrics'], ['list'], ['stats'], ['list', '--json']]) {
      const r = await intoClosedPipe([
        'nsenter',
        `--net=${sb.nsPath}`,
        '--',
        process.execPath,
        CLI,
        '--pin-dir',
        sb.pinDir,
        ...args,
      ]);
      expect(r, args.join(' ')).toEqual({ status: 0, stderr: '' });
    }
  });
});
