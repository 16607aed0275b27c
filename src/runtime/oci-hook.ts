/**
 * OCI runtime hooks (runc, and podman through its hooks.d): at
 * createRuntime the container's init exists, sits in its cgroup, and has
 * run none of the container's code, so the cell is assigned before the
 * container's first socket(). At poststop the cgroup is gone: the cell is
 * released by the id recorded at createRuntime.
 *
 * These functions do the work without the CLI, so a long-running agent can
 * call them too.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { L3isoError } from '../errors';
import { assign, parseAddresses, type AssignResult } from '../cells/cells';
import { setPolicy } from '../cells/policy';
import { parsePrefixes } from '../dataplane/prefixes';
import { releaseCellById } from '../cells/release-id';
import { EngineState } from '../dataplane/state';
import { cgroupId } from '../model/cgroup';
import {
  createRequestOf,
  poststopRequestOf,
  type OciCreateRequest,
  type OciPoststopRequest,
} from './oci-request';
import type { OciState } from './oci-state';
import { gcRecords, readRecord, removeRecord, writeRecord, type ContainerRecord } from './records';

export const HOOK_STAGES = ['createRuntime', 'poststop'] as const;
export type HookStage = (typeof HOOK_STAGES)[number];

export type HookResult =
  | { container: string; action: 'none' }
  | { container: string; action: 'assigned'; cell: AssignResult; allowFrom?: string[] }
  | {
      container: string;
      action: 'released';
      cgroupId: string;
      found: boolean;
      released: string[];
    };

/** createRuntime, directly on the engine. */
export function ociCreateRuntime(pinDir: string, state: OciState): HookResult {
  const req = createRequestOf(state);
  return req ? ociAssign(pinDir, req) : { container: state.id, action: 'none' };
}

/**
 * Makes the container's cgroup a cell and records it, or changes nothing.
 * The agent's POST /v1/oci/create-runtime runs this very function.
 */
export function ociAssign(pinDir: string, req: OciCreateRequest): HookResult {
  // Validated before anything changes.
  parseAddresses(req.addresses);
  if (req.allowFrom) parsePrefixes(req.allowFrom);
  refuseForeignCell(pinDir, req.container, req.cgroup);
  const cell = assign(pinDir, req.cgroup, req.addresses);
  const id = BigInt(cell.id);
  try {
    if (req.allowFrom) setPolicy(pinDir, cell.path, { allowFrom: req.allowFrom });
    const rec: ContainerRecord = {
      container: req.container,
      cgroupId: cell.id,
      cgroupPath: cell.path,
      addresses: [...cell.added, ...cell.unchanged],
      created: new Date().toISOString(),
    };
    writeRecord(pinDir, rec);
  } catch (err) {
    releaseCellById(pinDir, id);
    throw err;
  }
  return {
    container: req.container,
    action: 'assigned',
    cell,
    ...(req.allowFrom ? { allowFrom: req.allowFrom } : {}),
  };
}

/**
 * The container's own cgroup becomes the cell and poststop releases it
 * whole, so a cgroup that already is a cell (and is not this container's,
 * from an earlier attempt) is not taken over.
 */
function refuseForeignCell(pinDir: string, container: string, cgroupPath: string): void {
  const state = EngineState.open(pinDir);
  let existing: boolean;
  try {
    existing = state.cell(cgroupId(cgroupPath)) !== undefined;
  } finally {
    state.close();
  }
  if (!existing) return;
  const rec = readRecord(pinDir, container);
  if (rec && rec.cgroupPath === cgroupPath) return;
  throw new L3isoError(
    'EUSAGE',
    `cgroup ${cgroupPath} already is a cell: a container annotated with addresses needs a cgroup of its own`,
    'give the container its own cgroup (runc: linux.cgroupsPath; podman: the default)',
  );
}

export function ociPoststop(pinDir: string, state: OciState): HookResult {
  return ociRelease(pinDir, poststopRequestOf(state));
}

/**
 * Releases the recorded cell of a stopped container, although its cgroup is
 * gone. The agent's POST /v1/oci/poststop runs this very function.
 */
export function ociRelease(pinDir: string, req: OciPoststopRequest): HookResult {
  const rec = readRecord(pinDir, req.container);
  if (!rec) {
    if (req.annotated)
      throw new L3isoError(
        'ENOT_ASSIGNED',
        `no record of container ${req.container}: nothing to release`,
        'run `l3iso gc`',
      );
    return { container: req.container, action: 'none' };
  }
  let r: { found: boolean; released: string[] };
  try {
    r = releaseCellById(pinDir, BigInt(rec.cgroupId));
  } catch (err) {
    // A downed engine forgot every cell: the record names nothing.
    if (!(err instanceof L3isoError && err.code === 'ENOT_UP')) throw err;
    r = { found: false, released: [] };
  }
  removeRecord(pinDir, req.container);
  return {
    container: req.container,
    action: 'released',
    cgroupId: rec.cgroupId,
    found: r.found,
    released: r.released,
  };
}

// ---- hooks.d ------------------------------------------------------------

export { DEFAULT_HOOKS_DIR } from '../model/defaults';
/** Matches every io.l3iso.* annotation, not only addresses: one the hook
 * refuses (a pool, a typo) must fail the start, not be skipped. */
export const HOOK_ANNOTATION_MATCH = '^io\\.l3iso\\.';

/** What deploy/oci/*.json run: `npm install -g` links the CLI there. */
export const SHIPPED_HOOK_ARGV = ['/usr/local/bin/l3iso'] as const;

/** A hooks.d (version 1.0.0) definition running `argv... oci-hook STAGE`. */
export function hookDefinition(stage: HookStage, argv: readonly string[]): object {
  return {
    version: '1.0.0',
    hook: {
      path: argv[0],
      args: [...argv, 'oci-hook', stage],
      // runc gives a hook no environment of its own: `#!/usr/bin/env node` needs PATH.
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      timeout: 60,
    },
    when: { annotations: { [HOOK_ANNOTATION_MATCH]: '.*' } },
    stages: [stage],
  };
}

export function hookFileName(stage: HookStage): string {
  return `l3iso-${stage.toLowerCase()}.json`;
}

/** Writes both hook files (by rename: podman may be reading the dir). */
export function installHooks(dir: string, argv: readonly string[]): string[] {
  fs.mkdirSync(dir, { recursive: true });
  return HOOK_STAGES.map((stage) => {
    const file = path.join(dir, hookFileName(stage));
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(hookDefinition(stage, argv), null, 2) + '\n');
    fs.renameSync(tmp, file);
    return file;
  });
}

/** gc for records: drops those whose cell is gone (run after `gc`). */
export function gcOciRecords(pinDir: string): string[] {
  return gcRecords(pinDir, () => {
    const state = EngineState.open(pinDir);
    try {
      return new Set(state.cells().keys());
    } finally {
      state.close();
    }
  });
}
