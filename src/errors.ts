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
  EAGENT_RUNNING: 'another l3iso agent already answers on this socket',
  EAGENT_MISMATCH: 'the agent on this socket serves another engine instance (pin dir)',
  ENOT_FOUND: 'the agent has no such endpoint',
  EPOOL_UNKNOWN: 'no address pool of that name',
  EPOOL_EXISTS: 'an address pool of that name already exists with another definition',
  EPOOL_OVERLAP: 'the pool overlaps another pool',
  EPOOL_EXHAUSTED: 'the pool (or the blocks this host holds of it) has no free address left',
  EPOOL_IN_USE: 'addresses of the pool are still assigned (use --force)',
  EFLEET_UNAVAILABLE: 'the fleet datastore (etcd) cannot be reached, or did not answer in time',
  EFLEET_CONFLICT: 'the fleet datastore says another host holds this block or host id',
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
  | 'ESOCKETS_LIVE'
  | 'EAGENT_RUNNING'
  | 'EAGENT_MISMATCH'
  | 'ENOT_FOUND'
  | 'EPOOL_UNKNOWN'
  | 'EPOOL_EXISTS'
  | 'EPOOL_OVERLAP'
  | 'EPOOL_EXHAUSTED'
  | 'EPOOL_IN_USE'
  | 'EFLEET_UNAVAILABLE'
  | 'EFLEET_CONFLICT';

/**
 * The agent's HTTP status for each code: 4xx for what the caller can fix
 * (bad input, state that refuses the request), 5xx for the engine or kernel.
 */
export const HttpStatus = {
  EADDR_INVALID: 400,
  ECGROUP_MISSING: 404,
  ECGROUP_OUTSIDE_ROOT: 400,
  ECGROUP_NOT_V2: 400,
  ECGROUP_TOO_DEEP: 400,
  EADDR_OWNED: 409,
  EMAP_FULL: 507,
  ENOT_ROOT: 403,
  ENOT_UP: 503,
  EFEATURE_MISSING: 503,
  EUSAGE: 400,
  EKERNEL: 500,
  EALREADY_UP: 409,
  ENOT_ASSIGNED: 404,
  EPIN_DIR: 503,
  EPIN_PARTIAL: 503,
  ECELLS_LIVE: 409,
  ESOCKETS_LIVE: 409,
  EAGENT_RUNNING: 409,
  EAGENT_MISMATCH: 421,
  ENOT_FOUND: 404,
  EPOOL_UNKNOWN: 404,
  EPOOL_EXISTS: 409,
  EPOOL_OVERLAP: 409,
  EPOOL_EXHAUSTED: 507,
  EPOOL_IN_USE: 409,
  EFLEET_UNAVAILABLE: 503,
  EFLEET_CONFLICT: 409,
} as const satisfies Record<ErrorCode, number>;

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
