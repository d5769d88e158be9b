/**
 * The local AWS endpoints (sim/aws/): the stores of a minimal template behind the gateway, reached
 * with the real SDK clients as the deployed runtime reaches them (signed with issued keys, default
 * checksum settings, the endpoint certificate trusted through an agent or NODE_EXTRA_CA_CERTS).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { DescribeTimeToLiveCommand, DynamoDBClient, GetItemCommand, PutItemCommand, QueryCommand } from '@aws-sdk/client-dynamodb';
import { DescribeStreamCommand, DynamoDBStreamsClient, GetRecordsCommand, GetShardIteratorCommand, ListStreamsCommand } from '@aws-sdk/client-dynamodb-streams';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { AutoScalingClient, CompleteLifecycleActionCommand } from '@aws-sdk/client-auto-scaling';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { DescribeInstanceInformationCommand, GetParameterCommand, GetParametersByPathCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { checkChecksums, decodeAwsChunked } from '../../sim/aws/aws-chunked';
import { CredentialRegistry } from '../../sim/aws/credentials';
import { Gateway, type ServiceHandler } from '../../sim/aws/gateway';
import { refusal, type ServiceResponse } from '../../sim/aws/protocol';
import { ParameterStore } from '../../sim/aws/ssm';
import { Stores } from '../../sim/aws/stores';
import { endpointTls, type EndpointTls } from '../../sim/tls';
import type { AwsCall, CallAuditor, Caller, CfnResources, IamDecision, IssuedCredentials, Resolve } from '../../sim/types';
import { arn, REGION } from '../../sim/types';

const KEY_ID = '1234abcd-12ab-34cd-56ef-1234567890ab';
const TABLE = 'acme-state';
const BUCKET = 'acme-recordings';

/** The minimal template: a table with a GSI, TTL and a NEW_IMAGE stream; a bucket with aws:kms default encryption. */
const RESOURCES: CfnResources = {
  Key: { Type: 'AWS::KMS::Key', Properties: { EnableKeyRotation: true } },
  StateTable: {
    Type: 'AWS::DynamoDB::Table',
    Properties: {
      AttributeDefinitions: [
        { AttributeName: 'HashKey', AttributeType: 'S' },
        { AttributeName: 'FullPath', AttributeType: 'S' },
        { AttributeName: 'Kind', AttributeType: 'S' },
        { AttributeName: 'CreatedAt', AttributeType: 'N' },
      ],
      KeySchema: [
        { AttributeName: 'HashKey', KeyType: 'HASH' },
        { AttributeName: 'FullPath', KeyType: 'RANGE' },
      ],
      BillingMode: 'PAY_PER_REQUEST',
      GlobalSecondaryIndexes: [
        {
          IndexName: 'bykind',
          KeySchema: [
            { AttributeName: 'Kind', KeyType: 'HASH' },
            { AttributeName: 'CreatedAt', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'ALL' },
        },
      ],
      SSESpecification: { SSEEnabled: true, SSEType: 'KMS', KMSMasterKeyId: { 'Fn::GetAtt': ['Key', 'Arn'] } },
      StreamSpecification: { StreamViewType: 'NEW_IMAGE' },
      TimeToLiveSpecification: { AttributeName: 'Expires', Enabled: true },
    },
  },
  RecordingsBucket: {
    Type: 'AWS::S3::Bucket',
    Properties: {
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ BucketKeyEnabled: true, ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: { 'Fn::GetAtt': ['Key', 'Arn'] } } }] },
      VersioningConfiguration: { Status: 'Enabled' },
    },
  },
};
const NAMES: Record<string, string> = { StateTable: TABLE, RecordingsBucket: BUCKET, Key: KEY_ID };
const resolve: Resolve = (v) => {
  const o = v as Record<string, any>;
  if (o?.Ref) return NAMES[o.Ref];
  if (o?.['Fn::GetAtt']?.[0] === 'Key') return arn.key(KEY_ID);
  return v;
};

