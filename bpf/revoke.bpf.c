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

/* The addresses being revoked: one walk of the socket tables serves all of
 * them (a release of N addresses walks twice, not 2N times). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, L3_REVOKE_BATCH);
	__type(key, struct l3_addr);
	__type(value, __u8);
} l3_revoke_target SEC(".maps");

/* Destroyed (L3_REVOKE_DESTROY) or counted (L3_REVOKE_COUNT) sockets. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} l3_revoke_count SEC(".maps");

/* Key 0: L3_REVOKE_DESTROY or L3_REVOKE_COUNT. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} l3_revoke_mode SEC(".maps");

static __always_inline int bound_to_target(struct sock_common *skc)
{
	struct l3_addr key = {};

	/* Also true for a dual-stack socket bound to ::ffff:a.b.c.d. */
	key.family = L3_FAMILY_V4;
	key.addr[0] = skc->skc_rcv_saddr;
	if (bpf_map_lookup_elem(&l3_revoke_target, &key))
		return 1;
	if (skc->skc_family != L3_AF_INET6)
		return 0;
	key.family = L3_FAMILY_V6;
	key.addr[0] = skc->skc_v6_rcv_saddr.in6_u.u6_addr32[0];
	key.addr[1] = skc->skc_v6_rcv_saddr.in6_u.u6_addr32[1];
	key.addr[2] = skc->skc_v6_rcv_saddr.in6_u.u6_addr32[2];
	key.addr[3] = skc->skc_v6_rcv_saddr.in6_u.u6_addr32[3];
	return bpf_map_lookup_elem(&l3_revoke_target, &key) != 0;
}

static __always_inline int counting(void)
{
	__u32 zero = 0;
	__u32 *mode = bpf_map_lookup_elem(&l3_revoke_mode, &zero);

	return mode && *mode == L3_REVOKE_COUNT;
}

static __always_inline void bump(void)
{
	__u32 zero = 0;
	__u64 *count = bpf_map_lookup_elem(&l3_revoke_count, &zero);

	if (count)
		__sync_fetch_and_add(count, 1);
}

static __always_inline void destroy(struct sock_common *skc)
{
	if (bpf_sock_destroy(skc) == 0)
		bump();
}

#define L3_TCP_TIME_WAIT 6
#define L3_TCP_LISTEN 10
#define L3_TCP_NEW_SYN_RECV 12

SEC("iter/tcp")
int l3_revoke_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	int state;

	if (!skc || !bound_to_target(skc))
		return 0;
	state = skc->skc_state;
	if (counting()) {
		/* What `release` calls live: sockets a process can hold. */
		if (state != L3_TCP_TIME_WAIT && state != L3_TCP_NEW_SYN_RECV)
			bump();
	} else if (state != L3_TCP_LISTEN) {
		destroy(skc);
	}
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
	if (!bound_to_target(skc))
		return 0;
	if (counting())
		bump();
	else
		destroy(skc);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
