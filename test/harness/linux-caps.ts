/**
 * Capability bit numbers from linux/capability.h, written out independently
 * of src/model/capabilities.ts so the tests can check that table against the
 * kernel's numbering rather than against itself.
 */
export const CAP = {
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
} as const;

/** The capabilities the threat model says a cell must not hold. */
export const THREAT_MODEL_FORBIDDEN = [
  'net_raw',
  'net_admin',
  'sys_admin',
  'bpf',
  'sys_ptrace',
  'sys_module',
  'dac_read_search',
  'perfmon',
] as const;
