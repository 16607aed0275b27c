/* SPDX-License-Identifier: MIT */
/*
 * UDP wildcard steering, run at tc ingress (the engine netns's `lo`, and
 * the uplink's tc ingress filter). A cell's wildcard UDP bind is rewritten
 * to its primary address, so the kernel's own lookup would give a datagram
 * for any other address of the cell to no cell socket. UDP sockets pass no
 * hook that could put them in a SOCKHASH, but tc ingress can look the
 * socket up itself and hand the datagram to it (bpf_sk_assign: the kernel's
 * UDP receive then takes that socket instead of looking one up):
 *   1. a socket bound exactly to the destination keeps it (the kernel's);
 *   2. else the cell's wildcard socket on the port, bound to the primary of
 *      that family, gets it: only a socket whose origin says wildcard and
 *      whose cell owns the destination;
 *   3. else nothing is done, and the kernel and cgroup_skb ingress decide
 *      as before (a host socket never gets it).
 * Everything that is not an unfragmented UDP datagram for a cell address
 * other than its primary leaves after the header checks and at most one
 * hash lookup: `lo` carries all local traffic.
 */
#ifndef L3ISO_UDP_STEER_BPF_H
#define L3ISO_UDP_STEER_BPF_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include "cell.bpf.h"

#define L3_IP_MF 0x2000
#define L3_IP_OFFSET 0x1fff

/* The cell's wildcard socket, or NULL: bound exactly to `t`'s destination
 * (the primary), its origin marked wildcard, and of cell `cell_id`. */
static __always_inline struct bpf_sock *wildcard_sock(struct __sk_buff *skb,
						      struct bpf_sock_tuple *t, __u32 len,
						      __u64 cell_id, __u32 family, const __u32 a[4])
{
	struct l3_sock_origin *origin;
	struct bpf_sock *sk;

	sk = bpf_sk_lookup_udp(skb, t, len, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return NULL;
	if (!is_sock_addr(sk, family, a))
		goto no;
	origin = bpf_sk_storage_get(&l3_sock_origin, sk, 0, 0);
	if (!origin || !(origin->flags & L3_SOCK_WILDCARD))
		goto no;
	if (origin_cell_id(origin, l3_gen()) != cell_id)
		goto no;
	return sk;
no:
	bpf_sk_release(sk);
	return NULL;
}

/* A socket bound exactly to the destination wins over the wildcard one. */
static __always_inline int has_exact_sock(struct __sk_buff *skb, struct bpf_sock_tuple *t,
					  __u32 len, __u32 family, const __u32 a[4])
{
	struct bpf_sock *sk = bpf_sk_lookup_udp(skb, t, len, BPF_F_CURRENT_NETNS, 0);
	int exact;

	if (!sk)
		return 0;
	exact = is_sock_addr(sk, family, a);
	bpf_sk_release(sk);
	return exact;
}

/* The cell record of a destination's owner, unless the address is being
 * released or drained (then the kernel's demux, which finds no socket). */
static __always_inline struct l3_cell *steer_cell(struct l3_owner *owner, __u64 *cell_id)
{
	if (!owner || (owner->flags & (L3_OWNER_RELEASING | L3_OWNER_DRAINING)))
		return NULL;
	*cell_id = owner->cell;
	return bpf_map_lookup_elem(&l3_cells, cell_id);
}

static __always_inline void steer_udp4(struct __sk_buff *skb, __u32 l3off)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct bpf_sock_tuple t = {};
	struct iphdr *ip = data + l3off;
	struct udphdr *udp;
	struct l3_cell *cell;
	struct bpf_sock *sk;
	__u32 a[4] = {}, p[4] = {};
	__u64 cell_id;

	if ((void *)(ip + 1) > end || ip->protocol != L3_IPPROTO_UDP)
		return;
	if (ip->ihl != 5 || (ip->frag_off & bpf_htons(L3_IP_MF | L3_IP_OFFSET)))
		return; /* options or a fragment: the kernel's demux */
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return;
	a[0] = ip->daddr;
	cell = steer_cell(owner_of4(a[0]), &cell_id);
	if (!cell || !cell->primary4 || cell->primary4 == a[0])
		return;
	p[0] = cell->primary4;
	t.ipv4.saddr = ip->saddr;
	t.ipv4.sport = udp->source;
	t.ipv4.daddr = a[0];
	t.ipv4.dport = udp->dest;
	if (has_exact_sock(skb, &t, sizeof(t.ipv4), L3_FAMILY_V4, a))
		return;
	t.ipv4.daddr = p[0];
	sk = wildcard_sock(skb, &t, sizeof(t.ipv4), cell_id, L3_FAMILY_V4, p);
	if (!sk)
		return;
	bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
}

static __always_inline void steer_udp6(struct __sk_buff *skb, __u32 l3off)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct bpf_sock_tuple t = {};
	struct ipv6hdr *ip6 = data + l3off;
	struct udphdr *udp;
	struct l3_cell *cell;
	struct bpf_sock *sk;
	__u32 a[4], p[4];
	__u64 cell_id;

	/* Extension headers (fragments included): the kernel's demux. */
	if ((void *)(ip6 + 1) > end || ip6->nexthdr != L3_IPPROTO_UDP)
		return;
	udp = (void *)(ip6 + 1);
	if ((void *)(udp + 1) > end)
		return;
	__builtin_memcpy(a, &ip6->daddr, 16);
	cell = steer_cell(owner_of6(a), &cell_id);
	if (!cell)
		return;
	__builtin_memcpy(p, cell->primary6, 16);
	if (!(p[0] | p[1] | p[2] | p[3]))
		return;
	if (p[0] == a[0] && p[1] == a[1] && p[2] == a[2] && p[3] == a[3])
		return;
	__builtin_memcpy(t.ipv6.saddr, &ip6->saddr, 16);
	__builtin_memcpy(t.ipv6.daddr, a, 16);
	t.ipv6.sport = udp->source;
	t.ipv6.dport = udp->dest;
	if (has_exact_sock(skb, &t, sizeof(t.ipv6), L3_FAMILY_V6, a))
		return;
	__builtin_memcpy(t.ipv6.daddr, p, 16);
	sk = wildcard_sock(skb, &t, sizeof(t.ipv6), cell_id, L3_FAMILY_V6, p);
	if (!sk)
		return;
	bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
}

/* Ethernet (lo has one too) then IPv4 or IPv6 at `l3off`. */
static __always_inline void steer_udp(struct __sk_buff *skb, __be16 proto, __u32 l3off)
{
	if (proto == bpf_htons(ETH_P_IP))
		steer_udp4(skb, l3off);
	else if (proto == bpf_htons(ETH_P_IPV6))
		steer_udp6(skb, l3off);
}

#endif
