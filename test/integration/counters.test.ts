// DESIGN.md: "Every refusal is counted per cell and reason".
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BpfMap } from '../../loader';
import { decodeCellKey } from '../../src/codecs/layout';
import { createSandbox, mapped, V4, V6, type Op, type Sandbox } from '../harness/sandbox';

describe('refusal counters and show', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('k');
    sb.cg('other');
    await sb.assign('k', V4(5), V6(5));
    await sb.assign('other', V4(6));
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  const refused = async (cg: string, reason: string): Promise<number> =>
    (await sb.show(cg)).refused?.[reason] ?? 0;

  it('show --json describes the cell', async () => {
    const s = await sb.show('k');
    expect(s).toMatchObject({
      cell: 'k',
      path: `${sb.root}/k`,
      primary4: V4(5),
      primary6: V6(5),
      allowRaw: false,
    });
    expect([...s.addresses].sort()).toEqual([V4(5), V6(5)].sort());
    expect(typeof s.id).toBe('string');
    expect(s.loopback4).toMatch(/^127\./);
    expect(Array.isArray(s.processes)).toBe(true);
    expect(s.refused).toBeTypeOf('object');
  });

  it('after N refused binds, refused["bind-foreign"] grows by exactly N', async () => {
    const before = await refused('k', 'bind-foreign');
    expect(before).toBe(0);
    const ops: Op[] = [
      { op: 'bind_new', fam: 4, addr: V4(9) },
      { op: 'bind_new', fam: 4, addr: V4(6) },
      { op: 'bind_new', fam: 4, type: 'udp', addr: V4(9) },
      { op: 'bind_new', fam: 6, addr: V6(9) },
      { op: 'bind_new', fam: 6, type: 'udp', addr: V6(1) },
      { op: 'bind_new', fam: 6, addr: mapped(V4(6)), v6only: false },
      // allowed binds are not counted
      { op: 'bind_new', fam: 4, addr: V4(5) },
      { op: 'bind_new', fam: 6, addr: '::' },
    ];
    const r = await sb.probe('k', ops, { keepGoing: true });
    const n = r.ops.filter((o) => o.ok === false && o.errno === 'EADDRNOTAVAIL').length;
    expect(n).toBe(6);
    expect(r.ops.slice(6).every((o) => o.ok)).toBe(true);
    expect(await refused('k', 'bind-foreign')).toBe(before + n);
    // another cell's counter is untouched
    expect(await refused('other', 'bind-foreign')).toBe(0);
  });

  it('other reasons: connect-loopback, sock-raw, sendmsg-foreign-src', async () => {
    const r = await sb.probe(
      'k',
      [
        { op: 'fetch', fam: 4, addr: '127.1.2.3', port: 80 },
        { op: 'socket', id: 'raw', fam: 4, type: 'raw' },
        { op: 'socket', fam: 4, type: 'udp' },
        { op: 'sendto', addr: V4(9), port: 9, src: V4(9) },
      ],
      { keepGoing: true },
    );
    expect(r.ops[0]).toMatchObject({ ok: false, errno: 'ECONNREFUSED' });
    expect(r.ops[1]).toMatchObject({ ok: false, errno: 'EPERM' });
    expect(r.ops[3]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    const s = await sb.show('k');
    expect(s.refused['connect-loopback']).toBe(1);
    expect(s.refused['sock-raw']).toBe(1);
    expect(s.refused['sendmsg-foreign-src']).toBe(1);
  });

  it('show lists the processes in the cell', async () => {
    const p = sb.spawnProbe('k', [{ op: 'socket', fam: 4 }, { op: 'wait_stdin' }]);
    await p.waitFor((l) => l.op === 'socket');
    const s = await sb.show('k');
    expect(s.processes.map(Number)).toContain(p.pid);
    p.child.stdin?.end();
    await p.exited;
  });

  /** Cell ids with an entry in the pinned counter map `name`. */
  const entries = (name: 'l3_cell_stats' | 'l3_cell_denials'): bigint[] => {
    const m = BpfMap.openPinned(path.join(sb.pinDir, 'maps', name));
    try {
      return [...m.keys()].map((k) => decodeCellKey(k));
    } finally {
      m.close();
    }
  };

  it('refusals go to the shared l3_cell_denials: a quiet cell has no entry until its first', async () => {
    sb.cg('quiet');
    await sb.assign('quiet', V4(7));
    const id = BigInt((await sb.show('quiet')).id);
    expect(entries('l3_cell_stats')).toContain(id);
    expect(entries('l3_cell_denials')).not.toContain(id);
    // served traffic counts in the per-CPU map only
    await sb.probe('quiet', [{ op: 'bind_new', fam: 4, type: 'udp', addr: V4(7) }]);
    expect(entries('l3_cell_denials')).not.toContain(id);

    const r = await sb.probe('quiet', [{ op: 'bind_new', fam: 4, addr: V4(9) }], {
      keepGoing: true,
    });
    expect(r.ops[0]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    expect(entries('l3_cell_denials')).toContain(id);
    expect((await sb.show('quiet')).refused['bind-foreign']).toBe(1);

    await sb.cliOk(['release', 'quiet']);
    expect(entries('l3_cell_stats')).not.toContain(id);
    expect(entries('l3_cell_denials')).not.toContain(id);
  });
});
