// `events`: refusals reach user space through the l3_events ring buffer,
// with the cell, the reason, the address and port, and the task.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, createSandbox, python, V4, V6, type BgProc, type Sandbox } from '../harness/sandbox';

describe('events', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('web');
    await sb.assign('web', V4(1), V6(1));
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  const eventsCli = (args: string[]): BgProc =>
    sb.spawnOnHost([process.execPath, CLI, '--pin-dir', sb.pinDir, 'events', ...args]);

  async function waitReady(p: BgProc): Promise<void> {
    const deadline = Date.now() + 15_000;
    while (!/reading audit events/.test(p.stderr)) {
      if (Date.now() > deadline) throw new Error(`events did not start: ${p.stderr} ${p.stdout}`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  it('--json --count 1 --timeout 5: a refused bind shows up within a second', async () => {
    const events = eventsCli(['--json', '--count', '1', '--timeout', '5']);
    await waitReady(events);
    const probe = sb.spawnProbe('web', [
      { op: 'bind_new', fam: 4, addr: V4(9), port: 8443 },
      { op: 'wait_stdin' },
    ]);
    const bound = await probe.waitFor((l) => l.op === 'bind_new');
    const refusedAt = Date.now();
    expect(bound).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });

    const ev = await events.waitFor((l) => l.kind === 'refused', 5000);
    const seenAt = Date.now();
    expect(seenAt - refusedAt).toBeLessThan(1000);
    expect(ev).toMatchObject({
      cell: 'web',
      kind: 'refused',
      reason: 'bind-foreign',
      address: V4(9),
      port: 8443,
      pid: probe.pid,
    });
    expect(ev.comm).toMatch(/^python/);
    expect(ev.cellId).toBe((await sb.show('web')).id);
    // Wall-clock time derived from the monotonic stamp.
    expect(Math.abs(Date.parse(ev.time) - refusedAt)).toBeLessThan(1500);
    expect(await events.exited).toEqual({ status: 0, signal: null });
    expect(events.lines).toHaveLength(1);
    probe.child.stdin?.end();
    await probe.exited;
  });

  it('text lines, IPv6 included, until SIGINT', async () => {
    const events = eventsCli(['--follow']);
    await waitReady(events);
    const r = await sb.probe(
      'web',
      [
        { op: 'bind_new', fam: 6, addr: V6(9), port: 443 },
        { op: 'socket', fam: 4, type: 'raw' },
      ],
      { keepGoing: true },
    );
    expect(r.ops.map((o) => o.errno)).toEqual(['EADDRNOTAVAIL', 'EPERM']);
    const deadline = Date.now() + 5000;
    while (events.stdout.split('\n').filter(Boolean).length < 2 && Date.now() < deadline)
      await new Promise((res) => setTimeout(res, 50));
    events.child.kill('SIGINT');
    expect(await events.exited).toEqual({ status: 0, signal: null });
    const lines = events.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z web refused bind-foreign \[2001:db8::9\]:443 pid=\d+ comm=python\S*$/,
    );
    expect(lines[1]).toMatch(/ web refused sock-raw - pid=\d+ comm=python\S*$/);
  });

  it('without --follow: prints what is buffered and exits', async () => {
    await sb.probe('web', [{ op: 'bind_new', fam: 4, addr: V4(8), port: 7 }], { keepGoing: true });
    const r = await sb.cliOk(['events', '--json']);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ reason: 'bind-foreign', address: V4(8), port: 7 });
    // The buffer is drained now.
    expect((await sb.cliOk(['events'])).stdout).toBe('');
  });

  it('--count N --timeout S: exits 1 when the timeout comes first', async () => {
    const r = await sb.cli(['events', '--count', '1', '--timeout', '0.5']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/timed out after 0\.5s with 0 of 1 events/);
  });

  it('events suppressed by the kernel rate limit are reported', async () => {
    const events = eventsCli(['--json', '--follow']);
    await waitReady(events);
    // More refusals than one CPU may report (2000 a second): pinned to CPU 0,
    // so at most two one-second windows (4000 events) get through.
    const n = 4500;
    const flood = [
      'import socket, sys',
      'for i in range(int(sys.argv[1])):',
      '    s = socket.socket()',
      '    try:',
      `        s.bind(("${V4(9)}", 20000 + i % 1000))`,
      '    except OSError:',
      '        pass',
      '    s.close()',
    ].join('\n');
    const r = await sb.inCell('web', ['taskset', '-c', '0', python(), '-c', flood, String(n)], {
      timeoutMs: 30_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const note = await events.waitFor((l) => l.kind === 'suppressed', 5000);
    expect(note.count).toBeGreaterThan(0);
    events.child.kill('SIGINT');
    expect(await events.exited).toEqual({ status: 0, signal: null });
    const delivered = events.lines.filter((l) => l.kind === 'refused').length;
    const suppressed = events.lines
      .filter((l) => l.kind === 'suppressed')
      .reduce((a, l) => a + l.count, 0);
    expect(suppressed).toBeGreaterThanOrEqual(n - 4000);
    // (events can also be lost when the 256 KiB ring is full: never more)
    expect(delivered + suppressed).toBeLessThanOrEqual(n);
    expect(delivered).toBeGreaterThan(0);
    // The kernel's counter, as metrics exposes it, is what the stream reported.
    const metrics = (await sb.cliOk(['metrics'])).stdout;
    expect(metrics).toContain(`l3iso_events_suppressed_total ${suppressed}\n`);
    expect((await sb.show('web')).refused['bind-foreign']).toBeGreaterThanOrEqual(n);
  });
});
