// `l3iso status`: the engine's settings, counts and map pressure.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, V6, type Sandbox } from '../harness/sandbox';

describe('status', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up(['--managed-prefix', '192.0.2.0/24', '--max-cells', '1000']);
    sb.cg('a');
    sb.cg('b');
    await sb.assign('a', V4(1), V6(1));
    await sb.assign('b', V4(2));
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('reports root, netns, prefixes, uplinks, counts and pressure', async () => {
    const r = await sb.cliOk(['status', '--json']);
    expect(r.json).toMatchObject({
      pinDir: sb.pinDir,
      cgroupRoot: sb.root,
      inEngineNetns: true,
      maxCells: 1000,
      managedPrefixes: ['192.0.2.0/24'],
      uplinks: [],
      counts: { cells: 2, addresses: 3, addresses4: 2, addresses6: 1 },
    });
    const cells = r.json.maps.find((m: { map: string }) => m.map === 'l3_cells');
    expect(cells.entries).toBe(2);
    expect(cells.pressure).toBeCloseTo(2 / cells.maxEntries);
    // owners: 3 addresses + 2 loopback aliases
    expect(r.json.maps.find((m: { map: string }) => m.map === 'l3_owners').entries).toBe(5);
    const text = await sb.cliOk(['status']);
    expect(text.stdout).toMatch(/cells +2\n/);
    expect(text.stdout).toMatch(/managed +192\.0\.2\.0\/24\n/);
  });

  it('follows a release and says when the engine is not up', async () => {
    await sb.cliOk(['release', 'b']);
    const r = await sb.cliOk(['status', '--json']);
    expect(r.json.counts).toMatchObject({ cells: 1, addresses: 2 });
    const other = await sb.cli(['status'], { pinDir: sb.extraPinDir() });
    expect(other.status).toBe(1);
    expect(other.stderr).toMatch(/not up/);
  });
});
