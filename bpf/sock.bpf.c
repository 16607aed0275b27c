// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Socket-layer confinement of cells (see DESIGN.md, "Socket semantics").
 * Attached once at the managed cgroup root; every hook first resolves the
 * socket's cell from the origin recorded at socket creation (bind, connect
 * and sendmsg fall back to the calling task's cell: hook_cell).
 *
 * Private loopback: each cell owns an alias in 127/8 that stands in for
 * 127.0.0.1. IPv6 ::1 maps to the v4-mapped form of that alias, since the
 * stack has a single v6 loopback address to give.
 */
#include "cell.bpf.h"
#include <bpf/bpf_core_read.h>

struct l3_sockaddr_in {
	__u16 family;
	__u16 port;
	__u32 addr;
	__u8 zero[8];
};

struct l3_sockaddr_in6 {
	__u16 family;
	__u16 port;
	__u32 flowinfo;
	__u32 addr[4];
	__u32 scope_id;
};

static __always_inline void load_user_ip6(struct bpf_sock_addr *ctx, __u32 a[4])
{
	a[0] = ctx->user_ip6[0];
	a[1] = ctx->user_ip6[1];
	a[2] = ctx->user_ip6[2];
	a[3] = ctx->user_ip6[3];
}

/*
 * The kernel's own sock_common, as far as this file needs it: CO-RE
 * relocates the bitfield against the running kernel's BTF.
 * bpf_getsockopt cannot read IPV6_V6ONLY, so it is read here.
 */
struct sock_common___l3 {
	unsigned char skc_ipv6only : 1;
} __attribute__((preserve_access_index));

struct sock___l3 {
	struct sock_common___l3 __sk_common;
} __attribute__((preserve_access_index));

/* An IPV6_V6ONLY socket cannot take a v4-mapped address: for a v4-only
 * cell it has no family to use (jail semantics: EAFNOSUPPORT). */
static __always_inline int is_v6only(struct bpf_sock *sk)
{
	struct sock___l3 *full = (struct sock___l3 *)bpf_skc_to_tcp6_sock(sk);

	if (!full)
		full = (struct sock___l3 *)bpf_skc_to_udp6_sock(sk);
	if (!full)
		return 0;
	return BPF_CORE_READ_BITFIELD(&full->__sk_common, skc_ipv6only);
}

static __always_inline void store_user_ip6(struct bpf_sock_addr *ctx, __u32 a0, __u32 a1,
					   __u32 a2, __u32 a3)
{
	ctx->user_ip6[0] = a0;
	ctx->user_ip6[1] = a1;
	ctx->user_ip6[2] = a2;
	ctx->user_ip6[3] = a3;
}

static __always_inline void store_user_mapped(struct bpf_sock_addr *ctx, __u32 ip4)
{
	store_user_ip6(ctx, 0, 0, L3_V4MAPPED_PREFIX, ip4);
}

static __always_inline void store_user_primary6(struct bpf_sock_addr *ctx, struct l3_cell *cell)
{
	store_user_ip6(ctx, cell->primary6[0], cell->primary6[1], cell->primary6[2],
		       cell->primary6[3]);
}

/*
 * Pin the source address of an unbound socket before connect, so routing
 * never picks a host address. An already bound socket got its address
 * through the bind hook, so the -EINVAL bpf_bind returns for it is fine.
 */
static __always_inline void bind_source4(struct bpf_sock_addr *ctx, __u32 ip4)
{
	struct l3_sockaddr_in sa = {};

	sa.family = L3_AF_INET;
	sa.addr = ip4;
	bpf_bind(ctx, (struct sockaddr *)&sa, sizeof(sa));
}

static __always_inline void bind_source6(struct bpf_sock_addr *ctx, __u32 a0, __u32 a1,
					 __u32 a2, __u32 a3)
{
	struct l3_sockaddr_in6 sa = {};

	sa.family = L3_AF_INET6;
	sa.addr[0] = a0;
	sa.addr[1] = a1;
	sa.addr[2] = a2;
	sa.addr[3] = a3;
	bpf_bind(ctx, (struct sockaddr *)&sa, sizeof(sa));
}

/* ---- socket creation ------------------------------------------------- */

/*
 * The protocols whose every path a hook confines: TCP and UDP (bind,
 * connect, sendmsg, and the packet layer), ICMP ping sockets (connect hook
 * and packet layer). Anything else, MPTCP, UDP-Lite, SCTP and whatever the
 * kernel adds, would reach the stack past some hook, so a cell cannot have it.
 */
static __always_inline int confined_protocol(struct bpf_sock *sk)
{
	__u32 protocol = sk->protocol;

	if (sk->type == L3_SOCK_STREAM)
		return protocol == L3_IPPROTO_TCP;
	if (sk->type != L3_SOCK_DGRAM)
		return 0;
	if (protocol == L3_IPPROTO_UDP)
		return 1;
	if (sk->family == L3_AF_INET)
		return protocol == L3_IPPROTO_ICMP;
	return sk->family == L3_AF_INET6 && protocol == L3_IPPROTO_ICMPV6;
}

