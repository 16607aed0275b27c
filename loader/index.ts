// Public surface of the loader: the only FFI-backed module in l3iso.
export * from './constants';
export { BpfError, BpfLoadError, isErrno, errnoName, errnoNumber, logTail } from './errors';
export { BpfMap, perCpuValues, mapInfo } from './map';
export type { MapCreateSpec, MapInfo } from './map';
export { BpfObject, BpfProgram } from './object';
export type { MapSpec, OpenOptions } from './object';
export { BpfLink } from './link';
export type { LinkInfo } from './link';
export {
  xdpAttach,
  xdpDetach,
  xdpQueryId,
  tcHookCreate,
  tcHookDestroy,
  tcAttach,
  tcDetach,
} from './net';
export type { TcFilter } from './net';
export { progTestRun } from './testrun';
export type { TestRunOptions, TestRunResult } from './testrun';
export {
  closeFd,
  dupFd,
  flockExclusive,
  flockShared,
  unlock,
  possibleCpus,
  pinObject,
  getPinned,
  inNetns,
} from './sys';
export { Fd, guardLeak, openFds, setLeakReporter } from './fd';
export type { LeakReporter } from './fd';
export { setLibbpfLogger } from './log';
export type { LibbpfLogger, LibbpfLogLevel } from './log';
export { iteratorLink, readIterator, runIterator } from './iter';
export { RingBuffer } from './ringbuf';
export type { RingBufferSampleFn } from './ringbuf';
