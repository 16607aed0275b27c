// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Sockets that predate `up`: they never passed cgroup/sock_create, so they
 * have no l3_sock_origin and the hooks treat them as host sockets. `doctor`
 * runs these iterators (in the engine's netns) and reports the ones whose
 * cgroup lies inside a cell: they are not confined.
 *
 * One line per socket without an origin:
 *   "<cgroup id> <family> <protocol> <local address hex> <local port>\n"
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "l3iso.h"

#define L3_AF_INET 2
#define L3_AF_INET6 10

/* The engine's pinned map (reused by name); same definition as maps.bpf.h. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct l3_sock_origin);
} l3_sock_origin SEC(".maps");

static __always_inline void report(struct seq_file *seq, struct sock *sk, int protocol)
{
	__u64 cgroup = BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u16 port = BPF_CORE_READ(sk, __sk_common.skc_num);
	__u64 args[8] = {};

	if (bpf_sk_storage_get(&l3_sock_origin, sk, 0, 0))
		return;
	args[0] = cgroup;
	args[1] = family;
	args[2] = protocol;
	args[7] = port;
	if (family == L3_AF_INET) {
		args[3] = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
	} else if (family == L3_AF_INET6) {
		args[3] = BPF_CORE_READ(sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[0]);
		args[4] = BPF_CORE_READ(sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[1]);
		args[5] = BPF_CORE_READ(sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[2]);
		args[6] = BPF_CORE_READ(sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[3]);
	} else {
		return;
	}
	/* Address words print as the little-endian u32s the CPU loaded; user
	 * space turns them back into network-order bytes. */
	static const char fmt[] = "%llu %llu %llu %08x%08x%08x%08x %llu\n";

	bpf_seq_printf(seq, fmt, sizeof(fmt), args, sizeof(args));
}

SEC("iter/tcp")
int l3_preexisting_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct tcp_sock *tp;

	if (!skc)
		return 0;
	/* Full sockets only: time-wait and request sockets carry no storage. */
	tp = bpf_skc_to_tcp_sock(skc);
	if (tp)
		report(ctx->meta->seq, (struct sock *)tp, 6);
	return 0;
}

SEC("iter/udp")
int l3_preexisting_udp(struct bpf_iter__udp *ctx)
{
	struct udp_sock *udp = ctx->udp_sk;

	if (udp)
		report(ctx->meta->seq, (struct sock *)udp, 17);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
