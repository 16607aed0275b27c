import * as fs from 'fs';
import * as path from 'path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BpfMap,
  MapType,
  closeFd,
  dupFd,
  flockExclusive,
  getPinned,
  isErrno,
  pinObject,
  unlock,
} from '../../loader';
import { bpffsTmpDir, rmTree, tmpDir } from './helpers';

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) rmTree(dirs.pop());
});

describe('sys', () => {
  it('flockExclusive conflicts across open file descriptions until unlock', () => {
    const dir = tmpDir();
    dirs.push(dir);
    const file = path.join(dir, 'lock');
    fs.writeFileSync(file, '');
    const a = fs.openSync(file, 'r');
    const b = fs.openSync(file, 'r');
    try {
      flockExclusive(a);
      let err: unknown;
      try {
        flockExclusive(b, { nonBlocking: true });
      } catch (e) {
        err = e;
      }
      expect(isErrno(err, 'EAGAIN')).toBe(true);
      unlock(a);
      flockExclusive(b, { nonBlocking: true });
      unlock(b);
    } finally {
      fs.closeSync(a);
      fs.closeSync(b);
    }
  });

  it('dupFd / closeFd / pinObject / getPinned', () => {
    const dir = bpffsTmpDir();
    dirs.push(dir);
    const m = BpfMap.create({
      type: MapType.ARRAY,
      name: 'sys',
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
    });
    try {
      const dup = dupFd(m.fd);
      expect(dup).not.toBe(m.fd);
      const p = path.join(dir, 'sys');
      pinObject(dup, p);
      closeFd(dup);
      expect(() => closeFd(dup)).toThrow(expect.objectContaining({ code: 'EBADF', call: 'close' }));
      const fd = getPinned(p);
      const again = BpfMap.fromFd(fd);
      expect(again.id).toBe(m.id);
      again.close();
    } finally {
      m.close();
    }
  });
});
