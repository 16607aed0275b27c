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
  ['src/declarative', 'src/runtime'],
  // the Engine: lifecycle (up/down) and the object the front ends hold
  ['src/engine'],
  // one concern each, side by side: they may use one another, never the engine
  ['src/cells', 'src/observe', 'src/doctor', 'src/exec'],
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
