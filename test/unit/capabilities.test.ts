import { describe, expect, it } from 'vitest';
import { EXEC_CAPABILITIES } from '../../src/engine/confine';
import { DANGEROUS_CAPABILITIES } from '../../src/model/capabilities';

/** linux/capability.h, the numbers the warnings read /proc with. */
const UAPI: Record<string, number> = {
  chown: 0,
  dac_override: 1,
  dac_read_search: 2,
  fowner: 3,
  fsetid: 4,
  kill: 5,
  setgid: 6,
  setuid: 7,
  setpcap: 8,
  net_bind_service: 10,
  net_admin: 12,
  net_raw: 13,
  sys_module: 16,
  sys_rawio: 17,
  sys_chroot: 18,
  sys_ptrace: 19,
  sys_admin: 21,
  sys_boot: 22,
  mknod: 27,
  audit_write: 29,
  setfcap: 31,
  perfmon: 38,
  bpf: 39,
};

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
      expect.arrayContaining([
        'net_raw',
        'net_admin',
        'sys_admin',
        'bpf',
        'sys_ptrace',
        'sys_module',
        'dac_read_search',
        'perfmon',
      ]),
    );
  });
});
