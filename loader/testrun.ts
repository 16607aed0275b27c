import { check } from './errors';
import { NULL, libbpf, writePointer } from './libbpf';

// struct bpf_test_run_opts (libbpf 1.1).
const TEST_RUN_OPTS_SIZE = 80;
const O = {
  dataIn: 8,
  dataOut: 16,
  dataSizeIn: 24,
  dataSizeOut: 28,
  ctxIn: 32,
  ctxOut: 40,
  ctxSizeIn: 48,
  ctxSizeOut: 52,
  retval: 56,
  repeat: 60,
  duration: 64,
  flags: 68,
  cpu: 72,
  batchSize: 76,
};

export interface TestRunOptions {
  /** Runs the program this many times (duration is the mean). Default 1. */
  repeat?: number;
  /** Room for the output packet; default dataIn.length + 256. */
  dataOutSize?: number;
  /** Context struct (e.g. struct __sk_buff, struct xdp_md) to pass in. */
  ctxIn?: Buffer;
  /** Room for the output context; 0 (default) skips it. */
  ctxOutSize?: number;
  /** TestRunFlags. */
  flags?: number;
  /** CPU to run on with TestRunFlags.RUN_ON_CPU. */
  cpu?: number;
}

export interface TestRunResult {
  /** The program's return value. */
  retval: number;
  /** Packet after the program ran, trimmed to what the kernel wrote. */
  dataOut: Buffer;
  /** Context after the run when ctxOutSize was given. */
  ctxOut?: Buffer;
  /** Mean run time in nanoseconds. */
  duration: number;
}

/**
 * Runs a loaded program on `dataIn` in the kernel (BPF_PROG_TEST_RUN,
 * bpf_prog_test_run_opts). Supported by packet program types (XDP needs at
 * least 14 bytes, tc, socket filter, cgroup_skb, flow dissector) and a few
 * others; unsupported type: BpfError 'ENOTSUPP'. Output larger than
 * `dataOutSize`: 'ENOSPC'.
 */
export function progTestRun(
  progFd: number,
  dataIn: Buffer,
  opts: TestRunOptions = {},
): TestRunResult {
  const dataOut = Buffer.alloc(opts.dataOutSize ?? dataIn.length + 256);
  const ctxOut = opts.ctxOutSize ? Buffer.alloc(opts.ctxOutSize) : undefined;
  const o = Buffer.alloc(TEST_RUN_OPTS_SIZE);
  o.writeBigUInt64LE(BigInt(TEST_RUN_OPTS_SIZE), 0);
  writePointer(o, O.dataIn, dataIn.length ? dataIn : NULL);
  o.writeUInt32LE(dataIn.length, O.dataSizeIn);
  writePointer(o, O.dataOut, dataOut.length ? dataOut : NULL);
  o.writeUInt32LE(dataOut.length, O.dataSizeOut);
  if (opts.ctxIn) {
    writePointer(o, O.ctxIn, opts.ctxIn);
    o.writeUInt32LE(opts.ctxIn.length, O.ctxSizeIn);
  }
  if (ctxOut) {
    writePointer(o, O.ctxOut, ctxOut);
    o.writeUInt32LE(ctxOut.length, O.ctxSizeOut);
  }
  o.writeUInt32LE(opts.repeat ?? 0, O.repeat);
  o.writeUInt32LE(opts.flags ?? 0, O.flags);
  o.writeUInt32LE(opts.cpu ?? 0, O.cpu);
  check('bpf_prog_test_run_opts', libbpf.bpf_prog_test_run_opts(progFd, o));
  const result: TestRunResult = {
    retval: o.readUInt32LE(O.retval),
    dataOut: dataOut.subarray(0, Math.min(o.readUInt32LE(O.dataSizeOut), dataOut.length)),
    duration: o.readUInt32LE(O.duration),
  };
  if (ctxOut)
    result.ctxOut = ctxOut.subarray(0, Math.min(o.readUInt32LE(O.ctxSizeOut), ctxOut.length));
  return result;
}
