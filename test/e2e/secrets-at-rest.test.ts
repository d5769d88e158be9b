/**
 * Join and sign-up tokens are stored only as digests: after `tctl tokens
 * add`, `tctl nodes add`, `tctl users add` and `tctl users reset` (and a
 * node joining with a token), no token's text is anywhere in the SQLite
 * storage (database, WAL and shared-memory files, read as bytes), in a
 * DynamoDB state table (scanned), in the audit log, or in `tctl tokens ls`,
 * while the digests the tokens are found by are.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { register } from '../../runtime/auth/register';
import { logger, setLogLevel } from '../../runtime/utils/logger';
import { tokenDigest } from '../../runtime/utils/secrets';
import { startAuth, TestAuth } from '../helpers/cluster';
import { DynamoDbLocal, dynamoDbStorage, scanTable } from '../helpers/dynamodb';

const STATIC_TOKEN = 'static-node-token-at-rest-5e1b';
const INVITE_RE = /The invite token: (\S+)/;
const LINK_RE = /\/web\/newuser\/([0-9a-f]{32})/;

/**
 * Creates every kind of token through tctl and joins a node with one. Returns the token values,
 * and those still stored (the reset took the first sign-up token away).
 */
async function makeTokens(auth: TestAuth): Promise<{ all: string[]; live: string[] }> {
  const generated = INVITE_RE.exec(await auth.tctlOk('tokens', 'add', '--type=node'))![1];
  const chosen = INVITE_RE.exec(await auth.tctlOk('tokens', 'add', '--type=proxy', '--value=chosen-proxy-token-7c2d9e'))![1];
  const forNodes = INVITE_RE.exec(await auth.tctlOk('nodes', 'add'))![1];
  const signup = LINK_RE.exec(await auth.tctlOk('users', 'add', 'dora', 'dora'))![1];
  const pending = LINK_RE.exec(await auth.tctlOk('users', 'add', 'emil', 'emil'))![1];
  const reset = LINK_RE.exec(await auth.tctlOk('users', 'reset', 'dora'))![1];
  await register({
    servers: [{ host: '127.0.0.1', port: auth.port }],
    token: generated,
    caPins: [await auth.caPin()],
    role: 'Node',
    hostUUID: '0c7f6a52-1111-4000-8000-000000000001',
    nodeName: 'joined-node',
    additionalPrincipals: [],
    dnsNames: [],
    log: logger('test'),
  });
  expect(chosen).toBe('chosen-proxy-token-7c2d9e');
  const live = [generated, chosen, forNodes, pending, reset, STATIC_TOKEN];
  return { all: [...live, signup], live };
}

/** The audit log files and `tctl tokens ls` in both formats: none may hold a token. */
async function expectNoTokensInLogsOrListings(auth: TestAuth, tokens: string[]): Promise<void> {
  const logDir = path.join(auth.dataDir, 'log');
  const audit = fs
    .readdirSync(logDir)
    .filter((f) => f.endsWith('.log'))
    .map((f) => fs.readFileSync(path.join(logDir, f), 'utf8'))
    .join('');
  expect(audit).toMatch(/reset_password_token\.create/);
  const listings = (await auth.tctlOk('tokens', 'ls')) + (await auth.tctlOk('tokens', 'ls', '--format=json')) + (await auth.tctlOk('get', 'tokens'));
  for (const t of tokens) {
    expect(audit).not.toContain(t);
    expect(listings).not.toContain(t);
  }
}

describe('tokens at rest: SQLite', () => {
  let auth: TestAuth;
  beforeAll(async () => {
    setLogLevel('error');
    auth = await startAuth({ tokens: [`node:${STATIC_TOKEN}`] });
  });
  afterAll(() => auth?.cleanup());

  it('GIVEN every kind of token made THEN no token text is in the database, WAL or shm file, while their digests are', async () => {
    // GIVEN
    const { all, live } = await makeTokens(auth);
    // WHEN the storage files are read while the auth server runs
    const db = path.join(auth.dataDir, 'backend', 'sqlite.db');
    const bytes = Buffer.concat(['', '-wal', '-shm'].filter((s) => fs.existsSync(db + s)).map((s) => fs.readFileSync(db + s)));
    // THEN
    for (const t of all) expect([t, bytes.includes(t)]).toEqual([t, false]);
    for (const t of live) expect([t, bytes.includes(tokenDigest(t))]).toEqual([t, true]);
    await expectNoTokensInLogsOrListings(auth, all);
  });
});

describe('tokens at rest: DynamoDB', () => {
  let ddb: DynamoDbLocal;
  let auth: TestAuth;
  beforeAll(async () => {
    setLogLevel('error');
    ddb = await DynamoDbLocal.start();
    auth = await startAuth({
      tokens: [`node:${STATIC_TOKEN}`],
      teleportExtra: dynamoDbStorage(ddb, { table: 'state-at-rest' }),
    });
  });
  afterAll(async () => {
    await auth?.cleanup();
    await ddb?.stop();
  });

  it('GIVEN every kind of token made THEN no token text is in the state table, while their digests are', async () => {
    // GIVEN
    const { all, live } = await makeTokens(auth);
    // WHEN the table is scanned
    const table = JSON.stringify(await scanTable(ddb, 'state-at-rest'));
    // THEN
    for (const t of all) expect([t, table.includes(t)]).toEqual([t, false]);
    for (const t of live) expect([t, table.includes(tokenDigest(t))]).toEqual([t, true]);
    await expectNoTokensInLogsOrListings(auth, all);
  });
});
