/**
 * The dependency rule of README "How it works", checked on the sources: a
 * layer imports only from the layers below it, so the loader never learns
 * about cells and the engine never about its front ends.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const REPO = path.resolve(__dirname, '..', '..');

/** Top to bottom; a layer may import from its own and every later one. */
const LAYERS: readonly (readonly string[])[] = [
  // lazy.ts: the front ends' one table of deferred requires
  ['src/cli', 'src/agent', 'src/demo', 'src/lazy.ts'],
  // the OCI runtime integration and the fleet: front ends of the Engine
  ['src/runtime', 'src/fleet'],
  // the Engine: the one object the front ends hold, and its lifecycle (up/down)
  ['src/engine'],
  // one concern each, side by side: they may use one another, never the engine
  ['src/cells', 'src/observe', 'src/doctor', 'src/exec', 'src/declarative', 'src/pools'],
  // programs, pinned maps, pin-dir lock, routes: what the kernel holds
  ['src/dataplane'],
  // the hermetic netns/cgroup/pin-dir world of the demo, bench and tests
  ['src/sandbox'],
  ['src/codecs', 'src/model'],
  ['loader', 'src/errors.ts', 'src/log.ts', 'src/sleep.ts'],
];

function layerOf(file: string): number {
  const rel = path.relative(REPO, file);
  return LAYERS.findIndex((l) => l.some((p) => rel === p || rel.startsWith(`${p}/`)));
}

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Relative imports, static and type-only; `require()` of the lazy table included. */
function imports(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const found = [...text.matchAll(/(?:from|require\(|import\(|^import)\s*'(\.[^']+)'/gm)].map(
    (m) => m[1],
  );
  return found.map((spec) => {
    const base = path.resolve(path.dirname(file), spec);
    for (const candidate of [`${base}.ts`, path.join(base, 'index.ts'), base])
      if (fs.existsSync(candidate)) return candidate;
    return base;
  });
}

describe('dependency rule', () => {
  const files = [...sources(path.join(REPO, 'src')), ...sources(path.join(REPO, 'loader'))];

  it('every source file belongs to a layer', () => {
    expect(files.filter((f) => layerOf(f) < 0).map((f) => path.relative(REPO, f))).toEqual([]);
  });

  it('no file imports from a layer above its own', () => {
    const violations: string[] = [];
    for (const f of files) {
      const own = layerOf(f);
      for (const dep of imports(f)) {
        const theirs = layerOf(dep);
        if (theirs >= 0 && theirs < own)
          violations.push(`${path.relative(REPO, f)} -> ${path.relative(REPO, dep)}`);
      }
    }
    expect(violations).toEqual([]);
  });
});

describe('front ends', () => {
  const files = sources(path.join(REPO, 'src'));
  const rel = (f: string) => path.relative(REPO, f);

  it('only the CLI (and through it the agent verb) asks for root', () => {
    const privilege = path.join(REPO, 'src/cli/privilege.ts');
    const users = files.filter((f) => imports(f).includes(privilege)).map(rel);
    expect(
      users.every((f) => f.startsWith('src/cli/') || f === 'src/lazy.ts'),
      users.join(),
    ).toBe(true);
  });

  it('the front ends reach the maps only through the Engine', () => {
    const front = ['src/cli/', 'src/agent/', 'src/demo/', 'src/runtime/'];
    // the map openers and the verbs that write: the Engine's to call
    const forbidden = [
      'EngineState',
      'BpfMap',
      'assign',
      'release',
      'gc',
      'setPolicy',
      'releaseCellById',
      'applyState',
      'attachUplink',
      'detachUplink',
      'up',
      'down',
    ];
    const violations: string[] = [];
    for (const f of files.filter((x) => front.some((p) => rel(x).startsWith(p)))) {
      const text = fs.readFileSync(f, 'utf8');
      for (const m of text.matchAll(/^import (?!type )\{([^}]*)\} from '([^']+)'/gm)) {
        const names = m[1]!.split(',').map((n) => n.trim().split(/\s+as\s+/)[0]!);
        for (const n of names)
          if (forbidden.includes(n)) violations.push(`${rel(f)}: ${n} from ${m[2]}`);
      }
    }
    expect(violations).toEqual([]);
  });
});