SEC("cgroup/sock_create")
int l3_sock_create(struct bpf_sock *sk)
{
	struct l3_sock_origin *origin;
	struct l3_config *config;
	struct l3_cell *cell;
	__u64 cell_id;
	int too_deep;

	config = engine_config();
	if (!config)
		return 1;
	origin = bpf_sk_storage_get(&l3_sock_origin, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!origin) {
		/* Fail closed: a socket without an origin would escape its cell. */
		bpf_set_retval(-ENOMEM);
		return 0;
	}
	too_deep = task_ancestry(config, origin);
	cell = origin_cell(origin, &cell_id);
	/* Below the recorded ancestry nobody can tell which cell the task is in. */
	if (too_deep)
		return refuse(cell_id, L3_R_TOO_DEEP, EPERM);
	if (!cell)
		return 1;
	if (sk->type == L3_SOCK_RAW) {
		if (!(cell->flags & L3_CELL_ALLOW_RAW))
			return refuse(cell_id, L3_R_SOCK_RAW, EPERM);
		return 1;
	}
	if (!confined_protocol(sk))
		return refuse(cell_id, L3_R_PROTO_REFUSED, EPROTONOSUPPORT);
	return 1;
}

/* ---- bind ------------------------------------------------------------ */

/* Remember whether the bound address came from a wildcard: sk_lookup lets
 * such a listener serve every address of its cell. */
static __always_inline void mark_wildcard(struct l3_sock_origin *origin, int wildcard)
{
	if (!origin)
		return;
	if (wildcard)
		origin->flags |= L3_SOCK_WILDCARD;
	else
		origin->flags &= ~L3_SOCK_WILDCARD;
}

SEC("cgroup/bind4")
int l3_bind4(struct bpf_sock_addr *ctx)
{
	__u32 ip4 = ctx->user_ip4;
	struct l3_sock_origin *origin;
	struct l3_cell *cell;
	__u64 cell_id;

	cell = hook_cell(ctx->sk, &origin, &cell_id);
	if (!cell) {
		if (owner_of4(ip4))
			return refuse4(ctx, 0, L3_R_BIND_CELL_ADDR, EADDRNOTAVAIL);
		return 1;
	}
	mark_wildcard(origin, ip4 == 0);
	if (ip4 == 0) {
		if (!cell->primary4)
			return refuse4(ctx, cell_id, L3_R_BIND_NOFAMILY, EAFNOSUPPORT);
		ctx->user_ip4 = cell->primary4;
		return 1;
	}
	if (ip4 == L3_IP4_LOOPBACK) {
		ctx->user_ip4 = cell->loopback4;
		return 1;
	}
	if (owned_by4(ip4, cell_id))
		return 1;
	return refuse4(ctx, cell_id, L3_R_BIND_FOREIGN, EADDRNOTAVAIL);
}

SEC("cgroup/bind6")
int l3_bind6(struct bpf_sock_addr *ctx)
{
	struct l3_sock_origin *origin;
	struct l3_cell *cell;
	__u64 cell_id;
	__u32 a[4];

	load_user_ip6(ctx, a);
	cell = hook_cell(ctx->sk, &origin, &cell_id);
	if (!cell) {
		if (ip6_is_v4mapped(a) ? !!owner_of4(a[3]) : !!owner_of6(a))
			return refuse6(ctx, 0, L3_R_BIND_CELL_ADDR, EADDRNOTAVAIL);
		return 1;
	}
	mark_wildcard(origin, ip6_is_zero(a) || (ip6_is_v4mapped(a) && a[3] == 0));
	if (ip6_is_zero(a)) {
		/* A dual-stack socket of a v4-only cell serves its v4 primary. */
		if (cell->primary6[0] | cell->primary6[1] | cell->primary6[2] | cell->primary6[3])
			store_user_primary6(ctx, cell);
		else if (cell->primary4 && !is_v6only(ctx->sk))
			store_user_mapped(ctx, cell->primary4);
		else
			return refuse6(ctx, cell_id, L3_R_BIND_NOFAMILY, EAFNOSUPPORT);
		return 1;
	}
	if (ip6_is_loopback(a)) {
		store_user_mapped(ctx, cell->loopback4);
		return 1;
	}
	if (ip6_is_v4mapped(a)) {
		if (a[3] == 0) {
			if (!cell->primary4)
				return refuse6(ctx, cell_id, L3_R_BIND_NOFAMILY, EAFNOSUPPORT);
			store_user_mapped(ctx, cell->primary4);
			return 1;
		}
		if (a[3] == L3_IP4_LOOPBACK) {
			store_user_mapped(ctx, cell->loopback4);
			return 1;
		}
		if (owned_by4(a[3], cell_id))
			return 1;
		return refuse6(ctx, cell_id, L3_R_BIND_FOREIGN, EADDRNOTAVAIL);
	}
	if (owned_by6(a, cell_id))
		return 1;
	return refuse6(ctx, cell_id, L3_R_BIND_FOREIGN, EADDRNOTAVAIL);
}

