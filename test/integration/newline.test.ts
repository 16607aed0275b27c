// Issue 9: a cgroup argument with a newline gives a one-line error: the
// message and the hint (which repeats the path) are both sanitised. (cgroupfs
// refuses such names, so the cgroup never exists.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, type Sandbox } from '../harness/sandbox';

describe('names with line breaks', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  for (const args of [
    ['assign', 'two\nlines', V4(1)],
    ['release', 'two\r\nlines'],
    ['show', '\nlead'],
  ]) {
    it(`${JSON.stringify(args)}: one line, hint included`, async () => {
      const r = await sb.cli(args);
      expect(r.status).toBe(1);
      const lines = r.stderr.split('\n').filter((l) => l !== '');
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/^l3iso: cgroup .* does not exist \(create it with mkdir .*\)$/);
    });
  }
});
