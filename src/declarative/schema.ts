/**
 * The declarative state file (`l3iso apply -f`, `l3iso export`): parsing
 * and validation, pure. Every problem is collected with its path in the
 * file, so an operator fixes a file in one pass, and nothing is applied
 * from a file with any problem.
 */
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseAddress, parsePrefix, type CellAddress } from '../model/address';
import { prefixText } from '../dataplane/prefixes';

export const STATE_VERSION = 1;

export interface DesiredUplink {
  iface: string;
  /** absent: any mode */
  mode?: 'native' | 'generic' | 'tc';
}

export interface DesiredEngine {
  /** absent: not checked */
  cgroupRoot?: string;
  managedPrefixes?: string[];
  uplinks?: DesiredUplink[];
}

export interface DesiredCell {
  /** path relative to the cgroup root, normalised ('a/b') */
  cgroup: string;
  /** canonical texts, in file order */
  addresses: string[];
  allowRaw: boolean;
  /** null: no allow-list (every source is admitted) */
  allowFrom: string[] | null;
}

export interface DesiredState {
  version: number;
  engine: DesiredEngine;
  cells: DesiredCell[];
}

/** What a state file holds: `export` prints it, `apply` reads it. */
export interface StateDocument {
  version: number;
  engine: {
    cgroupRoot?: string;
    managedPrefixes?: string[];
    uplinks?: (string | DesiredUplink)[];
  };
  cells: {
    cgroup: string;
    addresses: string[];
    allowRaw?: boolean;
    allowFrom?: string[] | null;
  }[];
}

export class StateFileError extends Error {
  constructor(readonly errors: string[]) {
    super(errors.join('\n'));
    this.name = 'StateFileError';
  }
}

type Json = unknown;
const isObject = (v: Json): v is Record<string, Json> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: Json): string => JSON.stringify(v) ?? String(v);

