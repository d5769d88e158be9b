/**
 * OS account look-ups (runtime/node/passwd.ts): the native helper answers what NSS answers, with no
 * process per look-up and nothing cached, and fails closed when it misbehaves.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { lookupUser } from '../../../runtime/node/osuser';
import { findPasswdHelper, PasswdLookupError, PasswdResolver } from '../../../runtime/node/passwd';
import { createOsAccount, removeOsAccount } from '../../helpers/osusers';
import { tempDir } from '../../helpers/proc';

/** What `getent passwd name` says, as a PasswdEntry, or undefined. */
function getent(name: string) {
  const r = spawnSync('getent', ['passwd', name], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  const f = r.stdout.trim().split(':');
  return { name: f[0], uid: Number(f[2]), gid: Number(f[3]), home: f[5], shell: f[6] };
}

const helper = findPasswdHelper();
const resolvers: PasswdResolver[] = [];
function resolver(path: string | undefined, timeoutMs?: number): PasswdResolver {
  const r = new PasswdResolver(path, timeoutMs);
  resolvers.push(r);
  return r;
}
let work: string;

beforeAll(() => {
  work = tempDir('passwd-');
});
afterEach(() => resolvers.splice(0).forEach((r) => r.close()));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** An executable script in the test's directory standing in for the helper. */
function fakeHelper(name: string, body: string): string {
  const file = path.join(work, name);
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return file;
}

describe('passwd-lookup helper', () => {
  it('GIVEN an installation built with a C compiler THEN the helper is there (npm ci builds it)', () => {
    expect(helper).toBeDefined();
  });

  it('GIVEN the helper WHEN accounts are looked up THEN it answers what getent answers, from one process', async () => {
    // GIVEN
    const accounts = resolver(helper);
    // WHEN
    const root = await accounts.lookup('root');
    const pid = accounts.helperPid;
    const nobody = await accounts.lookup('nobody');
    const missing = await accounts.lookup('tpt-no-such-account');
    // THEN
    expect(root).toEqual(getent('root'));
    expect(root?.uid).toBe(0);
    expect(nobody).toEqual(getent('nobody'));
    expect(missing).toBeUndefined();
    expect(pid).toBeDefined();
    expect(accounts.helperPid).toBe(pid);
  });

  it("GIVEN a running helper WHEN the node starts a session's program THEN the program holds no descriptor to the helper", async () => {
    // GIVEN the descriptors a program gets before the helper runs (beyond its stdio)
    const inherited = () => spawnSync('sh', ['-c', 'ls /proc/$$/fd'], { encoding: 'utf8' }).stdout.split(/\s+/).filter((fd) => Number(fd) > 2).length;
    const before = inherited();
    const accounts = resolver(helper);
    // WHEN the helper runs and a program starts
    await accounts.lookup('root');
    expect(accounts.helperPid).toBeDefined();
    // THEN the program has no more descriptors than before: it cannot write questions to the helper or read its answers
    expect(inherited()).toBe(before);
  });

  it('GIVEN many look-ups at once WHEN they are answered THEN each gets its own account, in order', async () => {
    const accounts = resolver(helper);
    const names = Array.from({ length: 50 }, (_, i) => ['root', 'nobody', 'daemon', 'tpt-missing'][i % 4]);
    const got = await Promise.all(names.map((n) => accounts.lookup(n)));
    expect(got.map((e) => e?.name)).toEqual(names.map((n) => (n === 'tpt-missing' ? undefined : n)));
  });

  it('GIVEN an account created after a first look-up WHEN it is looked up, removed and looked up again THEN each answer is current (nothing cached)', async () => {
    // GIVEN a helper already running, and a name it has answered "none" for
    const accounts = resolver(helper);
    const made = createOsAccount('passwd');
    try {
      await removeOsAccount(made.name);
      expect(await accounts.lookup(made.name)).toBeUndefined();
      // WHEN the account comes (back)
      const again = createOsAccount('passwd');
      try {
        // THEN the next look-up sees it with its ids
        const seen = await accounts.lookup(again.name);
        expect(seen).toMatchObject({ name: again.name, uid: again.uid, gid: again.gid, home: again.home });
      } finally {
        await removeOsAccount(again.name);
      }
      // THEN once removed, it is unknown again to the same helper
      expect(await accounts.lookup(again.name)).toBeUndefined();
    } finally {
      await removeOsAccount(made.name);
    }
  });

  it('GIVEN no helper (not built) WHEN accounts are looked up THEN getent answers the same', async () => {
    const accounts = resolver(undefined);
    expect(await accounts.lookup('root')).toEqual(getent('root'));
    expect(await accounts.lookup('tpt-no-such-account')).toBeUndefined();
    expect(accounts.helperPid).toBeUndefined();
  });

  it('GIVEN a helper that stays silent WHEN a look-up waits past the timeout THEN it fails, and the next look-up has a new helper', async () => {
    // GIVEN
    const accounts = resolver(fakeHelper('silent', 'exec sleep 600'), 300);
    // WHEN
    const first = accounts.lookup('root');
    const pid = accounts.helperPid;
    // THEN
    await expect(first).rejects.toThrow(PasswdLookupError);
    const second = accounts.lookup('root');
    const replacement = accounts.helperPid;
    await expect(second).rejects.toThrow(/did not answer/);
    expect(pid).toBeDefined();
    expect(replacement).toBeDefined();
    expect(replacement).not.toBe(pid);
  });

  it('GIVEN a helper that answers out of form or for another account WHEN looked up THEN no account is made of it', async () => {
    // An echo answers the name itself: out of form.
    await expect(resolver(fakeHelper('echo', 'exec cat')).lookup('root')).rejects.toThrow(/out of form/);
    // A helper answering root's entry to every name: only the account of exactly the asked name counts.
    const liar = resolver(fakeHelper('liar', `while read n; do printf 'ok\\troot\\t0\\t0\\t/root\\t/bin/sh\\n'; done`));
    expect(await liar.lookup('nobody')).toBeUndefined();
    // A malformed uid is an error, not uid 0 or NaN.
    const badUid = resolver(fakeHelper('baduid', `while read n; do printf 'ok\\t%s\\t-1\\t0\\t/\\t/bin/sh\\n' "$n"; done`));
    await expect(badUid.lookup('nobody')).rejects.toThrow(/malformed uid/);
  });

  it('GIVEN a helper that exits WHEN a look-up waits on it THEN it fails rather than hangs', async () => {
    await expect(resolver(fakeHelper('quits', 'exit 3')).lookup('root')).rejects.toThrow(PasswdLookupError);
  });
});

describe('lookupUser', () => {
  it('GIVEN a failing look-up WHEN a login is resolved THEN the login is refused (fail closed)', async () => {
    const broken = resolver(fakeHelper('quits2', 'exit 1'));
    await expect(lookupUser('root', broken)).rejects.toThrow(/cannot look up user "root"/);
  });

  it('GIVEN the helper WHEN logins are resolved THEN a known login maps to its account and an unknown or malformed one is refused', async () => {
    const accounts = resolver(helper);
    expect(await lookupUser('root', accounts)).toEqual(getent('root'));
    await expect(lookupUser('tpt-no-such-account', accounts)).rejects.toThrow(/unknown user/);
    await expect(lookupUser('root\nnobody', accounts)).rejects.toThrow(/invalid login/);
  });
});
