// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The uplink (`l3iso attach IFACE`): a filter on ingress, tc on egress.
 *
 * The ingress filter runs as XDP (NICs with a native XDP driver) or as tc
 * ingress (veth and other virtual devices, where native XDP switches the
 * peer's TSO off and generic XDP linearises every GSO packet); both run the
 * same code on the same frame. Per frame: parse Ethernet, up to two VLAN tags (802.1Q, 802.1ad),
 * IPv4 or IPv6; find the cell owning the destination; count it; drop it if
 * the cell has an allow-list that does not admit the source; drop frames to
 * managed addresses no cell owns. Everything else (ARP, ND, host traffic,
 * non-IP, truncated frames) passes untouched and uncounted.
 *
 * tc ingress also hands UDP datagrams for a cell's secondary addresses to
 * the cell's wildcard socket (udp_steer.bpf.h); XDP cannot (no
 * bpf_sk_assign there), see README "Known limits".
 *
 * tc egress: attribute each frame to the cell of the socket that sent it
 * (the socket's cgroup ancestry, which covers AF_PACKET senders too), count
 * it, and drop it when its source is not the cell's: anti-spoof at the wire.
 */
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include "cell.bpf.h"
#include "udp_steer.bpf.h"

#define L3_ETH_P_8021Q 0x8100
#define L3_ETH_P_8021AD 0x88A8
#define L3_MAX_VLAN_TAGS 2
/* One XDP policy drop in this many is reported as an event. */
#define L3_XDP_EVENT_SAMPLE 64

struct l3_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct l3_frame {
	__u8 family; /* 0: not IP (or truncated) */
	__u32 src[4];
	__u32 dst[4];
};

/* Bounds-checked parse shared by XDP and tc (both see Ethernet first). */
static __always_inline void parse_frame(void *data, void *end, struct l3_frame *f)
{
	struct ethhdr *eth = data;
	__u64 off = sizeof(*eth);
	__be16 proto;
	int i;

	f->family = 0;
	if ((void *)(eth + 1) > end)
		return;
	proto = eth->h_proto;
#pragma unroll
	for (i = 0; i < L3_MAX_VLAN_TAGS; i++) {
		struct l3_vlan_hdr *vlan = data + off;

		if (proto != bpf_htons(L3_ETH_P_8021Q) && proto != bpf_htons(L3_ETH_P_8021AD))
			break;
		if ((void *)(vlan + 1) > end)
			return;
		proto = vlan->proto;
		off += sizeof(*vlan);
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;

		if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
			return;
		/* Options follow the fixed header; the addresses do not move. */
		if (data + off + ip->ihl * 4 > end)
			return;
		f->family = L3_FAMILY_V4;
		f->src[0] = ip->saddr;
		f->dst[0] = ip->daddr;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > end || ip6->version != 6)
			return;
		/* Extension headers follow the fixed header; the addresses, which
		 * are all this program needs, never move. */
		f->family = L3_FAMILY_V6;
		__builtin_memcpy(f->src, &ip6->saddr, 16);
		__builtin_memcpy(f->dst, &ip6->daddr, 16);
	}
}

static __always_inline struct l3_owner *owner_of(__u8 family, const __u32 a[4])
{
	return family == L3_FAMILY_V4 ? owner_of4(a[0]) : owner_of6(a);
}

static __always_inline int is_managed(__u8 family, const __u32 a[4])
{
	struct l3_prefix_key key = {};

	key.prefixlen = 8 + (family == L3_FAMILY_V4 ? 32 : 128);
	key.family = family;
	__builtin_memcpy(key.addr, a, 16);
	return bpf_map_lookup_elem(&l3_managed, &key) != NULL;
}

static __always_inline int source_allowed(__u64 cell_id, __u8 family, const __u32 src[4])
{
	struct l3_allow_key key = {};
	int i;

	key.prefixlen = 64 + 8 + (family == L3_FAMILY_V4 ? 32 : 128);
#pragma unroll
	for (i = 0; i < 8; i++)
		key.cell[i] = (cell_id >> (56 - 8 * i)) & 0xff;
	key.family = family;
	__builtin_memcpy(key.addr, src, 16);
	return bpf_map_lookup_elem(&l3_allow, &key) != NULL;
}

/*
 * The ingress policy, shared by XDP and tc ingress: 0 drops the frame
 * (counted), 1 lets it pass; *cell_id is the cell it is for, 0 for none.
 */
static __always_inline int ingress_admits(struct l3_frame *f, __u64 *cell_id)
{
	struct l3_owner *owner;
	struct l3_cell *cell;
	__u64 id;

	*cell_id = 0;
	owner = owner_of(f->family, f->dst);
	if (!owner) {
		if (is_managed(f->family, f->dst)) {
			count_drop(0, L3_D_UNASSIGNED);
			return 0;
		}
		return 1;
	}
	id = owner->cell;
	/* A loopback alias is never a destination on the wire. */
	if (owner->flags & L3_OWNER_LOOPBACK) {
		count_drop(id, L3_D_POLICY);
		return 0;
	}
	cell = bpf_map_lookup_elem(&l3_cells, &id);
	if (cell && (cell->flags & L3_CELL_ALLOW_LIST) && !source_allowed(id, f->family, f->src)) {
		count_drop(id, L3_D_POLICY);
		if (bpf_get_prandom_u32() % L3_XDP_EVENT_SAMPLE == 0)
			emit_event(id, L3_EV_DROPPED, L3_D_POLICY, f->family, f->src, 0, 0);
		return 0;
	}
	*cell_id = id;
	return 1;
}

