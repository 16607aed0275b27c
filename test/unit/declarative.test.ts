import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { engineConflicts, planApply, type LiveCell } from '../../src/declarative/diff';
import { StateFileError, parseState, validateState } from '../../src/declarative/schema';

function errorsOf(doc: unknown): string[] {
  try {
    validateState(doc);
  } catch (err) {
    if (err instanceof StateFileError) return err.errors;
    throw err;
  }
  return [];
}

describe('state file schema', () => {
  it('accepts a minimal file and normalises names, addresses and prefixes', () => {
    const s = validateState({
      cells: [
        { cgroup: 'a/b/', addresses: ['2001:DB8::0:1', '192.0.2.1'], allowFrom: ['10.1.2.0/24'] },
      ],
      engine: { cgroupRoot: '/sys/fs/cgroup/x/', uplinks: ['eth0', { iface: 'eth1', mode: 'tc' }] },
    });
    expect(s.cells).toEqual([
      {
        cgroup: 'a/b',
        addresses: ['2001:db8::1', '192.0.2.1'],
        allowRaw: false,
        allowFrom: ['10.1.2.0/24'],
      },
    ]);
    expect(s.engine).toEqual({
      cgroupRoot: '/sys/fs/cgroup/x',
      uplinks: [{ iface: 'eth0' }, { iface: 'eth1', mode: 'tc' }],
    });
  });

  it('names every error by its path, one per problem', () => {
    expect(
      errorsOf({
        version: 2,
        extra: 1,
        engine: { managedPrefixes: ['192.0.2.0/33'], uplinks: [{ iface: 'a b' }] },
        cells: [
          { cgroup: '/abs', addresses: [] },
          { cgroup: 'x', addresses: ['192.0.2.1', 7, '127.0.0.5'], allowFrom: [] },
          { cgroup: 'x', addresses: ['192.0.2.1'], policy: {} },
          'nope',
        ],
      }),
    ).toEqual([
      'extra: unknown key (allowed: version, engine, pools, cells)',
      'version: must be 1, not 2',
      expect.stringMatching(/^engine\.managedPrefixes\[0\]: "192\.0\.2\.0\/33" is not a prefix/),
      'engine.uplinks[0].iface: "a b" is not an interface name',
      'cells[0].cgroup: "/abs" must name a cgroup below the root (relative, no "..")',
      'cells[0].addresses: must not be empty',
      'cells[1].addresses[1]: must be a string, not 7',
      expect.stringMatching(/^cells\[1\]\.addresses\[2\]: "127\.0\.0\.5" cannot be owned/),
      'cells[1].allowFrom: must not be empty',
      'cells[2].policy: unknown key (allowed: cgroup, addresses, pool, count, allowRaw, allowFrom)',
      'cells[2].cgroup: "x" is also cells[1]',
      'cells[2].addresses[0]: 192.0.2.1 is also cells[1].addresses[0]',
      'cells[3]: must be a mapping with cgroup and addresses, not "nope"',
    ]);
  });

  it('reports a loopback address as not ownable, with its path', () => {
    expect(errorsOf({ cells: [{ cgroup: 'a', addresses: ['127.0.0.5'] }] })).toEqual([
      expect.stringMatching(
        /^cells\[0\]\.addresses\[0\]: "127\.0\.0\.5" cannot be owned: loopback/,
      ),
    ]);
  });

  it('reads YAML and JSON the same way, and says which parse failed', () => {
    const yaml = 'cells:\n  - cgroup: a\n    addresses: [192.0.2.1]\n    allowRaw: true\n';
    const json = '{"cells":[{"cgroup":"a","addresses":["192.0.2.1"],"allowRaw":true}]}';
    expect(parseState(yaml, 'x.yaml')).toEqual(parseState(json, 'x.json'));
    expect(() => parseState('{"cells": [', 'x.json')).toThrow(/x\.json: not valid JSON/);
    expect(() => parseState('cells: [a, b\n', 'x.yaml')).toThrow(/x\.yaml: not valid YAML/);
    expect(() => parseState('cells: []\ncells: []\n', 'x.yaml')).toThrow(StateFileError);
  });

  it('a validated state validates to itself (applyState re-validates what callers build)', () => {
    const s = validateState({
      engine: { uplinks: [{ iface: 'eth0', mode: 'tc' }] },
      cells: [{ cgroup: 'a', addresses: ['fd00::0:1'], allowFrom: null }],
    });
    expect(s.cells[0]!.addresses).toEqual(['fd00::1']);
    expect(validateState(s)).toEqual(s);
  });

  it('never throws anything but StateFileError on arbitrary input', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        try {
          validateState(v);
        } catch (err) {
          expect(err).toBeInstanceOf(StateFileError);
        }
      }),
      { numRuns: 500 },
    );
  });
});

