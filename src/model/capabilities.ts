/**
 * Capabilities that break a cell's confinement whatever BPF does (threat
 * model): with them a process can reconfigure or sniff the shared stack.
 */
import * as fs from 'node:fs';

export const DANGEROUS_CAPABILITIES: Readonly<Record<string, number>> = {
  net_admin: 12,
  net_raw: 13,
  sys_admin: 21,
  bpf: 39,
};

export interface CapabilityWarning {
  pid: number;
  comm: string;
  capabilities: string[];
}

/** Effective capabilities of `pid` from /proc/PID/status (CapEff, hex). */
export function effectiveCapabilities(pid: number): bigint | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
    return m ? BigInt(`0x${m[1]}`) : undefined;
  } catch {
    return undefined; // exited meanwhile
  }
}

export function dangerousCapabilities(pids: readonly number[]): CapabilityWarning[] {
  const out: CapabilityWarning[] = [];
  for (const pid of pids) {
    const eff = effectiveCapabilities(pid);
    if (eff === undefined) continue;
    const held = Object.entries(DANGEROUS_CAPABILITIES)
      .filter(([, bit]) => (eff >> BigInt(bit)) & 1n)
      .map(([name]) => name);
    if (held.length === 0) continue;
    let comm = '?';
    try {
      comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    } catch {
      /* exited */
    }
    out.push({ pid, comm, capabilities: held });
  }
  return out;
}