static __always_inline void count_uplink_rx(__u64 cell_id, __u64 packets, __u64 bytes)
{
	struct l3_cell_stats *stats = bpf_map_lookup_elem(&l3_cell_stats, &cell_id);

	if (stats) {
		stats->uplink_rx_packets += packets;
		stats->uplink_rx_bytes += bytes;
	}
}

SEC("xdp")
int l3_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct l3_frame f = {};
	__u64 cell_id;

	parse_frame(data, end, &f);
	if (!f.family)
		return XDP_PASS;
	if (!ingress_admits(&f, &cell_id))
		return XDP_DROP;
	if (cell_id)
		count_uplink_rx(cell_id, 1, end - data);
	return XDP_PASS;
}

/* Ethernet, two VLAN tags and the longest IPv4 header: all parse_frame reads. */
#define L3_MAX_HEADERS (14 + 4 * L3_MAX_VLAN_TAGS + 60)

/* The headers in the linear part of the skb, where direct access reaches:
 * a frame whose headers sit in fragments is pulled, never waved through. */
static __always_inline void linear_headers(struct __sk_buff *skb)
{
	__u32 want = skb->len < L3_MAX_HEADERS ? skb->len : L3_MAX_HEADERS;

	if ((__u64)skb->data + want > (__u64)skb->data_end)
		bpf_skb_pull_data(skb, want);
}

/* GSO packets stand for several wire packets: count what the wire sees. */
static __always_inline __u64 skb_wire_packets(struct __sk_buff *skb)
{
	return skb->gso_segs > 1 ? skb->gso_segs : 1;
}

SEC("tc")
int l3_tc_ingress(struct __sk_buff *skb)
{
	struct l3_frame f = {};
	__u64 cell_id;

	linear_headers(skb);
	parse_frame((void *)(long)skb->data, (void *)(long)skb->data_end, &f);
	if (!f.family)
		return TC_ACT_OK;
	if (!ingress_admits(&f, &cell_id))
		return TC_ACT_SHOT;
	if (!cell_id)
		return TC_ACT_OK;
	count_uplink_rx(cell_id, skb_wire_packets(skb), skb->len);
	/* Untagged (or offloaded-tag) frames: the IP header follows Ethernet. */
	steer_udp(skb, skb->protocol, sizeof(struct ethhdr));
	return TC_ACT_OK;
}

/* The cell of a frame's socket by its cgroup: the deepest assigned
 * ancestor. For sockets without an origin (AF_PACKET, created before up). */
static __always_inline __u64 cgroup_cell(struct __sk_buff *skb)
{
	struct l3_config *config;
	__u32 zero = 0;
	__u64 found = 0;
	int i;

	config = bpf_map_lookup_elem(&l3_config, &zero);
	if (!config)
		return 0;
	for (i = 0; i < L3_MAX_DEPTH; i++) {
		__u64 id = bpf_skb_ancestor_cgroup_id(skb, config->root_level + i);

		if (!id)
			break;
		if (bpf_map_lookup_elem(&l3_cells, &id))
			found = id;
	}
	return found;
}

static __always_inline void count_uplink_tx(__u64 cell_id, struct __sk_buff *skb)
{
	struct l3_cell_stats *stats = bpf_map_lookup_elem(&l3_cell_stats, &cell_id);

	if (stats) {
		stats->uplink_tx_packets += skb_wire_packets(skb);
		stats->uplink_tx_bytes += skb->len;
	}
}

SEC("tc")
int l3_tc_egress(struct __sk_buff *skb)
{
	struct l3_sock_origin *origin = NULL;
	struct bpf_sock *sk = skb->sk;
	struct l3_frame f = {};
	struct l3_owner *owner;
	__u64 cell_id, gen = 0;

	linear_headers(skb);
	parse_frame((void *)(long)skb->data, (void *)(long)skb->data_end, &f);
	if (!f.family)
		return TC_ACT_OK;
	/* The cell of the socket that sent the frame, from the socket's cache
	 * when it has an origin. Frames without a socket (forwarded, or replies
	 * the kernel makes itself) belong to no cell. */
	if (sk)
		sk = bpf_sk_fullsock(sk);
	if (sk)
		origin = bpf_sk_storage_get(&l3_sock_origin, sk, 0, 0);
	if (origin) {
		gen = l3_gen();
		cell_id = origin_cell_id(origin, gen);
	} else {
		cell_id = cgroup_cell(skb);
	}
	if (cell_id && origin && sk && is_sock_addr(sk, f.family, f.src) &&
	    addr_cached(origin, gen, f.family, f.src, 1))
		goto count;
	owner = owner_of(f.family, f.src);
	if (!cell_id) {
		if (!owner && is_managed(f.family, f.src)) {
			count_drop(0, L3_D_WIRE_SPOOF);
			return TC_ACT_SHOT;
		}
		return TC_ACT_OK;
	}
	if (!owner || owner->cell != cell_id || (owner->flags & L3_OWNER_LOOPBACK)) {
		count_drop(cell_id, L3_D_WIRE_SPOOF);
		emit_event(cell_id, L3_EV_DROPPED, L3_D_WIRE_SPOOF, f.family, f.src, 0, 0);
		return TC_ACT_SHOT;
	}
count:
	count_uplink_tx(cell_id, skb);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
