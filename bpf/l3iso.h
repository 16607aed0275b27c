/* SPDX-License-Identifier: MIT */
/*
 * Every map key and value shared between the BPF programs and the
 * TypeScript control plane. src/codecs/layout.ts mirrors this file field for
 * field; test/unit/layout.test.ts compiles this header and compares offsets,
 * so a change here that is not made there fails the tests.
 *
 * Rules that keep the two sides in step:
 *   - fixed-width types only, explicit padding, no bitfields;
 *   - addresses and ports in network byte order, everything else host order;
 *   - a pinned map outlives the programs: never reorder or resize a field of
 *     a pinned struct, add new fields in the reserved space instead.
 */
#ifndef L3ISO_H
#define L3ISO_H

/* BPF objects built on vmlinux.h already have the kernel's __u32 & co. */
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* cgroup levels below the managed root that a socket remembers. */
#define L3_MAX_DEPTH 16

#define L3_FAMILY_V4 4
#define L3_FAMILY_V6 6

/* Key of l3_owners: one address (v4 in addr[0], rest zero). */
struct l3_addr {
	__u8 family; /* L3_FAMILY_V4 or L3_FAMILY_V6 */
	__u8 pad[3];
	__u32 addr[4]; /* network byte order */
};

/* The address is a cell's private loopback alias (127/8), not a real one. */
#define L3_OWNER_LOOPBACK 0x1
/* `release` is taking the address away: no new bind or explicit source may
 * use it, while packets from its dying sockets (their RSTs) still leave. */
#define L3_OWNER_RELEASING 0x2
/* `release --drain` is running: as RELEASING, and sk_lookup refuses new
 * connections to the address while established ones finish. */
#define L3_OWNER_DRAINING 0x4

/* Value of l3_owners: which cell holds the address. */
struct l3_owner {
	__u64 cell; /* cgroup id of the cell */
	__u32 flags; /* L3_OWNER_* */
	__u32 pad;
};

/* The cell may open SOCK_RAW sockets (cgroup/sock_create). */
#define L3_CELL_ALLOW_RAW 0x1
/* Uplink ingress only admits sources in the cell's l3_allow entries. */
#define L3_CELL_ALLOW_LIST 0x2

/* Value of l3_cells, keyed by the cell's cgroup id (__u64). */
struct l3_cell {
	__u32 primary4; /* 0: the cell has no IPv4 address */
	__u32 loopback4; /* private 127/8 alias standing in for 127.0.0.1 */
	__u32 primary6[4]; /* all zero: the cell has no IPv6 address */
	__u32 flags; /* L3_CELL_* */
	__u32 addrs4; /* how many IPv4 addresses the cell owns */
	__u32 addrs6; /* how many IPv6 addresses the cell owns */
	__u32 pad;
};

/* Single entry of l3_config (ARRAY, key 0). It is also the pin dir's
 * marker: only a dir whose l3_config carries L3_CONFIG_MAGIC and this
 * layout version is an l3iso engine's. */
struct l3_config {
	__u64 root_cgroup; /* cgroup id of the managed root */
	__u32 root_level; /* its depth in the cgroup2 hierarchy (root = 0) */
	__u32 version; /* layout version of the pinned maps */
	char cgroup_root[256]; /* path the engine was brought up with */
	__u64 magic; /* L3_CONFIG_MAGIC */
	__u8 instance[16]; /* random id of this engine instance, set by the first up */
	__u64 netns_ino; /* inode of the network namespace sk_lookup is attached to */
	__u32 max_cells; /* --max-cells the maps were created with */
	__u32 flags; /* L3_CONFIG_* */
};

#define L3_CONFIG_MAGIC 0x6766636f7369336cULL /* "l3isocfg" little-endian */
/* Every pin of the instance exists: the first `up` sets it last, so a dir
 * without it is an interrupted first `up`, never a live engine. */
#define L3_CONFIG_COMPLETE 0x1

#define L3_LAYOUT_VERSION 2

