// BPF iterators (Linux 5.8+; iter/tcp 5.9, iter/udp 5.9): the program runs
// once per object as the iterator's seq_file is read, in the network
// namespace of the reading process.
import * as fs from 'node:fs';
import { AttachType } from './constants';
import { check } from './errors';
import { libbpf } from './libbpf';
import { BpfLink } from './link';
import type { BpfProgram } from './object';

/** Runs an iterator program to completion and returns what it printed
 * (bpf_seq_printf output; empty for programs that only act). */
export function runIterator(prog: BpfProgram | number): string {
  const link = iteratorLink(prog);
  try {
    return readIterator(link);
  } finally {
    link.close();
  }
}

/** The link an iterator runs from: one serves any number of runs, so a
 * caller that runs the same iterator often keeps it (see readIterator). */
export function iteratorLink(prog: BpfProgram | number): BpfLink {
  return BpfLink.create(prog, 0, AttachType.TRACE_ITER);
}

/** One run of the iterator behind `link`, to completion, in the network
 * namespace of the calling process (taken when the run starts). */
export function readIterator(link: BpfLink): string {
  const fd = check('bpf_iter_create', libbpf.bpf_iter_create(link.fd));
  try {
    const chunks: Buffer[] = [];
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      chunks.push(Buffer.from(buf.subarray(0, n)));
    }
    return Buffer.concat(chunks).toString();
  } finally {
    fs.closeSync(fd);
  }
}
