/**
 * sim/lambda/streams.ts against DynamoDB Local's stream, read through a stand-in for the gateway
 * that names each call's role and authorizes it: a filtered mapping from TRIM_HORIZON gets
 * the matching records in Lambda's format and never the others; a mapping from LATEST skips what
 * came before it and retries a failed batch, blocking the shard, until it succeeds; the stream is
 * read with the function role's credentials, and a role that may not read it gets nothing.
 */
import { CreateTableCommand, PutItemCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { Functions } from '../../sim/lambda/functions';
import { StreamMappings } from '../../sim/lambda/streams';
import type { CfnResource } from '../../sim/types';
import type { ServiceHandler } from '../../sim/aws/gateway';
import { DynamoDbLocal, LOCAL_CREDENTIALS, LOCAL_REGION } from '../helpers/dynamodb';
import { endpointTls } from '../../sim/tls';
import { waitFor } from '../helpers/proc';
import { fixture, physicalName, serveService, type Fixture, type TestGateway } from './lambda-fixture';

/** Logs the event it receives; Flaky fails its first invocation. */
const RECORDER = `exports.handler = async (event) => { console.log('EVENT ' + JSON.stringify(event)); return 'ok'; };`;
const FLAKY = `let calls = 0;
exports.handler = async (event) => {
  calls += 1;
  console.log('EVENT ' + JSON.stringify({ call: calls, ...event }));
  if (calls === 1) throw new Error('first call fails');
  return 'ok';
};`;

/** Fails every batch that holds poison/2. */
const POISONED = `exports.handler = async (event) => {
  const keys = event.Records.map((r) => r.dynamodb.Keys.FullPath.S);
  console.log('EVENT ' + JSON.stringify(event));
  if (keys.includes('poison/2')) throw new Error('poisoned');
  return 'ok';
};`;

const HOST_CA = 'teleport/authorities/host/acme';

const mapping = (fn: string, extra: Record<string, unknown>): CfnResource => ({
  Type: 'AWS::Lambda::EventSourceMapping',
  Properties: { EventSourceArn: { 'Fn::GetAtt': ['Table', 'StreamArn'] }, FunctionName: { Ref: fn }, BatchSize: 100, ...extra },
});

/** The events a function received, from its output. */
function received(functions: Functions, logicalId: string): Record<string, any>[] {
  return [...functions.output(physicalName(logicalId)).matchAll(/EVENT (.*)/g)].map((m) => JSON.parse(m[1]));
}

/**
 * The gateway's DynamoDB Streams route, reduced to what the test needs: the call's action on the
 * stream is authorized, then the request goes to DynamoDB Local under the emulator's own key (its
 * data is kept per access key), as the gateway forwards it.
 */
function streamsService(endpoint: string, streamArn: string): ServiceHandler {
  return async (req, authorize) => {
    const action = String(req.headers['x-amz-target']).split('.')[1];
    const type = { 'content-type': 'application/x-amz-json-1.0' };
    if (!authorize({ action: `dynamodb:${action}`, resource: streamArn }).allowed) {
      return { status: 400, headers: type, body: JSON.stringify({ __type: 'com.amazonaws.dynamodb.v20120810#AccessDeniedException', message: `not authorized to perform: dynamodb:${action}` }) };
    }
    const authorization = `AWS4-HMAC-SHA256 Credential=${LOCAL_CREDENTIALS.accessKeyId}/20240101/${LOCAL_REGION}/dynamodb/aws4_request, SignedHeaders=host, Signature=0`;
    const res = await fetch(endpoint, { method: 'POST', headers: { ...type, 'x-amz-target': String(req.headers['x-amz-target']), authorization }, body: req.body });
    return { status: res.status, headers: type, body: Buffer.from(await res.arrayBuffer()) };
  };
}

const keysOf = (event: Record<string, any>) => (event.Records as Record<string, any>[]).map((r) => r.dynamodb.Keys.FullPath.S as string);

describe('DynamoDB stream event source mappings', () => {
  let ddb: DynamoDbLocal;
  let db: DynamoDBClient;
  let fx: Fixture;
  let functions: Functions;
  let mappings: StreamMappings;
  let streamArn: string;
  let gateway: TestGateway;

  const put = (fullPath: string, value: string) =>
    db.send(new PutItemCommand({ TableName: 'state', Item: { FullPath: { S: fullPath }, Value: { B: Buffer.from(value) }, Rev: { N: '1' } } }));

  beforeAll(async () => {
    ddb = await DynamoDbLocal.start();
    db = ddb.client();
    const table = await db.send(
      new CreateTableCommand({
        TableName: 'state',
        KeySchema: [{ AttributeName: 'FullPath', KeyType: 'HASH' }],
        AttributeDefinitions: [{ AttributeName: 'FullPath', AttributeType: 'S' }],
        BillingMode: 'PAY_PER_REQUEST',
        StreamSpecification: { StreamEnabled: true, StreamViewType: 'NEW_IMAGE' },
      }),
    );
    streamArn = table.TableDescription!.LatestStreamArn!;
    // Written before the mappings start: TRIM_HORIZON sees it, LATEST does not.
    await put(HOST_CA, 'ca-v1');
    await put('flaky/0', 'before');
    for (const n of [1, 2, 3]) await put(`poison/${n}`, 'p');
    fx = fixture(
      { Pin: { code: RECORDER }, Flaky: { code: FLAKY }, Blocked: { code: RECORDER }, Poisoned: { code: POISONED } },
      {
        PinTrigger: mapping('Pin', {
          StartingPosition: 'TRIM_HORIZON',
          MaximumRetryAttempts: 10,
          MaximumRecordAgeInSeconds: 3600,
          FilterCriteria: { Filters: [{ Pattern: JSON.stringify({ eventName: ['INSERT', 'MODIFY'], dynamodb: { Keys: { FullPath: { S: [HOST_CA] } } } }) }] },
        }),
        BlockedTrigger: mapping('Blocked', { StartingPosition: 'TRIM_HORIZON' }),
        PoisonedTrigger: mapping('Poisoned', {
          StartingPosition: 'TRIM_HORIZON',
          BisectBatchOnFunctionError: true,
          MaximumRetryAttempts: 0,
          FilterCriteria: { Filters: [{ Pattern: JSON.stringify({ dynamodb: { Keys: { FullPath: { S: [{ prefix: 'poison/' }] } } } }) }] },
        }),
        FlakyTrigger: mapping('Flaky', {
          StartingPosition: 'LATEST',
          FilterCriteria: { Filters: [{ Pattern: JSON.stringify({ dynamodb: { Keys: { FullPath: { S: [{ prefix: 'flaky/' }] } } } }) }] },
        }),
      },
      { Table: streamArn },
    );
    // The gateway's part: DynamoDB Streams calls authorized for the caller's role (BlockedRole is denied), then passed to DynamoDB Local.
    gateway = await serveService(streamsService(ddb.endpoint, streamArn), fx.credentials, await endpointTls(fx.dir), (call) =>
      call.caller.roleLogicalId === 'BlockedRole' ? { allowed: false, reason: 'no identity-based policy allows it' } : { allowed: true },
    );
    functions = Functions.create({ resources: fx.resources, resolve: fx.resolve, cdkOut: fx.cdkOut, credentials: fx.credentials, env: fx.env, log: fx.log, workDir: fx.workDir });
    mappings = await StreamMappings.create({
      resources: fx.resources,
      resolve: fx.resolve,
      functions,
      credentials: fx.credentials,
      endpoint: gateway.url,
      ca: gateway.tls.cert,
      log: fx.log,
      pollMs: 100,
    });
  });

  afterAll(async () => {
    await mappings?.close();
    await functions?.close();
    await gateway?.close();
    db?.destroy();
    await ddb?.stop();
    fx?.cleanup();
  });

  test('a filtered mapping delivers the matching records in Lambda\'s format and filters out the others', async () => {
    // WHEN another key and then the host CA again are written
    await put('teleport/nodes/n1', 'node');
    await put(HOST_CA, 'ca-v2');
    // THEN the function receives both host CA records, the one from before the mapping (TRIM_HORIZON) first
    const records = await waitFor('the host CA records', () => {
      const all = received(functions, 'Pin').flatMap((e) => e.Records as Record<string, any>[]);
      return all.length >= 2 && all;
    });
    expect(records.map((r) => [r.eventName, Buffer.from(r.dynamodb.NewImage.Value.B, 'base64').toString()])).toEqual([
      ['INSERT', 'ca-v1'],
      ['MODIFY', 'ca-v2'],
    ]);
    // AND never the other keys (written before the second host CA record, on the same shard)
    expect(received(functions, 'Pin').flatMap(keysOf)).toEqual([HOST_CA, HOST_CA]);
    // AND each record is as Lambda builds it
    expect(records[1]).toEqual({
      eventID: expect.any(String),
      eventName: 'MODIFY',
      eventVersion: '1.1',
      eventSource: 'aws:dynamodb',
      awsRegion: 'eu-west-1',
      dynamodb: {
        ApproximateCreationDateTime: expect.any(Number),
        Keys: { FullPath: { S: HOST_CA } },
        NewImage: { FullPath: { S: HOST_CA }, Value: { B: Buffer.from('ca-v2').toString('base64') }, Rev: { N: '1' } },
        SequenceNumber: expect.any(String),
        SizeBytes: expect.any(Number),
        StreamViewType: 'NEW_IMAGE',
      },
      eventSourceARN: streamArn,
    });
  });

  test('a mapping from LATEST skips earlier records and retries a failed batch before going on', async () => {
    // WHEN two records are written after the mapping started, and the function fails its first invocation
    await put('flaky/1', 'one');
    await put('flaky/2', 'two');
    const events = await waitFor('flaky/2 to be delivered after a retry', () => {
      const got = received(functions, 'Flaky');
      return got.slice(1).flatMap(keysOf).includes('flaky/2') && got;
    });
    // THEN the failed batch was given again (the shard waited for it): the first two invocations start with flaky/1
    expect(events[0].call).toBe(1);
    expect(keysOf(events[0])[0]).toBe('flaky/1');
    expect(keysOf(events[1])[0]).toBe('flaky/1');
    // AND after the failure every record came once, in order, and the record from before the mapping never came
    expect(events.slice(1).flatMap(keysOf)).toEqual(['flaky/1', 'flaky/2']);
    expect(events.flatMap(keysOf)).not.toContain('flaky/0');
    expect(mappings.batches.filter((b) => b.mapping === 'FlakyTrigger').map((b) => b.outcome)[0]).toBe('failed');
    expect(fx.lines.some((l) => l.includes('FlakyTrigger → ') && l.includes('failed (attempt 1)'))).toBe(true);
  });

  test('a failing batch is bisected down to the failing record, which is dropped after its retries; the others are delivered', async () => {
    // GIVEN three records already in the stream, read in one batch, the second of which always fails
    // WHEN the mapping (bisect on, no retries) has delivered what it can
    await waitFor('the batch after the poisoned record', () => mappings.batches.filter((b) => b.mapping === 'PoisonedTrigger').length >= 6);
    // THEN the batch was split until the failing record stood alone, which was dropped
    expect(mappings.batches.filter((b) => b.mapping === 'PoisonedTrigger').map((b) => [b.outcome, b.records])).toEqual([
      ['failed', 3],
      ['failed', 2],
      ['delivered', 1],
      ['failed', 1],
      ['dropped', 1],
      ['delivered', 1],
    ]);
    // AND the invocations came in stream order
    expect(received(functions, 'Poisoned').map(keysOf)).toEqual([['poison/1', 'poison/2', 'poison/3'], ['poison/1', 'poison/2'], ['poison/1'], ['poison/2'], ['poison/3']]);
  });

  test('the stream is read with the function\'s role credentials, and a role the gateway denies gets nothing', async () => {
    // GIVEN the mappings have been polling
    await waitFor('a denied read by the Blocked mapping', () => fx.lines.find((l) => l.includes('BlockedTrigger: PROBLEM') && l.includes('AccessDeniedException')));
    // THEN every stream call was signed with credentials of the mapped function's role
    const byRole = (role: string) => new Set(gateway.calls.filter((c) => c.caller.roleLogicalId === role).map((c) => c.action));
    expect(byRole('PinRole')).toEqual(new Set(['dynamodb:DescribeStream', 'dynamodb:GetShardIterator', 'dynamodb:GetRecords']));
    expect(byRole('FlakyRole')).toEqual(new Set(['dynamodb:DescribeStream', 'dynamodb:GetShardIterator', 'dynamodb:GetRecords']));
    expect(gateway.calls.every((c) => ['PinRole', 'FlakyRole', 'BlockedRole', 'PoisonedRole'].includes(c.caller.roleLogicalId) && c.resource === streamArn)).toBe(true);
    // AND the function whose role may not read the stream was never invoked
    expect(functions.invocations.filter((i) => i.function === physicalName('Blocked'))).toEqual([]);
  });
});
