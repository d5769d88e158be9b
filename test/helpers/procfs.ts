/** Processes as /proc shows them: parents, liveness, children by script name (tests and benchmarks of the node's helper processes). */
import * as fs from 'node:fs';

/** The parent pid of `pid` (/proc/<pid>/stat field 4), or undefined when it is gone. */
export function parentOf(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/** Whether `pid` runs (a zombie has exited: only its parent's wait is missing). */
export function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** The live children of `pid` whose command line names `script` (e.g. `spawnworker`, `connworker`). */
export function childrenRunning(pid: number, script: string): number[] {
  const kids = fs
    .readdirSync(`/proc/${pid}/task`)
    .flatMap((tid) => fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number));
  return kids.filter((k) => {
    try {
      return fs.readFileSync(`/proc/${k}/cmdline`, 'utf8').includes(script) && alive(k);
    } catch {
      return false;
    }
  });
}
