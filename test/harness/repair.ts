/**
 * A live engine that loses its cell map and is repaired (`up --repair`
 * re-creates it from the owner map), and the check that a cell assigned
 * afterwards is confined: what a long-lived Engine holder must survive.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'vitest';
import type { Sandbox } from './sandbox';

export async function loseCellMapAndRepair(sb: Sandbox): Promise<void> {
  const cells = path.join(sb.pinDir, 'maps', 'l3_cells');
  const aside = path.join(sb.extraPinDir(), 'l3_cells');
  fs.renameSync(cells, aside);
  try {
    await sb.cliOk(['up', '--cgroup-root', sb.root, '--repair']);
  } finally {
    fs.rmSync(aside, { force: true });
  }
}

/** The maps are consistent, a wildcard bind in `cell` lands on `own`, and
 * a bind to `foreign` (another cell's) is refused. */
export async function expectConfined(
  sb: Sandbox,
  cell: string,
  own: string,
  foreign: string,
): Promise<void> {
  expect((await sb.cli(['gc', '--check'])).status).toBe(0);
  const p = await sb.probe(
    cell,
    [
      { op: 'bind_new', fam: 4, addr: '0.0.0.0' },
      { op: 'bind_new', fam: 4, addr: foreign },
    ],
    { keepGoing: true },
  );
  expect(p.ops[0], JSON.stringify(p.ops)).toMatchObject({ ok: true, addr: own });
  expect(p.ops[1]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
}
