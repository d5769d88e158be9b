/**
 * The data stores of the template, served on the host's loopback for the gateway alone:
 * DynamoDB Local (`-sharedDb`) with every `AWS::DynamoDB::Table` created as declared
 * (AttributeDefinitions, KeySchema, GlobalSecondaryIndexes, LocalSecondaryIndexes, BillingMode,
 * ProvisionedThroughput, StreamSpecification, then TimeToLiveSpecification), and s3rver (with
 * S3's multipart behaviour, `sim/aws/s3rver.ts`) with every `AWS::S3::Bucket`.
 *
 * Not served (declared, accepted, without effect): tables' SSESpecification,
 * PointInTimeRecoverySpecification, ContributorInsights, TableClass, DeletionProtection, Tags;
 * buckets' VersioningConfiguration (s3rver has no versioning), LifecycleConfiguration,
 * OwnershipControls, LoggingConfiguration, PublicAccessBlockConfiguration, CORS, notifications.
 * A bucket's default encryption is not applied to the bytes; its SSE-KMS key is reported so the
 * gateway audits the KMS calls S3 would make with it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CreateTableCommand, CreateTableCommandInput, DescribeTableCommand, UpdateTimeToLiveCommand } from '@aws-sdk/client-dynamodb';
import type { CfnResources, Log, Resolve } from '../types';
import { arn, PARTITION } from '../types';
import { freePort } from '../process';
import { DynamoDbLocal } from './dynamodb-local';
import type { GatewayStores } from './gateway';
import { keyArn } from './kms';
import { createS3rver, stopS3rver, type S3rver } from './s3rver';

export interface TableInfo {
  readonly logicalId: string;
  readonly name: string;
  readonly arn: string;
  /** The stream's ARN in the deployment's region and account (`arn.stream(name, streamLabel)`). */
  readonly streamArn?: string;
  /** The stream label DynamoDB Local gave the table's stream: `Fn::GetAtt [table, StreamArn]` must use it. */
  readonly streamLabel?: string;
}

export interface BucketInfo {
  readonly logicalId: string;
  readonly name: string;
  /** The default SSE-KMS key's ARN, when the bucket's default encryption is `aws:kms`. */
  readonly kmsKeyArn?: string;
  /** Declared versioned (not served: see the module's comment). */
  readonly versioned: boolean;
}

export interface StoresOptions {
  readonly resources: CfnResources;
  readonly resolve: Resolve;
  /** Where s3rver keeps the buckets' files (created; the caller removes it). */
  readonly dir: string;
  readonly log?: Log;
}

/** A table or bucket the template declares in a way the stores cannot create. */
export class StoreDeclarationError extends Error {
  override readonly name = 'StoreDeclarationError';
}

/** The index properties CreateTable takes (CloudFormation's others, such as ContributorInsightsSpecification, are left out). */
const INDEX_FIELDS = ['IndexName', 'KeySchema', 'Projection', 'ProvisionedThroughput'] as const;
const pick = <T extends Record<string, any>>(o: T, keys: readonly string[]) => Object.fromEntries(keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]]));

/** The CreateTable input of a table resource as CloudFormation would create it. */
export function createTableInput(name: string, props: Record<string, any>): CreateTableCommandInput {
  if (!props.KeySchema || !props.AttributeDefinitions) throw new StoreDeclarationError(`table ${name} declares no KeySchema or AttributeDefinitions`);
  const billingMode = props.BillingMode ?? 'PROVISIONED';
  if (billingMode === 'PROVISIONED' && !props.ProvisionedThroughput) throw new StoreDeclarationError(`table ${name} is PROVISIONED without ProvisionedThroughput`);
  return {
    TableName: name,
    AttributeDefinitions: props.AttributeDefinitions,
    KeySchema: props.KeySchema,
    BillingMode: billingMode,
    ...(props.ProvisionedThroughput ? { ProvisionedThroughput: props.ProvisionedThroughput } : {}),
    ...(props.GlobalSecondaryIndexes ? { GlobalSecondaryIndexes: props.GlobalSecondaryIndexes.map((i: Record<string, any>) => pick(i, INDEX_FIELDS)) } : {}),
    ...(props.LocalSecondaryIndexes ? { LocalSecondaryIndexes: props.LocalSecondaryIndexes.map((i: Record<string, any>) => pick(i, INDEX_FIELDS)) } : {}),
    ...(props.StreamSpecification?.StreamViewType ? { StreamSpecification: { StreamEnabled: true, StreamViewType: props.StreamSpecification.StreamViewType } } : {}),
  };
}