/* Why a socket operation was refused; index into l3_cell_stats.refused. */
enum l3_reason {
	L3_R_BIND_FOREIGN = 0, /* bind to an address the cell does not own */
	L3_R_BIND_NOFAMILY = 1, /* wildcard bind in a family the cell lacks */
	L3_R_BIND_CELL_ADDR = 2, /* a non-cell socket binds a cell's address */
	L3_R_CONNECT_NOFAMILY = 3, /* connect in a family the cell lacks */
	L3_R_CONNECT_LOOPBACK = 4, /* connect to another cell's loopback */
	L3_R_SENDMSG_FOREIGN_SRC = 5, /* explicit source not the cell's */
	L3_R_SENDMSG_NOFAMILY = 6, /* sendmsg in a family the cell lacks */
	L3_R_SENDMSG_LOOPBACK = 7, /* sendmsg to another cell's loopback */
	L3_R_SOCK_RAW = 8, /* SOCK_RAW without the policy allowing it */
	L3_R_PROTO_REFUSED = 9, /* an inet protocol the hooks cannot confine */
	L3_R_TOO_DEEP = 10, /* created below the recorded ancestry */
	L3_R_MAX = 11,
};

#define L3_REFUSED_SLOTS 16 /* room for reasons added later */
#define L3_DROP_SLOTS 8

/* Per-CPU value of l3_cell_stats, keyed by cell cgroup id (0: no cell). */
struct l3_cell_stats {
	__u64 refused[L3_REFUSED_SLOTS]; /* by enum l3_reason */
	__u64 rx_packets; /* delivered to the cell's sockets (cgroup_skb) */
	__u64 rx_bytes;
	__u64 tx_packets; /* sent by the cell's sockets (cgroup_skb) */
	__u64 tx_bytes;
	__u64 dropped[L3_DROP_SLOTS]; /* packet-layer drops by enum l3_drop */
	__u64 uplink_rx_packets; /* frames for the cell at uplink XDP */
	__u64 uplink_rx_bytes;
	__u64 uplink_tx_packets; /* the cell's frames at uplink tc egress */
	__u64 uplink_tx_bytes;
};

/* Per-socket storage (SK_STORAGE, cloned to accepted children): the
 * cgroup ancestry of the task that created the socket, from the managed
 * root down. Hooks resolve the cell from it, so assignments made after the
 * socket was created still apply and nested cgroups find their nearest
 * assigned ancestor. */
struct l3_sock_origin {
	__u64 ancestors[L3_MAX_DEPTH]; /* [0] = managed root */
	__u32 depth; /* valid entries in ancestors */
	__u32 flags; /* L3_SOCK_* */
	/* Per-socket cache of what the hooks resolved, valid while its
	 * generation equals l3_generation's (the control plane bumps it after
	 * every change to l3_cells or l3_owners). Each word is written in one
	 * store, so a reader never pairs a generation with another's result. */
	__u64 cell_cache; /* gen << L3_CACHE_SHIFT | level: ancestors[level - 1] is the cell, 0: none */
	__u64 addr_cache; /* gen << L3_CACHE_SHIFT | L3_ADDR_OK_* : addr is the socket's own */
	__u32 addr[4]; /* address verified for the socket's cell (v4 in addr[0]) */
};

/* Low bits of the cache words; the generation fills the rest. Generation 0
 * (an engine whose control plane never bumped it) disables the cache. */
#define L3_CACHE_SHIFT 8
#define L3_GEN_MASK ((1ULL << (64 - L3_CACHE_SHIFT)) - 1)
#define L3_ADDR_OK_V4 0x4
#define L3_ADDR_OK_V6 0x6
#define L3_ADDR_OK_FAMILY 0xf
#define L3_ADDR_OK_LOOPBACK 0x10 /* the address is the cell's loopback alias */

/* The socket's address came from a wildcard bind rewritten to the primary:
 * it serves every address of its cell (sk_lookup). */
#define L3_SOCK_WILDCARD 0x1
/* IPv6 sockets on the loopback alias (::ffff:<alias>): the program named
 * ::1, not 127.0.0.1, for its local address (bind, or the source a connect
 * to ::1 chose) ... */
#define L3_SOCK_LOCAL_LO6 0x2
/* ... for its peer (connect to ::1). getsockname/getpeername/recvmsg show
 * ::1 then, and ::ffff:127.0.0.1 otherwise, as a host would. */
#define L3_SOCK_PEER_LO6 0x4
/* An IPV6_V6ONLY wildcard socket of a cell without IPv6, parked on
 * [::1]:<ephemeral> where nothing can reach it (as [::]:P would be on a
 * v4-only host, but without taking port P from anyone). */
