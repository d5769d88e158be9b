/**
 * What a test run leaves behind. The jest global setup gives the run an id in the environment
 * (RUN_ENV) that every process the tests start inherits, and a temp directory of its own (TMPDIR);
 * OS accounts the tests create carry the id in their comment field (test/helpers/osusers.ts).
 * The global teardown uses these to find, report and remove leftovers of this run only, so runs
 * by other people on the same machine are never mistaken for ours.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';

/** The environment variable that names the test run. */
export const RUN_ENV = 'TELEPORT_TS_TEST_RUN';
/** The comment (GECOS) of an account a test created: this text, a space, the run id. */
export const ACCOUNT_MARKER = 'teleport-ts test account';

/** The id of the current test run ("none" outside `jest`'s global setup). */
export function runId(): string {
  return process.env[RUN_ENV] || 'none';
}

export interface ProcessInfo {
  pid: number;
  ppid: number;
  uid: number;
  command: string;
}

function readProc(pid: string, file: string): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/${file}`, 'latin1');
  } catch {
    return undefined; // gone, or not ours to read
  }
}

/** The live processes (not zombies) for which `match(info, environment)` holds, this process excluded. */
export function findProcesses(match: (p: ProcessInfo, environ: string[]) => boolean): ProcessInfo[] {
  const found: ProcessInfo[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const status = readProc(entry, 'status');
    if (status === undefined || /^State:\s+Z/m.test(status)) continue;
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? -1);
    const command = (readProc(entry, 'cmdline') ?? '').split('\0').join(' ').trim();
    const environ = (readProc(entry, 'environ') ?? '').split('\0');
    const info = { pid: Number(entry), ppid: field('PPid'), uid: field('Uid'), command };
    if (match(info, environ)) found.push(info);
  }
  return found;
}

/** The accounts in the user database (`getent passwd`) created by the tests of run `id`. */
export function accountsOfRun(id: string): Array<{ name: string; uid: number }> {
  const r = spawnSync('getent', ['passwd'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`getent passwd failed: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .map((line) => line.split(':'))
    .filter((f) => f.length >= 7 && f[4] === `${ACCOUNT_MARKER} ${id}`)
    .map((f) => ({ name: f[0], uid: Number(f[2]) }));
}

/**
 * Processes started by the tests of run `id`: those that carry its id in their environment, and
 * those running as an account it created (an SSH session's environment is made afresh).
 */
export function processesOfRun(id: string): ProcessInfo[] {
  const marker = `${RUN_ENV}=${id}`;
  const uids = new Set(accountsOfRun(id).map((a) => a.uid));
  // jest's own workers carry the id too; they are children of this process and have ended by teardown.
  const isJestWorker = (p: ProcessInfo) => p.ppid === process.pid && /jest-worker/.test(p.command);
  return findProcesses((p, environ) => (environ.includes(marker) || uids.has(p.uid)) && !isJestWorker(p));
}
