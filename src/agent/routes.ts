/**
 * The agent's endpoints: each validates its body, calls the same engine
 * function the CLI calls (which takes the lock and reconciles), and answers
 * its result. Nothing here writes a map itself.
 */
import { applyState } from '../declarative/apply';
import { engineStatus, exportState } from '../declarative/export';
import { StateFileError, type StateDocument } from '../declarative/schema';
import { assign, release } from '../cells/cells';
import { listCells, showCell } from '../cells/inventory';
import { setPolicy, type PolicyChange } from '../cells/policy';
import { releaseCellById } from '../cells/release-id';
import { ociAssign, ociRelease } from '../runtime/oci-hook';
import type { OciCreateRequest, OciPoststopRequest } from '../runtime/oci-request';
import { drainInChild } from './drain';
import { EngineState } from '../dataplane/state';
import { HttpStatus, L3isoError } from '../errors';
import { describeError } from '../cli/output';
import type {
  ApplyRequest,
  AssignRequest,
  ErrorResponse,
  HealthResponse,
  PolicyRequest,
  ReleaseRequest,
} from './api';

export interface Reply {
  status: number;
  /** a JSON value, or text (GET /metrics) */
  body: unknown;
  contentType?: string;
}

export interface RouteContext {
  pinDir: string;
  /** a cell was assigned: watch its cgroup */
  onAssigned(id: bigint, path: string): void;
  health(): Omit<HealthResponse, 'ok' | 'pinDir' | 'up'>;
  metrics(): Promise<{ text: string; contentType: string }>;
}

type Body = Record<string, unknown>;

function usage(message: string): L3isoError {
  return new L3isoError('EUSAGE', message);
}

function str(b: Body, key: string, required: true): string;
function str(b: Body, key: string, required: false): string | undefined;
function str(b: Body, key: string, required: boolean): string | undefined {
  const v = b[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v === '') throw usage(`"${key}" must be a non-empty string`);
  return v;
}

