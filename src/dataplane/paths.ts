/**
 * Where an engine instance keeps its state: everything lives under its pin
 * directory on bpffs, so the directory is the instance's identity.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const DEFAULT_PIN_DIR = '/sys/fs/bpf/l3iso';

export const RUN_DIR = '/run/l3iso';

export interface PinLayout {
  readonly root: string;
  readonly mapsDir: string;
  readonly linksDir: string;
  /** the revocation iterator, loaded once by `up` (never attached) */
  readonly revokeDir: string;
  /** Where the instance keeps regular files (bpffs has none): drain locks,
   * cell names, route records, each named after `tag`. The instance lock
   * itself is a flock on `root`. */
  readonly runDir: string;
  /** The instance's name in runDir: a hash of root. */
  readonly tag: string;
  /** Where a fresh `up` builds the engine before renaming it to root. */
  readonly buildDir: string;
  /** The instance's address pools (src/pools/store.ts): a record in runDir,
   * keyed by the instance id, removed by down. */
  readonly poolsFile: string;
  map(name: string): string;
  link(name: string): string;
}

export function pinLayout(pinDir: string): PinLayout {
  const root = path.resolve(pinDir);
  const tag = createHash('sha256').update(root).digest('hex').slice(0, 16);
  return layoutAt(root, tag);
}

/**
 * The pin layout of the directory a fresh `up` builds in (`buildDir`, a
 * sibling of root on the same bpffs), named as the final instance
 * (same tag), so what it records in runDir is the instance's.
 */
export function buildLayout(final: PinLayout): PinLayout {
  return { ...layoutAt(final.buildDir, final.tag), buildDir: final.buildDir };
}

/** Build dirs of this pin dir's fresh ups: ROOT-tmp-PID, siblings of root. */
export function buildDirsOf(layout: PinLayout): string[] {
  const parent = path.dirname(layout.root);
  const prefix = `${path.basename(layout.root)}-tmp-`;
  if (!fs.existsSync(parent)) return [];
  return fs
    .readdirSync(parent)
    .filter((e) => e.startsWith(prefix) && /^\d+$/.test(e.slice(prefix.length)))
    .map((e) => path.join(parent, e));
}

function layoutAt(root: string, tag: string): PinLayout {
  const mapsDir = path.join(root, 'maps');
  const linksDir = path.join(root, 'links');
  const revokeDir = path.join(root, 'revoke');
  return {
    root,
    mapsDir,
    linksDir,
    revokeDir,
    runDir: RUN_DIR,
    tag,
    buildDir: `${root}-tmp-${process.pid}`,
    poolsFile: path.join(RUN_DIR, `${tag}.pools`),
    map: (name) => path.join(mapsDir, name),
    link: (name) => path.join(linksDir, name),
  };
}

/** The package root, where bpf/*.bpf.o are built (dist/src/dataplane -> ../../..). */
export function packageRoot(): string {
  return path.resolve(__dirname, '..', '..', '..');
}

export function bpfObjectPath(file: string): string {
  return path.join(packageRoot(), 'bpf', file);
}

/** Name of a pin made under a temporary name (NAME-tmp-PID: bpffs refuses names with a dot), renamed into
 * place when complete; one left behind is a crashed run's. */
export const TEMP_NAME = /-tmp-\d+$/;

/**
 * Pins under a temporary name, then renames into place: no verb ever sees
 * a half-made pin at `final`, and a crash leaves only a temp name that the
 * next up or down removes. rename(2) on bpffs is atomic.
 */
export function pinAtomically(final: string, pin: (p: string) => void): void {
  const tmp = `${final}-tmp-${process.pid}`;
  fs.rmSync(tmp, { force: true });
  pin(tmp);
  fs.renameSync(tmp, final);
}

/** links/ entries that are an uplink's XDP link (uplink-xdp-IFINDEX), not a program of up's. */
export const XDP_LINK_PREFIX = 'uplink-xdp-';

/** Entries of the pin dir's top level that l3iso creates. */
export function isOwnTopEntry(name: string): boolean {
  return (
    name === 'maps' ||
    name === 'links' ||
    name === 'revoke' ||
    /^revoke-/.test(name) ||
    TEMP_NAME.test(name)
  );
}
