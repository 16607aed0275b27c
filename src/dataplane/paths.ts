/**
 * Where an engine instance keeps its state: everything lives under its pin
 * directory on bpffs, so the directory is the instance's identity.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const DEFAULT_PIN_DIR = '/sys/fs/bpf/l3iso';

export interface PinLayout {
  readonly root: string;
  readonly mapsDir: string;
  readonly linksDir: string;
  /** the revocation iterator, loaded once by `up` (never attached) */
  readonly revokeDir: string;
  /** Serialises control-plane writers of one instance (not on bpffs: it has no regular files). */
  readonly lockFile: string;
  map(name: string): string;
  link(name: string): string;
}

export function pinLayout(pinDir: string): PinLayout {
  const root = path.resolve(pinDir);
  const mapsDir = path.join(root, 'maps');
  const linksDir = path.join(root, 'links');
  const revokeDir = path.join(root, 'revoke');
  const tag = createHash('sha256').update(root).digest('hex').slice(0, 16);
  return {
    root,
    mapsDir,
    linksDir,
    revokeDir,
    lockFile: path.join('/run/l3iso', `${tag}.lock`),
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