/* ---- connect (TCP, TCP fast open, connected UDP) ----------------------- */

SEC("cgroup/connect4")
int l3_connect4(struct bpf_sock_addr *ctx)
{
	struct l3_sock_origin *origin;
	__u32 dst = ctx->user_ip4;
	struct l3_cell *cell;
	__u64 cell_id;

	cell = hook_cell(ctx->sk, &origin, &cell_id);
	if (!cell) {
		if (is_cell_loopback4(dst))
			return refuse4(ctx, 0, L3_R_CONNECT_LOOPBACK, ECONNREFUSED);
		return 1;
	}
	if (dst == 0 || L3_IS_IP4_LOOPBACK_NET(dst)) {
		/* The host's loopback services are never the cell's. */
		if (dst != 0 && dst != L3_IP4_LOOPBACK && dst != cell->loopback4)
			return refuse4(ctx, cell_id, L3_R_CONNECT_LOOPBACK, ECONNREFUSED);
		ctx->user_ip4 = cell->loopback4;
		bind_source4(ctx, cell->loopback4);
		return 1;
	}
	if (!cell->primary4)
		return refuse4(ctx, cell_id, L3_R_CONNECT_NOFAMILY, EAFNOSUPPORT);
	bind_source4(ctx, cell->primary4);
	return 1;
}

SEC("cgroup/connect6")
int l3_connect6(struct bpf_sock_addr *ctx)
{
	struct l3_sock_origin *origin;
	struct l3_cell *cell;
	__u64 cell_id;
	__u32 a[4];

	load_user_ip6(ctx, a);
	cell = hook_cell(ctx->sk, &origin, &cell_id);
	if (!cell) {
		if (ip6_is_v4mapped(a) && is_cell_loopback4(a[3]))
			return refuse6(ctx, 0, L3_R_CONNECT_LOOPBACK, ECONNREFUSED);
		return 1;
	}
	if (ip6_is_zero(a) || ip6_is_loopback(a)) {
		store_user_mapped(ctx, cell->loopback4);
		bind_source6(ctx, 0, 0, L3_V4MAPPED_PREFIX, cell->loopback4);
		return 1;
	}
	if (ip6_is_v4mapped(a)) {
		__u32 dst = a[3];

		if (dst == 0 || L3_IS_IP4_LOOPBACK_NET(dst)) {
			if (dst != 0 && dst != L3_IP4_LOOPBACK && dst != cell->loopback4)
				return refuse6(ctx, cell_id, L3_R_CONNECT_LOOPBACK, ECONNREFUSED);
			store_user_mapped(ctx, cell->loopback4);
			bind_source6(ctx, 0, 0, L3_V4MAPPED_PREFIX, cell->loopback4);
			return 1;
		}
		if (!cell->primary4)
			return refuse6(ctx, cell_id, L3_R_CONNECT_NOFAMILY, EAFNOSUPPORT);
		bind_source6(ctx, 0, 0, L3_V4MAPPED_PREFIX, cell->primary4);
		return 1;
	}
	if (!(cell->primary6[0] | cell->primary6[1] | cell->primary6[2] | cell->primary6[3]))
		return refuse6(ctx, cell_id, L3_R_CONNECT_NOFAMILY, EAFNOSUPPORT);
	bind_source6(ctx, cell->primary6[0], cell->primary6[1], cell->primary6[2],
		     cell->primary6[3]);
	return 1;
}

/* ---- unconnected UDP sendmsg ------------------------------------------ */

