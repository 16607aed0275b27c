// Numbers below were checked against /usr/include/linux/bpf.h and
// linux/if_link.h (linux-libc-dev on Debian 12) unless marked otherwise.
// Values newer than that header come from the upstream uapi header and carry
// the kernel version that introduced them.

/** enum bpf_attach_type. */
export enum AttachType {
  CGROUP_INET_INGRESS = 0,
  CGROUP_INET_EGRESS = 1,
  CGROUP_INET_SOCK_CREATE = 2,
  CGROUP_SOCK_OPS = 3,
  SK_SKB_STREAM_PARSER = 4,
  SK_SKB_STREAM_VERDICT = 5,
  CGROUP_DEVICE = 6,
  SK_MSG_VERDICT = 7,
  CGROUP_INET4_BIND = 8,
  CGROUP_INET6_BIND = 9,
  CGROUP_INET4_CONNECT = 10,
  CGROUP_INET6_CONNECT = 11,
  CGROUP_INET4_POST_BIND = 12,
  CGROUP_INET6_POST_BIND = 13,
  CGROUP_UDP4_SENDMSG = 14,
  CGROUP_UDP6_SENDMSG = 15,
  LIRC_MODE2 = 16,
  FLOW_DISSECTOR = 17,
  CGROUP_SYSCTL = 18,
  CGROUP_UDP4_RECVMSG = 19,
  CGROUP_UDP6_RECVMSG = 20,
  CGROUP_GETSOCKOPT = 21,
  CGROUP_SETSOCKOPT = 22,
  TRACE_RAW_TP = 23,
  TRACE_FENTRY = 24,
  TRACE_FEXIT = 25,
  MODIFY_RETURN = 26,
  LSM_MAC = 27,
  TRACE_ITER = 28,
  CGROUP_INET4_GETPEERNAME = 29,
  CGROUP_INET6_GETPEERNAME = 30,
  CGROUP_INET4_GETSOCKNAME = 31,
  CGROUP_INET6_GETSOCKNAME = 32,
  XDP_DEVMAP = 33,
  CGROUP_INET_SOCK_RELEASE = 34,
  XDP_CPUMAP = 35,
  SK_LOOKUP = 36,
  XDP = 37,
  SK_SKB_VERDICT = 38,
  SK_REUSEPORT_SELECT = 39,
  SK_REUSEPORT_SELECT_OR_MIGRATE = 40,
  PERF_EVENT = 41,
  TRACE_KPROBE_MULTI = 42,
  LSM_CGROUP = 43,
  STRUCT_OPS = 44,
  NETFILTER = 45,
  /** Requires Linux 6.6: a tcx link on an interface's ingress. */
  TCX_INGRESS = 46,
  TCX_EGRESS = 47,
}

/** enum bpf_map_type. */
export enum MapType {
  UNSPEC = 0,
  HASH = 1,
  ARRAY = 2,
  PROG_ARRAY = 3,
  PERF_EVENT_ARRAY = 4,
  PERCPU_HASH = 5,
  PERCPU_ARRAY = 6,
  STACK_TRACE = 7,
  CGROUP_ARRAY = 8,
  LRU_HASH = 9,
  LRU_PERCPU_HASH = 10,
  LPM_TRIE = 11,
  ARRAY_OF_MAPS = 12,
  HASH_OF_MAPS = 13,
  DEVMAP = 14,
  SOCKMAP = 15,
  CPUMAP = 16,
  XSKMAP = 17,
  SOCKHASH = 18,
  CGROUP_STORAGE = 19,
  REUSEPORT_SOCKARRAY = 20,
  PERCPU_CGROUP_STORAGE = 21,
  QUEUE = 22,
  STACK = 23,
  SK_STORAGE = 24,
  DEVMAP_HASH = 25,
  STRUCT_OPS = 26,
  RINGBUF = 27,
  INODE_STORAGE = 28,
  TASK_STORAGE = 29,
  BLOOM_FILTER = 30,
  USER_RINGBUF = 31,
  /** Requires Linux 6.2 (not in the installed uapi header). */
  CGRP_STORAGE = 32,
}