/** Allows everything but a few actions of the "Limited" role. */
class TestAuditor implements CallAuditor {
  readonly calls: AwsCall[] = [];
  static readonly LIMITED_DENIED = new Set(['dynamodb:PutItem', 's3:PutObject', 'kms:Decrypt', 'autoscaling:CompleteLifecycleAction', 'lambda:InvokeFunction']);
  check(call: AwsCall): IamDecision {
    this.calls.push(call);
    return call.caller.roleLogicalId === 'LimitedRole' && TestAuditor.LIMITED_DENIED.has(call.action) ? { allowed: false, reason: 'the test denies it' } : { allowed: true };
  }
  callsOf(name: string, action: string): AwsCall[] {
    return this.calls.filter((c) => c.caller.name === name && c.action === action);
  }
}

const caller = (roleLogicalId: string, name: string): Caller => ({ roleLogicalId, roleArn: arn.role(`acme-${roleLogicalId}`), name });
const AUTH = caller('AuthRole', 'i-0auth');
const LIMITED = caller('LimitedRole', 'i-0limited');

let dir: string;
let tls: EndpointTls;
let stores: Stores | undefined;
let gateway: Gateway | undefined;
let agent: https.Agent;
const registry = new CredentialRegistry();
const auditor = new TestAuditor();
const clients: { destroy(): void }[] = [];

function config(creds: IssuedCredentials) {
  return {
    endpoint: gateway!.url,
    region: REGION,
    credentials: { accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey, sessionToken: creds.sessionToken },
    requestHandler: { httpsAgent: agent },
    maxAttempts: 1,
  };
}
function client<T extends { destroy(): void }>(make: new (cfg: any) => T, creds: IssuedCredentials): T {
  const c = new make(config(creds));
  clients.push(c);
  return c;
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sim-aws-'));
  tls = await endpointTls(dir, ['127.0.0.1']);
  agent = new https.Agent({ ca: tls.cert, keepAlive: true });
  stores = await Stores.start({ resources: RESOURCES, resolve, dir });
  gateway = await Gateway.start({ tls, registry, auditor, host: '127.0.0.1', stores });
  gateway.route('ssm', new ParameterStore().handler);
}, 90_000);

