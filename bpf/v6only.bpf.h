/* SPDX-License-Identifier: MIT */
/* IPV6_V6ONLY of a socket, for the socket hooks and sock_ops. */
#ifndef L3ISO_V6ONLY_BPF_H
#define L3ISO_V6ONLY_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/*
 * The kernel's own sock_common, as far as this needs it: CO-RE relocates
 * the bitfield against the running kernel's BTF. bpf_getsockopt cannot read
 * IPV6_V6ONLY, so it is read here.
 */
struct sock_common___l3 {
	unsigned char skc_ipv6only : 1;
} __attribute__((preserve_access_index));

struct sock___l3 {
	struct sock_common___l3 __sk_common;
} __attribute__((preserve_access_index));

/* An IPV6_V6ONLY socket cannot take a v4-mapped address nor serve IPv4. */
static __always_inline int is_v6only(struct bpf_sock *sk)
{
	struct sock___l3 *full = (struct sock___l3 *)bpf_skc_to_tcp6_sock(sk);

	if (!full)
		full = (struct sock___l3 *)bpf_skc_to_udp6_sock(sk);
	if (!full)
		return 0;
	return BPF_CORE_READ_BITFIELD(&full->__sk_common, skc_ipv6only);
}

#endif
