/* SPDX-License-Identifier: MIT */
/* Cell resolution, address ownership and refusal accounting, shared by the
 * socket hooks. */
#ifndef L3ISO_CELL_BPF_H
#define L3ISO_CELL_BPF_H

#include <linux/bpf.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.bpf.h"

/* glibc's socket constants are off limits under -target bpf. */
#define L3_AF_INET 2
#define L3_AF_INET6 10
#define L3_SOCK_STREAM 1
#define L3_SOCK_DGRAM 2
#define L3_SOCK_RAW 3
#define L3_IPPROTO_ICMP 1
#define L3_IPPROTO_TCP 6
#define L3_IPPROTO_UDP 17
#define L3_IPPROTO_ICMPV6 58

#define L3_IP4_LOOPBACK bpf_htonl(0x7f000001)
#define L3_IS_IP4_LOOPBACK_NET(a) ((bpf_ntohl(a) >> 24) == 127)
#define L3_V4MAPPED_PREFIX bpf_htonl(0x0000ffff)

static __always_inline struct l3_sock_origin *sock_origin(struct bpf_sock *sk)
{
	if (!sk)
		return NULL;
	return bpf_sk_storage_get(&l3_sock_origin, sk, 0, 0);
}

/* The control plane's generation (l3_generation), as the cache words hold
 * it; 0 turns the cache off. Read before every lookup whose result may be
 * cached: a change made after the read bumps it past what is stored. */
static __always_inline __u64 l3_gen(void)
{
	__u32 zero = 0;
	__u64 *gen = bpf_map_lookup_elem(&l3_generation, &zero);

	return gen ? *(volatile __u64 *)gen & L3_GEN_MASK : 0;
}

/* Level (1-based) of the nearest assigned ancestor in the origin, 0: none. */
static __always_inline __u32 origin_walk(struct l3_sock_origin *origin, __u64 *cell_id)
{
	__u32 depth = origin->depth;
	int i;

	*cell_id = 0;
	for (i = L3_MAX_DEPTH - 1; i >= 0; i--) {
		__u64 id;

		if ((__u32)i >= depth)
			continue;
		id = origin->ancestors[i];
		if (bpf_map_lookup_elem(&l3_cells, &id)) {
			*cell_id = id;
			return i + 1;
		}
	}
	return 0;
}

/*
 * The id of the cell a socket belongs to (0: none): the nearest assigned
 * ancestor of the cgroup its creator ran in, as recorded at socket
 * creation. Resolved once per socket and generation, then read from the
 * socket's cache: the walk costs up to 16 lookups, the cache none.
 */
static __always_inline __u64 origin_cell_id(struct l3_sock_origin *origin, __u64 gen)
{
	__u64 word, id;
	__u32 level;

	if (!origin)
		return 0;
	word = *(volatile __u64 *)&origin->cell_cache;
	if (gen && (word >> L3_CACHE_SHIFT) == gen) {
		level = word & 0xff;
		if (level == 0)
			return 0;
		if (level <= L3_MAX_DEPTH)
			return origin->ancestors[(level - 1) & (L3_MAX_DEPTH - 1)];
	}
	level = origin_walk(origin, &id);
	/* One store: the level and the generation it holds for travel together. */
	if (gen)
		*(volatile __u64 *)&origin->cell_cache = gen << L3_CACHE_SHIFT | level;
	return id;
}

/*
 * The cell a socket belongs to, for hooks that need its addresses. Sockets
 * without an origin (created before `up`) and sockets outside every cell
 * get 0/NULL.
 */
static __always_inline struct l3_cell *origin_cell(struct l3_sock_origin *origin, __u64 *cell_id)
{
	struct l3_cell *cell;
	__u64 id;

	*cell_id = 0;
	if (!origin)
		return NULL;
	id = origin_cell_id(origin, l3_gen());
	if (!id)
		return NULL;
	cell = bpf_map_lookup_elem(&l3_cells, &id);
	if (!cell) {
		/* Removed, its bump not yet made: ask the maps themselves. */
		origin_walk(origin, &id);
		if (!id)
			return NULL;
		cell = bpf_map_lookup_elem(&l3_cells, &id);
		if (!cell)
			return NULL;
	}
	*cell_id = id;
	return cell;
}