afterAll(async () => {
  for (const c of clients) c.destroy();
  agent?.destroy();
  await gateway?.close();
  await stores?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('stores', () => {
  it('creates the declared table with its stream and TTL, and reports the stream under the deployment ARN', async () => {
    // GIVEN the stores of the template
    const table = stores!.tables.get('StateTable')!;
    // THEN the table's stream has DynamoDB Local's label under the deployment's region and account
    expect(table.name).toBe(TABLE);
    expect(table.streamLabel).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(table.streamArn).toBe(arn.stream(TABLE, table.streamLabel!));
    // AND the bucket's default key is the template's key ARN
    expect(stores!.bucketKeys.get(BUCKET)).toBe(arn.key(KEY_ID));
    // AND TTL is on as declared
    const ddb = client(DynamoDBClient, registry.issue(AUTH));
    const ttl = await ddb.send(new DescribeTimeToLiveCommand({ TableName: TABLE }));
    expect(ttl.TimeToLiveDescription).toMatchObject({ TimeToLiveStatus: 'ENABLED', AttributeName: 'Expires' });
  });
});

describe('DynamoDB through the gateway', () => {
  it('puts, gets and queries the GSI, each call audited on its table or index', async () => {
    // GIVEN a caller with its own keys
    const ddb = client(DynamoDBClient, registry.issue(AUTH));
    // WHEN it writes two items and reads them back by key and through the index
    await ddb.send(new PutItemCommand({ TableName: TABLE, Item: { HashKey: { S: 'node' }, FullPath: { S: '/nodes/a' }, Kind: { S: 'node' }, CreatedAt: { N: '1' } } }));
    await ddb.send(new PutItemCommand({ TableName: TABLE, Item: { HashKey: { S: 'node' }, FullPath: { S: '/nodes/b' }, Kind: { S: 'node' }, CreatedAt: { N: '2' } } }));
    const got = await ddb.send(new GetItemCommand({ TableName: TABLE, Key: { HashKey: { S: 'node' }, FullPath: { S: '/nodes/a' } }, ConsistentRead: true }));
    const queried = await ddb.send(new QueryCommand({ TableName: TABLE, IndexName: 'bykind', KeyConditionExpression: 'Kind = :k', ExpressionAttributeValues: { ':k': { S: 'node' } } }));
    // THEN the data is there
    expect(got.Item?.CreatedAt).toEqual({ N: '1' });
    expect(queried.Items?.map((i) => i.FullPath.S)).toEqual(['/nodes/a', '/nodes/b']);
    // AND the audit saw each call on the right resource, over TLS
    expect(auditor.callsOf(AUTH.name, 'dynamodb:PutItem')[0]).toMatchObject({ resource: arn.table(TABLE), context: { 'aws:SecureTransport': 'true' } });
    expect(auditor.callsOf(AUTH.name, 'dynamodb:Query')[0].resource).toBe(`${arn.table(TABLE)}/index/bykind`);
  });

  it('serves the stream with the deployment ARNs, its calls audited on the stream', async () => {
    // GIVEN an item written through the gateway
    const creds = registry.issue(AUTH);
    const ddb = client(DynamoDBClient, creds);
    const streams = client(DynamoDBStreamsClient, creds);
    await ddb.send(new PutItemCommand({ TableName: TABLE, Item: { HashKey: { S: 'ca' }, FullPath: { S: '/authorities/host' }, Kind: { S: 'ca' }, CreatedAt: { N: '3' } } }));
    // WHEN the stream is read as a Lambda poller reads it
    const listed = await streams.send(new ListStreamsCommand({ TableName: TABLE }));
    const streamArn = listed.Streams![0].StreamArn!;
    const shards = (await streams.send(new DescribeStreamCommand({ StreamArn: streamArn }))).StreamDescription!.Shards!;
    const iterator = (await streams.send(new GetShardIteratorCommand({ StreamArn: streamArn, ShardId: shards[0].ShardId, ShardIteratorType: 'TRIM_HORIZON' }))).ShardIterator!;
    const page = await streams.send(new GetRecordsCommand({ ShardIterator: iterator }));
    // THEN the stream is the one the stores reported, and its records carry the new images
    expect(streamArn).toBe(stores!.tables.get('StateTable')!.streamArn);
    const record = page.Records!.find((r) => r.dynamodb?.Keys?.FullPath?.S === '/authorities/host');
    expect(record).toMatchObject({ eventName: 'INSERT', awsRegion: REGION, dynamodb: { StreamViewType: 'NEW_IMAGE', NewImage: { Kind: { S: 'ca' } } } });
    // AND every streams call was audited on the stream (GetRecords: the one its iterator names), ListStreams on the table's streams
    expect(auditor.callsOf(AUTH.name, 'dynamodb:ListStreams')[0].resource).toBe(`${arn.table(TABLE)}/stream/*`);
    for (const action of ['dynamodb:DescribeStream', 'dynamodb:GetShardIterator', 'dynamodb:GetRecords']) expect(auditor.callsOf(AUTH.name, action)[0].resource).toBe(streamArn);
  });

  it('refuses a denied call with AccessDeniedException and does not write', async () => {
    // GIVEN a caller whose role may not PutItem
    const limited = client(DynamoDBClient, registry.issue(LIMITED));
    // WHEN it tries
    const err = await limited.send(new PutItemCommand({ TableName: TABLE, Item: { HashKey: { S: 'x' }, FullPath: { S: '/denied' } } })).catch((e) => e);
    // THEN DynamoDB's AccessDenied comes back naming the action and the table
    expect(err.name).toBe('AccessDeniedException');
    expect(err.$metadata.httpStatusCode).toBe(400);
    expect(err.message).toContain(`is not authorized to perform: dynamodb:PutItem on resource: ${arn.table(TABLE)}`);
    // AND nothing was written
    const ddb = client(DynamoDBClient, registry.issue(AUTH));
    expect((await ddb.send(new GetItemCommand({ TableName: TABLE, Key: { HashKey: { S: 'x' }, FullPath: { S: '/denied' } }, ConsistentRead: true }))).Item).toBeUndefined();
  });

  it('refuses an unknown or revoked access key with UnrecognizedClientException', async () => {
    // GIVEN keys that were never issued, and keys of a terminated instance
    const never = client(DynamoDBClient, { ...registry.issue(AUTH), accessKeyId: 'ASIANEVERISSUED00000' });
    const gone = caller('AuthRole', 'i-0gone');
    const revoked = client(DynamoDBClient, registry.issue(gone));
    registry.revoke(gone.name);
    // WHEN they call
    for (const ddb of [never, revoked]) {
      const err = await ddb.send(new GetItemCommand({ TableName: TABLE, Key: { HashKey: { S: 'node' }, FullPath: { S: '/nodes/a' } } })).catch((e) => e);
      // THEN DynamoDB's error for an invalid token comes back, and no call was audited for them
      expect(err.name).toBe('UnrecognizedClientException');
    }
    expect(auditor.calls.filter((c) => c.caller.name === gone.name)).toEqual([]);
  });

  it('answers a malformed request with a 400 of its own and goes on serving', async () => {
    // GIVEN a signed-looking request whose body is not JSON
    const creds = registry.issue(AUTH);
    const answer = await rawRequest('/', { 'x-amz-target': 'DynamoDB_20120810.GetItem', authorization: sigV4(creds.accessKeyId, 'dynamodb') }, '{not json');
    // THEN it gets a SerializationException
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body).__type).toMatch(/SerializationException$/);
    // AND the next request is served
    const ddb = client(DynamoDBClient, creds);
    expect((await ddb.send(new GetItemCommand({ TableName: TABLE, Key: { HashKey: { S: 'node' }, FullPath: { S: '/nodes/a' } } }))).Item).toBeDefined();
  });
});

