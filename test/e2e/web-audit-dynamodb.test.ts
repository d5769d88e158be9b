/**
 * The audit page's search on a cluster whose audit log is a DynamoDB events table (DynamoDB Local):
 * the web API reads the same store the auth server writes, and its user and type filters hold there.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startCluster, TestAuth } from '../helpers/cluster';
import { DynamoDbLocal, dynamoDbStorage, scanTable } from '../helpers/dynamodb';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';
import { webApiRequest } from '../helpers/webapi';

const SITE = 'example.com';
const EVENTS_TABLE = 'teleport-audit-events';

describe('the audit search on a DynamoDB audit log', () => {
  let ddb: DynamoDbLocal;
  let c: TestAuth;
  let ca: string;
  const users: TshUser[] = [];

  beforeAll(async () => {
    ddb = await DynamoDbLocal.start();
    c = await startCluster({
      proxy: {},
      teleportExtra: dynamoDbStorage(ddb, { eventsTable: EVENTS_TABLE }),
    });
    ca = fs.readFileSync(path.join(c.dataDir, 'webproxy_cert.pem'), 'utf8');
  });
  afterAll(async () => {
    await c?.cleanup();
    await ddb?.stop();
    users.forEach((u) => u.cleanup());
  });

  it('GIVEN alice and bob signed up and alice logged in to the web UI WHEN she searches by user and type THEN the answers come from the events table, each user\'s only', async () => {
    // GIVEN two users (their sign-ups audited) and alice's web login
    for (const name of ['alice', 'bob']) users.push(await TshUser.signUp(c, name, [LOGIN]));
    const [alice] = users;
    const login = await webApiRequest(c.webUrl(), ca, 'POST', '/webapi/sessions', {
      body: { user: 'alice', pass: alice.password, second_factor_token: alice.nextCode() },
    });
    expect(login.status).toBe(200);
    const search = async (q: string) => {
      const res = await webApiRequest(c.webUrl(), ca, 'GET', `/webapi/sites/${SITE}/events/search?${q}`, { token: login.json.token });
      expect(res.status).toBe(200);
      return res.json.events as { event: string; user: string; uid: string }[];
    };
    // WHEN she searches her own events, bob's password changes, and a user with none
    const hers = await search('user=alice');
    const bobs = await search('user=bob&event=user.password_change');
    const nobody = await search('user=mallory');
    // THEN hers are her sign-up and her login, bob's his sign-up, and none for mallory
    // (compared sorted: the two may share a second, within which DynamoDB keeps no order)
    expect(hers.map((e) => [e.event, e.user]).sort()).toEqual([
      ['user.login', 'alice'],
      ['user.password_change', 'alice'],
    ]);
    expect(bobs.map((e) => [e.event, e.user])).toEqual([['user.password_change', 'bob']]);
    expect(nobody).toEqual([]);
    // AND they are the events table's items
    const stored = new Set((await scanTable(ddb, EVENTS_TABLE)).map((item) => JSON.parse(item.Fields).uid as string));
    expect([...hers, ...bobs].every((e) => stored.has(e.uid))).toBe(true);
  });
});
