/**
 * Option parsers and help helpers every verb shares, so they parse and
 * explain the same way everywhere.
 */
import { Option } from 'commander';
import { L3isoError } from '../errors';

export function examples(lines: string[]): string {
  return '\nExamples:\n' + lines.map((l) => `  $ ${l}`).join('\n') + '\n';
}

export function jsonOption(what = 'print one JSON document instead of a table'): Option {
  return new Option('-j, --json', what);
}

export function positiveInt(name: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) < 1)
      throw new L3isoError('EUSAGE', `${name} must be a positive integer, not "${value}"`);
    return Number(value);
  };
}

export function positiveSeconds(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+(\.\d+)?$/.test(value) || !(n > 0))
      throw new L3isoError(
        'EUSAGE',
        `${name} must be a positive number of seconds, not "${value}"`,
      );
    return n;
  };
}
