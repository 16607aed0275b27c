/**
 * The demo: two web servers in ONE network stack, both listening on
 * 0.0.0.0:8080, each confined to its own address by l3iso. Everything runs
 * in a sandbox (own netns, cgroup subtree, pin dir) that is removed at the
 * end. Each step checks its outcome, so the demo fails loudly if l3iso
 * does not do what it says.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { createSandbox, type Sandbox } from './sandbox';

const A = { name: 'web-a', addr: '192.0.2.10' };
const B = { name: 'web-b', addr: '192.0.2.20' };
const HOST_ADDR = '192.0.2.1';

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const say = (s = '') => process.stdout.write(s + '\n');
const cmd = (s: string) => say(`  ${bold('$')} ${s}`);
let failures = 0;

function expect(what: string, got: string, want: (g: string) => boolean): void {
  const ok = want(got);
  if (!ok) failures++;
  say(`    ${ok ? '✓' : '✗'} ${what}: ${got.trim()}`);
}

function waitReady(child: ChildProcess, label: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${label} did not start within 10 s`)), 10_000);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const lines = readline.createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      try {
        const msg = JSON.parse(line) as Record<string, unknown>;
        if (msg.ready) {
          clearTimeout(timer);
          resolve(msg);
        }
      } catch {
        /* not our line */
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${label} exited with ${code}: ${stderr.trim()}`));
    });
  });
}

function curl(sb: Sandbox, url: string): string {
  try {
    const [bin, ...args] = sb.inNetns(['curl', '-sS', '--max-time', '3', url]);
    return execFileSync(bin!, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    return `curl failed: ${(err as { stderr?: string }).stderr?.trim() ?? String(err)}`;
  }
}

async function story(sb: Sandbox, children: ChildProcess[]): Promise<void> {
  const dist = path.resolve(__dirname);
  say(bold('l3iso demo: two web servers share one network stack, isolated at L3'));
  say(`  sandbox: netns ${sb.netns}, cgroup root ${sb.cgroupRoot}, pin dir ${sb.pinDir}`);
  say();

  bringUp(sb);
  await startCells(sb, children, dist);
  fetchFromOutside(sb);
  stealAddress(sb);
  ownLoopback(sb);
  hostWildcard(sb);
  whatTheEngineKnows(sb);
}

function bringUp(sb: Sandbox): void {
  say(bold('1. Bring the engine up on the sandbox cgroup root'));
  cmd(`l3iso up --cgroup-root ${sb.cgroupRoot}`);
  const upRes = sb.cli(['up', '--cgroup-root', sb.cgroupRoot, '--max-cells', '1024']);
  if (upRes.status !== 0) throw new Error(`up failed: ${upRes.stderr.trim()}`);
  say(`    ${upRes.stdout.split('\n')[0]}`);
  say();
}

async function startCells(sb: Sandbox, children: ChildProcess[], dist: string): Promise<void> {
  say(bold('2. Start two cells; both servers listen on 0.0.0.0:8080'));
  const hostSvc = execSpawn(sb, [process.execPath, path.join(dist, 'host-service.js')]);
  children.push(hostSvc);
  await waitReady(hostSvc, 'host service');
  for (const c of [A, B]) {
    cmd(`l3iso exec --name ${c.name} ${c.addr} -- node server.js ${c.name}`);
    const child = sb.spawnCli([
      'exec',
      '--name',
      c.name,
      c.addr,
      '--',
      process.execPath,
      path.join(dist, 'server.js'),
      c.name,
    ]);
    children.push(child);
    const ready = await waitReady(child, c.name);
    expect(
      `${c.name} asked for 0.0.0.0:8080 and got`,
      `${ready.address}:${ready.port}`,
      (g) => g === `${c.addr}:8080`,
    );
  }
  say();
}

function fetchFromOutside(sb: Sandbox): void {
  say(bold('3. A client outside the cells fetches from each address'));
  for (const c of [A, B]) {
    cmd(`curl http://${c.addr}:8080/`);
    expect(
      'answer',
      curl(sb, `http://${c.addr}:8080/`),
      (g) => g.trim() === `hello from ${c.name}`,
    );
  }
  say();
}

