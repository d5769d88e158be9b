/**
 * Two auth servers (each with a proxy) on one DynamoDB (DynamoDB Local):
 * cluster state in the state table with streams, audit events in a DynamoDB
 * events table beside each server's file log. A user created through A
 * signs up on A's proxy and logs in through B's; the node heartbeating
 * through A shows on B; an automatic user CA rotation started through A is
 * stepped once per phase and B signs with the new key; after A is SIGKILLed,
 * B keeps serving and still has every event A acknowledged.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Server } from '../../runtime/auth/resources';
import { createAuth, startCluster, TestAuth, TestNode } from '../helpers/cluster';
import { DynamoDbLocal, dynamoDbStorage } from '../helpers/dynamodb';
import { tempDir, waitFor } from '../helpers/proc';
import { signingCAOf } from '../helpers/openssh';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';

describe('two auth servers on one DynamoDB', () => {
  let ddb: DynamoDbLocal;
  let a: TestAuth;
  let b: TestAuth;
  let alice: TshUser | undefined;
  let node: TestNode | undefined;

  const storage = () => dynamoDbStorage(ddb, { pollStreamPeriod: '200ms', eventsTable: 'teleport-events' });

  beforeAll(async () => {
    ddb = await DynamoDbLocal.start();
    a = await startCluster({ proxy: { insecureNoTls: true }, labels: { env: 'ha' }, tokens: ['node:ha-node-token'], teleportExtra: storage() });
    b = await createAuth({ proxy: { insecureNoTls: true }, teleportExtra: storage() });
    b.start();
    await b.ready();
  });
  afterAll(async () => {
    await node?.cleanup();
    await a?.cleanup();
    await b?.cleanup();
    await ddb?.stop();
    alice?.cleanup();
  });

  it('GIVEN both servers up THEN they share one cluster: one CA pin, and A\'s node is listed on B', async () => {
    expect(await b.caPin()).toBe(await a.caPin());
    await waitFor('the node heartbeating through A to show on B', async () => /^test-auth\s/m.test(await b.tctlOk('nodes', 'ls')));
  });

  it('GIVEN a user created through A WHEN they sign up on A and log in through B THEN B issues their certificate', async () => {
    alice = await TshUser.signUp(a, 'alice', [LOGIN]);
    const p = b.proxyPorts!;
    const login = await alice.tsh(['login', '--insecure', `--proxy=${b.webUrl()},${p.ssh}`, '--user=alice'], `${alice.password}\n${alice.nextCode()}\n`);
    expect(login.stderr).toMatch(/Enter your OTP token/);
    expect(login.code).toBe(0);
    expect(login.stdout).toMatch(/Logged in as:\s+alice/);
  });

  it('GIVEN an automatic user CA rotation started through A THEN each step is taken once by one of the two, and B follows it: same phase, and it signs with the new key', async () => {
    const work = tempDir('ha-rotation-');
    try {
      /** The fingerprint of the key that signed a user certificate `server` issues. */
      const signingKey = async (server: TestAuth, name: string) => {
        const key = path.join(work, name);
        await server.tctlOk('auth', 'sign', '--user', 'alice', '--format', 'openssh', '-o', key, '--ttl', '1h');
        return signingCAOf(`${key}-cert.pub`);
      };
      const oldKey = await signingKey(b, 'before');
      // WHEN A starts an automatic rotation of 6 s
      await a.tctlOk('auth', 'rotate', '--type=user', '--grace-period=6s');
      // THEN B sees it and, once it completes, signs with the new key (which is all that is left)
      await waitFor('B to see the rotation complete', async () => (await b.caStatus()).user.state.startsWith('rotated '), 30_000);
      const newKey = await signingKey(b, 'after');
      expect(newKey).not.toBe(oldKey);
      expect((await b.caStatus()).user.keys).toEqual([newKey]);
      expect((await a.caStatus()).user.keys).toEqual([newKey]);
      // AND each phase was stepped once, by one of them
      const steps = JSON.parse(await b.tctlOk('events', 'ls', '--type=ca.rotate', '--format=json')) as { phase: string }[];
      expect(steps.map((e) => e.phase)).toEqual(['init', 'update_clients', 'update_servers', 'standby']);
      // (alice's certificate came from the old key: she logs in again, as any user must after a rotation)
      const p = b.proxyPorts!;
      expect((await alice!.tsh(['login', '--insecure', `--proxy=${b.webUrl()},${p.ssh}`, '--user=alice'], `${alice!.password}\n${await alice!.freshCode()}\n`)).code).toBe(0);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  }, 120_000);

  it('GIVEN A is killed THEN B keeps serving, a node given both fails over to B, and every event A acknowledged is in the shared events table', async () => {
    // GIVEN a node that joined through A and knows both auth servers, heartbeating every second
    node = await TestNode.create(a, { token: 'ha-node-token', caPin: await a.caPin(), nodeName: 'ha-node', extraArgs: [`--auth-server=${b.addr}`], env: { TELEPORT_ANNOUNCE_TTL: '2' } });
    node.start();
    await node.ready();
    await a.tctlOk('users', 'add', 'bob', LOGIN);
    // WHEN A dies
    await a.daemon!.stop('SIGKILL');
    const killedAt = Date.now();
    // THEN the node's heartbeats go on through B: its record is renewed after the kill
    const admin = await b.adminClient();
    try {
      await waitFor('a heartbeat through B after the kill', async () => {
        const n = (await admin.get<Server[]>('/v1/namespaces/default/nodes')).find((s) => s.spec.hostname === 'ha-node');
        return !!n?.metadata.expires && Date.parse(n.metadata.expires) > killedAt + 2000; // TTL 2 s: only a heartbeat sent after the kill
      });
    } finally {
      admin.close();
    }
    expect(await b.tctlOk('users', 'ls')).toMatch(/^bob\s/m);
    const events = JSON.parse(await b.tctlOk('events', 'ls', '--type=user.create', '--format=json')) as { name: string }[];
    expect(events.map((e) => e.name).sort()).toEqual(['alice', 'bob']);
    // B's proxy and auth still answer alice's tsh (her profile is B's proxy).
    const ls = await alice!.tsh(['ls']);
    expect(ls.stderr).toBe('');
    expect(ls.code).toBe(0);
  });
});