describe('S3 through the gateway', () => {
  it('stores a streamed PutObject sent with default checksums byte for byte, auditing the KMS calls S3 makes', async () => {
    // GIVEN the SDK's default S3 client (flexible checksums: aws-chunked body with a CRC32 trailer)
    const s3 = client(S3Client, registry.issue(AUTH));
    const data = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 251));
    // WHEN a stream of unknown length is put and read back
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'sessions/one.tar', Body: Readable.from([data.subarray(0, 100_000), data.subarray(100_000)]), ContentLength: data.length }));
    const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'sessions/one.tar' }));
    // THEN the object is exactly the bytes sent (not the aws-chunked framing)
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(data)).toBe(true);
    // AND the write implied kms:GenerateDataKey and the read kms:Decrypt on the bucket's key, via S3
    const via = { 'kms:ViaService': `s3.${REGION}.amazonaws.com` };
    expect(auditor.callsOf(AUTH.name, 's3:PutObject')[0].resource).toBe(arn.object(BUCKET, 'sessions/one.tar'));
    expect(auditor.callsOf(AUTH.name, 'kms:GenerateDataKey')[0]).toMatchObject({ resource: arn.key(KEY_ID), via: 's3:PutObject', context: via });
    expect(auditor.callsOf(AUTH.name, 'kms:Decrypt')[0]).toMatchObject({ resource: arn.key(KEY_ID), via: 's3:GetObject', context: via });
  });

  it('serves a multipart upload with default checksums', async () => {
    // GIVEN an upload of a 5 MiB part and a small last part
    const s3 = client(S3Client, registry.issue(AUTH));
    const first = Buffer.alloc(5 * 1024 * 1024, 'a');
    const last = Buffer.from('the end');
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: 'sessions/big.tar' }));
    // WHEN the parts are uploaded (streamed), listed and the upload completed
    const etags: string[] = [];
    for (const [i, part] of [first, last].entries()) {
      const out = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: 'sessions/big.tar', UploadId, PartNumber: i + 1, Body: Readable.from([part]), ContentLength: part.length }));
      etags.push(out.ETag!);
    }
    const parts = await s3.send(new ListPartsCommand({ Bucket: BUCKET, Key: 'sessions/big.tar', UploadId }));
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: 'sessions/big.tar', UploadId, MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) } }));
    const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'sessions/big.tar' }));
    // THEN the parts were stored as sent and the object is their concatenation
    expect(parts.Parts?.map((p) => p.Size)).toEqual([first.length, last.length]);
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(Buffer.concat([first, last]))).toBe(true);
    // AND ListParts was audited as s3:ListMultipartUploadParts on the object
    expect(auditor.callsOf(AUTH.name, 's3:ListMultipartUploadParts')[0].resource).toBe(arn.object(BUCKET, 'sessions/big.tar'));
  }, 30_000);

  it('refuses a denied PutObject with S3 AccessDenied and stores nothing', async () => {
    // GIVEN a caller whose role may not PutObject
    const limited = client(S3Client, registry.issue(LIMITED));
    // WHEN it tries
    const err = await limited.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'denied.txt', Body: 'no' })).catch((e) => e);
    // THEN S3's AccessDenied comes back (403)
    expect(err.name).toBe('AccessDenied');
    expect(err.$metadata.httpStatusCode).toBe(403);
    // AND the object does not exist
    const s3 = client(S3Client, registry.issue(AUTH));
    expect((await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'denied.txt' })).catch((e) => e)).name).toBe('NotFound');
  });

  it('refuses a GetObject whose implied kms:Decrypt is denied', async () => {
    // GIVEN an object in the SSE-KMS bucket and a caller that may read S3 but not decrypt with the key
    const s3 = client(S3Client, registry.issue(AUTH));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'secret.txt', Body: 'secret' }));
    const limited = client(S3Client, registry.issue(LIMITED));
    // WHEN it reads the object
    const err = await limited.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'secret.txt' })).catch((e) => e);
    // THEN S3 refuses, naming the KMS action
    expect(err.name).toBe('AccessDenied');
    expect(err.message).toContain(`kms:Decrypt on resource: ${arn.key(KEY_ID)}`);
  });

  it('refuses an unknown access key with InvalidAccessKeyId', async () => {
    // GIVEN keys that were never issued
    const s3 = client(S3Client, { ...registry.issue(AUTH), accessKeyId: 'ASIANEVERISSUED00000' });
    // WHEN they read
    const err = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'sessions/one.tar' })).catch((e) => e);
    // THEN S3's error for an unknown key comes back
    expect(err.name).toBe('InvalidAccessKeyId');
    expect(err.$metadata.httpStatusCode).toBe(403);
  });
});