/* Also runs for an AF_INET6 socket sending to a v4-mapped destination. */
SEC("cgroup/sendmsg4")
int l3_sendmsg4(struct bpf_sock_addr *ctx)
{
	struct l3_sock_origin *origin;
	__u32 dst = ctx->user_ip4, src = ctx->msg_src_ip4;
	struct l3_cell *cell;
	__u64 cell_id;

	cell = hook_cell(ctx->sk, &origin, &cell_id);
	if (!cell) {
		if (is_cell_loopback4(dst))
			return refuse4(ctx, 0, L3_R_SENDMSG_LOOPBACK, EPERM);
		if (src && owner_of4(src))
			return refuse4(ctx, 0, L3_R_SENDMSG_FOREIGN_SRC, EADDRNOTAVAIL);
		return 1;
	}
	if (dst == 0 || L3_IS_IP4_LOOPBACK_NET(dst)) {
		if (dst != 0 && dst != L3_IP4_LOOPBACK && dst != cell->loopback4)
			return refuse4(ctx, cell_id, L3_R_SENDMSG_LOOPBACK, EPERM);
		ctx->user_ip4 = cell->loopback4;
		if (src == 0 || src == L3_IP4_LOOPBACK) {
			ctx->msg_src_ip4 = cell->loopback4;
			return 1;
		}
	} else if (src == 0) {
		if (!cell->primary4)
			return refuse4(ctx, cell_id, L3_R_SENDMSG_NOFAMILY, EAFNOSUPPORT);
		ctx->msg_src_ip4 = cell->primary4;
		return 1;
	}
	/* An explicit source (bound address or IP_PKTINFO) must be the cell's. */
	if (owned_by4(src, cell_id))
		return 1;
	return refuse4(ctx, cell_id, L3_R_SENDMSG_FOREIGN_SRC, EADDRNOTAVAIL);
}

SEC("cgroup/sendmsg6")
int l3_sendmsg6(struct bpf_sock_addr *ctx)
{
	struct l3_sock_origin *origin;
	struct l3_cell *cell;
	__u64 cell_id;
	__u32 dst[4], src[4];

	load_user_ip6(ctx, dst);
	src[0] = ctx->msg_src_ip6[0];
	src[1] = ctx->msg_src_ip6[1];
	src[2] = ctx->msg_src_ip6[2];
	src[3] = ctx->msg_src_ip6[3];
	cell = hook_cell(ctx->sk, &origin, &cell_id);
	if (!cell) {
		if (!ip6_is_zero(src) && owner_of6(src))
			return refuse6(ctx, 0, L3_R_SENDMSG_FOREIGN_SRC, EADDRNOTAVAIL);
		return 1;
	}
	/*
	 * The kernel refuses a sendmsg6 rewrite to a v4-mapped address, so an
	 * unconnected datagram to ::1 cannot reach the cell's alias: refuse it
	 * rather than let it reach the host's ::1 (connect() first, or use
	 * 127.0.0.1).
	 */
	if (ip6_is_zero(dst) || ip6_is_loopback(dst))
		return refuse6(ctx, cell_id, L3_R_SENDMSG_LOOPBACK, EPERM);
	if (ip6_is_zero(src)) {
		if (!(cell->primary6[0] | cell->primary6[1] | cell->primary6[2] |
		      cell->primary6[3]))
			return refuse6(ctx, cell_id, L3_R_SENDMSG_NOFAMILY, EAFNOSUPPORT);
		ctx->msg_src_ip6[0] = cell->primary6[0];
		ctx->msg_src_ip6[1] = cell->primary6[1];
		ctx->msg_src_ip6[2] = cell->primary6[2];
		ctx->msg_src_ip6[3] = cell->primary6[3];
		return 1;
	}
	if (owned_by6(src, cell_id))
		return 1;
	return refuse6(ctx, cell_id, L3_R_SENDMSG_FOREIGN_SRC, EADDRNOTAVAIL);
}

/* ---- hide the alias: getsockname, getpeername, recvmsg ---------------- */

static __always_inline int unalias4(struct bpf_sock_addr *ctx)
{
	struct l3_cell *cell;
	__u64 cell_id;

	cell = sock_cell(ctx->sk, &cell_id);
	if (cell && ctx->user_ip4 == cell->loopback4)
		ctx->user_ip4 = L3_IP4_LOOPBACK;
	return 1;
}

static __always_inline int unalias6(struct bpf_sock_addr *ctx)
{
	struct l3_cell *cell;
	__u64 cell_id;
	__u32 a[4];

	load_user_ip6(ctx, a);
	cell = sock_cell(ctx->sk, &cell_id);
	if (cell && ip6_is_v4mapped(a) && a[3] == cell->loopback4)
		store_user_ip6(ctx, 0, 0, 0, bpf_htonl(1));
	return 1;
}

SEC("cgroup/getsockname4")
int l3_getsockname4(struct bpf_sock_addr *ctx)
{
	return unalias4(ctx);
}

SEC("cgroup/getpeername4")
int l3_getpeername4(struct bpf_sock_addr *ctx)
{
	return unalias4(ctx);
}

SEC("cgroup/recvmsg4")
int l3_recvmsg4(struct bpf_sock_addr *ctx)
{
	return unalias4(ctx);
}

SEC("cgroup/getsockname6")
int l3_getsockname6(struct bpf_sock_addr *ctx)
{
	return unalias6(ctx);
}

SEC("cgroup/getpeername6")
int l3_getpeername6(struct bpf_sock_addr *ctx)
{
	return unalias6(ctx);
}

SEC("cgroup/recvmsg6")
int l3_recvmsg6(struct bpf_sock_addr *ctx)
{
	return unalias6(ctx);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
