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

/* Source (want_src) or destination address of the packet. */
static __always_inline int packet_addr(struct __sk_buff *skb, int want_src, struct l3_ip_addrs *out)
{
	if (skb->protocol == bpf_htons(L3_ETH_P_IP)) {
		out->family = L3_FAMILY_V4;
		return bpf_skb_load_bytes(skb, want_src ? 12 : 16, &out->addr[0], 4);
	}
	if (skb->protocol == bpf_htons(L3_ETH_P_IPV6)) {
		out->family = L3_FAMILY_V6;
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

static __always_inline struct l3_cell *skb_cell(struct __sk_buff *skb, __u64 *cell_id)
{
	struct bpf_sock *sk = skb->sk;

	*cell_id = 0;
	if (!sk)
		return NULL;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return NULL;
	return sock_cell(sk, cell_id);
}

/* GSO packets stand for several wire packets: count what the wire sees. */
static __always_inline __u64 wire_packets(struct __sk_buff *skb)
{
	return skb->gso_segs > 1 ? skb->gso_segs : 1;
}

/* Source and destination in one load: they are adjacent in both headers. */
static __always_inline int packet_addrs(struct __sk_buff *skb, struct l3_ip_addrs *src,
					__u32 dst[4])
{
	__u32 w[8];

	if (skb->protocol == bpf_htons(L3_ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, 12, w, 8) < 0)
			return -1;
		src->family = L3_FAMILY_V4;
		src->addr[0] = w[0];
		dst[0] = w[1];
		return 0;
	}
	if (skb->protocol == bpf_htons(L3_ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, 8, w, 32) < 0)
			return -1;
		src->family = L3_FAMILY_V6;
		src->addr[0] = w[0];
		src->addr[1] = w[1];
		src->addr[2] = w[2];
		src->addr[3] = w[3];
		dst[0] = w[4];
		dst[1] = w[5];
		dst[2] = w[6];
		dst[3] = w[7];
		return 0;
	}
	return -1;
}

/* Loopback privacy at the packet layer: from a cell, 127/8 means its own
 * alias and nothing else (not the host's 127.0.0.1, not another cell's
 * alias, not ::1), whatever socket or hook path the packet came through. */
static __always_inline int foreign_loopback(__u32 family, const __u32 dst[4],
					    struct l3_cell *cell)
{
	if (family == L3_FAMILY_V4)
		return L3_IS_IP4_LOOPBACK_NET(dst[0]) && dst[0] != cell->loopback4;
	if (ip6_is_loopback(dst))
		return 1;
	return ip6_is_v4mapped(dst) && L3_IS_IP4_LOOPBACK_NET(dst[3]) && dst[3] != cell->loopback4;
}

SEC("cgroup_skb/egress")
int l3_egress(struct __sk_buff *skb)
{
	struct l3_ip_addrs src = {};
	struct l3_cell_stats *stats;
	struct l3_owner *owner;
	struct l3_cell *cell;
	__u32 dst[4] = {};
	__u64 cell_id;

	cell = skb_cell(skb, &cell_id);
	if (!cell)
		return 1;
	if (packet_addrs(skb, &src, dst) < 0)
		return 1; /* not IP: nothing to attribute */
	owner = packet_owner(&src);
	if (!owner || owner->cell != cell_id) {
		count_drop(cell_id, L3_D_SPOOF);
		return 0;
	}
	if (foreign_loopback(src.family, dst, cell)) {
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

/* A cell's loopback alias takes packets only from that cell's own
 * addresses: the receiving side of loopback privacy. */
static __always_inline int loopback_intruder(struct __sk_buff *skb, struct l3_owner *dst_owner)
{
	struct l3_ip_addrs src = {};
	struct l3_owner *owner;

	if (!(dst_owner->flags & L3_OWNER_LOOPBACK))
		return 0;
	if (packet_addr(skb, 1, &src) < 0)
		return 1;
	owner = packet_owner(&src);
	return !owner || owner->cell != dst_owner->cell;
}

SEC("cgroup_skb/ingress")
int l3_ingress(struct __sk_buff *skb)
{
	struct l3_ip_addrs dst = {};
	struct l3_cell_stats *stats;
	struct l3_owner *owner;
	struct l3_cell *cell;
	__u64 cell_id;

	cell = skb_cell(skb, &cell_id);
	if (packet_addr(skb, 0, &dst) < 0)
		return 1;
	owner = packet_owner(&dst);
	if (!cell) {
		/* A host socket (a wildcard UDP one, say) must not get a cell's traffic. */
		if (owner) {
			count_drop(owner->cell, L3_D_FOREIGN_DST);
			return 0;
		}
		return 1;
	}
	if (!owner || owner->cell != cell_id) {
		count_drop(cell_id, L3_D_FOREIGN_DST);
		return 0;
	}
	if (loopback_intruder(skb, owner)) {
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
