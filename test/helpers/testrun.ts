/**
 * The life of one `jest` run (jest.config.js's globalSetup and globalTeardown): the run gets an
 * id in the environment and a temp directory of its own as TMPDIR, both inherited by the jest
 * workers and everything the tests start. At the end, whatever the tests left (a process with
 * the id, an OS account marked with it, a network lab of test/helpers/netns.ts, anything in the
 * temp directory) fails the run, named, and is removed; if jest exits without its teardown, the
 * same removal runs at exit.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { accountsOfRun, processesOfRun, RUN_ENV } from './leftovers';
import { removeLabsOfRun } from './netns';
import { removeOsAccount, removeOsAccountNow } from './osusers';
import { waitFor } from './proc';

const TMP_PREFIX = 'tpt-run-';

export interface Run {
  id: string;
  /** The run's temp directory (TMPDIR). */
  tmp: string;
}

/** Starts a run: its id and temp directory go into this process's environment. */
export function startRun(): Run {
  const run = { id: randomBytes(6).toString('hex'), tmp: fs.mkdtempSync(path.join(os.tmpdir(), TMP_PREFIX)) };
  fs.chmodSync(run.tmp, 0o1777); // like /tmp: tests hand directories in it to the unprivileged accounts they run things as
  process.env[RUN_ENV] = run.id;
  process.env.TMPDIR = run.tmp;
  process.on('exit', () => removeLeftoversNow(run));
  return run;
}

/** The run this process is in, from its environment. */
export function currentRun(): Run {
  const id = process.env[RUN_ENV];
  const tmp = process.env.TMPDIR ?? '';
  if (!id || !path.basename(tmp).startsWith(TMP_PREFIX)) throw new Error(`not inside a test run (${RUN_ENV}=${id}, TMPDIR=${tmp})`);
  return { id, tmp };
}

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Kills the run's processes and removes its network labs, accounts and temp directory, at once. */
export function removeLeftoversNow(run: Run): void {
  for (const p of processesOfRun(run.id)) kill(p.pid);
  removeLabsOfRun(run.id);
  for (const { name } of accountsOfRun(run.id)) {
    try {
      removeOsAccountNow(name);
    } catch {
      // a process of it may still be exiting; the run's report named the account already
    }
  }
  fs.rmSync(run.tmp, { recursive: true, force: true });
}

/**
 * Ends a run: lists what its tests left behind and removes it. Processes get a moment to finish
 * exiting (a test may have signalled one without waiting), then are killed.
 */
export async function endRun(run: Run, graceMs = 10_000): Promise<string[]> {
  const left: string[] = [];
  await waitFor('the tests\' processes to exit', () => processesOfRun(run.id).length === 0, graceMs).catch(() => undefined);
  for (const p of processesOfRun(run.id)) {
    left.push(`process ${p.pid} (uid ${p.uid}): ${p.command}`);
    kill(p.pid);
  }
  await waitFor('killed processes to be gone', () => processesOfRun(run.id).length === 0, graceMs).catch(() => undefined);
  left.push(...removeLabsOfRun(run.id));
  for (const { name } of accountsOfRun(run.id)) {
    left.push(`OS account ${name}`);
    await removeOsAccount(name).catch((err: Error) => left.push(`and it could not be removed: ${err.message}`));
  }
  if (fs.existsSync(run.tmp)) {
    for (const entry of fs.readdirSync(run.tmp)) left.push(`temp file ${path.join(run.tmp, entry)}`);
    fs.rmSync(run.tmp, { recursive: true, force: true });
  }
  return left;
}
