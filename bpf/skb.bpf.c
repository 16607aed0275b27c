// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Packet-layer checks at the managed cgroup root (cgroup_skb): per-cell
 * rx/tx counters, anti-spoof on egress (a raw socket allowed by policy can
 * forge any header; this is where the forgery stops), loopback privacy on
 * both sides (from a cell, 127/8 and ::1 mean its own alias only; an alias
 * takes packets only from its own cell), and on ingress no packet for a
 * cell's address reaches a socket outside that cell.
 * cgroup_skb sees the packet from its network header on.
 */
#include "cell.bpf.h"

#define L3_ETH_P_IP 0x0800
#define L3_ETH_P_IPV6 0x86DD

struct l3_ip_addrs {
	__u32 family; /* L3_FAMILY_V4 / _V6, 0 if not IP */
	__u32 addr[4];
};

/* Source (want_src) or destination address of the packet. cgroup_skb sees
 * the packet from its network header on, which the stack keeps linear. */
static __always_inline int packet_addr(struct __sk_buff *skb, int want_src, struct l3_ip_addrs *out)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	if (skb->protocol == bpf_htons(L3_ETH_P_IP)) {
		__u32 *ip = data;

		out->family = L3_FAMILY_V4;
		if (data + 20 <= end) {
			out->addr[0] = want_src ? ip[3] : ip[4];
			return 0;
		}
		return bpf_skb_load_bytes(skb, want_src ? 12 : 16, &out->addr[0], 4);
	}
	if (skb->protocol == bpf_htons(L3_ETH_P_IPV6)) {
		__u32 *ip6 = data;

		out->family = L3_FAMILY_V6;
		if (data + 40 <= end) {
			__u32 *a = want_src ? &ip6[2] : &ip6[6];

			out->addr[0] = a[0];
			out->addr[1] = a[1];
			out->addr[2] = a[2];
			out->addr[3] = a[3];
			return 0;
		}
		return bpf_skb_load_bytes(skb, want_src ? 8 : 24, out->addr, 16);
	}
	return -1;
}

static __always_inline struct l3_owner *packet_owner(struct l3_ip_addrs *a)
{
	if (a->family == L3_FAMILY_V4)
		return owner_of4(a->addr[0]);
	if (ip6_is_v4mapped(a->addr))
		return owner_of4(a->addr[3]);
	return owner_of6(a->addr);
}

/* The origin of the packet's full socket, NULL without one (forwarded,
 * kernel-made, or a socket that predates `up`). */
static __always_inline struct l3_sock_origin *skb_origin(struct __sk_buff *skb,
							 struct bpf_sock **skp)
{
	struct bpf_sock *sk = skb->sk;

	if (!sk)
		return NULL;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return NULL;
	*skp = sk;
	return bpf_sk_storage_get(&l3_sock_origin, sk, 0, 0);
}

/*
 * Whether the packet's address (its source on egress, destination on
 * ingress) belongs to the socket's cell (cell 0: to no cell). The socket's
 * own address is checked once per generation and then read from its cache.
 */
static __always_inline int addr_fits(struct l3_sock_origin *origin, struct bpf_sock *sk,
				     __u64 gen, __u64 cell_id, struct l3_ip_addrs *a)
{
	struct l3_owner *owner;
	int own;

	own = is_sock_addr(sk, a->family, a->addr);
	if (own && addr_cached(origin, gen, a->family, a->addr, 0))
		return 1;
	owner = packet_owner(a);
	if (cell_id ? !owner || owner->cell != cell_id : !!owner)
		return 0;
	if (own)
		addr_remember(origin, gen, a->family, a->addr, owner);
	return 1;
}

/* 127/8, its v4-mapped form, or ::1: the only destinations loopback
 * privacy looks at, so every other packet pays one compare for it. */
static __always_inline int is_loopback_addr(const struct l3_ip_addrs *a)
{
	if (a->family == L3_FAMILY_V4)
		return L3_IS_IP4_LOOPBACK_NET(a->addr[0]);
	if (ip6_is_loopback(a->addr))
		return 1;
	return ip6_is_v4mapped(a->addr) && L3_IS_IP4_LOOPBACK_NET(a->addr[3]);
}

