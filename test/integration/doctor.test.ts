// `doctor --json`: every kernel feature the engine uses is probed and
// reported; on this machine (where `up` works) nothing required is missing.
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type Sandbox } from '../harness/sandbox';

interface Feature {
  name: string;
  ok: boolean;
  required?: boolean;
  detail?: string;
}

describe('doctor', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox({ hosts: [1] });
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('reports {name, ok, detail} per feature; ok when every required one is', async () => {
    const r = await sb.cli(['doctor', '--json']);
    expect(r.json, r.stdout + r.stderr).toBeTypeOf('object');
    const features: Feature[] = r.json.features;
    expect(features.length).toBeGreaterThan(0);
    for (const f of features) {
      expect(typeof f.name).toBe('string');
      expect(typeof f.ok).toBe('boolean');
    }
    expect(r.json.ok, JSON.stringify(features.filter((f) => !f.ok))).toBe(true);
    expect(r.status).toBe(0);
    // doctor itself leaves nothing attached or pinned
    expect(fs.readdirSync(sb.pinDir)).toEqual([]);
  });

  it('a pin dir that is not on bpffs is reported, and ok is false', async () => {
    const dir = fs.mkdtempSync('/tmp/l3t-notbpf-');
    try {
      const r = await sb.cli(['doctor', '--json'], { pinDir: dir });
      expect(r.json.ok).toBe(false);
      expect(r.status).not.toBe(0);
      const bad = (r.json.features as Feature[]).filter((f) => !f.ok);
      expect(bad.length).toBeGreaterThan(0);
      expect(bad.every((f) => f.required !== false)).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
