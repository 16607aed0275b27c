import * as fs from 'node:fs';
import { L3isoError } from '../errors';

/** The inode that names a network namespace (what l3_config records). */
export function netnsInode(netnsPath: string): bigint {
  try {
    return fs.statSync(netnsPath, { bigint: true }).ino;
  } catch (err) {
    throw new L3isoError(
      'EUSAGE',
      `cannot open network namespace ${netnsPath}: ${(err as Error).message}`,
    );
  }
}