/*
 * The address cache vouches for one address: the socket's own, as the
 * kernel keeps it (bound or connected), which the socket hooks confined.
 * Packets with any other address take the lookups every time.
 */
static __always_inline int is_sock_addr(struct bpf_sock *sk, __u32 family, const __u32 a[4])
{
	__u32 s0, s1, s2, s3;

	/* Each field loaded from sk itself: the verifier refuses arithmetic
	 * on a socket pointer, which clang would otherwise share. */
	if (family == L3_FAMILY_V4) {
		s0 = sk->src_ip4;
		return a[0] && s0 == a[0];
	}
	asm volatile("" : "+r"(sk));
	s0 = sk->src_ip6[0];
	asm volatile("" : "+r"(sk));
	s1 = sk->src_ip6[1];
	asm volatile("" : "+r"(sk));
	s2 = sk->src_ip6[2];
	asm volatile("" : "+r"(sk));
	s3 = sk->src_ip6[3];
	return (a[0] | a[1] | a[2] | a[3]) && s0 == a[0] && s1 == a[1] && s2 == a[2] && s3 == a[3];
}

/* The address was verified for this socket's cell in this generation: for a
 * cell socket, owned by its cell; for any other, owned by no cell.
 * not_loopback: only if it is not the cell's loopback alias either. */
static __always_inline int addr_cached(struct l3_sock_origin *origin, __u64 gen, __u32 family,
				       const __u32 a[4], int not_loopback)
{
	__u64 word = *(volatile __u64 *)&origin->addr_cache;

	if (!gen || (word >> L3_CACHE_SHIFT) != gen || (word & L3_ADDR_OK_FAMILY) != family)
		return 0;
	if (not_loopback && (word & L3_ADDR_OK_LOOPBACK))
		return 0;
	if (family == L3_FAMILY_V4)
		return origin->addr[0] == a[0];
	return origin->addr[0] == a[0] && origin->addr[1] == a[1] && origin->addr[2] == a[2] &&
	       origin->addr[3] == a[3];
}

static __always_inline void addr_remember(struct l3_sock_origin *origin, __u64 gen, __u32 family,
					  const __u32 a[4], struct l3_owner *owner)
{
	if (!gen)
		return;
	origin->addr[0] = a[0];
	origin->addr[1] = family == L3_FAMILY_V4 ? 0 : a[1];
	origin->addr[2] = family == L3_FAMILY_V4 ? 0 : a[2];
	origin->addr[3] = family == L3_FAMILY_V4 ? 0 : a[3];
	/* The word last (x86-64 keeps stores in order): valid only once the
	 * address it vouches for is in place. */
	asm volatile("" ::: "memory");
	*(volatile __u64 *)&origin->addr_cache =
		gen << L3_CACHE_SHIFT | family |
		(owner && (owner->flags & L3_OWNER_LOOPBACK) ? L3_ADDR_OK_LOOPBACK : 0);
}

static __always_inline struct l3_cell *sock_cell(struct bpf_sock *sk, __u64 *cell_id)
{
	return origin_cell(sock_origin(sk), cell_id);
}

static __always_inline struct l3_config *engine_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&l3_config, &zero);
}

/*
 * Records the current task's cgroup ancestry from the managed root down, as
 * an origin holds it. Returns 1 when the task sits below the deepest level
 * an origin can hold: its own cgroup is then not recorded, and nobody can
 * tell from the origin whether it is in a cell.
 */
static __always_inline int task_ancestry(struct l3_config *config, struct l3_sock_origin *origin)
{
	__u32 depth = 0;
	int i;

	for (i = 0; i < L3_MAX_DEPTH; i++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(config->root_level + i);

		if (!id)
			break;
		origin->ancestors[i] = id;
		depth = i + 1;
	}
	origin->depth = depth;
	return depth == L3_MAX_DEPTH &&
	       bpf_get_current_ancestor_cgroup_id(config->root_level + L3_MAX_DEPTH) != 0;
}

/*
 * The cell a socket hook in task context (bind, connect, sendmsg) confines
 * the socket to. Normally the socket's own (origin_cell). A socket whose
 * origin names no cell (none at all: made before `up`, or by the kernel on
 * the task's behalf, as MPTCP subflows and SMC's TCP sockets are; or a
 * socket made outside every cell) but used by a task inside a cell is that
 * cell's: fail closed, never a host socket. It is adopted, its origin
 * rewritten to the task's ancestry, so sock_ops, sk_lookup and the packet
 * layer see the cell from then on too. *origin_out is the socket's origin
 * after that (NULL when it has none).
 */
