// The reverse index of l3_owners (l3_cell_addrs): verbs on one cell read
// its own addresses through it, so it must list everything the cell owns.
// A damaged index is found by `gc --check` and rebuilt by gc; leftovers of
// a killed run (listed, not owned) are dropped by the next verb on the
// cell; the mark of listeners kept by `release --force` clears once they
// are gone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BpfMap } from '../../loader';
import {
  L3_CONFIG_KEPT_LISTENERS,
  decodeAddr,
  decodeCellSlot,
  encodeAddr,
  encodeCellSlot,
} from '../../src/codecs/layout';
import { EngineState } from '../../src/dataplane/state';
import { parseAddress } from '../../src/model/address';
import { createSandbox, V4, V6, type Sandbox } from '../harness/sandbox';

describe('reverse index l3_cell_addrs', () => {
  let sb: Sandbox;
  const index = () => BpfMap.openPinned(`${sb.pinDir}/maps/l3_cell_addrs`);
  /** `gc --check` (it exits 1 when it finds something) */
  const check = async (): Promise<string[]> => {
    const r = await sb.cli(['gc', '--check', '--json']);
    expect(r.json?.inconsistencies, r.stderr).toBeDefined();
    return r.json.inconsistencies as string[];
  };
  const idOf = async (name: string): Promise<bigint> =>
    BigInt((await sb.list()).find((c: { cell: string }) => c.cell === name).id as string);
  /** slot -> address text of one cell, straight from the map */
  const slotsOf = (id: bigint): Map<number, string> => {
    const m = index();
    try {
      const { keys, values } = m.lookupBatch();
      const out = new Map<number, string>();
      keys.forEach((k, i) => {
        const s = decodeCellSlot(k);
        if (s.cell === id) out.set(s.slot, decodeAddr(values[i]!).text);
      });
      return out;
    } finally {
      m.close();
    }
  };

  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('lists every address a cell owns, its alias too, in dense slots', async () => {
    sb.cg('a');
    await sb.assign('a', V4(1), V6(1));
    await sb.assign('a', V4(2));
    const cell = (await sb.list()).find((c: { cell: string }) => c.cell === 'a');
    const slots = slotsOf(await idOf('a'));
    expect([...slots.keys()].sort()).toEqual([0, 1, 2, 3]);
    expect([...slots.values()].sort()).toEqual([V4(1), V4(2), V6(1), cell.loopback4].sort());
    await sb.cliOk(['release', 'a', V4(1)]);
    const after = slotsOf(await idOf('a'));
    expect([...after.keys()].sort()).toEqual([0, 1, 2]);
    expect([...after.values()]).not.toContain(V4(1));
    expect(await check()).toEqual([]);
  });

  it('gc --check finds an owned address the index lost; gc lists it again', async () => {
    sb.cg('b');
    await sb.assign('b', V4(3), V6(3));
    const id = await idOf('b');
    const slots = slotsOf(id);
    const lost = [...slots].find(([, a]) => a === V6(3))!;
    // Damage: delete the slot of V6(3), and move the last slot into it so
    // the list stays dense (a hole would be found too, but differently).
    const m = index();
    try {
      const last = slots.size - 1;
      const lastValue = m.lookup(encodeCellSlot(id, last))!;
      if (lost[0] !== last) m.update(encodeCellSlot(id, lost[0]), lastValue);
      m.delete(encodeCellSlot(id, last));
    } finally {
      m.close();
    }
    expect(await check()).toEqual([`#${id} owns ${V6(3)}, which its index does not list`]);
    const gc = await sb.cliOk(['gc', '--json']);
    expect(gc.json.repaired).toEqual([
      { cell: 'l3_cell_addrs', what: ['listed 1 owned addresses the index lacked'] },
    ]);
    expect(await check()).toEqual([]);
    // Released through the index: nothing of the cell stays owned.
    await sb.cliOk(['release', 'b']);
    expect(await check()).toEqual([]);
    sb.cg('b2');
    await sb.assign('b2', V6(3));
  });

  it('an entry a killed assign left (listed, never claimed) goes at the next verb', async () => {
    sb.cg('c');
    await sb.assign('c', V4(5));
    const id = await idOf('c');
    const n = slotsOf(id).size;
    const m = index();
    try {
      m.update(encodeCellSlot(id, n), encodeAddr(parseAddress(V4(66))));
    } finally {
      m.close();
    }
    expect(await check()).toEqual([`index of #${id} lists ${V4(66)}, which it does not own`]);
    await sb.assign('c', V6(5)); // reconcile drops the leftover first
    expect([...slotsOf(id).values()]).not.toContain(V4(66));
    expect(await check()).toEqual([]);
  });

  it('a hole in a cell’s slots is found by gc --check and closed by gc', async () => {
    sb.cg('d');
    await sb.assign('d', V4(7), V6(7));
    const id = await idOf('d');
    const m = index();
    try {
      m.delete(encodeCellSlot(id, 0));
    } finally {
      m.close();
    }
    const found = await check();
    expect(found).toContain(`index of #${id} has a hole at slot 0 of 3`);
    await sb.cliOk(['gc']);
    expect(await check()).toEqual([]);
    expect([...slotsOf(id).keys()].sort()).toEqual([0, 1, 2]);
  });

  it('release --force of a listener marks kept listeners; the mark clears once they are gone', async () => {
    const flags = () => {
      const state = EngineState.open(sb.pinDir);
      try {
        return (state.config().flags ?? 0) & L3_CONFIG_KEPT_LISTENERS;
      } finally {
        state.close();
      }
    };
    sb.cg('e');
    sb.cg('f');
    await sb.assign('e', V4(8));
    expect(flags()).toBe(0);
    const srv = sb.spawnProbe('e', [
      { op: 'socket', fam: 4 },
      { op: 'bind', addr: V4(8), port: 0 },
      { op: 'listen' },
      { op: 'serve_banner', banner: 'e' },
    ]);
    await srv.ready();
    await sb.cliOk(['release', 'e', V4(8), '--force']);
    expect(flags()).toBe(L3_CONFIG_KEPT_LISTENERS);
    // The next owner of the address forgets the kept listener's entry, and
    // no other kept listener is left: the mark goes.
    await sb.assign('f', V4(8));
    expect(flags()).toBe(0);
    await srv.kill();
  });
});
