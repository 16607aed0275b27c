// DESIGN.md: "An address belongs to at most one cell, enforced atomically in
// the kernel (BPF_NOEXIST claim: concurrent CLIs cannot both win)".
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, V6, type Sandbox } from '../harness/sandbox';

const N = 8;

describe('concurrent assign of one address', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  for (const [round, addr] of [
    [1, V4(5)],
    [2, V6(5)],
    [3, V4(6)],
  ] as const) {
    it(`round ${round}: ${N} CLIs assign ${addr} -> exactly one wins`, async () => {
      const names = Array.from({ length: N }, (_, i) => `r${round}-${i}`);
      for (const n of names) sb.cg(n);
      const before = await sb.list();
      const results = await Promise.all(
        names.map((n) => sb.cli(['assign', n, addr], { json: true, timeoutMs: 60_000 })),
      );
      const winners = names.filter((_, i) => results[i].status === 0);
      expect(winners, results.map((r) => r.stderr).join('\n')).toHaveLength(1);
      const losers = results.filter((r) => r.status !== 0);
      expect(losers).toHaveLength(N - 1);
      for (const r of losers) {
        expect(r.status, r.stderr).toBe(1);
        expect(r.json?.error?.code, r.stdout).toBe('EADDR_OWNED');
        expect(r.json.error.message).toContain(winners[0]);
      }
      const cells = await sb.list();
      const owners = cells.filter((c: { addresses: string[] }) => c.addresses.includes(addr));
      expect(owners).toHaveLength(1);
      expect(owners[0].cell).toBe(winners[0]);
      // the losers' failed assigns left no cell behind
      expect(cells.map((c: { cell: string }) => c.cell).sort()).toEqual(
        [...before.map((c: { cell: string }) => c.cell), winners[0]].sort(),
      );
      // and the kernel agrees: the winner binds it, a loser cannot
      const fam = addr.includes(':') ? 6 : 4;
      const w = await sb.probe(winners[0], [{ op: 'bind_new', fam, addr }]);
      expect(w.last).toMatchObject({ ok: true, addr });
      const loser = names.find((n) => n !== winners[0])!;
      const l = await sb.probe(loser, [{ op: 'bind_new', fam, addr }], { keepGoing: true });
      expect(l.last).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    });
  }
});
