import { describe, expect, it } from 'vitest';
import { EXEC_CAPABILITIES } from '../../src/exec/confine';
import { DANGEROUS_CAPABILITIES } from '../../src/model/capabilities';
import { CAP, THREAT_MODEL_FORBIDDEN } from '../harness/linux-caps';

const UAPI: Readonly<Record<string, number>> = CAP;

describe('capabilities', () => {
  it('the warned-about list has the kernel’s bit numbers', () => {
    for (const [name, bit] of Object.entries(DANGEROUS_CAPABILITIES)) {
      expect(bit, name).toBe(UAPI[name]);
    }
  });

  it('exec keeps none of the capabilities show and doctor warn about', () => {
    for (const c of EXEC_CAPABILITIES) {
      expect(UAPI[c], c).toBeDefined();
      expect(Object.keys(DANGEROUS_CAPABILITIES), c).not.toContain(c);
    }
  });

  it('covers the threat model’s list', () => {
    expect(Object.keys(DANGEROUS_CAPABILITIES)).toEqual(
      expect.arrayContaining([...THREAT_MODEL_FORBIDDEN]),
    );
  });
});
