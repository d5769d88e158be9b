/**
 * OS accounts for tests. Every account a test needs is made here (useradd, with a home), under a
 * name of its own so test files running in parallel never share one, and marked with the test
 * run's id so the global teardown finds and removes any that a failed file left behind
 * (test/helpers/leftovers.ts). `testOsAccount` removes its account after the file.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import { ACCOUNT_MARKER, findProcesses, runId } from './leftovers';
import { waitFor } from './proc';

export interface OsAccount {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

function account(name: string): OsAccount | undefined {
  const r = spawnSync('getent', ['passwd', name], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  const f = r.stdout.trim().split(':');
  return { name: f[0], uid: Number(f[2]), gid: Number(f[3]), home: f[5] };
}

/** Creates an account `tpt-<purpose>-<random>` with a home and bash, marked as made by test run `run`. Needs root. */
export function createOsAccount(purpose: string, run = runId()): OsAccount {
  if (!/^[a-z][a-z0-9-]{0,15}$/.test(purpose)) throw new Error(`account purpose "${purpose}": use 1-16 of a-z, 0-9, -`);
  if (process.getuid?.() !== 0) throw new Error('creating an OS account needs root (the tests run as root, as CI does)');
  const name = `tpt-${purpose}-${randomBytes(3).toString('hex')}`;
  const r = spawnSync('useradd', ['--create-home', '--shell', '/bin/bash', '--comment', `${ACCOUNT_MARKER} ${run}`, name], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`useradd ${name} failed: ${r.stderr}`);
  const made = account(name);
  if (!made) throw new Error(`useradd ${name} succeeded but getent does not know the account`);
  return made;
}

/** Removes an account and its home. Fails, naming them, while processes still run as it. */
export function removeOsAccountNow(name: string): void {
  const r = spawnSync('userdel', ['--remove', name], { encoding: 'utf8' });
  // 6: no such user (already gone); 12: the home directory could not be removed (userdel says why)
  if (r.status !== 0 && r.status !== 6) throw new Error(`userdel --remove ${name} failed (${r.status}): ${r.stderr}`);
}

/** Waits until no process runs as the account (what a test stopped may still be exiting), then removes it. */
export async function removeOsAccount(name: string): Promise<void> {
  const uid = account(name)?.uid;
  if (uid === undefined) return;
  await waitFor(`no process to run as ${name}`, () => findProcesses((p) => p.uid === uid).length === 0).catch((err: Error) => {
    const left = findProcesses((p) => p.uid === uid).map((p) => `${p.pid} ${p.command}`);
    throw new Error(`${err.message}; still running as ${name}: ${left.join('; ')}`);
  });
  removeOsAccountNow(name);
}

/**
 * An account for this test file: created in beforeAll, removed with its home in afterAll (the
 * global teardown removes it should that never happen). Call it at the top level of the file,
 * outside any describe, so that it is made before and removed after the describe blocks' own
 * hooks, which start and stop what runs as it. With `orCurrentUser`, a run that is not root uses
 * the current user instead of failing.
 */
export function testOsAccount(purpose: string, opts: { orCurrentUser?: boolean } = {}): OsAccount {
  let current: OsAccount | undefined;
  let created = false;
  beforeAll(() => {
    if (opts.orCurrentUser && process.getuid?.() !== 0) {
      const me = os.userInfo();
      current = { name: me.username, uid: me.uid, gid: me.gid, home: me.homedir };
      return;
    }
    current = createOsAccount(purpose);
    created = true;
  });
  afterAll(async () => {
    if (created && current) await removeOsAccount(current.name);
  });
  const get = <K extends keyof OsAccount>(key: K): OsAccount[K] => {
    if (!current) throw new Error(`the "${purpose}" test account exists only once beforeAll has run`);
    return current[key];
  };
  return {
    get name() {
      return get('name');
    },
    get uid() {
      return get('uid');
    },
    get gid() {
      return get('gid');
    },
    get home() {
      return get('home');
    },
  };
}
