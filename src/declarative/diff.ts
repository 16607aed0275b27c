/**
 * Desired state against live state, pure: what apply would change. The
 * live side is read from the maps by apply.ts; nothing here touches the
 * kernel, so the plan (and `--dry-run`) is the same function as the run.
 */
import type { DesiredCell, DesiredEngine, DesiredUplink } from './schema';

export interface LiveCell {
  id: bigint;
  /** relative to the root; `#id` when its cgroup is gone */
  cgroup: string;
  addresses: string[];
  allowRaw: boolean;
  allowFrom: string[] | null;
}

export interface LiveEngine {
  cgroupRoot: string;
  managedPrefixes: string[];
  uplinks: DesiredUplink[];
}

export type CellAction = 'create' | 'update' | 'unchanged' | 'remove' | 'kept';

export interface CellChange {
  cgroup: string;
  action: CellAction;
  added: string[];
  removed: string[];
  unchanged: string[];
  /** the policy to write, when it differs from the live one */
  policy?: { allowRaw: boolean; allowFrom: string[] | null };
}

export interface Plan {
  changes: CellChange[];
  /** problems that stop the whole apply (nothing is changed) */
  conflicts: string[];
}

const sameSet = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && a.every((x) => b.includes(x));

/** Engine settings are checked, never changed by apply. */
export function engineConflicts(want: DesiredEngine, live: LiveEngine): string[] {
  const out: string[] = [];
  if (want.cgroupRoot !== undefined && want.cgroupRoot !== live.cgroupRoot)
    out.push(
      `engine.cgroupRoot: the file says ${want.cgroupRoot}, the engine is up at ${live.cgroupRoot} (apply does not move an engine: \`l3iso down\` and \`up\` there, or use another --pin-dir)`,
    );
  if (want.managedPrefixes && !sameSet(want.managedPrefixes, live.managedPrefixes))
    out.push(
      `engine.managedPrefixes: the file says [${want.managedPrefixes.join(', ')}], the engine has [${live.managedPrefixes.join(', ')}] (set them with \`l3iso up --managed-prefix\`)`,
    );
  if (want.uplinks) {
    for (const u of want.uplinks) {
      const l = live.uplinks.find((x) => x.iface === u.iface);
      if (!l) out.push(`engine.uplinks: ${u.iface} is not attached (\`l3iso attach ${u.iface}\`)`);
      else if (u.mode && l.mode !== u.mode)
        out.push(
          `engine.uplinks: ${u.iface} is attached in ${l.mode} mode, the file says ${u.mode}`,
        );
    }
    for (const l of live.uplinks)
      if (!want.uplinks.some((u) => u.iface === l.iface))
        out.push(
          `engine.uplinks: ${l.iface} is attached but not in the file (\`l3iso detach ${l.iface}\`)`,
        );
  }
  return out;
}

function samePolicy(d: DesiredCell, l: LiveCell): boolean {
  if (d.allowRaw !== l.allowRaw) return false;
  if (d.allowFrom === null || l.allowFrom === null) return d.allowFrom === l.allowFrom;
  return sameSet(d.allowFrom, l.allowFrom);
}

/**
 * The changes. Without prune, live cells the file does not list are kept
 * and so are addresses it does not list; an address the file gives to one
 * cell that another holds is a conflict unless prune takes it from there
 * first (apply releases before it claims).
 */
export function planApply(
  desired: readonly DesiredCell[],
  live: readonly LiveCell[],
  opts: { prune: boolean },
): Plan {
  const byName = new Map(live.map((l) => [l.cgroup, l]));
  const holder = new Map<string, LiveCell>();
  for (const l of live) for (const a of l.addresses) holder.set(a, l);
  const wanted = new Map<string, string>();
  for (const d of desired) for (const a of d.addresses) wanted.set(a, d.cgroup);
  const changes: CellChange[] = [];
  const conflicts: string[] = [];
  desired.forEach((d, i) => {
    const l = byName.get(d.cgroup);
    const have = new Set(l?.addresses ?? []);
    const added = d.addresses.filter((a) => !have.has(a));
    const unchanged = d.addresses.filter((a) => have.has(a));
    const removed = opts.prune && l ? l.addresses.filter((a) => !d.addresses.includes(a)) : [];
    for (const a of added) {
      const h = holder.get(a);
      if (!h) continue;
      const freed = opts.prune && wanted.get(a) !== h.cgroup;
      if (!freed)
        conflicts.push(
          `cells[${i}].addresses: ${a} belongs to cell ${h.cgroup}${opts.prune ? ', which the file also gives it' : ''} (release it there, or apply with --prune and leave it out of ${h.cgroup})`,
        );
    }
    const policyDiffers = !l || !samePolicy(d, l);
    const action: CellAction = !l
      ? 'create'
      : added.length || removed.length || policyDiffers
        ? 'update'
        : 'unchanged';
    changes.push({
      cgroup: d.cgroup,
      action,
      added,
      removed,
      unchanged,
      ...(policyDiffers ? { policy: { allowRaw: d.allowRaw, allowFrom: d.allowFrom } } : {}),
    });
  });
  const listed = new Set(desired.map((d) => d.cgroup));
  for (const l of live) {
    if (listed.has(l.cgroup)) continue;
    changes.push({
      cgroup: l.cgroup,
      action: opts.prune ? 'remove' : 'kept',
      added: [],
      removed: opts.prune ? [...l.addresses] : [],
      unchanged: opts.prune ? [] : [...l.addresses],
    });
  }
  return { changes, conflicts };
}

/** Counts for the report. */
export function summarize(changes: readonly CellChange[]): Record<CellAction, number> & {
  addressesAdded: number;
  addressesRemoved: number;
} {
  const out = {
    create: 0,
    update: 0,
    unchanged: 0,
    remove: 0,
    kept: 0,
    addressesAdded: 0,
    addressesRemoved: 0,
  };
  for (const c of changes) {
    out[c.action]++;
    out.addressesAdded += c.added.length;
    out.addressesRemoved += c.removed.length;
  }
  return out;
}