static __always_inline struct l3_cell *hook_cell(struct bpf_sock *sk,
						 struct l3_sock_origin **origin_out,
						 __u64 *cell_id)
{
	struct l3_sock_origin *origin = sock_origin(sk);
	struct l3_sock_origin task = {};
	struct l3_config *config;
	struct l3_cell *cell;

	*origin_out = origin;
	cell = origin_cell(origin, cell_id);
	if (cell || !sk)
		return cell;
	config = engine_config();
	/* A task outside the managed root is in no cell. */
	if (!config || bpf_get_current_ancestor_cgroup_id(config->root_level) != config->root_cgroup)
		return NULL;
	task_ancestry(config, &task);
	cell = origin_cell(&task, cell_id);
	if (!cell)
		return NULL;
	if (!origin)
		origin = bpf_sk_storage_get(&l3_sock_origin, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (origin) {
		task.flags = origin->flags;
		*origin = task;
	}
	*origin_out = origin;
	return cell;
}

static __always_inline struct l3_owner *owner_of4(__u32 ip4)
{
	struct l3_addr key = {};

	key.family = L3_FAMILY_V4;
	key.addr[0] = ip4;
	return bpf_map_lookup_elem(&l3_owners, &key);
}

static __always_inline struct l3_owner *owner_of6(const __u32 ip6[4])
{
	struct l3_addr key = {};

	key.family = L3_FAMILY_V6;
	key.addr[0] = ip6[0];
	key.addr[1] = ip6[1];
	key.addr[2] = ip6[2];
	key.addr[3] = ip6[3];
	return bpf_map_lookup_elem(&l3_owners, &key);
}

/* The cell may put the address on a new socket (bind, explicit source). */
static __always_inline int usable_by(struct l3_owner *owner, __u64 cell_id)
{
	return owner && owner->cell == cell_id &&
	       !(owner->flags & (L3_OWNER_RELEASING | L3_OWNER_DRAINING));
}

static __always_inline int owned_by4(__u32 ip4, __u64 cell_id)
{
	return usable_by(owner_of4(ip4), cell_id);
}

static __always_inline int owned_by6(const __u32 ip6[4], __u64 cell_id)
{
	return usable_by(owner_of6(ip6), cell_id);
}

/* Loopback aliases are private: only their own cell may reach them. */
static __always_inline int is_cell_loopback4(__u32 ip4)
{
	struct l3_owner *owner;

	if (!L3_IS_IP4_LOOPBACK_NET(ip4))
		return 0;
	owner = owner_of4(ip4);
	return owner && (owner->flags & L3_OWNER_LOOPBACK);
}

/* At most L3_EVENTS_PER_SEC events per CPU and second; the rest are only
 * counted, so a flood of refusals cannot flood user space. */
static __always_inline struct l3_event_budget *event_budget(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&l3_event_budget, &zero);
}

static __always_inline int event_budget_ok(struct l3_event_budget *budget)
{
	__u64 now;

	if (!budget)
		return 0;
	now = bpf_ktime_get_ns() / 1000000000ULL;
	if (budget->window != now) {
		budget->window = now;
		budget->sent = 0;
	}
	if (budget->sent >= L3_EVENTS_PER_SEC) {
		budget->suppressed++;
		return 0;
	}
	budget->sent++;
	return 1;
}

/* in_task: called in process context, where pid and comm mean something
 * (a constant at every call site, so packet programs never see the task
 * helpers). */