const live = (cgroup: string, addresses: string[], extra: Partial<LiveCell> = {}): LiveCell => ({
  id: BigInt(cgroup.length),
  cgroup,
  addresses,
  allowRaw: false,
  allowFrom: null,
  ...extra,
});
const want = (
  cgroup: string,
  addresses: string[],
  allowRaw = false,
  allowFrom: string[] | null = null,
) => ({
  cgroup,
  addresses,
  allowRaw,
  allowFrom,
});

describe('apply plan', () => {
  it('creates, updates, keeps; prune removes', () => {
    const l = [live('a', ['192.0.2.1', '192.0.2.2']), live('old', ['192.0.2.9'])];
    const d = [want('a', ['192.0.2.1', '192.0.2.3']), want('new', ['192.0.2.4'], true)];
    const keep = planApply(d, l, { prune: false });
    expect(keep.conflicts).toEqual([]);
    expect(keep.changes).toEqual([
      {
        cgroup: 'a',
        action: 'update',
        added: ['192.0.2.3'],
        removed: [],
        unchanged: ['192.0.2.1'],
      },
      {
        cgroup: 'new',
        action: 'create',
        added: ['192.0.2.4'],
        removed: [],
        unchanged: [],
        policy: { allowRaw: true, allowFrom: null },
      },
      { cgroup: 'old', action: 'kept', added: [], removed: [], unchanged: ['192.0.2.9'] },
    ]);
    const prune = planApply(d, l, { prune: true });
    expect(prune.changes[0]).toMatchObject({ removed: ['192.0.2.2'] });
    expect(prune.changes[2]).toMatchObject({ action: 'remove', removed: ['192.0.2.9'] });
  });

  it('an address held by another cell is a conflict unless prune frees it', () => {
    const l = [live('a', ['192.0.2.1'])];
    expect(planApply([want('b', ['192.0.2.1'])], l, { prune: false }).conflicts).toEqual([
      expect.stringMatching(/^cells\[0\]\.addresses: 192\.0\.2\.1 belongs to cell a/),
    ]);
    expect(planApply([want('b', ['192.0.2.1'])], l, { prune: true }).conflicts).toEqual([]);
    expect(
      planApply([want('a', ['192.0.2.1']), want('b', ['192.0.2.2'])], l, { prune: true }).conflicts,
    ).toEqual([]);
  });

  it('policy differences alone make an update; allow-lists compare as sets', () => {
    const l = [live('a', ['192.0.2.1'], { allowFrom: ['10.0.0.0/8', '10.1.0.0/16'] })];
    expect(
      planApply([want('a', ['192.0.2.1'], false, ['10.1.0.0/16', '10.0.0.0/8'])], l, {
        prune: false,
      }).changes[0]!.action,
    ).toBe('unchanged');
    expect(planApply([want('a', ['192.0.2.1'])], l, { prune: false }).changes[0]).toMatchObject({
      action: 'update',
      policy: { allowRaw: false, allowFrom: null },
    });
  });

  it('is idempotent: planning the desired state against itself changes nothing', () => {
    const addr = fc.integer({ min: 1, max: 254 }).map((n) => `192.0.2.${n}`);
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.uniqueArray(addr, { minLength: 1, maxLength: 4 }), { maxLength: 6 }),
        (sets) => {
          const seen = new Set<string>();
          const cells = sets
            .map((s, i) =>
              want(
                `c${i}`,
                s.filter((a) => !seen.has(a) && seen.add(a)),
              ),
            )
            .filter((c) => c.addresses.length > 0);
          const asLive = cells.map((c) => live(c.cgroup, c.addresses));
          const p = planApply(cells, asLive, { prune: true });
          expect(p.conflicts).toEqual([]);
          expect(p.changes.every((c) => c.action === 'unchanged')).toBe(true);
        },
      ),
    );
  });

  it('checks engine settings, never changes them', () => {
    const l = {
      cgroupRoot: '/r',
      managedPrefixes: ['192.0.2.0/24'],
      uplinks: [{ iface: 'eth0', mode: 'tc' as const }],
    };
    expect(engineConflicts({}, l)).toEqual([]);
    expect(
      engineConflicts(
        { cgroupRoot: '/r', managedPrefixes: ['192.0.2.0/24'], uplinks: [{ iface: 'eth0' }] },
        l,
      ),
    ).toEqual([]);
    expect(
      engineConflicts(
        { cgroupRoot: '/s', uplinks: [{ iface: 'eth0', mode: 'native' }, { iface: 'eth1' }] },
        l,
      ),
    ).toEqual([
      expect.stringMatching(/^engine\.cgroupRoot: the file says \/s, the engine is up at \/r/),
      'engine.uplinks: eth0 is attached in tc mode, the file says native',
      'engine.uplinks: eth1 is not attached (`l3iso attach eth1`)',
    ]);
  });
});
