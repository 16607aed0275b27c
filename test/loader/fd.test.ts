import * as fs from 'fs';
import * as path from 'path';
import * as v8 from 'v8';
import * as vm from 'vm';
import { afterEach, describe, expect, it } from 'vitest';
import { BpfMap, Fd, MapType, isErrno, openFds, setLeakReporter } from '../../loader';
import { rmTree, tmpDir } from './helpers';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const dirs: string[] = [];
afterEach(() => {
  setLeakReporter(undefined);
  while (dirs.length) rmTree(dirs.pop());
});

function isOpen(fd: number): boolean {
  try {
    fs.fstatSync(fd);
    return true;
  } catch (err) {
    if (isErrno(err, 'EBADF') || (err as NodeJS.ErrnoException).code === 'EBADF') return false;
    throw err;
  }
}

function scratchFile(): string {
  const dir = tmpDir();
  dirs.push(dir);
  const file = path.join(dir, 'f');
  fs.writeFileSync(file, '');
  return file;
}

describe('Fd', () => {
  it('closes exactly once: a second close leaves a reused number alone', () => {
    const file = scratchFile();
    const fd = new Fd(fs.openSync(file, 'r'), 'scratch');
    const n = fd.fd;
    fd.close();
    expect(fd.closed).toBe(true);
    expect(isOpen(n)).toBe(false);
    // The kernel hands out the lowest free number: the same one again.
    const reused = fs.openSync(file, 'r');
    try {
      expect(reused).toBe(n);
      fd.close();
      fd[Symbol.dispose]();
      expect(isOpen(reused)).toBe(true);
    } finally {
      fs.closeSync(reused);
    }
    expect(() => fd.fd).toThrow(/scratch is closed/);
  });

  it('Symbol.dispose closes it, so `using` scopes own their fds', () => {
    const before = openFds();
    let n: number;
    {
      using fd = new Fd(fs.openSync(scratchFile(), 'r'));
      n = fd.fd;
      expect(openFds()).toBe(before + 1);
    }
    expect(isOpen(n)).toBe(false);
    expect(openFds()).toBe(before);
  });

  it('refuses a number that is not an fd', () => {
    expect(() => new Fd(-1)).toThrow(/not a file descriptor/);
  });

  it('the finalizer backstop closes an fd dropped without close(), and reports it', async () => {
    const leaked: string[] = [];
    setLeakReporter((_fd, what) => leaked.push(what));
    const file = scratchFile();
    const n = ((): number => new Fd(fs.openSync(file, 'r'), 'dropped').fd)();
    expect(isOpen(n)).toBe(true);
    for (let i = 0; i < 50 && isOpen(n); i++) {
      gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(isOpen(n)).toBe(false);
    expect(leaked).toContain('dropped');
  });

  it('BpfMap closes through it: close twice is harmless, dispose closes', () => {
    const m = BpfMap.create({
      type: MapType.ARRAY,
      name: 'fd_test',
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
    });
    const n = m.fd;
    m.close();
    m.close();
    expect(m.closed).toBe(true);
    expect(isOpen(n)).toBe(false);
    const d = BpfMap.create({
      type: MapType.ARRAY,
      name: 'fd_test',
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
    });
    const dn = d.fd;
    d[Symbol.dispose]();
    expect(isOpen(dn)).toBe(false);
  });
});
