/**
 * The agent's endpoints: each validates its body, calls the same Engine
 * method the CLI calls (which takes the lock and reconciles), and answers
 * its result. Nothing here writes a map itself.
 */
import { StateFileError, type StateDocument } from '../declarative/schema';
import type { PolicyChange } from '../cells/policy';
import { ociAssign, ociRelease } from '../runtime/oci-hook';
import type { OciCreateRequest, OciPoststopRequest } from '../runtime/oci-request';
import { drainInChild } from './drain';
import { Engine } from '../engine/engine';
import { poolDef } from '../pools/pools';
import type { PoolBackend } from './pools';
import { HttpStatus, L3isoError } from '../errors';
import { describeError } from '../cli/output';
import type {
  ApplyRequest,
  AssignRequest,
  ErrorResponse,
  HealthResponse,
  PolicyRequest,
  PoolAddRequest,
  PoolDelRequest,
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
  /** the agent's Engine (see holder.ts) */
  engine(): Engine;
  /** a cell was assigned: watch its cgroup */
  onAssigned(id: bigint, path: string): void;
  health(): Omit<HealthResponse, 'ok' | 'pinDir' | 'up'>;
  metrics(): Promise<{ text: string; contentType: string }>;
  /** pools: this host's record, or the fleet's (etcd) */
  pools: PoolBackend;
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

function count(b: Body): number | undefined {
  const v = b.count;
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
    throw usage('"count" must be a positive integer');
  return v;
}

/** A request names its addresses, or a pool and how many of it: never both. */
type Wanted = { addresses: string[] } | { pool: string; count?: number };

function wantedOf(b: Body): Wanted {
  const addresses = strList(b, 'addresses');
  const pool = str(b, 'pool', false);
  const n = count(b);
  if ((addresses === undefined) === (pool === undefined))
    throw usage('give either "addresses" or "pool"');
  if (n !== undefined && pool === undefined) throw usage('"count" needs "pool"');
  if (addresses) return { addresses };
  return { pool: pool!, ...(n !== undefined ? { count: n } : {}) };
}

async function doAssign(ctx: RouteContext, b: Body): Promise<Reply> {
  onlyKeys(b, [
    'cgroup',
    'addresses',
    'pool',
    'count',
    'force',
    'checkLocal',
  ] satisfies (keyof AssignRequest)[]);
  const w = wantedOf(b);
  const opts = { force: bool(b, 'force') === true, checkLocal: bool(b, 'checkLocal') === true };
  const cgroup = str(b, 'cgroup', true);
  const r =
    'addresses' in w
      ? ctx.engine().assign(cgroup, w.addresses, opts)
      : await ctx.pools.assign(cgroup, w.pool, w.count ?? 1, opts);
  ctx.onAssigned(BigInt(r.id), r.path);
  return { status: 200, body: r };
}

async function doPoolAdd(ctx: RouteContext, b: Body): Promise<Reply> {
  onlyKeys(b, ['name', 'cidr', 'blockSize'] satisfies (keyof PoolAddRequest)[]);
  const size = b.blockSize;
  if (size !== undefined && (typeof size !== 'number' || !Number.isInteger(size)))
    throw usage('"blockSize" must be an integer (a prefix length)');
  const def = poolDef(str(b, 'name', true), str(b, 'cidr', true), size as number | undefined);
  return { status: 200, body: await ctx.pools.add(def) };
}

async function doPoolDel(ctx: RouteContext, b: Body): Promise<Reply> {
  onlyKeys(b, ['name', 'force'] satisfies (keyof PoolDelRequest)[]);
  return {
    status: 200,
    body: await ctx.pools.del(str(b, 'name', true), bool(b, 'force') === true),
  };
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
    return { status: 200, body: ctx.engine().releaseById(BigInt(id)) };
  }
  if (drain !== undefined)
    return {
      status: 200,
      body: await drainInChild(ctx.pinDir, cgroup!, addresses, drain as number),
    };
  return { status: 200, body: ctx.engine().release(cgroup!, addresses, { force }) };
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
  return { status: 200, body: ctx.engine().policy(str(b, 'cgroup', true), change) };
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
    return { status: 200, body: ctx.engine().apply(b.state as StateDocument, opts) };
  } catch (err) {
    // Every problem of the document, each naming its path, as the CLI prints them.
    if (err instanceof StateFileError)
      throw usage(`invalid state: ${err.errors.map((e) => `state.${e}`).join('; ')}`);
    throw err;
  }
}

/** The OCI hook's createRuntime, the hook having resolved the cgroup in the runtime's namespaces. */
async function doOciCreate(ctx: RouteContext, b: Body): Promise<Reply> {
  onlyKeys(b, [
    'container',
    'cgroup',
    'addresses',
    'pool',
    'count',
    'allowFrom',
  ] satisfies (keyof OciCreateRequest)[]);
  const w = wantedOf(b);
  const cgroup = str(b, 'cgroup', true);
  if (!cgroup.startsWith('/')) throw usage('"cgroup" must be an absolute path');
  const allowFrom = strList(b, 'allowFrom');
  const r = await ociAssign(
    ctx.engine(),
    {
      container: str(b, 'container', true),
      cgroup,
      ...w,
      ...(allowFrom ? { allowFrom } : {}),
    },
    (c, p, k) => ctx.pools.assign(c, p, k, {}),
  );
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
  const up = Engine.isUp(ctx.pinDir);
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
    case 'POST /v1/release': {
      const r = await doRelease(ctx, body);
      await ctx.pools.released();
      return r;
    }
    case 'GET /v1/pools':
      return { status: 200, body: await ctx.pools.list() };
    case 'POST /v1/pools/add':
      return doPoolAdd(ctx, body);
    case 'POST /v1/pools/del':
      return doPoolDel(ctx, body);
    case 'POST /v1/policy':
      return doPolicy(ctx, body);
    case 'GET /v1/cells':
      return { status: 200, body: ctx.engine().list() };
    case 'POST /v1/apply':
      return doApply(ctx, body);
    case 'GET /v1/status':
      return { status: 200, body: ctx.engine().status() };
    case 'GET /v1/export':
      return { status: 200, body: ctx.engine().export() };
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
    return { status: 200, body: ctx.engine().show(name) };
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
