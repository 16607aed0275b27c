// Issue 9: `up` re-run (programs reloaded and swapped in place through
// bpf_link_update) while a client hammers a cell's server and a prober in
// another cell keeps trying to bind the server's address: zero failed
// requests, zero foreign binds. 3 re-runs in CI, 10 under L3ISO_LONG=1.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, python, V4, type Sandbox } from '../harness/sandbox';

const UPS = process.env.L3ISO_LONG === '1' ? 10 : 3;
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

describe(`up x${UPS} under load`, () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('srv');
    sb.cg('evil');
    await sb.assign('srv', V4(1));
    await sb.assign('evil', V4(2));
  });
  afterAll(async () => {
    await sb?.destroy();
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
      const r = await sb.cliOk(['up', '--cgroup-root', sb.root, '--json']);
      expect(r.json.fresh).toBe(false);
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