function strList(b: Body, key: string): string[] | undefined {
  const v = b[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string'))
    throw usage(`"${key}" must be an array of strings`);
  return v as string[];
}

function bool(b: Body, key: string): boolean | undefined {
  const v = b[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw usage(`"${key}" must be true or false`);
  return v;
}

function onlyKeys(b: Body, keys: readonly string[]): void {
  const extra = Object.keys(b).filter((k) => !keys.includes(k));
  if (extra.length) throw usage(`unknown field${extra.length > 1 ? 's' : ''}: ${extra.join(', ')}`);
}

function doAssign(ctx: RouteContext, b: Body): Reply {
  onlyKeys(b, ['cgroup', 'addresses', 'force', 'checkLocal'] satisfies (keyof AssignRequest)[]);
  const addresses = strList(b, 'addresses');
  if (!addresses) throw usage('"addresses" is required');
  const r = assign(ctx.pinDir, str(b, 'cgroup', true), addresses, {
    force: bool(b, 'force') === true,
    checkLocal: bool(b, 'checkLocal') === true,
  });
  ctx.onAssigned(BigInt(r.id), r.path);
  return { status: 200, body: r };
}

async function doRelease(ctx: RouteContext, b: Body): Promise<Reply> {
  onlyKeys(b, [
    'cgroup',
    'id',
    'addresses',
    'force',
    'drainSeconds',
  ] satisfies (keyof ReleaseRequest)[]);
  const cgroup = str(b, 'cgroup', false);
  const id = str(b, 'id', false);
  const addresses = strList(b, 'addresses') ?? [];
  const force = bool(b, 'force') === true;
  const drain = b.drainSeconds;
  if (drain !== undefined && (typeof drain !== 'number' || !(drain > 0) || !isFinite(drain)))
    throw usage('"drainSeconds" must be a positive number');
  if (force && drain !== undefined) throw usage('force and drainSeconds exclude each other');
  if ((cgroup === undefined) === (id === undefined)) throw usage('give either "cgroup" or "id"');
  if (id !== undefined) {
    if (!/^[1-9][0-9]{0,19}$/.test(id)) throw usage('"id" must be a cgroup id (decimal)');
    if (addresses.length || drain !== undefined)
      throw usage('release by id is of the whole cell: no addresses, no drain');
    return { status: 200, body: releaseCellById(ctx.pinDir, BigInt(id)) };
  }
  if (drain !== undefined)
    return {
      status: 200,
      body: await drainInChild(ctx.pinDir, cgroup!, addresses, drain as number),
    };
  return { status: 200, body: release(ctx.pinDir, cgroup!, addresses, { force }) };
}

function doPolicy(ctx: RouteContext, b: Body): Reply {
  onlyKeys(b, [
    'cgroup',
    'allowRaw',
    'allowFrom',
    'clearAllowList',
  ] satisfies (keyof PolicyRequest)[]);
  const allowRaw = bool(b, 'allowRaw');
  const allowFrom = strList(b, 'allowFrom');
  const clear = bool(b, 'clearAllowList');
  const change: PolicyChange = {
    ...(allowRaw !== undefined ? { allowRaw } : {}),
    ...(allowFrom ? { allowFrom } : {}),
    ...(clear ? { clearAllowList: true } : {}),
  };
  if (Object.keys(change).length === 0)
    throw usage('policy needs allowRaw, allowFrom or clearAllowList');
  return { status: 200, body: setPolicy(ctx.pinDir, str(b, 'cgroup', true), change) };
}

function doApply(ctx: RouteContext, b: Body): Reply {
  onlyKeys(b, [
    'state',
    'prune',
    'dryRun',
    'force',
    'createCgroups',
  ] satisfies (keyof ApplyRequest)[]);
  if (typeof b.state !== 'object' || b.state === null || Array.isArray(b.state))
    throw usage('"state" must be the state document (an object, as `l3iso export` prints)');
  const opts = {
    prune: bool(b, 'prune') === true,
    dryRun: bool(b, 'dryRun') === true,
    force: bool(b, 'force') === true,
    createCgroups: bool(b, 'createCgroups') === true,
  };
  try {
    return { status: 200, body: applyState(ctx.pinDir, b.state as StateDocument, opts) };
  } catch (err) {
    // Every problem of the document, each naming its path, as the CLI prints them.
    if (err instanceof StateFileError)
      throw usage(`invalid state: ${err.errors.map((e) => `state.${e}`).join('; ')}`);
    throw err;
  }
}

/** The OCI hook's createRuntime, the hook having resolved the cgroup in the runtime's namespaces. */
function doOciCreate(ctx: RouteContext, b: Body): Reply {
  onlyKeys(b, [
    'container',
    'cgroup',
    'addresses',
    'allowFrom',
  ] satisfies (keyof OciCreateRequest)[]);
  const addresses = strList(b, 'addresses');
  if (!addresses) throw usage('"addresses" is required');
  const cgroup = str(b, 'cgroup', true);
  if (!cgroup.startsWith('/')) throw usage('"cgroup" must be an absolute path');
  const allowFrom = strList(b, 'allowFrom');
  const r = ociAssign(ctx.pinDir, {
    container: str(b, 'container', true),
    cgroup,
    addresses,
    ...(allowFrom ? { allowFrom } : {}),
  });
  if (r.action === 'assigned') ctx.onAssigned(BigInt(r.cell.id), r.cell.path);
  return { status: 200, body: r };
}

function doOciPoststop(ctx: RouteContext, b: Body): Reply {
  onlyKeys(b, ['container', 'annotated'] satisfies (keyof OciPoststopRequest)[]);
  const annotated = bool(b, 'annotated');
  if (annotated === undefined) throw usage('"annotated" is required');
  return {
    status: 200,
    body: ociRelease(ctx.pinDir, { container: str(b, 'container', true), annotated }),
  };
}

function health(ctx: RouteContext): Reply {
  const up = EngineState.isUp(ctx.pinDir);
  const body: HealthResponse = { ok: up, pinDir: ctx.pinDir, up, ...ctx.health() };
  return { status: up ? 200 : 503, body };
}

/** Maps one request to its endpoint. `body` is the parsed JSON (POST) or {}. */
export async function route(
  ctx: RouteContext,
  method: string,
  url: string,
  body: Body,
): Promise<Reply> {
  const path = url.split('?')[0]!;
  const key = `${method} ${path}`;
  switch (key) {
    case 'POST /v1/assign':
      return doAssign(ctx, body);
    case 'POST /v1/release':
      return doRelease(ctx, body);
    case 'POST /v1/policy':
      return doPolicy(ctx, body);
    case 'GET /v1/cells':
      return { status: 200, body: listCells(ctx.pinDir) };
    case 'POST /v1/apply':
      return doApply(ctx, body);
    case 'GET /v1/status':
      return { status: 200, body: engineStatus(ctx.pinDir) };
    case 'GET /v1/export':
      return { status: 200, body: exportState(ctx.pinDir) };
    case 'POST /v1/oci/create-runtime':
      return doOciCreate(ctx, body);
    case 'POST /v1/oci/poststop':
      return doOciPoststop(ctx, body);
    case 'GET /healthz':
      return health(ctx);
    case 'GET /metrics': {
      const m = await ctx.metrics();
      return { status: 200, body: m.text, contentType: m.contentType };
    }
  }
  if (method === 'GET' && path.startsWith('/v1/cells/')) {
    const name = decodeURIComponent(path.slice('/v1/cells/'.length));
    if (name === '') throw usage('GET /v1/cells/{name} needs a cell name');
    return { status: 200, body: showCell(ctx.pinDir, name) };
  }
  throw new L3isoError('ENOT_FOUND', `no endpoint ${key}`, 'see README "Agent" for the API');
}

/** The error answer for anything a route threw, with its HTTP status. */
export function errorReply(err: unknown): Reply {
  const report = describeError(err);
  const status =
    report.code in HttpStatus ? HttpStatus[report.code as keyof typeof HttpStatus] : 500;
  const body: ErrorResponse = { error: report as ErrorResponse['error'] };
  return { status, body };
}
