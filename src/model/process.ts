/**
 * Whether a process exists: signal 0 checks without delivering anything,
 * and EPERM means it exists but belongs to someone else. Used to tell
 * leftovers of a dead creator (its pid in a name) from live ones.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