function stealAddress(sb: Sandbox): void {
  say(bold(`4. ${A.name} tries to take ${B.name}'s address`));
  cmd(`(inside ${A.name}) bind ${B.addr}:8081`);
  expect(
    'kernel says',
    curl(sb, `http://${A.addr}:8080/bind?addr=${B.addr}&port=8081`),
    (g) => g.trim() === 'EADDRNOTAVAIL',
  );
  cmd(`(inside ${A.name}) bind ${HOST_ADDR}:8081   # the host's own address`);
  expect(
    'kernel says',
    curl(sb, `http://${A.addr}:8080/bind?addr=${HOST_ADDR}&port=8081`),
    (g) => g.trim() === 'EADDRNOTAVAIL',
  );
  say();
}

function ownLoopback(sb: Sandbox): void {
  say(
    bold('5. The host runs a service on 127.0.0.1:9000; each cell has its own 127.0.0.1:9000 too'),
  );
  cmd('curl http://127.0.0.1:9000/   # from the host');
  expect('host sees', curl(sb, 'http://127.0.0.1:9000/'), (g) => g.includes("HOST's secret"));
  for (const c of [A, B]) {
    cmd(`(inside ${c.name}) GET http://127.0.0.1:9000/`);
    expect(
      `${c.name} sees`,
      curl(sb, `http://${c.addr}:8080/local?port=9000`),
      (g) => g.trim() === `${c.name}'s private admin page`,
    );
  }
  say();
}

function hostWildcard(sb: Sandbox): void {
  say(bold('6. The host listens on 0.0.0.0:2222; the shared stack must not hand it cell traffic'));
  cmd(`curl http://${HOST_ADDR}:2222/   # the host's own address`);
  expect('answer', curl(sb, `http://${HOST_ADDR}:2222/`), (g) => g.includes("HOST's wildcard"));
  cmd(`curl http://${A.addr}:2222/   # ${A.name}'s address, where ${A.name} has no socket`);
  expect('answer', curl(sb, `http://${A.addr}:2222/`), (g) =>
    /refused|reset|Couldn't connect/i.test(g),
  );
  say();
}

function whatTheEngineKnows(sb: Sandbox): void {
  say(bold('7. What the engine knows'));
  cmd('l3iso list');
  for (const line of sb.cli(['list']).stdout.trimEnd().split('\n')) say(`    ${line}`);
  cmd(`l3iso show ${A.name}`);
  const shown = sb.cli(['show', A.name, '--json']);
  const refused = (JSON.parse(shown.stdout) as { refused: Record<string, number> }).refused;
  expect(
    'refusals counted in the kernel',
    `bind-foreign=${refused['bind-foreign']}`,
    (g) => g === 'bind-foreign=2',
  );
  say();
}

function execSpawn(sb: Sandbox, argv: string[]): ChildProcess {
  const [bin, ...args] = sb.inNetns(argv);
  return spawn(bin!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
}

async function main(): Promise<number> {
  if (process.geteuid?.() !== 0) {
    process.stderr.write(
      'demo: must run as root (it loads BPF programs and creates a netns and cgroups)\n',
    );
    return 1;
  }
  const sb = createSandbox('l3iso-demo', [HOST_ADDR, A.addr, B.addr]);
  const children: ChildProcess[] = [];
  try {
    await story(sb, children);
  } catch (err) {
    failures++;
    say(`  ✗ ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await Promise.all(
      children.map((c) =>
        c.exitCode === null && c.signalCode === null
          ? new Promise((r) => c.once('exit', r))
          : undefined,
      ),
    );
    sb.destroy();
  }
  say(bold('8. Cleaned up: cells released, engine down, sandbox removed.'));
  say(
    failures === 0
      ? bold('demo: every step behaved as described')
      : bold(`demo: ${failures} step(s) did NOT behave as described`),
  );
  return failures === 0 ? 0 : 1;
}

void main().then((code) => (process.exitCode = code));
