/* SPDX-License-Identifier: MIT */
/*
 * Every map key and value shared between the BPF programs and the
 * TypeScript control plane. The build (scripts/gen-layout.js) generates
 * src/codecs/generated.ts from this file: struct sizes and offsets and enum
 * values from the BTF clang emits for it, #define values and the counter
 * tables below from the preprocessor. test/unit/layout.test.ts regenerates
 * it and fails when the committed file is not in step with this header.
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
/* Some `release --force` left a TCP listener on an address it released:
 * the next assigns look for such listeners in the socket table (to forget
 * their exact-bind sk_lookup entries) instead of every assign reading it. */
#define L3_CONFIG_KEPT_LISTENERS 0x2

/* 3: counters split into per-CPU traffic (l3_cell_stats) and shared
 * denials (l3_cell_denials).
 * 4: l3_cell_addrs (the reverse index of l3_owners) joined the pinned maps,
 * and the revocation iterator takes a set of addresses. */
#define L3_LAYOUT_VERSION 4

/*
 * The counter tables: one X() line per counter. The enums and structs below,
 * and in TypeScript the decoder, `stats`, `show`, `metrics` and the event
 * names, are all derived from these lists, so adding a counter is one line
 * here plus the BPF code that bumps it. Append only: a slot is a pinned
 * offset.
 *
 * L3_TRAFFIC(X): X(field, group, always, help): hot counters, bumped per
 * packet, so per CPU (l3_cell_stats). `group` pairs a _packets and a _bytes
 * counter into one column of `stats` and one line of `show`; `always`: the
 * metric has a series for every cell, not only while non-zero.
 */
#define L3_TRAFFIC(X) \
	X(rx_packets, "rx", 1, "Packets delivered to the cell's sockets (cgroup_skb ingress, GSO segments counted).") \
	X(rx_bytes, "rx", 1, "Bytes delivered to the cell's sockets (cgroup_skb ingress, IP headers included).") \
	X(tx_packets, "tx", 1, "Packets sent by the cell's sockets (cgroup_skb egress).") \
	X(tx_bytes, "tx", 1, "Bytes sent by the cell's sockets (cgroup_skb egress, IP headers included).") \
	X(uplink_rx_packets, "uplink rx", 0, "Frames for the cell seen at uplink XDP ingress (absent while zero).") \
	X(uplink_rx_bytes, "uplink rx", 0, "Bytes of frames for the cell seen at uplink XDP ingress (absent while zero).") \
	X(uplink_tx_packets, "uplink tx", 0, "The cell's frames seen at uplink tc egress (absent while zero).") \
	X(uplink_tx_bytes, "uplink tx", 0, "Bytes of the cell's frames seen at uplink tc egress (absent while zero).")

/* L3_REFUSALS(X): X(ID, label, help): why a socket operation was refused
 * (enum l3_reason, l3_cell_denials.refused, event reason). Rare: shared. */
#define L3_REFUSALS(X) \
	X(BIND_FOREIGN, "bind-foreign", "bind to an address the cell does not own") \
	X(BIND_NOFAMILY, "bind-nofamily", "wildcard bind in a family the cell lacks") \
	X(BIND_CELL_ADDR, "bind-cell-addr", "a non-cell socket binds a cell's address") \
	X(CONNECT_NOFAMILY, "connect-nofamily", "connect in a family the cell lacks") \
	X(CONNECT_LOOPBACK, "connect-loopback", "connect to another cell's loopback") \
	X(SENDMSG_FOREIGN_SRC, "sendmsg-foreign-src", "explicit source not the cell's") \
	X(SENDMSG_NOFAMILY, "sendmsg-nofamily", "sendmsg in a family the cell lacks") \
	X(SENDMSG_LOOPBACK, "sendmsg-loopback", "sendmsg to another cell's loopback") \
	X(SOCK_RAW, "sock-raw", "SOCK_RAW without the policy allowing it") \
	X(PROTO_REFUSED, "proto-refused", "an inet protocol the hooks cannot confine") \
	X(TOO_DEEP, "too-deep", "created below the recorded ancestry")

/* L3_DROPS(X): X(ID, label, help): why a packet was dropped (enum l3_drop,
 * l3_cell_denials.dropped, event reason). Rare: shared. */
#define L3_DROPS(X) \
	X(SPOOF, "spoofed-source", "left a cell with a source the cell does not own") \
	X(FOREIGN_DST, "foreign-destination", "reached a socket that does not own its destination") \
	X(NO_SOCKET, "no-cell-socket", "to a cell address and port with no cell socket") \
	X(POLICY, "not-allowed-source", "uplink: source not in the cell's allow-list") \
	X(UNASSIGNED, "unassigned-address", "uplink: managed address that no cell owns") \
	X(WIRE_SPOOF, "spoofed-source-wire", "uplink tc egress: forged source on the wire") \
	X(LOOPBACK, "loopback-foreign", "127/8 or ::1 that is not the sender's own alias")

#define L3_REASON_ENUM(id, label, help) L3_R_##id,
#define L3_DROP_ENUM(id, label, help) L3_D_##id,
#define L3_TRAFFIC_FIELD(field, group, always, help) __u64 field;

enum l3_reason { L3_REFUSALS(L3_REASON_ENUM) L3_R_MAX };
enum l3_drop { L3_DROPS(L3_DROP_ENUM) L3_D_MAX };

#define L3_REFUSED_SLOTS 16 /* room for reasons added later */
#define L3_DROP_SLOTS 8
_Static_assert(L3_R_MAX <= L3_REFUSED_SLOTS, "more refusal reasons than slots");
_Static_assert(L3_D_MAX <= L3_DROP_SLOTS, "more drop reasons than slots");

/* Per-CPU value of l3_cell_stats, keyed by cell cgroup id (0: no cell):
 * the hot counters only, so a cell costs sizeof() per possible CPU. */
struct l3_cell_stats {
	L3_TRAFFIC(L3_TRAFFIC_FIELD)
};

/* Value of l3_cell_denials (one shared copy, bumped with atomic adds),
 * keyed like l3_cell_stats. The BPF programs create an entry on a cell's
 * first refusal or drop, so a well-behaved cell has none. */
struct l3_cell_denials {
	__u64 refused[L3_REFUSED_SLOTS]; /* by enum l3_reason */
	__u64 dropped[L3_DROP_SLOTS]; /* by enum l3_drop */
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

/* Key of l3_cell_addrs (HASH, written and read by the control plane only):
 * slot `slot` of cell `cell`'s list of owned addresses; the value is the
 * struct l3_addr. The slots of a cell are dense from 0, and the list is a
 * superset of the cell's l3_owners entries at every instant (an address is
 * listed before it is claimed and unlisted after it is unclaimed), so a
 * verb touching one cell reads its own addresses, never every owner. */
/* The revocation iterator (revoke.bpf.c): addresses per walk, and modes. */
#define L3_REVOKE_BATCH 65536
#define L3_REVOKE_DESTROY 0
#define L3_REVOKE_COUNT 1

struct l3_cell_slot {
	__u64 cell;
	__u32 slot;
	__u32 pad;
};

#endif /* L3ISO_H */
