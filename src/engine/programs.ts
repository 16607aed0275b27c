/**
 * Which BPF program goes where. One table, so `up` (attach or replace in
 * place), `down` (detach) and `doctor` (probe) never disagree.
 */
import { AttachType } from '../../loader';

export interface CgroupProgram {
  /** Function name in the object; also the name of its pinned link. */
  readonly program: string;
  readonly attach: AttachType;
  /** What a user loses without it, for doctor. */
  readonly purpose: string;
}

export const SOCK_OBJECT = 'sock.bpf.o';

export const SOCK_PROGRAMS: readonly CgroupProgram[] = [
  {
    program: 'l3_sock_create',
    attach: AttachType.CGROUP_INET_SOCK_CREATE,
    purpose: "records each socket's cell; refuses raw sockets",
  },
  { program: 'l3_bind4', attach: AttachType.CGROUP_INET4_BIND, purpose: 'confines IPv4 binds' },
  { program: 'l3_bind6', attach: AttachType.CGROUP_INET6_BIND, purpose: 'confines IPv6 binds' },
  {
    program: 'l3_connect4',
    attach: AttachType.CGROUP_INET4_CONNECT,
    purpose: 'forces the IPv4 source address',
  },
  {
    program: 'l3_connect6',
    attach: AttachType.CGROUP_INET6_CONNECT,
    purpose: 'forces the IPv6 source address',
  },
  {
    program: 'l3_sendmsg4',
    attach: AttachType.CGROUP_UDP4_SENDMSG,
    purpose: 'forces the UDP/IPv4 source address',
  },
  {
    program: 'l3_sendmsg6',
    attach: AttachType.CGROUP_UDP6_SENDMSG,
    purpose: 'forces the UDP/IPv6 source address',
  },
  {
    program: 'l3_recvmsg4',
    attach: AttachType.CGROUP_UDP4_RECVMSG,
    purpose: 'hides the loopback alias (UDP/IPv4)',
  },
  {
    program: 'l3_recvmsg6',
    attach: AttachType.CGROUP_UDP6_RECVMSG,
    purpose: 'hides the loopback alias (UDP/IPv6)',
  },
  {
    program: 'l3_getsockname4',
    attach: AttachType.CGROUP_INET4_GETSOCKNAME,
    purpose: 'hides the loopback alias',
  },
  {
    program: 'l3_getsockname6',
    attach: AttachType.CGROUP_INET6_GETSOCKNAME,
    purpose: 'hides the loopback alias',
  },
  {
    program: 'l3_getpeername4',
    attach: AttachType.CGROUP_INET4_GETPEERNAME,
    purpose: 'hides the loopback alias',
  },
  {
    program: 'l3_getpeername6',
    attach: AttachType.CGROUP_INET6_GETPEERNAME,
    purpose: 'hides the loopback alias',
  },
];

/** Maps every object shares; `up` pins them, later objects reuse the pins. */
export const SHARED_MAPS = [
  'l3_config',
  'l3_cells',
  'l3_owners',
  'l3_cell_stats',
  'l3_sock_origin',
] as const;
export type SharedMapName = (typeof SHARED_MAPS)[number];

/** max_entries of each map for a given --max-cells. Hash maps do not
 * preallocate, so generous limits cost nothing until used. */
export function mapCapacity(name: string, maxCells: number): number | undefined {
  switch (name) {
    case 'l3_cells':
      return maxCells;
    case 'l3_owners':
      // a few addresses per cell plus its loopback alias
      return maxCells * 5;
    case 'l3_cell_stats':
      return maxCells + 1; // + key 0: sockets outside every cell
    default:
      return undefined;
  }
}

export const DEFAULT_MAX_CELLS = 131072;
