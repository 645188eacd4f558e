// argon2 hashes run on libuv's worker threads, and a sign-in flood keeps every core busy with
// them. On Linux each thread has its own nice value: the workers run below the event loop, so
// token requests and pages still get a core at once and hashing takes what is left (all of it
// when nothing else is waiting). Elsewhere, or when the value cannot be set, nothing changes.
import fs from 'node:fs';
import os from 'node:os';

/** Sets `nice` on this process's libuv worker threads (already started); returns how many. */
export function lowerWorkerThreadPriority(nice: number): number {
  if (process.platform !== 'linux' || nice === 0) return 0;
  let changed = 0;
  let tasks: string[];
  try {
    tasks = fs.readdirSync('/proc/self/task');
  } catch {
    return 0;
  }
  for (const tid of tasks) {
    try {
      if (fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() !== 'libuv-worker') continue;
      os.setPriority(Number(tid), nice);
      changed++;
    } catch {
      // The thread is gone, or the value is not allowed here: it keeps its priority.
    }
  }
  return changed;
}
