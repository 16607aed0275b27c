import { constants } from 'os';
import { libbpf } from './libbpf';

/**
 * Kernel-internal errno values that leak to user space from the bpf syscall
 * but have no libc name, so `os.constants.errno` does not know them.
 */
const KERNEL_ONLY_ERRNO: Record<number, [code: string, text: string]> = {
  524: ['ENOTSUPP', 'Operation not supported by this map or program type'],
};

// libbpf's own error codes (LIBBPF_ERRNO__*, 4000-4099) used by object
// parsing; names follow libbpf.h so callers can match on them too.
const LIBBPF_ERRNO: Record<number, string> = {
  4000: 'LIBBPF_ERRNO__LIBELF',
  4001: 'LIBBPF_ERRNO__FORMAT',
  4002: 'LIBBPF_ERRNO__KVERSION',
  4003: 'LIBBPF_ERRNO__ENDIAN',
  4004: 'LIBBPF_ERRNO__INTERNAL',
  4005: 'LIBBPF_ERRNO__RELOC',
  4006: 'LIBBPF_ERRNO__LOAD',
  4007: 'LIBBPF_ERRNO__VERIFY',
  4008: 'LIBBPF_ERRNO__PROG2BIG',
  4009: 'LIBBPF_ERRNO__KVER',
  4010: 'LIBBPF_ERRNO__PROGTYPE',
  4011: 'LIBBPF_ERRNO__WRNGPID',
  4012: 'LIBBPF_ERRNO__INVSEQ',
  4013: 'LIBBPF_ERRNO__NLPARSE',
};

// Aliases share a number; pick the name the kernel docs and strace use.
const PREFERRED = new Set(['EAGAIN', 'EOPNOTSUPP', 'EDEADLK']);

const NAME_BY_ERRNO: Map<number, string> = (() => {
  const m = new Map<number, string>();
  for (const [name, num] of Object.entries(constants.errno)) {
    if (!m.has(num) || PREFERRED.has(name)) m.set(num, name);
  }
  return m;
})();

/** Symbolic name for a positive errno (e.g. 17 → 'EEXIST'). */
export function errnoName(errno: number): string {
  return (
    NAME_BY_ERRNO.get(errno) ?? KERNEL_ONLY_ERRNO[errno]?.[0] ?? LIBBPF_ERRNO[errno] ?? `E${errno}`
  );
}

/** Number for a symbolic errno name (e.g. 'EEXIST' → 17), or undefined. */
export function errnoNumber(code: string): number | undefined {
  const n = (constants.errno as Record<string, number | undefined>)[code];
  if (n !== undefined) return n;
  for (const [num, [name]] of Object.entries(KERNEL_ONLY_ERRNO)) if (name === code) return +num;
  for (const [num, name] of Object.entries(LIBBPF_ERRNO)) if (name === code) return +num;
  return undefined;
}

const strerrorBuf = Buffer.alloc(256);

function describe(errno: number): string {
  const k = KERNEL_ONLY_ERRNO[errno];
  if (k) return k[1];
  // libbpf_strerror knows both libc and LIBBPF_ERRNO__* texts.
  strerrorBuf.fill(0);
  libbpf.libbpf_strerror(errno, strerrorBuf, strerrorBuf.length);
  const nul = strerrorBuf.indexOf(0);
  return strerrorBuf.toString('utf8', 0, nul < 0 ? strerrorBuf.length : nul) || `errno ${errno}`;
}

/**
 * A failed libbpf or libc call. Callers branch on `code` (or `isErrno`)
 * rather than on the message, like `errors.Is(err, unix.EEXIST)` in
 * cilium/ebpf.
 */
export class BpfError extends Error {
  /** Positive errno. */
  readonly errno: number;
  /** Symbolic errno, e.g. 'EEXIST', or 'ENOTSUPP' for the kernel's 524. */
  readonly code: string;
  /** The native function that failed, e.g. 'bpf_map_update_elem'. */
  readonly call: string;

  /**
   * @param errno positive or negative errno; libbpf returns -errno.
   * @param detail context such as a path, inserted after the call name.
   */
  constructor(call: string, errno: number, detail?: string) {
    const e = Math.abs(errno);
    const code = errnoName(e);
    super(`${call}${detail ? ` ${detail}` : ''}: ${describe(e)} (${code})`);
    this.name = 'BpfError';
    this.errno = e;
    this.code = code;
    this.call = call;
  }
}

/** How many trailing verifier-log lines an error message carries. */
export const VERIFIER_LOG_TAIL_LINES = 40;

/** Last `lines` non-empty-terminated lines of a verifier log. */
export function logTail(log: string, lines = VERIFIER_LOG_TAIL_LINES): string {
  const all = log.replace(/\s+$/, '').split('\n');
  return all.slice(-lines).join('\n');
}

/** A failed `bpf_object__load`, with the end of the kernel verifier log. */
export class BpfLoadError extends BpfError {
  /** Tail of the verifier log (last ~40 lines); '' when the kernel gave none. */
  readonly verifierLog: string;
  /** The program libbpf reported as failing, when it said so. */
  readonly program: string | undefined;
  /** libbpf's warnings during the load (e.g. which map failed to create). */
  readonly libbpfWarnings: string[];

  constructor(
    call: string,
    errno: number,
    verifierLog: string,
    detail?: string,
    libbpfWarnings: string[] = [],
  ) {
    super(call, errno, detail);
    this.name = 'BpfLoadError';
    this.verifierLog = logTail(verifierLog);
    this.libbpfWarnings = libbpfWarnings;
    for (const w of libbpfWarnings) {
      const m = /prog '([^']+)': failed to load/.exec(w);
      if (m) this.program = m[1];
    }
    if (this.program) this.message += ` [program ${this.program}]`;
    if (this.verifierLog) {
      this.message += `\nverifier log (tail):\n${this.verifierLog}`;
    } else if (libbpfWarnings.length) {
      this.message += `\nlibbpf:\n${logTail(libbpfWarnings.join('\n'), 10)}`;
    }
  }
}

/** True when `err` is a BpfError carrying errno `code` (e.g. 'ENOENT'). */
export function isErrno(err: unknown, code: string): err is BpfError {
  return err instanceof BpfError && err.code === code;
}

/**
 * Returns `ret` when non-negative, otherwise throws a BpfError for `-ret`.
 * For libbpf 1.x int-returning calls, which return -errno on failure.
 */
export function check(call: string, ret: number, detail?: string): number {
  if (ret < 0) throw new BpfError(call, ret, detail);
  return ret;
}
