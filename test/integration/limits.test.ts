// Issue 9: limits give clear errors and exact counters. A full cell map:
// EMAP_FULL, nothing half-made (no counters entry costs a cell of capacity,
// l3iso_cells counts only cells). A full event ring: every refusal is either
// delivered or counted as suppressed, exactly.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, python, PROBE, V4, type Sandbox } from '../harness/sandbox';
import { parsePromText, sampleValue } from '../harness/promtext';

describe('limits', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up(['--max-cells', '3']);
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  const metric = async (name: string): Promise<number> => {
    const text = (await sb.cliOk(['metrics'])).stdout;
    const v = sampleValue(parsePromText(text), name);
    if (v === undefined) throw new Error(`no ${name} in ${text.slice(0, 500)}`);
    return v;
  };

  it('a full cell map: EMAP_FULL, exact cell count, full capacity after a release', async () => {
    for (const c of ['m1', 'm2', 'm3', 'm4']) sb.cg(c);
    await sb.assign('m1', V4(1));
    await sb.assign('m2', V4(2));
    await sb.assign('m3', V4(3));
    const r = await sb.cli(['assign', 'm4', V4(4)], { json: true });
    expect(r.json?.error?.code, r.stdout).toBe('EMAP_FULL');
    expect(r.json.error.message).toContain('l3_cells');
    expect(await metric('l3iso_cells')).toBe(3);
    expect((await sb.cli(['gc', '--check'])).status).toBe(0);
    await sb.cliOk(['release', 'm1']);
    expect(await metric('l3iso_cells')).toBe(2);
    await sb.assign('m4', V4(4));
    expect(await metric('l3iso_cells')).toBe(3);
    await sb.cliOk(['release', 'm4']);
  });

  it('a full event ring: delivered + suppressed = refusals, exactly', async () => {
    sb.cg('loud');
    await sb.assign('loud', V4(5));
    await sb.cliOk(['events']);
    const suppressedBefore = await metric('l3iso_events_suppressed_total');
    const refusedBefore = (await sb.show('loud')).refused['bind-foreign'] ?? 0;
    // Two CPUs at once overrun the ring (each has its own rate budget).
    const N = 2600;
    const ops = Array.from({ length: N }, () => ({ op: 'bind_new', fam: 4, addr: V4(9) }));
    const spec = JSON.stringify({ ops, keep_going: true });
    const runs = await Promise.all(
      ['0', '1'].map((cpu) =>
        sb.inCell('loud', ['taskset', '-c', cpu, python(), PROBE, spec], { timeoutMs: 120_000 }),
      ),
    );
    for (const r of runs) expect(r.status, r.stderr).toBe(0);
    const refused = (await sb.show('loud')).refused['bind-foreign'] - refusedBefore;
    expect(refused).toBe(2 * N);
    const read = await sb.cliOk(['events', '--json']);
    const delivered = read.stdout.split('\n').filter((l) => l.includes('"bind-foreign"')).length;
    const suppressed = (await metric('l3iso_events_suppressed_total')) - suppressedBefore;
    expect(delivered + suppressed).toBe(2 * N);
    expect(suppressed).toBeGreaterThan(0);
  }, 180_000);
});
