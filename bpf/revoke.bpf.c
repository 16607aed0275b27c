// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Revocation: when an address leaves a cell, every connection bound to it
 * goes too, so no access lingers. Loaded by `up`, run by `release` as a
 * socket iterator over TCP and UDP sockets of the caller's network
 * namespace; bpf_sock_destroy (Linux 6.5+) aborts each match (a TCP peer
 * gets a RST, the application ECONNABORTED, UDP sockets an error once).
 *
 * TCP listeners are left alone: a destroyed listener makes accept() fail
 * with EINVAL forever and servers such as nginx spin on it. A listener
 * whose address is gone is unreachable anyway (sk_lookup drops new
 * connections to a RELEASING address; after the unclaim, cgroup_skb
 * ingress drops packets to a cell socket on an address its cell does not
 * own), and the kernel frees it when the application closes it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "l3iso.h"

#define L3_AF_INET6 10

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/* What to revoke: one address (this object is private to one release). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct l3_addr);
} l3_revoke_target SEC(".maps");

/* How many sockets were destroyed, for the CLI to report. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} l3_revoke_count SEC(".maps");

static __always_inline int bound_to_target(struct sock_common *skc)
{
	struct l3_addr *target;
	__u32 zero = 0;

	target = bpf_map_lookup_elem(&l3_revoke_target, &zero);
	if (!target)
		return 0;
	if (target->family == L3_FAMILY_V4)
		/* Also true for a dual-stack socket bound to ::ffff:a.b.c.d. */
		return skc->skc_rcv_saddr == target->addr[0];
	if (skc->skc_family != L3_AF_INET6)
		return 0;
	return skc->skc_v6_rcv_saddr.in6_u.u6_addr32[0] == target->addr[0] &&
	       skc->skc_v6_rcv_saddr.in6_u.u6_addr32[1] == target->addr[1] &&
	       skc->skc_v6_rcv_saddr.in6_u.u6_addr32[2] == target->addr[2] &&
	       skc->skc_v6_rcv_saddr.in6_u.u6_addr32[3] == target->addr[3];
}

static __always_inline void destroy(struct sock_common *skc)
{
	__u32 zero = 0;
	__u64 *count;

	if (bpf_sock_destroy(skc) == 0) {
		count = bpf_map_lookup_elem(&l3_revoke_count, &zero);
		if (count)
			__sync_fetch_and_add(count, 1);
	}
}

#define L3_TCP_LISTEN 10

SEC("iter/tcp")
int l3_revoke_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;

	if (skc && skc->skc_state != L3_TCP_LISTEN && bound_to_target(skc))
		destroy(skc);
	return 0;
}

SEC("iter/udp")
int l3_revoke_udp(struct bpf_iter__udp *ctx)
{
	struct udp_sock *udp = ctx->udp_sk;
	struct sock_common *skc;

	if (!udp)
		return 0;
	skc = &udp->inet.sk.__sk_common;
	if (bound_to_target(skc))
		destroy(skc);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
