/**
 * Which BPF program goes where. One table, so `up` (attach or replace in
 * place), `down` (detach) and `doctor` (probe) never disagree.
 */
import { AttachType, MapType } from '../../loader';
import { LAYOUT, L3_CELL_SLOT_SIZE } from '../codecs/layout';

export interface ProgramAttachment {
  /** Function name in the object; also the name of its pinned link. */
  readonly program: string;
  readonly attach: AttachType;
  /** cgroup: the managed cgroup root; netns: the engine's network namespace;
   * lo: that namespace's loopback device (a tcx link) */
  readonly target: 'cgroup' | 'netns' | 'lo';
  /** What a user loses without it, for doctor. */
  readonly purpose: string;
}

export interface ObjectSpec {
  readonly file: string;
  readonly programs: readonly ProgramAttachment[];
}

const cg = (program: string, attach: AttachType, purpose: string): ProgramAttachment => ({
  program,
  attach,
  target: 'cgroup',
  purpose,
});

export const SOCK_OBJECT = 'sock.bpf.o';

/** Loopback is ifindex 1 in every network namespace. */
export const LOOPBACK_IFINDEX = 1;

/** Everything `up` attaches, in attach order: sockets get their origin and
 * confinement before the demux and packet checks that rely on them. */
export const ATTACHED_OBJECTS: readonly ObjectSpec[] = [
  {
    file: SOCK_OBJECT,
    programs: [
      cg(
        'l3_sock_create',
        AttachType.CGROUP_INET_SOCK_CREATE,
        "records each socket's cell; refuses raw sockets",
      ),
      cg('l3_bind4', AttachType.CGROUP_INET4_BIND, 'confines IPv4 binds'),
      cg('l3_bind6', AttachType.CGROUP_INET6_BIND, 'confines IPv6 binds'),
      cg('l3_connect4', AttachType.CGROUP_INET4_CONNECT, 'forces the IPv4 source address'),
      cg('l3_connect6', AttachType.CGROUP_INET6_CONNECT, 'forces the IPv6 source address'),
      cg('l3_sendmsg4', AttachType.CGROUP_UDP4_SENDMSG, 'forces the UDP/IPv4 source address'),
      cg('l3_sendmsg6', AttachType.CGROUP_UDP6_SENDMSG, 'forces the UDP/IPv6 source address'),
      cg('l3_recvmsg4', AttachType.CGROUP_UDP4_RECVMSG, 'hides the loopback alias (UDP/IPv4)'),
      cg('l3_recvmsg6', AttachType.CGROUP_UDP6_RECVMSG, 'hides the loopback alias (UDP/IPv6)'),
      cg('l3_getsockname4', AttachType.CGROUP_INET4_GETSOCKNAME, 'hides the loopback alias'),
      cg('l3_getsockname6', AttachType.CGROUP_INET6_GETSOCKNAME, 'hides the loopback alias'),
      cg('l3_getpeername4', AttachType.CGROUP_INET4_GETPEERNAME, 'hides the loopback alias'),
      cg('l3_getpeername6', AttachType.CGROUP_INET6_GETPEERNAME, 'hides the loopback alias'),
    ],
  },
  {
    file: 'demux.bpf.o',
    programs: [
      cg('l3_sockops', AttachType.CGROUP_SOCK_OPS, 'registers cell TCP listeners for sk_lookup'),
      {
        program: 'l3_sk_lookup',
        attach: AttachType.SK_LOOKUP,
        target: 'netns',
        purpose: "steers cell traffic to the cell's sockets, never to host wildcard listeners",
      },
      {
        program: 'l3_udp_steer',
        attach: AttachType.TCX_INGRESS,
        target: 'lo',
        purpose: "gives a cell's wildcard UDP socket the datagrams for all its addresses",
      },
    ],
  },
  {
    file: 'skb.bpf.o',
    programs: [
      cg('l3_egress', AttachType.CGROUP_INET_EGRESS, 'anti-spoof and tx counters'),
      cg(
        'l3_ingress',
        AttachType.CGROUP_INET_INGRESS,
        'keeps cell traffic from non-cell sockets; rx counters',
      ),
    ],
  },
];

export const ALL_PROGRAMS: readonly ProgramAttachment[] = ATTACHED_OBJECTS.flatMap(
  (o) => o.programs,
);