/** Parses JSON or YAML text (YAML is a superset: a `.json` file is read as JSON). */
export function parseStateText(text: string, fileName = ''): Json {
  const json = fileName.endsWith('.json') || /^\s*[{[]/.test(text);
  try {
    if (json) return JSON.parse(text) as Json;
    return parseYaml(text, { uniqueKeys: true, prettyErrors: false }) as Json;
  } catch (err) {
    const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new StateFileError([
      `${fileName || 'file'}: not valid ${json ? 'JSON' : 'YAML'}: ${why}`,
    ]);
  }
}

function unknownKeys(o: Record<string, Json>, allowed: string[], at: string, errs: string[]): void {
  for (const k of Object.keys(o))
    if (!allowed.includes(k))
      errs.push(`${at}${at ? '.' : ''}${k}: unknown key (allowed: ${allowed.join(', ')})`);
}

function stringList(
  v: Json,
  at: string,
  errs: string[],
  nonEmpty: boolean,
): [number, string][] | undefined {
  if (!Array.isArray(v)) {
    errs.push(`${at}: must be a list, not ${show(v)}`);
    return undefined;
  }
  if (nonEmpty && v.length === 0) errs.push(`${at}: must not be empty`);
  const out: [number, string][] = [];
  v.forEach((item: Json, i) => {
    if (typeof item !== 'string') errs.push(`${at}[${i}]: must be a string, not ${show(item)}`);
    else out.push([i, item]);
  });
  // The strings are still checked, so one pass reports every problem.
  return out;
}

/** Canonical prefixes; each bad one is an error at its index. */
function prefixes(v: Json, at: string, errs: string[], nonEmpty: boolean): string[] | undefined {
  const list = stringList(v, at, errs, nonEmpty);
  if (!list) return undefined;
  const out: string[] = [];
  const seen = new Map<string, number>();
  list.forEach(([i, t]) => {
    try {
      const p = prefixText(parsePrefix(t));
      const first = seen.get(p);
      if (first !== undefined) errs.push(`${at}[${i}]: ${show(t)} repeats ${at}[${first}]`);
      else {
        seen.set(p, i);
        out.push(p);
      }
    } catch (err) {
      errs.push(`${at}[${i}]: ${show(t)} is not a prefix (${reason(err)})`);
    }
  });
  return out;
}

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function engineOf(v: Json, errs: string[]): DesiredEngine {
  if (v === undefined) return {};
  if (!isObject(v)) {
    errs.push(`engine: must be a mapping, not ${show(v)}`);
    return {};
  }
  unknownKeys(v, ['cgroupRoot', 'managedPrefixes', 'uplinks'], 'engine', errs);
  const e: DesiredEngine = {};
  if (v.cgroupRoot !== undefined) {
    if (typeof v.cgroupRoot !== 'string' || !path.isAbsolute(v.cgroupRoot))
      errs.push(`engine.cgroupRoot: must be an absolute path, not ${show(v.cgroupRoot)}`);
    else e.cgroupRoot = path.normalize(v.cgroupRoot).replace(/(.)\/$/, '$1');
  }
  if (v.managedPrefixes !== undefined) {
    const p = prefixes(v.managedPrefixes, 'engine.managedPrefixes', errs, false);
    if (p) e.managedPrefixes = p;
  }
  if (v.uplinks !== undefined) e.uplinks = uplinksOf(v.uplinks, errs);
  return e;
}

const MODES = ['native', 'generic', 'tc'] as const;

function uplinksOf(v: Json, errs: string[]): DesiredUplink[] {
  if (!Array.isArray(v)) {
    errs.push(`engine.uplinks: must be a list, not ${show(v)}`);
    return [];
  }
  const out: DesiredUplink[] = [];
  v.forEach((u: Json, i) => {
    const at = `engine.uplinks[${i}]`;
    const spec = typeof u === 'string' ? { iface: u } : u;
    if (!isObject(spec)) return errs.push(`${at}: must be an interface name or {iface, mode}`);
    unknownKeys(spec, ['iface', 'mode'], at, errs);
    if (typeof spec.iface !== 'string' || !/^[^\s/]{1,15}$/.test(spec.iface))
      return errs.push(`${at}.iface: ${show(spec.iface)} is not an interface name`);
    if (out.some((o) => o.iface === spec.iface))
      return errs.push(`${at}.iface: ${show(spec.iface)} is listed twice`);
    if (spec.mode !== undefined && !MODES.includes(spec.mode as (typeof MODES)[number]))
      return errs.push(`${at}.mode: must be one of ${MODES.join(', ')}, not ${show(spec.mode)}`);
    out.push({
      iface: spec.iface,
      ...(spec.mode !== undefined ? { mode: spec.mode as (typeof MODES)[number] } : {}),
    });
  });
  return out;
}

/** A cell's cgroup relative to the root: no absolute path, no `..`. */
function cgroupName(v: Json, at: string, errs: string[]): string | undefined {
  if (typeof v !== 'string' || v.length === 0) {
    errs.push(`${at}: must be a cgroup path relative to the cgroup root, not ${show(v)}`);
    return undefined;
  }
  const norm = path.posix.normalize(v).replace(/\/+$/, '');
  if (
    path.posix.isAbsolute(v) ||
    norm === '.' ||
    norm === '' ||
    norm.split('/').includes('..') ||
    v.includes('\0')
  ) {
    errs.push(`${at}: ${show(v)} must name a cgroup below the root (relative, no "..")`);
    return undefined;
  }
  return norm;
}

interface Seen {
  cgroups: Map<string, number>;
  addresses: Map<string, string>;
}

function cellOf(v: Json, i: number, seen: Seen, errs: string[]): DesiredCell | undefined {
  const at = `cells[${i}]`;
  if (!isObject(v)) {
    errs.push(`${at}: must be a mapping with cgroup and addresses, not ${show(v)}`);
    return undefined;
  }
  unknownKeys(v, ['cgroup', 'addresses', 'allowRaw', 'allowFrom'], at, errs);
  const cgroup = cgroupName(v.cgroup, `${at}.cgroup`, errs);
  if (cgroup !== undefined) {
    const first = seen.cgroups.get(cgroup);
    if (first !== undefined) errs.push(`${at}.cgroup: ${show(cgroup)} is also cells[${first}]`);
    else seen.cgroups.set(cgroup, i);
  }
  const addresses = addressesOf(v.addresses, `${at}.addresses`, seen, errs);
  if (v.allowRaw !== undefined && typeof v.allowRaw !== 'boolean')
    errs.push(`${at}.allowRaw: must be true or false, not ${show(v.allowRaw)}`);
  let allowFrom: string[] | null | undefined = null;
  if (v.allowFrom !== undefined && v.allowFrom !== null)
    allowFrom = prefixes(v.allowFrom, `${at}.allowFrom`, errs, true);
  if (cgroup === undefined || !addresses || allowFrom === undefined) return undefined;
  return { cgroup, addresses, allowRaw: v.allowRaw === true, allowFrom };
}

function addressesOf(v: Json, at: string, seen: Seen, errs: string[]): string[] | undefined {
  const list = stringList(v, at, errs, true);
  if (!list) return undefined;
  const out: string[] = [];
  list.forEach(([j, t]) => {
    let a: CellAddress;
    try {
      a = parseAddress(t);
    } catch (err) {
      const why = reason(err).replace(/^invalid address "[^"]*": /, '');
      errs.push(
        `${at}[${j}]: ${show(t)} ${why.startsWith('not ') ? 'is ' : 'cannot be owned: '}${why}`,
      );
      return;
    }
    const where = `${at}[${j}]`;
    const first = seen.addresses.get(a.text);
    if (first !== undefined) errs.push(`${where}: ${a.text} is also ${first}`);
    else {
      seen.addresses.set(a.text, where);
      out.push(a.text);
    }
  });
  return out;
}

/** Validates a parsed document; throws StateFileError with every problem. */
export function validateState(doc: Json): DesiredState {
  const errs: string[] = [];
  if (!isObject(doc))
    throw new StateFileError([
      `(top): must be a mapping with version, engine and cells, not ${show(doc)}`,
    ]);
  unknownKeys(doc, ['version', 'engine', 'cells'], '', errs);
  if (doc.version !== undefined && doc.version !== STATE_VERSION)
    errs.push(`version: must be ${STATE_VERSION}, not ${show(doc.version)}`);
  const engine = engineOf(doc.engine, errs);
  const cells: DesiredCell[] = [];
  if (!Array.isArray(doc.cells))
    errs.push(`cells: must be a list (may be empty), not ${show(doc.cells)}`);
  else {
    const seen: Seen = { cgroups: new Map(), addresses: new Map() };
    doc.cells.forEach((c: Json, i) => {
      const cell = cellOf(c, i, seen, errs);
      if (cell) cells.push(cell);
    });
  }
  if (errs.length > 0) throw new StateFileError(errs);
  return { version: STATE_VERSION, engine, cells };
}

export function parseState(text: string, fileName = ''): DesiredState {
  return validateState(parseStateText(text, fileName));
}
