/**
 * The token rotator Lambda against a real DynamoDB (DynamoDB Local) shared
 * with a real auth server process, with SSM mocked at the SDK level: what it
 * writes to SSM is captured, and a real node joins with exactly that token and
 * CA pin.
 */
import { PutParameterCommand, PutParameterCommandInput, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { Authorities } from '../../../runtime/auth/authorities';
import { Tokens } from '../../../runtime/auth/tokens';
import { DynamoBackend } from '../../../runtime/backend/dynamodb';
import { JOIN_TOKEN_TTL_MS, SsmPaths } from '../../../runtime/contract/aws';
import { Keys } from '../../../runtime/contract/keys';
import { handler, physicalResourceId } from '../../../runtime/controlplane/token-rotator';
import { caPin } from '../../../runtime/tlsca/pin';
import { setLogWriter } from '../../../runtime/utils/logger';
import { tokenDigest, tokenId } from '../../../runtime/utils/secrets';
import { startAuth, TestAuth, TestNode } from '../../helpers/cluster';
import { DynamoDbLocal, LOCAL_REGION, scanTable } from '../../helpers/dynamodb';
import { waitFor } from '../../helpers/proc';

const CLUSTER = 'example.com';
const TABLE = 'teleport-state';
const KMS_KEY = 'arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';

describe('token rotator (SSM mocked)', () => {
  const ssm = mockClient(SSMClient);
  const savedEnv = { ...process.env };
  const logs: string[] = [];
  let ddb: DynamoDbLocal;
  let state: DynamoBackend;
  let auth: TestAuth | undefined;
  const nodes: TestNode[] = [];
  /** Every token value published to SSM, over all the tests. */
  const published = new Set<string>();

  /** The PutParameter inputs captured since the last reset, by parameter name. */
  const puts = (): PutParameterCommandInput[] => ssm.commandCalls(PutParameterCommand).map((c) => c.args[0].input);
  const put = (name: string) => {
    const found = puts().filter((p) => p.Name === name);
    expect(found).toHaveLength(1);
    return found[0];
  };
  const storage = () => [
    'storage:',
    '  type: dynamodb',
    `  region: ${LOCAL_REGION}`,
    `  endpoint: ${ddb.endpoint}`,
    `  table_name: ${TABLE}`,
    '  access_key: local',
    '  secret_key: local',
    '  poll_stream_period: 200ms',
  ];

  beforeAll(async () => {
    ddb = await DynamoDbLocal.start();
    Object.assign(process.env, {
      TELEPORT_CLUSTER_NAME: CLUSTER,
      TELEPORT_DYNAMO_TABLE_NAME: TABLE,
      AWS_REGION: LOCAL_REGION,
      TELEPORT_DYNAMO_ENDPOINT: ddb.endpoint,
      TELEPORT_SSM_KEY_ARN: KMS_KEY,
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
    });
    setLogWriter((line) => logs.push(line));
  });
  beforeEach(() => {
    ssm.reset();
    ssm.on(PutParameterCommand).callsFake((input: PutParameterCommandInput) => {
      if (input.Name?.includes('/tokens/')) published.add(input.Value!);
      return { Version: 1, Tier: 'Standard' };
    });
  });
  afterAll(async () => {
    for (const n of nodes) await n.cleanup();
    await auth?.cleanup();
    await state?.close();
    await ddb?.stop();
    process.env = savedEnv;
    setLogWriter((line) => process.stderr.write(line + '\n'));
    ssm.restore();
  });

  it('GIVEN no auth server has run WHEN the custom resource is created THEN it succeeds, tokens are in the table with their TTL and in SSM, and no pin is published', async () => {
    // WHEN
    const before = Date.now();
    const out = (await handler({ RequestType: 'Create', ResourceProperties: {} })) as { PhysicalResourceId: string; Data: Record<string, string> };
    // THEN the custom resource answer says so, without secrets
    expect(out.PhysicalResourceId).toBe(physicalResourceId(CLUSTER));
    expect(out.Data.CaPinPublished).toBe('false');
    expect(puts().map((p) => p.Name).sort()).toEqual([SsmPaths.token(CLUSTER, 'node'), SsmPaths.token(CLUSTER, 'proxy')]);
    state = await DynamoBackend.open({ tableName: TABLE, endpoint: ddb.endpoint, accessKey: 'local', secretKey: 'local' });
    for (const role of ['node', 'proxy'] as const) {
      const p = put(SsmPaths.token(CLUSTER, role));
      expect(p).toMatchObject({ Type: 'SecureString', Overwrite: true, KeyId: KMS_KEY });
      const token = p.Value!;
      expect(JSON.stringify(out)).not.toContain(token);
      // the token is stored as the auth server stores it: under its SHA-256, named by its ID, for that role only, expiring after the TTL
      const item = await state.get(Keys.token(tokenDigest(token)));
      expect(JSON.parse(item.value.toString())).toMatchObject({ metadata: { name: tokenId(token) }, spec: { roles: [role === 'node' ? 'Node' : 'Proxy'] } });
      expect(item.value.toString()).not.toContain(token);
      expect(item.expires!.getTime()).toBeGreaterThanOrEqual(before + JOIN_TOKEN_TTL_MS);
      expect(item.expires!.getTime()).toBeLessThanOrEqual(Date.now() + JOIN_TOKEN_TTL_MS + 1000);
    }
  });

  it('GIVEN no auth server has run WHEN the schedule fires THEN the run fails naming the missing CA, after publishing tokens', async () => {
    await expect(handler({ 'detail-type': 'Scheduled Event', source: 'aws.events', detail: {} })).rejects.toThrow(/no certificate authority yet/);
    expect(puts().map((p) => p.Name).sort()).toEqual([SsmPaths.token(CLUSTER, 'node'), SsmPaths.token(CLUSTER, 'proxy')]);
  });

  it('GIVEN an auth server on the same table WHEN the schedule fires THEN a node joins with the token and CA pin read back from SSM', async () => {
    // GIVEN
    auth = await startAuth({ clusterName: CLUSTER, teleportExtra: storage() });
    // WHEN
    const out = (await handler({ 'detail-type': 'Scheduled Event', source: 'aws.events', detail: {} })) as { caPin: string };
    // THEN the pin published is the cluster's
    const pinPut = put(SsmPaths.caPin(CLUSTER));
    expect(pinPut).toMatchObject({ Type: 'String', Overwrite: true });
    expect(pinPut.Value).toBe(await auth.caPin());
    expect(out.caPin).toBe(pinPut.Value);
    // and a node given only what SSM holds joins
    const node = await TestNode.create(auth, { token: put(SsmPaths.token(CLUSTER, 'node')).Value!, caPin: pinPut.Value!, nodeName: 'rotated-node' });
    nodes.push(node);
    node.start();
    await node.ready();
    await waitFor('the node in tctl nodes ls', async () => /^rotated-node\s/m.test(await auth!.tctlOk('nodes', 'ls')));
  });

  it('GIVEN a published token WHEN the rotator runs again THEN SSM holds a new token, and both the old and the new one are valid', async () => {
    // GIVEN
    await handler({ RequestType: 'Update', PhysicalResourceId: physicalResourceId(CLUSTER), ResourceProperties: {} });
    const old = put(SsmPaths.token(CLUSTER, 'node')).Value!;
    ssm.resetHistory();
    // WHEN
    const out = (await handler({ RequestType: 'Update', PhysicalResourceId: physicalResourceId(CLUSTER), ResourceProperties: {} })) as {
      PhysicalResourceId: string;
      Data: Record<string, string>;
    };
    // THEN
    expect(out.PhysicalResourceId).toBe(physicalResourceId(CLUSTER));
    expect(out.Data.CaPinPublished).toBe('true');
    const fresh = put(SsmPaths.token(CLUSTER, 'node')).Value!;
    expect(fresh).not.toBe(old);
    const tokens = new Tokens(state);
    await expect(tokens.validate(fresh, 'Node')).resolves.toMatchObject({ roles: ['Node'] });
    await expect(tokens.validate(old, 'Node')).resolves.toMatchObject({ roles: ['Node'] });
    // a node tokens are no proxy tokens
    await expect(tokens.validate(fresh, 'Proxy')).rejects.toThrow(/invalid token/);
    // and the superseded token still joins a node
    const node = await TestNode.create(auth!, { token: old, caPin: await auth!.caPin(), nodeName: 'old-token-node' });
    nodes.push(node);
    node.start();
    await node.ready();
    await waitFor('the second node in tctl nodes ls', async () => /^old-token-node\s/m.test(await auth!.tctlOk('nodes', 'ls')));
  });

  it('GIVEN the custom resource WHEN it is deleted THEN nothing is written anywhere', async () => {
    // GIVEN
    const before = (await new Tokens(state).list()).length;
    // WHEN
    const out = await handler({ RequestType: 'Delete', PhysicalResourceId: physicalResourceId(CLUSTER), ResourceProperties: {} });
    // THEN
    expect(out).toEqual({ PhysicalResourceId: physicalResourceId(CLUSTER) });
    expect(ssm.calls()).toHaveLength(0);
    expect((await new Tokens(state).list()).length).toBe(before);
  });

  it('GIVEN every run so far THEN no token value was ever logged or stored', async () => {
    // GIVEN the ten tokens minted above (two per rotating run: Create, the failed and the good schedule, two Updates)
    expect(await new Tokens(state).list()).toHaveLength(10);
    expect(published.size).toBe(10);
    // THEN the runs were logged, by parameter name only
    expect(logs.filter((l) => /published a new join token/.test(l))).toHaveLength(10);
    // and no token value is in the log or anywhere in the state table, while their digests (the keys) are
    const table = JSON.stringify(await scanTable(ddb, TABLE));
    for (const t of published) {
      expect(logs.join('\n')).not.toContain(t);
      expect(table).not.toContain(t);
      expect(table).toContain(tokenDigest(t));
    }
  });
});

describe('token rotator: runs at the same time (no reserved concurrency, no lock)', () => {
  const savedEnv = { ...process.env };
  let ssm: ReturnType<typeof mockClient>;
  let ddb: DynamoDbLocal;
  let state: DynamoBackend;

  beforeAll(async () => {
    // Mocked here, after the first describe restored its own mock.
    ssm = mockClient(SSMClient);
    ddb = await DynamoDbLocal.start();
    Object.assign(process.env, {
      TELEPORT_CLUSTER_NAME: CLUSTER,
      TELEPORT_DYNAMO_TABLE_NAME: TABLE,
      AWS_REGION: LOCAL_REGION,
      TELEPORT_DYNAMO_ENDPOINT: ddb.endpoint,
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
    });
    state = await DynamoBackend.open({ tableName: TABLE, endpoint: ddb.endpoint, accessKey: 'local', secretKey: 'local', background: false });
    ssm.on(PutParameterCommand).resolves({ Version: 1, Tier: 'Standard' });
  });
  afterAll(async () => {
    await state?.close();
    await ddb?.stop();
    process.env = savedEnv;
    ssm?.restore();
  });

  it('GIVEN a cluster with its CA WHEN two scheduled runs and a deployment\'s run overlap THEN all succeed, SSM is left with valid tokens and the pin, and every minted token is valid', async () => {
    // GIVEN the CA the first auth server creates
    const { host } = await new Authorities(state).init(CLUSTER, 'ed25519');
    // WHEN three runs start together
    const runs = await Promise.allSettled([
      handler({ 'detail-type': 'Scheduled Event', source: 'aws.events', detail: {} }),
      handler({ 'detail-type': 'Scheduled Event', source: 'aws.events', detail: {} }),
      handler({ RequestType: 'Update', PhysicalResourceId: physicalResourceId(CLUSTER), ResourceProperties: {} }),
    ]);
    // THEN each succeeds
    expect(runs.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
    // AND each wrote both tokens and the pin
    const puts = ssm.commandCalls(PutParameterCommand).map((c) => c.args[0].input as PutParameterCommandInput);
    expect(puts).toHaveLength(9);
    // AND whatever each parameter holds last (SSM keeps the last write) is a valid token of its role, and the pin is the CA's
    const tokens = new Tokens(state);
    const last = (name: string) => puts.filter((p) => p.Name === name).at(-1)!.Value!;
    await expect(tokens.validate(last(SsmPaths.token(CLUSTER, 'node')), 'Node')).resolves.toMatchObject({ roles: ['Node'] });
    await expect(tokens.validate(last(SsmPaths.token(CLUSTER, 'proxy')), 'Proxy')).resolves.toMatchObject({ roles: ['Proxy'] });
    expect(last(SsmPaths.caPin(CLUSTER))).toBe(caPin(host.tlsCert()));
    // AND every token any run published stays valid until its own expiry, so a reader of an overwritten value still joins
    const published = puts.filter((p) => p.Name!.includes('/tokens/'));
    expect(new Set(published.map((p) => p.Value)).size).toBe(6);
    for (const p of published) await expect(tokens.validate(p.Value!, p.Name!.endsWith('/node') ? 'Node' : 'Proxy')).resolves.toBeDefined();
  });
});