/** Map types whose values are stored once per possible CPU. */
export const PER_CPU_MAP_TYPES: ReadonlySet<MapType> = new Set([
  MapType.PERCPU_HASH,
  MapType.PERCPU_ARRAY,
  MapType.LRU_PERCPU_HASH,
  MapType.PERCPU_CGROUP_STORAGE,
]);

/** enum bpf_prog_type. */
export enum ProgType {
  UNSPEC = 0,
  SOCKET_FILTER = 1,
  KPROBE = 2,
  SCHED_CLS = 3,
  SCHED_ACT = 4,
  TRACEPOINT = 5,
  XDP = 6,
  PERF_EVENT = 7,
  CGROUP_SKB = 8,
  CGROUP_SOCK = 9,
  LWT_IN = 10,
  LWT_OUT = 11,
  LWT_XMIT = 12,
  SOCK_OPS = 13,
  SK_SKB = 14,
  CGROUP_DEVICE = 15,
  SK_MSG = 16,
  RAW_TRACEPOINT = 17,
  CGROUP_SOCK_ADDR = 18,
  LWT_SEG6LOCAL = 19,
  LIRC_MODE2 = 20,
  SK_REUSEPORT = 21,
  FLOW_DISSECTOR = 22,
  CGROUP_SYSCTL = 23,
  RAW_TRACEPOINT_WRITABLE = 24,
  CGROUP_SOCKOPT = 25,
  TRACING = 26,
  STRUCT_OPS = 27,
  EXT = 28,
  LSM = 29,
  SK_LOOKUP = 30,
  SYSCALL = 31,
}

/** enum bpf_link_type. */
export enum LinkType {
  UNSPEC = 0,
  RAW_TRACEPOINT = 1,
  TRACING = 2,
  CGROUP = 3,
  ITER = 4,
  NETNS = 5,
  XDP = 6,
  PERF_EVENT = 7,
  KPROBE_MULTI = 8,
  STRUCT_OPS = 9,
  /** Requires Linux 6.4 (not in the installed uapi header). */
  NETFILTER = 10,
  /** Requires Linux 6.6 (not in the installed uapi header). */
  TCX = 11,
  /** Requires Linux 6.6 (not in the installed uapi header). */
  UPROBE_MULTI = 12,
  /** Requires Linux 6.7 (not in the installed uapi header). */
  NETKIT = 13,
}

/** Flags of bpf_map_update_elem / batch elem_flags. */
export enum MapUpdate {
  /** Create or replace. */
  ANY = 0,
  /** Fail with EEXIST if the key exists. */
  NOEXIST = 1,
  /** Fail with ENOENT if the key is missing. */
  EXIST = 2,
  /** Take the value's bpf_spin_lock while copying. */
  LOCK = 4,
}

/** map_flags of bpf_map_create (BPF_F_*). */
export enum MapFlags {
  NO_PREALLOC = 1,
  NO_COMMON_LRU = 2,
  NUMA_NODE = 4,
  RDONLY = 8,
  WRONLY = 16,
  STACK_BUILD_ID = 32,
  ZERO_SEED = 64,
  RDONLY_PROG = 128,
  WRONLY_PROG = 256,
  CLONE = 512,
  MMAPABLE = 1024,
}

/** XDP_FLAGS_* from linux/if_link.h. */
export enum XdpFlags {
  NONE = 0,
  UPDATE_IF_NOEXIST = 1,
  SKB_MODE = 2,
  DRV_MODE = 4,
  HW_MODE = 8,
  REPLACE = 16,
}

/** enum bpf_tc_attach_point (libbpf.h). */
export enum TcAttachPoint {
  INGRESS = 1,
  EGRESS = 2,
  CUSTOM = 4,
}

/** BPF_F_TEST_* flags of bpf_prog_test_run_opts. */
export enum TestRunFlags {
  RUN_ON_CPU = 1,
  XDP_LIVE_FRAMES = 2,
  SKB_CHECKSUM_COMPLETE = 4,
}
