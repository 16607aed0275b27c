// Which names a stale-sandbox sweep may remove: only its own prefix's, and
// only when the creator pid in the name is gone.
import { describe, expect, it } from 'vitest';
import { isStale } from '../../src/sandbox';

// Above the kernel's largest pid_max (2^22): never a live process.
const DEAD = 4_194_305;

describe('isStale', () => {
  it('takes the sandbox of a dead creator and what was made for it', () => {
    for (const n of [`l3t-${DEAD}-abcdef`, `l3t-${DEAD}-abcdef-x0`, `l3t-${DEAD}-abcdef-out`])
      expect(isStale(n, 'l3t')).toBe(true);
    expect(isStale(`l3iso-demo-${DEAD}-0a1b2c`, 'l3iso-demo')).toBe(true);
  });

  it('takes the bare <prefix>-<pid> names the demo and bench used before', () => {
    expect(isStale(`l3ia-${DEAD}`, 'l3ia')).toBe(true);
  });

  it('leaves live sandboxes, other prefixes and other names alone', () => {
    expect(isStale(`l3t-${process.pid}-abcdef`, 'l3t')).toBe(false);
    expect(isStale(`l3t-${DEAD}-abcdef`, 'l3')).toBe(false);
    expect(isStale(`l3iso-demo-${DEAD}-0a1b2c`, 'l3iso')).toBe(false);
    expect(isStale(`l3t-${DEAD}x`, 'l3t')).toBe(false);
    expect(isStale(`l3t-${DEAD}-abc`, 'l3t')).toBe(false);
    expect(isStale('l3t-notbpf-x1y2z3', 'l3t')).toBe(false);
  });
});
