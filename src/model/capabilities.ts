/**
 * Capabilities that break a cell's confinement whatever BPF does (threat
 * model): each gives a way to the network, or to the engine, around the
 * hooks. `exec` drops every one of them (confine.ts); `show` and `doctor`
 * warn about any process in a cell that holds one.
 */
import * as fs from 'node:fs';

/** Bit numbers as in linux/capability.h, each with why it matters. */
export const DANGEROUS_CAPABILITIES: Readonly<Record<string, number>> = {
  /** open_by_handle_at: files outside the mount namespace (bpffs, cgroupfs) */
  dac_read_search: 2,
  /** reconfigures the shared stack: addresses, routes, netfilter, qdiscs */
  net_admin: 12,
  /** AF_PACKET and raw sockets, which no cgroup socket hook sees */
  net_raw: 13,
  /** loads kernel code */
  sys_module: 16,
  /** /dev/mem, I/O ports: the kernel's memory */
  sys_rawio: 17,
  /** ptrace and pidfd_getfd of other processes: their sockets, their addresses */
  sys_ptrace: 19,
  /** mounts (bpffs, a writable cgroupfs), namespaces, and much more */
  sys_admin: 21,
  /** kexec_load: replaces the kernel */
  sys_boot: 22,
  /** perf events and, with BPF, tracing programs that read kernel memory */
  perfmon: 38,
  /** loads BPF programs and opens any pinned map, the engine's included */
  bpf: 39,
};

export interface CapabilityWarning {
  pid: number;
  comm: string;
  capabilities: string[];
}

/** The capabilities `pid` can use: its permitted set (CapPrm of
 * /proc/PID/status, hex), since raising a permitted one into the effective
 * set takes only a capset() call. */
export function heldCapabilities(pid: number): bigint | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const prm = /^CapPrm:\s*([0-9a-f]+)$/m.exec(status);
    const eff = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
    return prm && eff ? BigInt(`0x${prm[1]}`) | BigInt(`0x${eff[1]}`) : undefined;
  } catch {
    return undefined; // exited meanwhile
  }
}

export function dangerousCapabilities(pids: readonly number[]): CapabilityWarning[] {
  const out: CapabilityWarning[] = [];
  for (const pid of pids) {
    const held = heldCapabilities(pid);
    if (held === undefined) continue;
    const names = Object.entries(DANGEROUS_CAPABILITIES)
      .filter(([, bit]) => (held >> BigInt(bit)) & 1n)
      .map(([name]) => name);
    if (names.length === 0) continue;
    let comm = '?';
    try {
      comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    } catch {
      /* exited */
    }
    out.push({ pid, comm, capabilities: names });
  }
  return out;
}
