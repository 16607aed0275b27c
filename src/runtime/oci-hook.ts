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
import { parseAddresses, type AssignResult } from '../cells/cells';
import { parsePrefixes } from '../dataplane/prefixes';
import { Engine } from '../engine/engine';
import { cgroupId } from '../model/cgroup';
import {
  createRequestOf,
  poststopRequestOf,
  type OciCreateRequest,
  type OciPoststopRequest,
} from './oci-request';
import type { OciState } from './oci-state';
import { checkPoolName } from '../pools/store';
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
export async function ociCreateRuntime(pinDir: string, state: OciState): Promise<HookResult> {
  const req = createRequestOf(state);
  return req ? ociAssign(pinDir, req) : { container: state.id, action: 'none' };
}

/** The engine to act on: one the caller holds (the agent's), or the pin dir's, opened for the call. */
function withEngine<T>(target: string | Engine, fn: (engine: Engine) => T): T {
  if (typeof target !== 'string') return fn(target);
  using engine = Engine.open(target, { write: true });
  return fn(engine);
}

/**
 * Assigns `count` addresses of a pool. In fleet mode the agent passes its
 * own (the pool and this host's blocks are in etcd); by default this host's
 * pool record.
 */
export type PoolAssigner = (cgroup: string, pool: string, count: number) => Promise<AssignResult>;

const localPool: (engine: Engine) => PoolAssigner = (engine) => (cgroup, pool, count) =>
  Promise.resolve(engine.assignFromPool(cgroup, pool, count));

/**
 * Makes the container's cgroup a cell and records it, or changes nothing.
 * The agent's POST /v1/oci/create-runtime runs this very function, on its Engine.
 */
export async function ociAssign(
  target: string | Engine,
  req: OciCreateRequest,
  pools?: PoolAssigner,
): Promise<HookResult> {
  // Validated before anything changes.
  if (req.addresses) parseAddresses(req.addresses);
  else checkPoolName(req.pool);
  if (req.allowFrom) parsePrefixes(req.allowFrom);
  if (typeof target !== 'string') return assignRecorded(target, req, pools ?? localPool(target));
  const engine = Engine.open(target, { write: true });
  try {
    return await assignRecorded(engine, req, pools ?? localPool(engine));
  } finally {
    engine.close();
  }
}

async function assignRecorded(
  engine: Engine,
  req: OciCreateRequest,
  pools: PoolAssigner,
): Promise<HookResult> {
  const pinDir = engine.pinDir;
  refuseForeignCell(engine, req.container, req.cgroup);
  const cell = req.addresses
    ? engine.assign(req.cgroup, req.addresses)
    : await pools(req.cgroup, req.pool, req.count ?? 1);
  const id = BigInt(cell.id);
  try {
    if (req.allowFrom) engine.policy(cell.path, { allowFrom: req.allowFrom });
    const rec: ContainerRecord = {
      container: req.container,
      cgroupId: cell.id,
      cgroupPath: cell.path,
      addresses: [...cell.added, ...cell.unchanged],
      created: new Date().toISOString(),
    };
    writeRecord(pinDir, rec);
  } catch (err) {
    engine.releaseById(id);
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
function refuseForeignCell(engine: Engine, container: string, cgroupPath: string): void {
  if (!engine.isCell(cgroupId(cgroupPath))) return;
  const rec = readRecord(engine.pinDir, container);
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
export function ociRelease(target: string | Engine, req: OciPoststopRequest): HookResult {
  const pinDir = typeof target === 'string' ? target : target.pinDir;
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
    r = withEngine(target, (engine) => engine.releaseById(BigInt(rec.cgroupId)));
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
export function gcOciRecords(engine: Engine): string[] {
  return gcRecords(engine.pinDir, () => engine.cellIds());
}