describe('aws-chunked bodies', () => {
  it('decodes chunks and trailers, and refuses broken framing or a wrong checksum', () => {
    // GIVEN an aws-chunked body with two chunks and a CRC32 trailer of "hello world"
    const body = Buffer.from('6;chunk-signature=x\r\nhello \r\n5\r\nworld\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n');
    // WHEN it is decoded
    const { data, trailers } = decodeAwsChunked(body);
    // THEN the data and trailers come out, and the checksum matches
    expect(data.toString()).toBe('hello world');
    expect(trailers).toEqual({ 'x-amz-checksum-crc32': 'DUoRhQ==' });
    expect(() => checkChecksums(data, trailers)).not.toThrow();
    // AND a truncated chunk or a wrong checksum are refused as S3 refuses them
    expect(() => decodeAwsChunked(Buffer.from('a\r\nshort\r\n0\r\n\r\n'))).toThrow(expect.objectContaining({ code: 'IncompleteBody' }));
    expect(() => checkChecksums(Buffer.from('hello there'), trailers)).toThrow(expect.objectContaining({ code: 'BadDigest' }));
  });
});

describe('SSM through the gateway', () => {
  it('round-trips a SecureString, auditing kms:Encrypt and kms:Decrypt on its key via SSM', async () => {
    // GIVEN a caller that writes a SecureString with the template's key
    const ssm = client(SSMClient, registry.issue(AUTH));
    const name = '/teleport/acme/join-token';
    const put = await ssm.send(new PutParameterCommand({ Name: name, Value: 's3cr3t', Type: 'SecureString', KeyId: arn.key(KEY_ID) }));
    // WHEN it reads it with and without decryption
    const clear = (await ssm.send(new GetParameterCommand({ Name: name, WithDecryption: true }))).Parameter!;
    const sealed = (await ssm.send(new GetParameterCommand({ Name: name }))).Parameter!;
    // THEN the decrypted value is the one written, shaped as SSM shapes it; without decryption it is not
    expect(put).toMatchObject({ Version: 1, Tier: 'Standard' });
    expect(clear).toMatchObject({ Name: name, Type: 'SecureString', Value: 's3cr3t', Version: 1, ARN: arn.parameter(name), DataType: 'text' });
    expect(clear.LastModifiedDate).toBeInstanceOf(Date);
    expect(sealed.Value).not.toContain('s3cr3t');
    // AND the KMS calls SSM makes were audited on the key, via SSM
    const via = { 'kms:ViaService': `ssm.${REGION}.amazonaws.com` };
    expect(auditor.callsOf(AUTH.name, 'kms:Encrypt')[0]).toMatchObject({ resource: arn.key(KEY_ID), via: 'ssm:PutParameter', context: via });
    expect(auditor.callsOf(AUTH.name, 'kms:Decrypt').filter((c) => c.via === 'ssm:GetParameter')).toHaveLength(1);
  });

  it('gives SSM errors for an existing name without Overwrite, a missing name and a denied decryption', async () => {
    // GIVEN a String parameter
    const ssm = client(SSMClient, registry.issue(AUTH));
    await ssm.send(new PutParameterCommand({ Name: '/teleport/acme/ca-pin', Value: 'sha256:1', Type: 'String' }));
    // WHEN it is written again without Overwrite, then with it
    const exists = await ssm.send(new PutParameterCommand({ Name: '/teleport/acme/ca-pin', Value: 'sha256:2', Type: 'String' })).catch((e) => e);
    const second = await ssm.send(new PutParameterCommand({ Name: '/teleport/acme/ca-pin', Value: 'sha256:2', Overwrite: true }));
    // THEN the first is ParameterAlreadyExists, the second version 2
    expect(exists.name).toBe('ParameterAlreadyExists');
    expect(second.Version).toBe(2);
    // AND a missing name is ParameterNotFound, a bad type a ValidationException
    expect((await ssm.send(new GetParameterCommand({ Name: '/teleport/acme/none' })).catch((e) => e)).name).toBe('ParameterNotFound');
    expect((await ssm.send(new PutParameterCommand({ Name: '/x', Value: 'v', Type: 'Number' as never })).catch((e) => e)).name).toBe('ValidationException');
    // AND a caller whose role may not kms:Decrypt cannot read a SecureString in clear
    const limited = client(SSMClient, registry.issue(LIMITED));
    const denied = await limited.send(new GetParameterCommand({ Name: '/teleport/acme/join-token', WithDecryption: true })).catch((e) => e);
    expect(denied.name).toBe('AccessDeniedException');
  });

  it('lists parameters by path, recursively or one level', async () => {
    // GIVEN parameters at two levels
    const ssm = client(SSMClient, registry.issue(AUTH));
    await ssm.send(new PutParameterCommand({ Name: '/app/one', Value: '1', Type: 'String' }));
    await ssm.send(new PutParameterCommand({ Name: '/app/deep/two', Value: '2', Type: 'String' }));
    // WHEN they are listed under /app
    const flat = await ssm.send(new GetParametersByPathCommand({ Path: '/app' }));
    const all = await ssm.send(new GetParametersByPathCommand({ Path: '/app', Recursive: true }));
    // THEN one level sees one, recursive both; the call is audited on the path
    expect(flat.Parameters?.map((p) => p.Name)).toEqual(['/app/one']);
    expect(all.Parameters?.map((p) => p.Name)).toEqual(['/app/deep/two', '/app/one']);
    expect(auditor.callsOf(AUTH.name, 'ssm:GetParametersByPath')[0].resource).toBe(arn.parameter('/app'));
  });

  it('keeps what the SSM agent reports and describes it by instance id', async () => {
    // GIVEN the agent of an instance reporting itself (the agent's own JSON request)
    const node = caller('NodesRole', 'i-0node1');
    const creds = registry.issue(node);
    const report = { AgentName: 'amazon-ssm-agent', AgentVersion: '3.3.0.0', IPAddress: '10.231.0.7', ComputerName: 'ip-10-231-0-7.eu-west-1.compute.internal', PlatformType: 'Linux', PlatformName: 'Debian GNU/Linux' };
    const answer = await rawRequest('/', { 'x-amz-target': 'AmazonSSM.UpdateInstanceInformation', 'content-type': 'application/x-amz-json-1.1', authorization: sigV4(creds.accessKeyId, 'ssm') }, JSON.stringify(report));
    expect(answer.status).toBe(200);
    // WHEN the control plane describes it
    const ssm = client(SSMClient, registry.issue(AUTH));
    const out = await ssm.send(new DescribeInstanceInformationCommand({ Filters: [{ Key: 'InstanceIds', Values: ['i-0node1'] }] }));
    // THEN it is online with the reported address and name; the report was audited on the instance
    expect(out.InstanceInformationList).toEqual([expect.objectContaining({ InstanceId: 'i-0node1', PingStatus: 'Online', IPAddress: '10.231.0.7', ComputerName: report.ComputerName, PlatformType: 'Linux' })]);
    expect(auditor.callsOf(node.name, 'ssm:UpdateInstanceInformation')[0].resource).toBe(arn.instance('i-0node1'));
  });
});

