// Issue 9: `up` re-run with rebuilt programs (swapped in place through
// bpf_link_update) while a client hammers a cell's server and a prober in
// another cell keeps trying to bind the server's address: zero failed
// requests, zero foreign binds. The ups alternate between this build and
// a second install whose attached programs were rebuilt with other
// compiler flags (other instructions, same maps), as an upgrade in place
// swaps them. 4 re-runs in CI, 10 under L3ISO_LONG=1.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ATTACHED_OBJECTS } from '../../src/dataplane/programs';
import { compileBpf, packageCopy, type PackageCopy } from '../harness/install';
import { createSandbox, python, REPO, V4, type Sandbox } from '../harness/sandbox';

const UPS = process.env.L3ISO_LONG === '1' ? 10 : 4;
const PORT = 8500;

/** Loops until stdin closes, then prints {"ok": n, "fail": n, "errors": {...}}. */
const LOOP = (body: string) => `
import json, socket, sys, threading
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
ok = fail = 0
errors = {}
print(json.dumps({"started": True}), flush=True)
while not stop.is_set():
    try:
${body
  .split('\n')
  .map((l) => '        ' + l)
  .join('\n')}
    except OSError as e:
        fail += 1
        errors[str(e.errno)] = errors.get(str(e.errno), 0) + 1
print(json.dumps({"ok": ok, "fail": fail, "errors": errors}), flush=True)
`;

const CLIENT =
  LOOP(`s = socket.create_connection(("${V4(1)}", ${PORT}), timeout=5, source_address=("${V4(9)}", 0))
data = s.recv(100)
s.close()
if data != b"srv":
    raise OSError(0, "short banner")
ok += 1`);

// Every attempt must fail: a success is a foreign bind.
const PROBER = LOOP(`s = socket.socket()
try:
    s.bind(("${V4(1)}", 0))
    ok += 1
finally:
    s.close()
raise OSError(99, "refused as expected")`);

/** This build's attached objects, compiled for BPF ISA v3 (ALU32 and
 * JMP32: other instructions than the default v2 build). */
function rebuiltInstall(): PackageCopy {
  const copy = packageCopy('rebuilt');
  for (const { file } of ATTACHED_OBJECTS) {
    const out = path.join(copy.bpf, file);
    compileBpf(
      path.join(REPO, 'bpf', file.replace(/\.o$/, '.c')),
      out,
      [path.join(REPO, 'bpf')],
      ['-mcpu=v3'],
    );
    // a rebuild that changed nothing would prove nothing
    expect(fs.readFileSync(out).equals(fs.readFileSync(path.join(REPO, 'bpf', file))), file).toBe(
      false,
    );
  }
  return copy;
}

describe(`up x${UPS} under load, alternating two builds`, () => {
  let sb: Sandbox;
  let rebuilt: PackageCopy | undefined;
  beforeAll(async () => {
    rebuilt = rebuiltInstall();
    sb = await createSandbox();
    await sb.up();
    sb.cg('srv');
    sb.cg('evil');
    await sb.assign('srv', V4(1));
    await sb.assign('evil', V4(2));
  });
  afterAll(async () => {
    await sb?.destroy();
    rebuilt?.remove();
  });

  it('zero failed requests, zero foreign binds', async () => {
    const server = sb.spawnProbe('srv', [
      { op: 'socket', fam: 4 },
      { op: 'bind', addr: V4(1), port: PORT },
      { op: 'listen', backlog: 512 },
      { op: 'serve_banner', banner: 'srv' },
    ]);
    await server.ready();
    const client = sb.spawnOnHost([python(), '-c', CLIENT]);
    const prober = sb.spawnInCell('evil', [python(), '-c', PROBER]);
    await client.waitFor((l) => l.started === true);
    await prober.waitFor((l) => l.started === true);
    for (let i = 0; i < UPS; i++) {
      const upArgs = ['up', '--cgroup-root', sb.root];
      if (i % 2 === 0) {
        const r = await sb.onHost([
          process.execPath,
          rebuilt!.cli,
          '--pin-dir',
          sb.pinDir,
          '--json',
          ...upArgs,
        ]);
        expect(r.status, `rebuilt up: ${r.stderr}`).toBe(0);
        const out = JSON.parse(r.stdout) as { fresh: boolean; programs: { action: string }[] };
        expect(out.fresh).toBe(false);
        expect(out.programs.every((p) => p.action === 'replaced')).toBe(true);
      } else {
        const r = await sb.cliOk([...upArgs, '--json']);
        expect(r.json.fresh).toBe(false);
      }
    }
    client.child.stdin!.end();
    prober.child.stdin!.end();
    const load = await client.waitFor((l) => typeof l.ok === 'number', 30_000);
    const probe = await prober.waitFor((l) => typeof l.ok === 'number', 30_000);
    expect(load.fail, JSON.stringify(load)).toBe(0);
    expect(load.ok).toBeGreaterThan(0);
    expect(probe.ok, JSON.stringify(probe)).toBe(0);
    expect(Object.keys(probe.errors)).toEqual(['99']); // only our own "refused" marker
    await server.kill();
  }, 300_000);
});
