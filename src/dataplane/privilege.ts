import { L3isoError } from '../errors';

export function requireRoot(action: string): void {
  if (typeof process.geteuid === 'function' && process.geteuid() !== 0) {
    throw new L3isoError(
      'ENOT_ROOT',
      `${action} needs root (it loads BPF programs and writes pinned maps)`,
      'run it with sudo',
    );
  }
}