static __always_inline void emit_event(__u64 cell_id, __u32 kind, __u32 reason, __u8 family,
				       const __u32 addr[4], __u16 port, int in_task)
{
	struct l3_event_budget *budget = event_budget();
	struct l3_event *e;

	if (!event_budget_ok(budget))
		return;
	e = bpf_ringbuf_reserve(&l3_events, sizeof(*e), 0);
	if (!e) {
		/* The reader fell behind and the ring is full: lost, but counted. */
		if (budget)
			budget->suppressed++;
		return;
	}
	e->time_ns = bpf_ktime_get_ns();
	e->cell = cell_id;
	e->kind = kind;
	e->reason = reason;
	e->family = family;
	e->pad = 0;
	e->port = port;
	e->addr[0] = addr ? addr[0] : 0;
	e->addr[1] = addr ? addr[1] : 0;
	e->addr[2] = addr ? addr[2] : 0;
	e->addr[3] = addr ? addr[3] : 0;
	if (in_task) {
		e->pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(e->comm, sizeof(e->comm));
	} else {
		e->pid = 0;
		__builtin_memset(e->comm, 0, sizeof(e->comm));
	}
	bpf_ringbuf_submit(e, 0);
}

/*
 * Bumps slot `slot` of the cell's l3_cell_denials entry. The first denial of
 * a cell creates the entry, only while the cell exists (a release deletes
 * its entry after its l3_cells entry; gc removes one a racing first denial
 * recreates). Not inlined: it is off the per-packet path, and its zeroed
 * value stays off the callers' stack.
 */
static __noinline void count_denial(__u64 cell_id, __u32 slot)
{
	struct l3_cell_denials *d = bpf_map_lookup_elem(&l3_cell_denials, &cell_id);

	if (!d) {
		struct l3_cell_denials zero = {};

		if (cell_id && !bpf_map_lookup_elem(&l3_cells, &cell_id))
			return;
		bpf_map_update_elem(&l3_cell_denials, &cell_id, &zero, BPF_NOEXIST);
		d = bpf_map_lookup_elem(&l3_cell_denials, &cell_id);
		if (!d)
			return;
	}
	if (slot < L3_REFUSED_SLOTS + L3_DROP_SLOTS)
		__sync_fetch_and_add((__u64 *)d + slot, 1);
}

static __always_inline void count_drop(__u64 cell_id, __u32 reason)
{
	if (reason < L3_DROP_SLOTS)
		count_denial(cell_id, L3_REFUSED_SLOTS + reason);
}

static __always_inline void count_refusal(__u64 cell_id, __u32 reason)
{
	if (reason < L3_REFUSED_SLOTS)
		count_denial(cell_id, reason);
}

/* Refuse the operation with a chosen errno (bpf_set_retval, Linux 5.18+)
 * rather than the EPERM a plain `return 0` gives, as jails do. */
static __always_inline int refuse(__u64 cell_id, __u32 reason, int err)
{
	count_refusal(cell_id, reason);
	emit_event(cell_id, L3_EV_REFUSED, reason, 0, NULL, 0, 1);
	bpf_set_retval(-err);
	return 0;
}

/* As refuse(), with the address and port the socket call named. The family
 * is fixed per hook: v4 hooks may not read user_ip6, nor v6 hooks user_ip4. */
static __always_inline int refuse4(struct bpf_sock_addr *ctx, __u64 cell_id, __u32 reason, int err)
{
	__u32 addr[4] = {};

	addr[0] = ctx->user_ip4;
	count_refusal(cell_id, reason);
	emit_event(cell_id, L3_EV_REFUSED, reason, L3_FAMILY_V4, addr,
		   bpf_ntohs((__u16)ctx->user_port), 1);
	bpf_set_retval(-err);
	return 0;
}

static __always_inline int refuse6(struct bpf_sock_addr *ctx, __u64 cell_id, __u32 reason, int err)
{
	__u32 addr[4];

	addr[0] = ctx->user_ip6[0];
	addr[1] = ctx->user_ip6[1];
	addr[2] = ctx->user_ip6[2];
	addr[3] = ctx->user_ip6[3];
	count_refusal(cell_id, reason);
	emit_event(cell_id, L3_EV_REFUSED, reason, L3_FAMILY_V6, addr,
		   bpf_ntohs((__u16)ctx->user_port), 1);
	bpf_set_retval(-err);
	return 0;
}

static __always_inline int ip6_is_zero(const __u32 a[4])
{
	return !(a[0] | a[1] | a[2] | a[3]);
}

static __always_inline int ip6_is_loopback(const __u32 a[4])
{
	return !(a[0] | a[1] | a[2]) && a[3] == bpf_htonl(1);
}

static __always_inline int ip6_is_v4mapped(const __u32 a[4])
{
	return !(a[0] | a[1]) && a[2] == L3_V4MAPPED_PREFIX;
}

#endif
