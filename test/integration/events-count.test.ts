// Issue 7 item 4: `events --count N` prints exactly N events and leaves the
// rest in the ring for the next reader (none lost); an event names its cell
// even after the cell's cgroup is gone.
import { rmdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, type Sandbox } from '../harness/sandbox';

describe('events: exact counts, names after the cgroup is gone', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('web');
    sb.cg('gone');
    await sb.assign('web', V4(1));
    await sb.assign('gone', V4(2));
    await sb.cliOk(['events']); // drain whatever up and assign caused
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  const refusals = (cell: string, n: number) =>
    sb.probe(
      cell,
      Array.from({ length: n }, (_, i) => ({
        op: 'bind_new',
        fam: 4,
        addr: V4(9),
        port: 9000 + i,
      })),
      { keepGoing: true },
    );

  const lines = (stdout: string) =>
    stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { port: number; cell: string; kind: string });

  it('--count 3 prints exactly 3; the next reader gets the other 7, in order', async () => {
    const p = await refusals('web', 10);
    expect(p.ops.every((o) => o.errno === 'EADDRNOTAVAIL')).toBe(true);
    const first = await sb.cliOk(['events', '--json', '--count', '3', '--timeout', '5']);
    expect(lines(first.stdout).map((e) => e.port)).toEqual([9000, 9001, 9002]);
    const rest = await sb.cliOk(['events', '--json']);
    expect(lines(rest.stdout).map((e) => e.port)).toEqual([
      9003, 9004, 9005, 9006, 9007, 9008, 9009,
    ]);
  });

  it('an event names its cell after the cgroup was removed', async () => {
    await refusals('gone', 1);
    rmdirSync(`${sb.root}/gone`);
    const r = await sb.cliOk(['events', '--json']);
    const evs = lines(r.stdout).filter((e) => e.kind === 'refused');
    expect(evs).toHaveLength(1);
    expect(evs[0]!.cell).toBe('gone');
  });
});
