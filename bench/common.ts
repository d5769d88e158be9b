/**
 * Small pieces the benchmarks share: size knobs from the environment,
 * quantiles, an aligned text table, and timing one OpenSSH client run.
 */
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';

const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/** A positive number from `process.env[name]`, or `dflt` when unset; exits with a message when malformed. */
export function envNumber(name: string, dflt: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) usage(`${name}=${raw} is not a non-negative number`);
  return n;
}

/** A byte count from `process.env[name]`: `1073741824`, `64M`, `1G` (binary units); `dflt` when unset. */
export function envBytes(name: string, dflt: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const m = /^(\d+)([KMG]?)(?:i?B)?$/i.exec(raw.trim());
  if (!m || Number(m[1]) === 0) usage(`${name}=${raw} is not a byte count (e.g. 64M, 1G)`);
  return Number(m[1]) * UNITS[m[2].toUpperCase()];
}

function usage(message: string): never {
  console.error(message);
  process.exit(2);
}

/** The q-quantile (0..1) of `xs` by the nearest-rank method; NaN for no samples. */
export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** Rows as aligned columns: the first left-aligned, the others right-aligned. */
export function formatTable(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('   ')).join('\n');
}

/** A number for a table cell with `digits` decimals, or `-` when it is not a number. */
export function fmt(n: number | undefined, digits = 1): string {
  return n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits);
}

/** `a / b` for a table cell, or `-` when either side is missing. */
export function ratio(a: number | undefined, b: number | undefined): string {
  return a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? '-' : (a / b).toFixed(2);
}

export interface SshRun {
  ms: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the OpenSSH client with `args`, with `bytes` zero bytes on its stdin
 * (fed by `head -c` from /dev/zero, so that this process does not carry the
 * data); resolves with the elapsed wall time, or rejects unless ssh exits 0.
 */
export function timeSsh(args: string[], bytes = 0): Promise<SshRun> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child =
      bytes > 0
        ? spawn('sh', ['-c', 'head -c "$0" /dev/zero | ssh "$@"', String(bytes), ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
        : spawn('ssh', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code !== 0) reject(new Error(`ssh ${args.join(' ')} exited ${code}: ${stderr.trim()}`));
      else resolve({ ms, stdout, stderr });
    });
  });
}

/** Kills the processes still running (SIGKILL) and resolves once they have exited. */
export async function killAll(children: ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map((c) => {
      if (c.exitCode !== null || c.signalCode !== null) return undefined;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      return exited;
    }),
  );
}

/**
 * CPU time (ms) of process `pid` and of the children it has reaped (utime, stime,
 * cutime, cstime of /proc/<pid>/stat): a server's own work and its per-session
 * processes (sshd's forks, the node's session shells) once they have exited.
 */
export function processTreeCpuMs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the command name, field 3 (state) is at index 0: utime is field 14, so index 11.
  const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(f[i]), 0);
  return (ticks * 1000) / CLOCK_TICKS;
}

/** CPU time (ms) of one thread of `pid` (utime + stime of /proc/<pid>/task/<tid>/stat): the main thread's busy time when `tid` is `pid`. */
export function threadCpuMs(pid: number, tid = pid): number {
  const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS;
}

/**
 * processTreeCpuMs of `pid` plus that of every live descendant (from /proc/<pid>/task/<tid>/children): a
 * server whose sessions are forked by a long-lived helper (the node's spawn server reaps the session
 * programs, so their time lands in the helper's cutime, not the server's). A process that vanishes while
 * read counts as 0 here and in its parent's cutime once reaped.
 */
export function liveTreeCpuMs(pid: number): number {
  let total = 0;
  try {
    total = processTreeCpuMs(pid);
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      let kids = '';
      try {
        kids = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const kid of kids.split(' ').filter(Boolean)) total += liveTreeCpuMs(Number(kid));
    }
  } catch {
    /* gone while read */
  }
  return total;
}

/** The kernel's USER_HZ: Linux reports /proc times in 1/100 s on every architecture Node runs on. */
const CLOCK_TICKS = 100;

/** Runs `make()` `n` times with at most `concurrency` at once; resolves with the wall time (ms) of the whole burst. */
export async function burst(n: number, concurrency: number, make: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      await make();
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, concurrency) }, worker));
  return Number(process.hrtime.bigint() - t0) / 1e6;
}
