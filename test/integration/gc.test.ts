// gc: a cell whose cgroup was removed without `release` keeps its addresses
// owned until gc forgets it; then they are free for another cell.
// Issue 9: each damaged state a killed verb left on the old code (its "Why"
// list), written straight into the maps: gc --check names it, the verbs
// that tripped on it work, and gc repairs it to the state the owner map
// implies (checked by the test's own reading of the maps too).
import { rmdirSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BpfMap, MapUpdate } from '../../loader';
import {
  L3_OWNER_LOOPBACK,
  L3_OWNER_RELEASING,
  decodeCell,
  decodeOwner,
  emptyCellDenials,
  encodeAddr,
  encodeCell,
  encodeCellDenials,
  encodeCellKey,
  encodeOwner,
  type Cell,
} from '../../src/codecs/layout';
import { loopbackCandidates, parseAddress, type CellAddress } from '../../src/model/address';
import { mapInvariants } from '../harness/invariants';
import { parsePromText, sampleValue } from '../harness/promtext';
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

function withMap<T>(sb: Sandbox, name: string, f: (m: BpfMap) => T): T {
  const m = BpfMap.openPinned(path.join(sb.pinDir, 'maps', name));
  try {
    return f(m);
  } finally {
    m.close();
  }
}

async function cellId(sb: Sandbox, name: string): Promise<bigint> {
  return BigInt((await sb.show(name)).id as string);
}

/** Rewrites a cell's record as a killed run could have left it. */
async function damageCell(sb: Sandbox, name: string, change: (c: Cell) => Cell): Promise<void> {
  const key = encodeCellKey(await cellId(sb, name));
  withMap(sb, 'l3_cells', (m) => {
    const c = decodeCell(m.lookup(key)!);
    m.update(key, encodeCell(change(c)), MapUpdate.EXIST);
  });
}

describe('gc repairs what a killed verb left (issue 9, Why)', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox({ hosts: Array.from({ length: 16 }, (_, i) => i + 1) });
    await sb.up();
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  /** gc --check: exit 1 and the list when there is something to repair */
  const check = async (): Promise<string[]> => {
    const r = await sb.cli(['gc', '--check', '--json']);
    const found = r.json?.inconsistencies as string[];
    expect(r.status, r.stderr).toBe(found?.length ? 1 : 0);
    return found;
  };
  const repairedClean = async (): Promise<void> => {
    await sb.cliOk(['gc']);
    expect(await check()).toEqual([]);
    expect(mapInvariants(sb.pinDir)).toEqual([]);
  };

  it('counts a run decremented wrongly: release of the address still works (no "-1 is not a u32")', async () => {
    sb.cg('counts');
    await sb.assign('counts', V4(10), V6(10), V4(11));
    // what `release` writing its decremented counts, then dying, left
    await damageCell(sb, 'counts', (c) => ({ ...c, addrs4: 1, addrs6: 0 }));
    expect((await check()).join('\n')).toMatch(/counts 0 IPv6 addresses, owns 1/);
    const r = await sb.cli(['release', 'counts', V6(10)]);
    expect(r.status, r.stderr).toBe(0);
    expect(await sb.show('counts')).toMatchObject({ addresses: [V4(10), V4(11)] });
    await damageCell(sb, 'counts', (c) => ({ ...c, addrs4: 7 }));
    await repairedClean();
    expect(await sb.show('counts')).toMatchObject({ addresses: [V4(10), V4(11)] });
  });

  it('an owner stuck RELEASING: binds refused until gc finishes the release', async () => {
    sb.cg('stuck');
    await sb.assign('stuck', V4(12), V4(13));
    const key = encodeAddr(parseAddress(V4(13)));
    withMap(sb, 'l3_owners', (m) => {
      const o = decodeOwner(m.lookup(key)!);
      m.update(key, encodeOwner({ ...o, flags: o.flags | L3_OWNER_RELEASING }), MapUpdate.EXIST);
    });
    expect((await check()).join('\n')).toMatch(/stuck RELEASING/);
    const bind = [{ op: 'bind_new', fam: 4, addr: V4(13) }];
    const refused = await sb.probe('stuck', bind, { keepGoing: true });
    expect(refused.last).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    await repairedClean();
    expect((await sb.show('stuck')).addresses).toEqual([V4(12)]);
    await sb.assign('stuck', V4(13));
    expect((await sb.probe('stuck', bind)).last).toMatchObject({ ok: true, addr: V4(13) });
  });

  it('a cell that owns IPv6 but has no IPv6 primary: a wildcard bind gets its address again after gc', async () => {
    sb.cg('noprim');
    await sb.assign('noprim', V6(14));
    await damageCell(sb, 'noprim', (c) => ({ ...c, primary6: undefined }));
    expect((await check()).join('\n')).toMatch(/has IPv6 but no primary/);
    const bind = [{ op: 'bind_new', fam: 6, type: 'udp', addr: '::' }];
    // without a primary a UDP wildcard bind lands on the loopback alias, not on
    // the cell's address: its service is unreachable
    const broken = await sb.probe('noprim', bind, { keepGoing: true });
    expect(broken.last.addr, JSON.stringify(broken.last)).toMatch(/^::ffff:127\./);
    await repairedClean();
    expect((await sb.probe('noprim', bind)).last).toMatchObject({ ok: true, addr: V6(14) });
  });

  it('a second loopback alias (an apply killed after its claims, re-run): gc releases it', async () => {
    sb.cg('twice');
    await sb.assign('twice', V4(16));
    const id = await cellId(sb, 'twice');
    const { loopback4 } = await sb.show('twice');
    withMap(sb, 'l3_owners', (m) => {
      let free: CellAddress | undefined;
      for (const a of loopbackCandidates(id)) {
        free = a;
        if (!m.lookup(encodeAddr(a))) break;
      }
      if (!free) throw new Error('no loopback candidate');
      m.update(
        encodeAddr(free),
        encodeOwner({ cell: id, flags: L3_OWNER_LOOPBACK }),
        MapUpdate.NOEXIST,
      );
    });
    expect(await check()).toContain(`cell #${id} owns 2 loopback aliases`);
    expect(mapInvariants(sb.pinDir)).toContain(`cell #${id} owns 2 loopback aliases`);
    await repairedClean();
    expect(await sb.show('twice')).toMatchObject({ loopback4, addresses: [V4(16)] });
  });

  it('a counters entry with no cell: not counted as a cell, removed by gc', async () => {
    const metric = async (): Promise<number> =>
      sampleValue(parsePromText((await sb.cliOk(['metrics'])).stdout), 'l3iso_cells')!;
    const cells = await metric();
    sb.cg('ghost');
    await sb.assign('ghost', V4(15));
    const id = await cellId(sb, 'ghost');
    // a release that deleted the cell entry and died before the counters
    withMap(sb, 'l3_cells', (m) => m.delete(encodeCellKey(id)));
    withMap(sb, 'l3_owners', (m) => {
      for (const k of [...m.keys()]) if (decodeOwner(m.lookup(k)!).cell === id) m.delete(k);
    });
    expect(await check()).toContain(`counters of no cell: #${id}`);
    expect(await metric()).toBe(cells);
    const gc = await sb.cliOk(['gc', '--json']);
    expect(gc.json.staleCounters).toEqual([id.toString()]);
    await repairedClean();
    await sb.assign('ghost', V4(15));
    expect(await metric()).toBe(cells + 1);
  });
});