describe('routes added by other modules', () => {
  it('serve their service, and their refusals reach the SDK as that service\'s AccessDenied', async () => {
    // GIVEN Auto Scaling (query protocol) and Lambda (REST-JSON) routes that check one call each
    const served: string[] = [];
    const checked = (service: string, action: string, resource: string, ok: ServiceResponse): ServiceHandler => async (req, authorize) => {
      served.push(`${service} ${req.method} ${req.path}`);
      return refusal(service, req.caller, authorize, [{ action, resource }]) ?? ok;
    };
    gateway!.route('autoscaling', checked('autoscaling', 'autoscaling:CompleteLifecycleAction', '*', { status: 200, headers: { 'content-type': 'text/xml' }, body: '<CompleteLifecycleActionResponse><CompleteLifecycleActionResult/></CompleteLifecycleActionResponse>' }));
    gateway!.route('lambda', checked('lambda', 'lambda:InvokeFunction', arn.function('acme-rotator'), { status: 200, headers: { 'content-type': 'application/json' }, body: '{"ok":true}' }));
    const action = { AutoScalingGroupName: 'acme-nodes', LifecycleHookName: 'drain', LifecycleActionResult: 'CONTINUE', InstanceId: 'i-0node1' };
    // WHEN an allowed caller and a denied one call them
    await client(AutoScalingClient, registry.issue(AUTH)).send(new CompleteLifecycleActionCommand(action));
    const invoked = await client(LambdaClient, registry.issue(AUTH)).send(new InvokeCommand({ FunctionName: 'acme-rotator' }));
    const asgDenied = await client(AutoScalingClient, registry.issue(LIMITED)).send(new CompleteLifecycleActionCommand(action)).catch((e) => e);
    const lambdaDenied = await client(LambdaClient, registry.issue(LIMITED)).send(new InvokeCommand({ FunctionName: 'acme-rotator' })).catch((e) => e);
    // THEN the allowed calls were served, the denied ones refused in each protocol's shape
    expect(Buffer.from(invoked.Payload!).toString()).toBe('{"ok":true}');
    expect(served).toEqual(['autoscaling POST /', 'lambda POST /2015-03-31/functions/acme-rotator/invocations', 'autoscaling POST /', 'lambda POST /2015-03-31/functions/acme-rotator/invocations']);
    expect(asgDenied).toMatchObject({ name: 'AccessDenied', $metadata: { httpStatusCode: 403 } });
    expect(lambdaDenied).toMatchObject({ name: 'AccessDeniedException', $metadata: { httpStatusCode: 403 } });
    expect(lambdaDenied.message).toContain(`lambda:InvokeFunction on resource: ${arn.function('acme-rotator')}`);
  });
});

