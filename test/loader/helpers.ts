import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

export function u64(n: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

/** A fresh directory on bpffs; remove it with rmTree. */
export function bpffsTmpDir(): string {
  return fs.mkdtempSync('/sys/fs/bpf/l3iso-loader-test-');
}

export function rmTree(dir: string | undefined): void {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}

export const FIXTURES = path.join(__dirname, 'fixtures');

/** Compiles fixtures/NAME.bpf.c into `outDir` and returns the .o path. */
export function compileFixture(name: string, outDir: string): string {
  const triple = execFileSync('gcc', ['-dumpmachine']).toString().trim();
  const out = path.join(outDir, `${name}.bpf.o`);
  execFileSync('clang', [
    '-O2',
    '-g',
    '-target',
    'bpf',
    `-I/usr/include/${triple}`,
    '-c',
    path.join(FIXTURES, `${name}.bpf.c`),
    '-o',
    out,
  ]);
  return out;
}

export function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'l3iso-loader-'));
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}
