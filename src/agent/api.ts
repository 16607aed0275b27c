/**
 * The agent's wire schema: HTTP + JSON on a unix socket. Request bodies and
 * answers are these types, verbatim; README "Agent" documents the same.
 * Answers of assign/release/list/show/policy are the very result objects the
 * engine returns in-process (and the CLI prints with --json), so the CLI
 * prints the same whether the agent or the engine answered.
 */
import type { AssignResult, ReleaseResult } from '../cells/cells';
import type { CellDetail, CellView } from '../cells/inventory';
import type { PolicyResult } from '../cells/policy';
import type { ApplyResult } from '../declarative/apply';
import type { EngineStatus, ExportResult } from '../declarative/export';
import type { StateDocument } from '../declarative/schema';
import type { ErrorCode } from '../errors';
import type { HookResult } from '../runtime/oci-hook';
import type { OciCreateRequest, OciPoststopRequest } from '../runtime/oci-request';

export const DEFAULT_AGENT_SOCKET = '/run/l3iso/agent.sock';

/** The socket the CLI tries first (and `agent` listens on): env L3ISO_AGENT_SOCKET. */
export function agentSocket(env: NodeJS.ProcessEnv = process.env): string {
  return env.L3ISO_AGENT_SOCKET || DEFAULT_AGENT_SOCKET;
}

/**
 * Every request carries the pin dir the caller means (header
 * `x-l3iso-pin-dir`); an agent serving another engine instance answers
 * 421 EAGENT_MISMATCH and the CLI does the work itself instead.
 */
export const PIN_DIR_HEADER = 'x-l3iso-pin-dir';

/** POST /v1/assign */
export interface AssignRequest {
  /** absolute, or relative to the engine's cgroup root */
  cgroup: string;
  addresses: string[];
  force?: boolean;
  /** also report addresses no bind could use (`notLocal`), as the CLI
   * does; costs an `ip` call per address family */
  checkLocal?: boolean;
}
export type AssignResponse = AssignResult;

/** POST /v1/release: by cgroup (path or name), or by cgroup id (whole cell). */
export interface ReleaseRequest {
  cgroup?: string;
  /** cgroup id (decimal string), for a cell whose cgroup is already gone */
  id?: string;
  /** default: all of them, and the cell itself */
  addresses?: string[];
  force?: boolean;
  drainSeconds?: number;
}
export type ReleaseResponse = ReleaseResult | ReleaseByIdResponse;
export interface ReleaseByIdResponse {
  id: string;
  /** false: no cell had this id */
  found: boolean;
  released: string[];
  socketsDestroyed: number;
}

/** GET /v1/cells */
export interface CellsResponse {
  root: string;
  cells: CellView[];
}
/** GET /v1/cells/{name}: name URL-encoded (a relative cell name or absolute path) */
export type CellResponse = CellDetail;

/** POST /v1/policy */
export interface PolicyRequest {
  cgroup: string;
  allowRaw?: boolean;
  allowFrom?: string[];
  clearAllowList?: boolean;
}
export type PolicyResponse = PolicyResult;

/** POST /v1/apply: the state file's content as JSON (README "Declarative
 * state"), and apply's options. Validated whole before anything changes. */
export interface ApplyRequest {
  state: StateDocument;
  prune?: boolean;
  dryRun?: boolean;
  force?: boolean;
  createCgroups?: boolean;
}
export type ApplyResponse = ApplyResult;

/** POST /v1/oci/create-runtime: what `l3iso oci-hook createRuntime` asks,
 * its cgroup already resolved from the state's pid (runtime/oci-request.ts) */
export type OciCreateRuntimeRequest = OciCreateRequest;
/** POST /v1/oci/poststop */
export type OciPoststopRequestBody = OciPoststopRequest;
/** both answer what `oci-hook STAGE --json` prints */
export type OciHookResponse = HookResult;

/** GET /v1/status */
export type StatusResponse = EngineStatus;

/** GET /v1/export: the live state in the apply format */
export type ExportResponse = ExportResult;

/** GET /healthz */
export interface HealthResponse {
  ok: boolean;
  pinDir: string;
  /** the engine's pinned maps open */
  up: boolean;
  pid: number;
  /** requests answered since start, by route (e.g. "POST /v1/assign") */
  requests: Record<string, number>;
  /** cells the watcher holds a cgroup watch for */
  watched: number;
  /** cells the watcher released because their cgroup went away */
  releasedByWatch: number;
  /** with --watch-docker: the `docker events` stream, clean-up events
   * handled, containers whose recorded cell was released */
  docker?: { running: boolean; events: number; released: number };
}

/** Every error answer. `code` is one of src/errors.ts (or EINTERNAL). */
export interface ErrorResponse {
  error: {
    code: ErrorCode | 'EINTERNAL';
    message: string;
    hint?: string;
    /** the kernel's errno name, for EKERNEL */
    errno?: string;
  };
}
