/**
 * One table of error codes for the whole engine (in the style of undici and
 * fastify): callers and the CLI branch on `code`, never on message text, and
 * `--json` output carries the code verbatim.
 */
export const ErrorCodes = {
  EADDR_INVALID: 'the text is not an address a cell can own',
  ECGROUP_MISSING: 'the cgroup does not exist or is not a directory',
  ECGROUP_OUTSIDE_ROOT: 'the cgroup is not below the managed cgroup root',
  ECGROUP_NOT_V2: 'no cgroup v2 hierarchy, or the path is not on it',
  ECGROUP_TOO_DEEP: 'the cgroup is deeper below the managed root than the hooks can see',
  EADDR_OWNED: 'the address already belongs to another cell',
  EMAP_FULL: 'a BPF map has no room for another entry',
  ENOT_ROOT: 'the operation needs root privileges',
  ENOT_UP: 'the engine is not up (no pinned programs and maps)',
  EFEATURE_MISSING: 'the kernel lacks a feature the engine requires',
  EUSAGE: 'the command or its arguments are invalid',
  EKERNEL: 'the kernel refused an operation or returned malformed data',
  EALREADY_UP: 'the engine is already up in this pin directory',
  ENOT_ASSIGNED: 'the address or cell has no assignment',
  EPIN_DIR: 'the pin dir is not an l3iso engine of this layout version (foreign, damaged or newer)',
  EPIN_PARTIAL: "the pin dir lacks some of the engine's pins (an interrupted up, or pins removed)",
  ECELLS_LIVE: 'the engine still has cells; going down would leave them unconfined (use --force)',
  ESOCKETS_LIVE: 'live sockets would lose their address or confinement (use --force or --drain)',
} as const satisfies Record<ErrorCode, string>;

export type ErrorCode =
  | 'EADDR_INVALID'
  | 'ECGROUP_MISSING'
  | 'ECGROUP_OUTSIDE_ROOT'
  | 'ECGROUP_NOT_V2'
  | 'ECGROUP_TOO_DEEP'
  | 'EADDR_OWNED'
  | 'EMAP_FULL'
  | 'ENOT_ROOT'
  | 'ENOT_UP'
  | 'EFEATURE_MISSING'
  | 'EUSAGE'
  | 'EKERNEL'
  | 'EALREADY_UP'
  | 'ENOT_ASSIGNED'
  | 'EPIN_DIR'
  | 'EPIN_PARTIAL'
  | 'ECELLS_LIVE'
  | 'ESOCKETS_LIVE';

export class L3isoError extends Error {
  constructor(
    public readonly code: ErrorCode,
    message: string,
    public readonly hint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'L3isoError';
  }
}
