/**
 * The OCI state a runtime passes to a hook on stdin (runtime-spec
 * "State": ociVersion, id, status, pid, bundle, annotations) and the
 * io.l3iso.* annotations that ask for a cell. Everything is validated
 * before anything changes: a malformed request fails the container start.
 */
import { L3isoError } from '../errors';

export interface OciState {
  ociVersion: string;
  id: string;
  status: string;
  /** the container's init; absent (or 0) once it has exited */
  pid?: number;
  bundle: string;
  annotations: Record<string, string>;
}

export const ANNOTATION_PREFIX = 'io.l3iso.';
export const ANNOTATION_ADDRESSES = 'io.l3iso.addresses';
export const ANNOTATION_ALLOW_FROM = 'io.l3iso.allow-from';
export const ANNOTATION_POOL = 'io.l3iso.pool';
export const ANNOTATION_POOL_COUNT = 'io.l3iso.pool-count';
const KNOWN = new Set([
  ANNOTATION_ADDRESSES,
  ANNOTATION_ALLOW_FROM,
  ANNOTATION_POOL,
  ANNOTATION_POOL_COUNT,
]);

/** runc's rule for container ids (also a safe file name: no '/', no '..'). */
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,1023}$/;

function bad(message: string): L3isoError {
  return new L3isoError('EUSAGE', `OCI state: ${message}`);
}

function field(o: Record<string, unknown>, name: string): string {
  const v = o[name];
  if (typeof v !== 'string') throw bad(`"${name}" must be a string`);
  return v;
}

export function parseOciState(text: string): OciState {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw bad('stdin is not JSON (the runtime passes the container state there)');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('not a JSON object');
  const o = raw as Record<string, unknown>;
  const id = field(o, 'id');
  if (!CONTAINER_ID.test(id)) throw bad(`container id ${JSON.stringify(id)} is not valid`);
  const pid = o.pid;
  if (pid !== undefined && (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid < 0))
    throw bad('"pid" must be a non-negative integer');
  const annotations: Record<string, string> = {};
  const ann = o.annotations;
  if (ann !== undefined && ann !== null) {
    if (typeof ann !== 'object' || Array.isArray(ann)) throw bad('"annotations" must be an object');
    for (const [k, v] of Object.entries(ann)) {
      if (typeof v !== 'string') throw bad(`annotation ${k} must be a string`);
      annotations[k] = v;
    }
  }
  return {
    ociVersion: field(o, 'ociVersion'),
    id,
    status: field(o, 'status'),
    ...(typeof pid === 'number' && pid > 0 ? { pid } : {}),
    bundle: typeof o.bundle === 'string' ? o.bundle : '',
    annotations,
  };
}

/** Named addresses, or `count` addresses of a pool (never both). */
export type CellRequest = (
  | { addresses: string[]; pool?: undefined }
  | { addresses?: undefined; pool: { name: string; count: number } }
) & { allowFrom?: string[] };

function list(value: string, name: string): string[] {
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (items.length === 0) throw new L3isoError('EUSAGE', `annotation ${name} is empty`);
  return items;
}

/**
 * What the container's annotations ask for; undefined when none is an
 * io.l3iso.* one. Any io.l3iso.* annotation the engine cannot honour is an
 * error, never ignored: the container would otherwise start unconfined.
 */
export function cellRequest(annotations: Record<string, string>): CellRequest | undefined {
  const ours = Object.keys(annotations).filter((k) => k.startsWith(ANNOTATION_PREFIX));
  if (ours.length === 0) return undefined;
  for (const k of ours) {
    if (!KNOWN.has(k))
      throw new L3isoError(
        'EUSAGE',
        `unknown annotation ${k}`,
        `l3iso knows ${[...KNOWN].join(', ')}`,
      );
  }
  const allow = annotations[ANNOTATION_ALLOW_FROM];
  const allowFrom = allow !== undefined ? { allowFrom: list(allow, ANNOTATION_ALLOW_FROM) } : {};
  const addr = annotations[ANNOTATION_ADDRESSES];
  const pool = poolRequest(annotations);
  if (addr !== undefined && pool)
    throw new L3isoError(
      'EUSAGE',
      `annotations ${ANNOTATION_ADDRESSES} and ${ANNOTATION_POOL} exclude each other`,
    );
  if (pool) return { pool, ...allowFrom };
  if (addr === undefined)
    throw new L3isoError(
      'EUSAGE',
      `annotation ${ANNOTATION_ALLOW_FROM} needs ${ANNOTATION_ADDRESSES} or ${ANNOTATION_POOL}`,
    );
  return { addresses: list(addr, ANNOTATION_ADDRESSES), ...allowFrom };
}

/** io.l3iso.pool=NAME, and io.l3iso.pool-count=K (default 1). */
function poolRequest(
  annotations: Record<string, string>,
): { name: string; count: number } | undefined {
  const name = annotations[ANNOTATION_POOL]?.trim();
  const countText = annotations[ANNOTATION_POOL_COUNT];
  if (name === undefined) {
    if (countText !== undefined)
      throw new L3isoError(
        'EUSAGE',
        `annotation ${ANNOTATION_POOL_COUNT} needs ${ANNOTATION_POOL}`,
      );
    return undefined;
  }
  if (name === '') throw new L3isoError('EUSAGE', `annotation ${ANNOTATION_POOL} is empty`);
  const t = countText?.trim() ?? '1';
  if (!/^[1-9]\d{0,5}$/.test(t))
    throw new L3isoError(
      'EUSAGE',
      `annotation ${ANNOTATION_POOL_COUNT} must be a positive integer, not ${JSON.stringify(countText)}`,
    );
  return { name, count: Number(t) };
}

/** The cgroup2 path of a process, from its `0::/path` line in /proc/PID/cgroup. */
export function unifiedCgroupOf(procCgroupText: string): string | undefined {
  for (const line of procCgroupText.split('\n')) {
    if (line.startsWith('0::')) return line.slice(3).trim();
  }
  return undefined;
}