#define L3_SOCK_PARKED 0x8

/* Key of l3_listeners (SOCKHASH of cell TCP listeners, filled at
 * TCP_LISTEN_CB). Exact binds: cell = 0 and the bound address. Wildcard
 * binds: the cell and a zero address, so every address of the cell finds
 * them. Port in host byte order, as sk_lookup and sock_ops present it. */
struct l3_listen_key {
	__u64 cell;
	__u32 addr[4]; /* network byte order, v4 in addr[0] */
	__u16 port;
	__u8 family; /* address family served: L3_FAMILY_V4 or L3_FAMILY_V6 */
	__u8 protocol; /* IPPROTO_TCP */
	__u32 pad;
};

/* Why a packet was dropped; index into l3_cell_stats.dropped. */
enum l3_drop {
	L3_D_SPOOF = 0, /* left a cell with a source the cell does not own */
	L3_D_FOREIGN_DST = 1, /* reached a socket that does not own its destination */
	L3_D_NO_SOCKET = 2, /* to a cell address and port with no cell socket */
	L3_D_POLICY = 3, /* uplink: source not in the cell's allow-list */
	L3_D_UNASSIGNED = 4, /* uplink: managed address that no cell owns */
	L3_D_WIRE_SPOOF = 5, /* uplink tc egress: forged source on the wire */
	L3_D_LOOPBACK = 6, /* 127/8 or ::1 that is not the sender's own alias */
	L3_D_MAX = 7,
};

/* Key of l3_managed (LPM_TRIE): prefixes whose addresses belong to cells.
 * prefixlen counts the family byte too: 8 + the prefix length. */
struct l3_prefix_key {
	__u32 prefixlen;
	__u8 family; /* L3_FAMILY_V4 / _V6 */
	__u8 addr[16]; /* network byte order, v4 in addr[0..3] */
	__u8 pad[3];
};

/* Key of l3_allow (LPM_TRIE): a source prefix a cell admits at the
 * uplink. prefixlen = 64 (cell) + 8 (family) + the prefix length. */
struct l3_allow_key {
	__u32 prefixlen;
	__u8 cell[8]; /* cell cgroup id, big-endian so the trie matches it first */
	__u8 family;
	__u8 addr[16];
	__u8 pad[3];
};

/* One audit event on the l3_events ring buffer. */
struct l3_event {
	__u64 time_ns; /* bpf_ktime_get_ns (monotonic) */
	__u64 cell; /* cgroup id of the cell, 0 outside every cell */
	__u32 pid; /* tgid, 0 in packet context */
	__u32 kind; /* L3_EV_REFUSED or L3_EV_DROPPED */
	__u32 reason; /* enum l3_reason or enum l3_drop */
	__u16 port; /* host byte order */
	__u8 family; /* L3_FAMILY_V4 / _V6, 0 if unknown */
	__u8 pad;
	__u32 addr[4]; /* the address at stake, network byte order */
	char comm[16];
};

#define L3_EV_REFUSED 1
#define L3_EV_DROPPED 2
/* Events each CPU may emit per second; the rest are counted, not sent, so a
 * flood of refusals cannot starve the host. */
#define L3_EVENTS_PER_SEC 2000

/* Per-CPU value of l3_event_budget (ARRAY, key 0): the rate limit's state. */
struct l3_event_budget {
	__u64 window; /* current second (bpf_ktime_get_ns / 1e9) */
	__u64 sent; /* events sent in that second */
	__u64 suppressed; /* events not sent: over budget, or the ring was full */
};

/* Value of l3_uplinks (HASH keyed by __u32 ifindex): what `attach` put on
 * an interface, so `detach` and `down` can take exactly that away. */
struct l3_uplink {
	__u32 xdp_flags; /* XDP_FLAGS_SKB_MODE or XDP_FLAGS_DRV_MODE, 0: tc ingress */
	__u32 xdp_prog_id; /* 0 when ingress is filtered by tc */
	__u32 tc_prog_id; /* tc egress */
	__u32 tc_ingress_prog_id; /* 0 when ingress is filtered by XDP */
};

#endif /* L3ISO_H */