/* Egress: from a cell, 127/8 means its own alias and nothing else (not the
 * host's 127.0.0.1, not another cell's alias, not ::1), whatever socket or
 * hook path the packet came through. */
static __always_inline int foreign_loopback(const struct l3_ip_addrs *dst, __u64 cell_id)
{
	struct l3_cell *cell;
	__u32 ip4;

	if (!is_loopback_addr(dst))
		return 0;
	if (dst->family == L3_FAMILY_V6 && ip6_is_loopback(dst->addr))
		return 1;
	ip4 = dst->family == L3_FAMILY_V4 ? dst->addr[0] : dst->addr[3];
	cell = bpf_map_lookup_elem(&l3_cells, &cell_id);
	return !cell || ip4 != cell->loopback4;
}

/* Ingress, for a packet whose destination is the receiving cell's own: if
 * that is its loopback alias, the source must be one of the cell's own
 * addresses too (a host process sending to the alias is refused). */
static __always_inline int loopback_intruder(struct __sk_buff *skb, const struct l3_ip_addrs *dst,
					     __u64 cell_id)
{
	struct l3_ip_addrs src = {};
	struct l3_owner *owner;

	if (!is_loopback_addr(dst))
		return 0;
	if (packet_addr(skb, 1, &src) < 0)
		return 1;
	owner = packet_owner(&src);
	return !owner || owner->cell != cell_id;
}

/* GSO packets stand for several wire packets: count what the wire sees. */
static __always_inline __u64 wire_packets(struct __sk_buff *skb)
{
	return skb->gso_segs > 1 ? skb->gso_segs : 1;
}

SEC("cgroup_skb/egress")
int l3_egress(struct __sk_buff *skb)
{
	struct l3_ip_addrs src = {}, dst = {};
	struct l3_sock_origin *origin;
	struct l3_cell_stats *stats;
	struct bpf_sock *sk = NULL;
	__u64 cell_id, gen;

	origin = skb_origin(skb, &sk);
	if (!origin || !sk)
		return 1;
	gen = l3_gen();
	cell_id = origin_cell_id(origin, gen);
	if (!cell_id)
		return 1;
	if (packet_addr(skb, 1, &src) < 0)
		return 1; /* not IP: nothing to attribute */
	if (!addr_fits(origin, sk, gen, cell_id, &src)) {
		count_drop(cell_id, L3_D_SPOOF);
		return 0;
	}
	if (packet_addr(skb, 0, &dst) == 0 && foreign_loopback(&dst, cell_id)) {
		count_drop(cell_id, L3_D_LOOPBACK);
		return 0;
	}
	stats = bpf_map_lookup_elem(&l3_cell_stats, &cell_id);
	if (stats) {
		stats->tx_packets += wire_packets(skb);
		stats->tx_bytes += skb->len;
	}
	return 1;
}

SEC("cgroup_skb/ingress")
int l3_ingress(struct __sk_buff *skb)
{
	struct l3_ip_addrs dst = {};
	struct l3_sock_origin *origin;
	struct l3_cell_stats *stats;
	struct bpf_sock *sk = NULL;
	struct l3_owner *owner;
	__u64 cell_id, gen;

	if (packet_addr(skb, 0, &dst) < 0)
		return 1;
	origin = skb_origin(skb, &sk);
	if (!origin || !sk) {
		/* No origin: a host socket. A wildcard UDP one, say, must not get
		 * a cell's traffic. */
		owner = packet_owner(&dst);
		if (owner) {
			count_drop(owner->cell, L3_D_FOREIGN_DST);
			return 0;
		}
		return 1;
	}
	gen = l3_gen();
	cell_id = origin_cell_id(origin, gen);
	if (!addr_fits(origin, sk, gen, cell_id, &dst)) {
		if (!cell_id) {
			owner = packet_owner(&dst);
			cell_id = owner ? owner->cell : 0;
		}
		count_drop(cell_id, L3_D_FOREIGN_DST);
		return 0;
	}
	if (!cell_id)
		return 1;
	if (loopback_intruder(skb, &dst, cell_id)) {
		count_drop(cell_id, L3_D_LOOPBACK);
		return 0;
	}
	stats = bpf_map_lookup_elem(&l3_cell_stats, &cell_id);
	if (stats) {
		stats->rx_packets += wire_packets(skb);
		stats->rx_bytes += skb->len;
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