/** The default SSE-KMS key of a bucket's `BucketEncryption`, or undefined when it is not `aws:kms`. */
export function bucketKmsKey(props: Record<string, any>, resolve: Resolve): string | undefined {
  const byDefault = props.BucketEncryption?.ServerSideEncryptionConfiguration?.[0]?.ServerSideEncryptionByDefault;
  if (!byDefault || !String(byDefault.SSEAlgorithm).startsWith('aws:kms')) return undefined;
  return keyArn(byDefault.KMSMasterKeyID !== undefined ? String(resolve(byDefault.KMSMasterKeyID)) : 'alias/aws/s3');
}

const LOCAL_ARN_PREFIX = `arn:${PARTITION}:dynamodb:ddblocal:000000000000:`;

export class Stores implements GatewayStores {
  private constructor(
    private readonly dynamodb: DynamoDbLocal,
    private readonly s3: S3rver,
    readonly s3Endpoint: string,
    /** By logical id. */
    readonly tables: ReadonlyMap<string, TableInfo>,
    /** By logical id. */
    readonly buckets: ReadonlyMap<string, BucketInfo>,
  ) {}

  /** Starts both servers and creates the template's tables and buckets. */
  static async start(opts: StoresOptions): Promise<Stores> {
    const log = opts.log ?? (() => undefined);
    const of = (type: string) => Object.entries(opts.resources).filter(([, r]) => r.Type === type);
    const bucketInfos = of('AWS::S3::Bucket').map(([logicalId, r]): BucketInfo => {
      const kmsKeyArn = bucketKmsKey(r.Properties ?? {}, opts.resolve);
      return { logicalId, name: String(opts.resolve({ Ref: logicalId })), ...(kmsKeyArn ? { kmsKeyArn } : {}), versioned: r.Properties?.VersioningConfiguration?.Status === 'Enabled' };
    });
    const s3Dir = path.join(opts.dir, 's3');
    fs.mkdirSync(s3Dir, { recursive: true });
    const s3Port = await freePort();
    const s3 = createS3rver({ host: '127.0.0.1', port: s3Port, dir: s3Dir, buckets: bucketInfos.map((b) => b.name) });
    const started = await Promise.allSettled([DynamoDbLocal.start({ sharedDb: true }), s3.run()]);
    const dynamodb = started[0].status === 'fulfilled' ? started[0].value : undefined;
    const stopBoth = async () => {
      await stopS3rver(s3).catch(() => undefined);
      await dynamodb?.stop();
    };
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed || !dynamodb) {
      await stopBoth();
      throw failed?.reason;
    }
    try {
      const tables = new Map<string, TableInfo>();
      const client = dynamodb.client();
      try {
        for (const [logicalId, r] of of('AWS::DynamoDB::Table')) {
          const name = String(opts.resolve({ Ref: logicalId }));
          const props = r.Properties ?? {};
          await client.send(new CreateTableCommand(createTableInput(name, props)));
          if (props.TimeToLiveSpecification?.Enabled) {
            await client.send(new UpdateTimeToLiveCommand({ TableName: name, TimeToLiveSpecification: { AttributeName: props.TimeToLiveSpecification.AttributeName, Enabled: true } }));
          }
          const table = (await client.send(new DescribeTableCommand({ TableName: name }))).Table;
          const streamLabel = table?.LatestStreamLabel;
          if (table?.LatestStreamArn && !table.LatestStreamArn.startsWith(LOCAL_ARN_PREFIX)) throw new StoreDeclarationError(`DynamoDB Local named the stream of ${name} ${table.LatestStreamArn}, not under ${LOCAL_ARN_PREFIX}`);
          tables.set(logicalId, { logicalId, name, arn: arn.table(name), ...(streamLabel ? { streamLabel, streamArn: arn.stream(name, streamLabel) } : {}) });
          log(`stores: table ${name}${streamLabel ? ` (stream ${streamLabel})` : ''}`);
        }
      } finally {
        client.destroy();
      }
      for (const b of bucketInfos) log(`stores: bucket ${b.name}${b.kmsKeyArn ? ` (SSE-KMS ${b.kmsKeyArn})` : ''}`);
      return new Stores(dynamodb, s3, `http://127.0.0.1:${s3Port}`, tables, new Map(bucketInfos.map((b) => [b.logicalId, b])));
    } catch (err) {
      await stopBoth();
      throw err;
    }
  }

  get dynamodbEndpoint(): string {
    return this.dynamodb.endpoint;
  }

  /** Each SSE-KMS bucket's default key ARN, by bucket name (for the gateway). */
  get bucketKeys(): ReadonlyMap<string, string> {
    return new Map([...this.buckets.values()].filter((b) => b.kmsKeyArn).map((b) => [b.name, b.kmsKeyArn as string]));
  }

  async stop(): Promise<void> {
    await stopS3rver(this.s3).catch(() => undefined);
    await this.dynamodb.stop();
  }
}
