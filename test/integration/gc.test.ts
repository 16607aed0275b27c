// gc: a cell whose cgroup was removed without `release` keeps its addresses
// owned until gc forgets it; then they are free for another cell.
import { rmdirSync } from 'node:fs';
import * as path from 'node:path';
import { BpfMap, MapUpdate } from '../../loader';
import { emptyCellDenials, encodeCellDenials, encodeCellKey } from '../../src/codecs/layout';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, V6, type Sandbox } from '../harness/sandbox';

describe('gc', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('keep');
    sb.cg('gone');
    sb.cg('next');
    await sb.assign('keep', V4(1));
    await sb.assign('gone', V4(2), V6(2));
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('releases cells whose cgroup is gone, and only those', async () => {
    rmdirSync(`${sb.root}/gone`);
    const taken = await sb.cli(['assign', 'next', V4(2)]);
    expect(taken.status).not.toBe(0);
    expect(taken.stderr).toMatch(/no longer exists/);

    const r = await sb.cliOk(['gc', '--json']);
    const gc = r.json as {
      cells: { id: string; addresses: string[] }[];
      orphanedAddresses: string[];
    };
    expect(gc.cells).toHaveLength(1);
    expect(gc.cells[0]!.addresses.sort()).toEqual([V4(2), V6(2)].sort());
    expect(gc.orphanedAddresses).toEqual([]);

    expect((await sb.list()).map((c: { cell: string }) => c.cell)).toEqual(['keep']);
    await sb.cliOk(['assign', 'next', V4(2), V6(2)]);
  });

  it('a second gc has nothing to do', async () => {
    const r = await sb.cliOk(['gc', '--json']);
    expect(r.json).toEqual({
      cells: [],
      orphanedAddresses: [],
      repaired: [],
      staleCounters: [],
      ociRecords: [],
    });
  });

  it('an l3_cell_denials entry of no cell is reported by gc --check and removed by gc', async () => {
    const orphan = 0x7e57_0000_0000_0d0dn;
    const m = BpfMap.openPinned(path.join(sb.pinDir, 'maps', 'l3_cell_denials'));
    try {
      const d = emptyCellDenials();
      d.refused[0] = 1n;
      m.update(encodeCellKey(orphan), encodeCellDenials(d), MapUpdate.NOEXIST);
      const check = await sb.cli(['gc', '--check', '--json']);
      expect(check.status).toBe(1);
      expect(check.json.inconsistencies).toEqual([`denial counters of no cell: #${orphan}`]);
      const r = await sb.cliOk(['gc', '--json']);
      expect(r.json.staleCounters).toEqual([orphan.toString()]);
      expect(m.lookup(encodeCellKey(orphan))).toBeUndefined();
      expect((await sb.cli(['gc', '--check'])).status).toBe(0);
    } finally {
      m.delete(encodeCellKey(orphan));
      m.close();
    }
  });
});
