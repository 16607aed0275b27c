// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Shared-stack demux (DESIGN.md, "action by anyone else"). The kernel's own
 * listener lookup would hand a SYN for a cell's address to any host socket
 * bound to the wildcard. sk_lookup runs before that lookup, on the engine's
 * network namespace, and decides for every cell address:
 *   1. a cell listener bound exactly to the address and port;
 *   2. else the cell's wildcard listener on that port (bound to its primary
 *      by the bind hook), so one socket serves every address of the cell;
 *   3. else SK_DROP: the kernel answers with a RST, and the host never sees
 *      the connection.
 * TCP only: UDP sockets never pass a hook that could put them in a SOCKHASH,
 * so UDP demux is the kernel's (exact binds) and cgroup_skb ingress drops
 * datagrams for a cell's address that land on a socket outside the cell.
 */
#include "cell.bpf.h"
#include "v6only.bpf.h"
#include "udp_steer.bpf.h"

#define L3_IPPROTO_TCP 6

static __always_inline void listen_key_addr(struct l3_listen_key *key, __u32 family, __u32 ip4,
					    const __u32 ip6[4])
{
	if (family == L3_AF_INET) {
		key->family = L3_FAMILY_V4;
		key->addr[0] = ip4;
	} else if (ip6_is_v4mapped(ip6)) {
		/* A dual-stack socket bound to ::ffff:a.b.c.d serves IPv4. */
		key->family = L3_FAMILY_V4;
		key->addr[0] = ip6[3];
	} else {
		key->family = L3_FAMILY_V6;
		key->addr[0] = ip6[0];
		key->addr[1] = ip6[1];
		key->addr[2] = ip6[2];
		key->addr[3] = ip6[3];
	}
}

SEC("sockops")
int l3_sockops(struct bpf_sock_ops *skops)
{
	struct l3_listen_key key = {};
	struct l3_sock_origin *origin;
	struct bpf_sock *sk;
	__u32 ip6[4] = {};
	__u64 cell_id;

	if (skops->op != BPF_SOCK_OPS_TCP_LISTEN_CB)
		return 1;
	sk = skops->sk;
	if (!sk)
		return 1;
	origin = bpf_sk_storage_get(&l3_sock_origin, sk, 0, 0);
	if (!origin_cell(origin, &cell_id))
		return 1; /* host listeners keep the kernel's demux */

	ip6[0] = skops->local_ip6[0];
	ip6[1] = skops->local_ip6[1];
	ip6[2] = skops->local_ip6[2];
	ip6[3] = skops->local_ip6[3];
	listen_key_addr(&key, skops->family, skops->local_ip4, ip6);
	key.port = skops->local_port;
	key.protocol = L3_IPPROTO_TCP;
	if (!origin || !(origin->flags & L3_SOCK_WILDCARD)) {
		bpf_sock_hash_update(skops, &l3_listeners, &key, BPF_ANY);
		return 1;
	}
	key.cell = cell_id;
	key.addr[0] = key.addr[1] = key.addr[2] = key.addr[3] = 0;
	bpf_sock_hash_update(skops, &l3_listeners, &key, BPF_ANY);
	/*
	 * A dual-stack `::` listener (node's, Go's, Java's default) was bound
	 * to the cell's v4-mapped primary (or loopback) by bind6, so that it
	 * keeps serving IPv4 as on a host: it also becomes the cell's v6
	 * wildcard listener, unless the cell has a V6ONLY one of its own
	 * (BPF_NOEXIST; a later one replaces it). A socket bound to a v6
	 * address is V6ONLY for the kernel, which is why bind6 does not pick
	 * the v6 primary for it: sk_lookup cannot give a V6ONLY socket IPv4.
	 */
	if (key.family == L3_FAMILY_V4 && skops->family == L3_AF_INET6 && !is_v6only(sk)) {
		key.family = L3_FAMILY_V6;
		bpf_sock_hash_update(skops, &l3_listeners, &key, BPF_NOEXIST);
	}
	return 1;
}

SEC("sk_lookup")
int l3_sk_lookup(struct bpf_sk_lookup *ctx)
{
	struct l3_listen_key key = {};
	struct l3_owner *owner;
	struct bpf_sock *sk;
	__u32 ip6[4] = {};
	long err;

	if (ctx->family == L3_AF_INET) {
		owner = owner_of4(ctx->local_ip4);
	} else {
		ip6[0] = ctx->local_ip6[0];
		ip6[1] = ctx->local_ip6[1];
		ip6[2] = ctx->local_ip6[2];
		ip6[3] = ctx->local_ip6[3];
		owner = owner_of6(ip6);
	}
	if (ctx->protocol != L3_IPPROTO_TCP)
		return SK_PASS;
	listen_key_addr(&key, ctx->family, ctx->local_ip4, ip6);
	key.port = ctx->local_port;
	key.protocol = L3_IPPROTO_TCP;
	if (!owner) {
		/* Not a cell address: the kernel's lookup, unless a cell listener
		 * kept its bind after `release` took the address (it is left open
		 * so its server does not spin on accept): refused. */
		sk = bpf_map_lookup_elem(&l3_listeners, &key);
		if (!sk)
			return SK_PASS;
		bpf_sk_release(sk);
		return SK_DROP;
	}
	/* Being drained or released: established connections finish (they never
	 * reach sk_lookup), new ones are refused. */
	if (owner->flags & (L3_OWNER_RELEASING | L3_OWNER_DRAINING)) {
		count_drop(owner->cell, L3_D_NO_SOCKET);
		return SK_DROP;
	}

	sk = bpf_map_lookup_elem(&l3_listeners, &key);
	if (!sk) {
		key.cell = owner->cell;
		key.addr[0] = key.addr[1] = key.addr[2] = key.addr[3] = 0;
		sk = bpf_map_lookup_elem(&l3_listeners, &key);
	}
	if (!sk) {
		count_drop(owner->cell, L3_D_NO_SOCKET);
		return SK_DROP;
	}
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		count_drop(owner->cell, L3_D_NO_SOCKET);
		return SK_DROP;
	}
	return SK_PASS;
}

/* tc ingress of the engine netns's `lo`: cell-to-cell and host-to-cell
 * datagrams for local addresses all pass here (see udp_steer.bpf.h). */
SEC("tc")
int l3_udp_steer(struct __sk_buff *skb)
{
	steer_udp(skb, skb->protocol, sizeof(struct ethhdr));
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
