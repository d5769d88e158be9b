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

/** The inodes of the sockets process `pid` holds (its fds that are `socket:[n]`). */
export function socketInodes(pid: number): Set<string> {
  const out = new Set<string>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) out.add(m[1]);
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

/** TCP sockets (IPv4 and IPv6): local port, remote port, state (`01` established, `0A` listening) and inode (`0`: none, e.g. TIME_WAIT). */
export function tcpSockets(): { local: number; remote: number; state: string; inode: string }[] {
  return ['/proc/net/tcp', '/proc/net/tcp6']
    .flatMap((f) => fs.readFileSync(f, 'utf8').split('\n').slice(1).filter(Boolean))
    .map((l) => l.trim().split(/\s+/))
    .map((f) => ({ local: parseInt(f[1].split(':').pop()!, 16), remote: parseInt(f[2].split(':').pop()!, 16), state: f[3], inode: f[9] }));
}
