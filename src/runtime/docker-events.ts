/**
 * Docker runs no OCI hooks, so its recipe (README "Docker") assigns a parent
 * cgroup in advance and starts containers below it with --cgroup-parent. That
 * parent cell is the operator's: it outlives every container and only
 * `l3iso release` removes it. What belongs to one container alone is its
 * record in the runtime records (a runtime that ran `l3iso oci-hook` for it)
 * and the cell that record names, the container's own cgroup. When the
 * container dies or is destroyed and no poststop released them, this does
 * what poststop would have done, by the recorded cgroup id. Nothing else is
 * released: no parent, no cell without a record.
 */
import { ociRelease, type HookResult } from './oci-hook';
import { readRecord } from './records';

/** The container events that end a container's run (`die`) or its life (`destroy`). */
export const DOCKER_CLEANUP_ACTIONS = ['die', 'destroy'] as const;

/**
 * `docker events` arguments: JSON lines of the clean-up events only, from
 * `sinceUnix` (seconds) on when restarting after a lost stream: an event
 * seen twice releases nothing the second time.
 */
export function dockerEventsArgs(sinceUnix?: number): string[] {
  return [
    'events',
    '--format',
    '{{json .}}',
    '--filter',
    'type=container',
    ...DOCKER_CLEANUP_ACTIONS.flatMap((a) => ['--filter', `event=${a}`]),
    ...(sinceUnix !== undefined ? ['--since', String(sinceUnix)] : []),
  ];
}

export interface DockerContainerEvent {
  container: string;
  action: string;
  /** the event's time (unix seconds), for a restarted `docker events --since` */
  time?: number;
}

/** One line of `docker events --format '{{json .}}'`; undefined: not a container clean-up event. */
export function parseDockerEvent(line: string): DockerContainerEvent | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as { Type?: unknown; Action?: unknown; Actor?: { ID?: unknown }; time?: unknown };
  if (o.Type !== 'container' || typeof o.Action !== 'string') return undefined;
  if (!(DOCKER_CLEANUP_ACTIONS as readonly string[]).includes(o.Action)) return undefined;
  const id = o.Actor?.ID;
  // Docker's ids are 64 hex digits: also a safe record file name.
  if (typeof id !== 'string' || !/^[0-9a-f]{64}$/.test(id)) return undefined;
  return {
    container: id,
    action: o.Action,
    ...(typeof o.time === 'number' && Number.isSafeInteger(o.time) ? { time: o.time } : {}),
  };
}

/**
 * What the container's end releases: its record and recorded cell, or
 * nothing (undefined) when it has no record.
 */
export function cleanUpDockerContainer(pinDir: string, container: string): HookResult | undefined {
  if (!readRecord(pinDir, container)) return undefined;
  return ociRelease(pinDir, { container, annotated: false });
}
