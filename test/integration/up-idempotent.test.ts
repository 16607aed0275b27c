// `up` on a live engine is idempotent: the pinned maps are the state.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, V6, type Sandbox } from '../harness/sandbox';

describe('idempotent up', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    sb.cg('a');
    sb.cg('b/n');
    await sb.assign('a', V4(1), V6(1), V4(2));
    await sb.assign('b', V6(3));
    await sb.assign('b/n', V4(4));
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('a second up keeps every assignment and the cells stay confined', async () => {
    const before = await sb.list();
    expect(before).toHaveLength(3);
    const r = await sb.cli(['up', '--cgroup-root', sb.root]);
    expect(r.status, r.stderr).toBe(0);
    const after = await sb.list();
    expect(after).toEqual(before);
    const p = await sb.probe(
      'a',
      [
        { op: 'bind_new', fam: 4, addr: V4(4) },
        { op: 'bind_new', fam: 6, addr: V6(3) },
        { op: 'bind_new', fam: 4, addr: V4(9) },
        { op: 'bind_new', fam: 4, addr: '0.0.0.0' },
        // V6ONLY: a dual-stack TCP :: gets the v4-mapped primary (bind.test.ts)
        { op: 'bind_new', fam: 6, addr: '::', v6only: true },
      ],
      { keepGoing: true },
    );
    expect(p.ops[0]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    expect(p.ops[1]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    expect(p.ops[2]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    expect(p.ops[3]).toMatchObject({ ok: true, addr: V4(1) });
    expect(p.ops[4]).toMatchObject({ ok: true, addr: V6(1) });
    // host processes are still kept off cell addresses
    const h = await sb.probe(sb.root, [{ op: 'bind_new', fam: 4, addr: V4(1) }], {
      keepGoing: true,
    });
    expect(h.last).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
  });

  it('a third up, and assignments made after it, still work', async () => {
    await sb.cliOk(['up', '--cgroup-root', sb.root]);
    sb.cg('c');
    await sb.assign('c', V4(5));
    const p = await sb.probe(
      'c',
      [
        { op: 'bind_new', fam: 4, addr: '0.0.0.0' },
        { op: 'bind_new', fam: 4, addr: V4(1) },
      ],
      { keepGoing: true },
    );
    expect(p.ops[0]).toMatchObject({ ok: true, addr: V4(5) });
    expect(p.ops[1]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    expect(await sb.list()).toHaveLength(4);
  });
});
