/**
 * Two auth servers started at the same moment on one SQLite file must end up
 * with one set of CAs: create-if-absent picks one winner, the other adopts it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openBackend } from '../../runtime/backend';
import { rangeEnd } from '../../runtime/contract/keys';
import { createAuth, TestAuth } from '../helpers/cluster';
import { tempDir, waitFor } from '../helpers/proc';

describe('auth servers racing on one storage', () => {
  let storage: string;
  let a: TestAuth;
  let b: TestAuth;

  beforeAll(async () => {
    storage = tempDir('shared-storage-');
    [a, b] = await Promise.all([createAuth({ storagePath: storage }), createAuth({ storagePath: storage })]);
  });
  afterAll(async () => {
    await Promise.all([a?.cleanup(), b?.cleanup()]);
    fs.rmSync(storage, { recursive: true, force: true });
  });

  it('GIVEN two auth processes started together WHEN both are up THEN there is one user CA, one host CA and one CA pin', async () => {
    a.start();
    b.start();
    await Promise.all([a.ready(), b.ready()]);

    const [statusA, statusB] = await Promise.all([a.tctlOk('status'), b.tctlOk('status')]);
    const pin = (s: string) => /CA pin\s+(sha256:[0-9a-f]{64})/.exec(s)?.[1];
    expect(pin(statusA)).toBeDefined();
    expect(pin(statusA)).toBe(pin(statusB));
    expect(await a.tctlOk('auth', 'export')).toBe(await b.tctlOk('auth', 'export'));

    const db = await openBackend({ type: 'sqlite', path: path.join(storage, 'sqlite.db') });
    try {
      const cas = await db.getRange('/authorities/', rangeEnd('/authorities/'));
      expect(cas.map((i) => i.key).sort()).toEqual(['/authorities/host/example.com', '/authorities/user/example.com']);
      const authServers = await db.getRange('/authservers/', rangeEnd('/authservers/'));
      expect(authServers).toHaveLength(2);
    } finally {
      await db.close();
    }

    // THEN a user made through one server is listed by the other once its watch delivers the write
    // (SQLite is polled every 500 ms; a read of the user by name would go to the store at once).
    await a.tctlOk('users', 'add', 'carol', 'carol');
    await waitFor('the other server to list carol', async () => /^carol\s+carol$/m.test(await b.tctlOk('users', 'ls')));
  });
});