describe('clients configured only by the environment', () => {
  it('reach every service through AWS_ENDPOINT_URL, trusting the endpoint through NODE_EXTRA_CA_CERTS', async () => {
    // GIVEN a process with default clients (no endpoint option, no path-style, default checksums) and only env settings
    const creds = registry.issue(AUTH);
    const script = `
      const { S3Client, PutObjectCommand, GetObjectCommand } = require('@aws-sdk/client-s3');
      const { DynamoDBClient, GetItemCommand } = require('@aws-sdk/client-dynamodb');
      const { SSMClient, GetParameterCommand } = require('@aws-sdk/client-ssm');
      const { DynamoDBStreamsClient, ListStreamsCommand } = require('@aws-sdk/client-dynamodb-streams');
      const { Readable } = require('node:stream');
      (async () => {
        const s3 = new S3Client({});
        await s3.send(new PutObjectCommand({ Bucket: '${BUCKET}', Key: 'env.txt', Body: Readable.from([Buffer.from('from env')]), ContentLength: 8 }));
        const obj = await (await s3.send(new GetObjectCommand({ Bucket: '${BUCKET}', Key: 'env.txt' }))).Body.transformToString();
        const item = await new DynamoDBClient({}).send(new GetItemCommand({ TableName: '${TABLE}', Key: { HashKey: { S: 'node' }, FullPath: { S: '/nodes/a' } } }));
        const p = await new SSMClient({}).send(new GetParameterCommand({ Name: '/teleport/acme/ca-pin' }));
        const streams = await new DynamoDBStreamsClient({}).send(new ListStreamsCommand({ TableName: '${TABLE}' }));
        process.stdout.write(JSON.stringify({ obj, kind: item.Item.Kind.S, pin: p.Parameter.Value, stream: streams.Streams[0].StreamArn }));
      })().catch((e) => { process.stderr.write(String(e && e.stack || e)); process.exit(1); });`;
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: dir,
      AWS_ENDPOINT_URL: gateway!.url,
      NODE_EXTRA_CA_CERTS: tls.certFile,
      AWS_REGION: REGION,
      AWS_ACCESS_KEY_ID: creds.accessKeyId,
      AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
      AWS_SESSION_TOKEN: creds.sessionToken,
    };
    // WHEN it runs
    const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['-e', script], { cwd: path.resolve(__dirname, '..', '..'), env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
    // THEN S3 (path-style for an address endpoint), DynamoDB, its streams and SSM all answered through the gateway
    expect(out.stderr.replace(/.*NodeVersionSupportWarning[\s\S]*$/, '')).toBe('');
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ obj: 'from env', kind: 'node', pin: 'sha256:2', stream: stores!.tables.get('StateTable')!.streamArn });
  });
});

/** A SigV4 Authorization header naming `accessKeyId` (the gateway does not check signatures). */
function sigV4(accessKeyId: string, service: string): string {
  return `AWS4-HMAC-SHA256 Credential=${accessKeyId}/20260101/${REGION}/${service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'0'.repeat(64)}`;
}

function rawRequest(target: string, headers: Record<string, string>, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${gateway!.url}${target}`, { method: 'POST', headers, agent }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