/** Attached per interface by `attach` (XDP ingress, tc egress). */
export const UPLINK_OBJECT = 'uplink.bpf.o';

/** Run by `doctor`: lists cell sockets that predate `up`. */
export const AUDIT_OBJECT = 'audit.bpf.o';

/** Loaded by `release`, run once, never attached. */
export const REVOKE_OBJECT = 'revoke.bpf.o';

/** Maps every object shares; `up` pins them, later objects reuse the pins. */
export const SHARED_MAPS = [
  'l3_config',
  'l3_cells',
  'l3_owners',
  'l3_cell_addrs',
  'l3_cell_stats',
  'l3_cell_denials',
  'l3_sock_origin',
  'l3_listeners',
  'l3_managed',
  'l3_allow',
  'l3_uplinks',
  'l3_events',
  'l3_event_budget',
  'l3_generation',
] as const;
export type SharedMapName = (typeof SHARED_MAPS)[number];

export interface MapShape {
  readonly type: MapType;
  readonly keySize: number;
  readonly valueSize: number;
}

/** What each pinned map must look like (bpf/maps.bpf.h; checked against
 * the built objects in test/integration/pin-dir.test.ts): a pin with the
 * right name but another shape is not the engine's, and is refused. */
export const SHARED_MAP_SHAPES: Readonly<Record<SharedMapName, MapShape>> = {
  l3_config: { type: MapType.ARRAY, keySize: 4, valueSize: LAYOUT.l3_config.size },
  l3_cells: { type: MapType.HASH, keySize: 8, valueSize: LAYOUT.l3_cell.size },
  l3_owners: { type: MapType.HASH, keySize: LAYOUT.l3_addr.size, valueSize: LAYOUT.l3_owner.size },
  l3_cell_addrs: {
    type: MapType.HASH,
    keySize: L3_CELL_SLOT_SIZE,
    valueSize: LAYOUT.l3_addr.size,
  },
  l3_cell_stats: { type: MapType.PERCPU_HASH, keySize: 8, valueSize: LAYOUT.l3_cell_stats.size },
  l3_cell_denials: { type: MapType.HASH, keySize: 8, valueSize: LAYOUT.l3_cell_denials.size },
  l3_sock_origin: {
    type: MapType.SK_STORAGE,
    keySize: 4,
    valueSize: LAYOUT.l3_sock_origin.size,
  },
  l3_listeners: { type: MapType.SOCKHASH, keySize: LAYOUT.l3_listen_key.size, valueSize: 8 },
  l3_managed: { type: MapType.LPM_TRIE, keySize: LAYOUT.l3_prefix_key.size, valueSize: 1 },
  l3_allow: { type: MapType.LPM_TRIE, keySize: LAYOUT.l3_allow_key.size, valueSize: 1 },
  l3_uplinks: { type: MapType.HASH, keySize: 4, valueSize: LAYOUT.l3_uplink.size },
  l3_events: { type: MapType.RINGBUF, keySize: 0, valueSize: 0 },
  l3_event_budget: {
    type: MapType.PERCPU_ARRAY,
    keySize: 4,
    valueSize: LAYOUT.l3_event_budget.size,
  },
  l3_generation: { type: MapType.ARRAY, keySize: 4, valueSize: 8 },
};

/** max_entries of each map for a given --max-cells. Hash maps do not
 * preallocate, so generous limits cost nothing until used. */
export function mapCapacity(name: string, maxCells: number): number | undefined {
  switch (name) {
    case 'l3_cells':
      return maxCells;
    case 'l3_owners':
      // a few addresses per cell plus its loopback alias
      return maxCells * 5;
    case 'l3_cell_addrs':
      // a superset of l3_owners: room for the intents of a few failed claims
      return maxCells * 5 + 4096;
    case 'l3_cell_stats':
    case 'l3_cell_denials':
      return maxCells + 1; // + key 0: sockets outside every cell
    case 'l3_listeners':
      return maxCells * 4; // a few listening ports per cell
    case 'l3_allow':
      return maxCells * 4; // a few allowed source prefixes per cell
    default:
      return undefined;
  }
}

export const DEFAULT_MAX_CELLS = 131072;
