/**
 * The usual start of a socket-semantics test: a sandbox that is up, with
 * its cells assigned.
 */
import { createSandbox, type Sandbox, type SandboxOptions } from './sandbox';

/**
 * cells: cgroup (below the managed root) -> its addresses, in order (the
 * first of each family is the primary); no addresses: a cgroup that is no
 * cell, a host cgroup.
 */
export async function sandboxWithCells(
  cells: Record<string, string[]>,
  o: SandboxOptions = {},
): Promise<Sandbox> {
  const sb = await createSandbox(o);
  try {
    await sb.up();
    for (const cg of Object.keys(cells)) sb.cg(cg);
    for (const [cg, addrs] of Object.entries(cells))
      if (addrs.length) await sb.assign(cg, ...addrs);
  } catch (err) {
    await sb.destroy();
    throw err;
  }
  return sb;
}
