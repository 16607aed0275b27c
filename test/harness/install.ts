// Another build of l3iso beside the one under test: a copy of the package
// (dist, package.json, the node_modules link, the BPF objects) in a temp
// dir whose objects a test then rebuilds (an older header, other compiler
// flags). Its CLI runs against the sandbox's pin dir like a second install
// on the same host would.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO } from './sandbox';

export interface PackageCopy {
  root: string;
  /** its bin: `node CLI ...` */
  cli: string;
  /** its bpf/ dir, holding a copy of every built object */
  bpf: string;
  remove(): void;
}

export function packageCopy(prefix: string): PackageCopy {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `l3iso-${prefix}-`));
  fs.cpSync(path.join(REPO, 'dist'), path.join(root, 'dist'), { recursive: true });
  fs.copyFileSync(path.join(REPO, 'package.json'), path.join(root, 'package.json'));
  fs.symlinkSync(fs.realpathSync(path.join(REPO, 'node_modules')), path.join(root, 'node_modules'));
  const bpf = path.join(root, 'bpf');
  fs.mkdirSync(bpf);
  for (const f of fs.readdirSync(path.join(REPO, 'bpf')))
    if (f.endsWith('.bpf.o')) fs.copyFileSync(path.join(REPO, 'bpf', f), path.join(bpf, f));
  return {
    root,
    cli: path.join(root, 'dist', 'src', 'cli', 'main.js'),
    bpf,
    remove: () => fs.rmSync(root, { recursive: true, force: true }),
  };
}

/** clang for BPF, as scripts/build-bpf.sh calls it, with extra flags. */
export function compileBpf(
  src: string,
  out: string,
  includes: string[],
  flags: string[] = [],
): void {
  const triple = execFileSync('gcc', ['-dumpmachine']).toString().trim();
  execFileSync('clang', [
    '-O2',
    '-g',
    '-target',
    'bpf',
    '-D__TARGET_ARCH_x86',
    ...flags,
    ...includes.flatMap((i) => ['-I', i]),
    `-I/usr/include/${triple}`,
    '-c',
    src,
    '-o',
    out,
  ]);
}
