/* SPDX-License-Identifier: MIT */
/*
 * Map definitions shared by every l3iso BPF object. The loader reuses the
 * pinned instance of each map when one exists, so all objects of an engine
 * see the same state. Sizes here are placeholders: `up` sets max_entries
 * from --max-cells before load, and hash maps do not preallocate, so a large
 * limit costs nothing until it is used.
 */
#ifndef L3ISO_MAPS_BPF_H
#define L3ISO_MAPS_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "l3iso.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct l3_config);
} l3_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 131072);
	__type(key, __u64);
	__type(value, struct l3_cell);
} l3_cells SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 524288);
	__type(key, struct l3_addr);
	__type(value, struct l3_owner);
} l3_owners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 131072);
	__type(key, __u64);
	__type(value, struct l3_cell_stats);
} l3_cell_stats SEC(".maps");

/* Refusals and drops: rare, so one shared copy per cell (atomic adds)
 * instead of one per CPU, created by the first one a cell has. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 131072);
	__type(key, __u64);
	__type(value, struct l3_cell_denials);
} l3_cell_denials SEC(".maps");

/* Reverse index of l3_owners for the control plane (struct l3_cell_slot);
 * no program reads it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 524288);
	__type(key, struct l3_cell_slot);
	__type(value, struct l3_addr);
} l3_cell_addrs SEC(".maps");

/* BPF_F_CLONE: accepted sockets inherit their listener's origin, so
 * getpeername on them still knows the cell. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct l3_sock_origin);
} l3_sock_origin SEC(".maps");

/* Cell TCP listeners for sk_lookup; sockets leave it when they close. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 131072);
	__type(key, struct l3_listen_key);
	__type(value, __u64);
} l3_listeners SEC(".maps");

/* Prefixes whose addresses belong to cells (up --managed-prefix): the
 * uplink drops traffic to, and frames from, unowned addresses inside them. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, struct l3_prefix_key);
	__type(value, __u8);
} l3_managed SEC(".maps");

/* Per-cell uplink ingress allow-lists of source prefixes. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 131072);
	__type(key, struct l3_allow_key);
	__type(value, __u8);
} l3_allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct l3_uplink);
} l3_uplinks SEC(".maps");

/* Audit events for `l3iso events`. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} l3_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct l3_event_budget);
} l3_event_budget SEC(".maps");

/* Key 0: bumped by the control plane after every change to l3_cells or
 * l3_owners; what a socket cached under an older value is resolved again. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} l3_generation SEC(".maps");

#endif
