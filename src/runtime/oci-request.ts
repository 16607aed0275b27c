/**
 * What a hook stage asks of the engine, read from the OCI state and /proc
 * without touching the engine: the hook sends it to the agent, or runs it
 * itself (oci-hook.ts). The container's cgroup is resolved here, in the
 * runtime's namespaces, where the state's pid means that container's init:
 * an agent in another PID or cgroup namespace could not resolve it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { L3isoError } from '../errors';
import { findCgroup2Mount } from '../model/cgroup';
import { cellRequest, unifiedCgroupOf, type OciState } from './oci-state';

/** createRuntime of an annotated container (agent: POST /v1/oci/create-runtime). */
export interface OciCreateRequest {
  container: string;
  /** absolute path of the container's cgroup2 directory */
  cgroup: string;
  addresses: string[];
  allowFrom?: string[];
}

/** poststop (agent: POST /v1/oci/poststop). */
export interface OciPoststopRequest {
  container: string;
  /** the state carries io.l3iso.* annotations: a missing record is an error */
  annotated: boolean;
}

/** The cgroup2 directory of `pid`, from /proc/PID/cgroup. */
export function cgroupOfPid(pid: number, procRoot = '/proc'): string {
  let text: string;
  try {
    text = fs.readFileSync(path.join(procRoot, String(pid), 'cgroup'), 'utf8');
  } catch (err) {
    throw new L3isoError(
      'ECGROUP_MISSING',
      `cannot read the cgroup of pid ${pid} (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
      undefined,
      { cause: err },
    );
  }
  const rel = unifiedCgroupOf(text);
  if (rel === undefined)
    throw new L3isoError('ECGROUP_NOT_V2', `pid ${pid} is in no cgroup2 cgroup (no 0:: line)`);
  return path.join(findCgroup2Mount(), rel);
}

/** undefined: the container has no io.l3iso.* annotation and is left alone. */
export function createRequestOf(state: OciState): OciCreateRequest | undefined {
  const req = cellRequest(state.annotations);
  if (!req) return undefined;
  if (state.pid === undefined)
    throw new L3isoError(
      'EUSAGE',
      'OCI state has no pid: createRuntime runs after the init exists',
    );
  return {
    container: state.id,
    cgroup: cgroupOfPid(state.pid),
    addresses: req.addresses,
    ...(req.allowFrom ? { allowFrom: req.allowFrom } : {}),
  };
}

export function poststopRequestOf(state: OciState): OciPoststopRequest {
  return { container: state.id, annotated: cellRequest(state.annotations) !== undefined };
}
