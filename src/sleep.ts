/** Blocks the thread: for short waits in synchronous kernel-facing code
 * (a cgroup emptying, an allocator refilling), where an event loop turn
 * would buy nothing. */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
