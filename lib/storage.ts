/**
 * `ClusterStorage`: everything the auth tier persists — the cluster state table, the audit
 * events table, the session recordings bucket (with its access-log bucket) and the
 * customer-managed KMS key that encrypts them.
 *
 * The table layouts are exactly what the runtime creates when a table is missing
 * (runtime/backend/dynamodb.ts, runtime/events/dynamodb.ts; reference formats.md §5.3, §6.4).
 */
import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { EventsTableSchema, StateTableSchema } from '../runtime/contract/dynamodb';
import { checkInt } from './validation';

/** Properties of {@link ClusterStorage}. */
export interface ClusterStorageProps {
  /**
   * Keep the tables, bucket and key when the stack is deleted.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;

  /**
   * Days after which a noncurrent (overwritten or deleted) recording version is removed.
   *
   * @default 90
   */
  readonly noncurrentVersionExpirationDays?: number;

  /**
   * Days after which incomplete multipart uploads are aborted.
   *
   * @default 7
   */
  readonly abortIncompleteMultipartUploadDays?: number;

  /**
   * Turn on S3 Object Lock (governance mode) for the recordings bucket, with this many
   * days of default retention. Object Lock can only be chosen when the bucket is created.
   *
   * @default - no Object Lock
   */
  readonly objectLockRetentionDays?: number;

  /**
   * Days server access logs (and other logs written to the logs bucket) are kept.
   *
   * @default 365
   */
  readonly logRetentionDays?: number;
}

/** DynamoDB tables, S3 buckets and the KMS key of one cluster. */
export class ClusterStorage extends Construct {
  /** Customer-managed key encrypting the tables, the recordings bucket and the SSM SecureStrings. */
  public readonly key: kms.Key;
  /** Cluster state (`storage.type: dynamodb`): HashKey/FullPath, stream NEW_IMAGE, TTL on Expires. */
  public readonly stateTable: dynamodb.Table;
  /** Audit events (`audit_events_uri: dynamodb://<table>`). */
  public readonly eventsTable: dynamodb.Table;
  /** Session recordings (`audit_sessions_uri: s3://<bucket>/records`). */
  public readonly recordingsBucket: s3.Bucket;
  /** Server access logs of the recordings bucket, plus load balancer and VPC flow logs (SSE-S3, as ELB logging requires). */
  public readonly logsBucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: ClusterStorageProps = {}) {
    super(scope, id);
    const noncurrentDays = props.noncurrentVersionExpirationDays ?? 90;
    const abortDays = props.abortIncompleteMultipartUploadDays ?? 7;
    const logDays = props.logRetentionDays ?? 365;
    checkInt('noncurrentVersionExpirationDays', noncurrentDays, 1, 36500);
    checkInt('abortIncompleteMultipartUploadDays', abortDays, 1, 365);
    checkInt('logRetentionDays', logDays, 1, 36500);
    if (props.objectLockRetentionDays !== undefined) checkInt('objectLockRetentionDays', props.objectLockRetentionDays, 1, 36500);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    // Grant S3 log delivery through a bucket policy rather than the legacy ACL, so the logs
    // bucket can keep ACLs disabled (BucketOwnerEnforced).
    this.node.setContext('@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy', true);

    this.key = new kms.Key(this, 'Key', {
      description: 'Teleport cluster data: DynamoDB tables, session recordings, SSM parameters',
      enableKeyRotation: true,
      removalPolicy,
    });

    const tableDefaults = {
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: this.key,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      removalPolicy,
    } as const;

    this.stateTable = new dynamodb.Table(this, 'StateTable', {
      ...tableDefaults,
      partitionKey: { name: StateTableSchema.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: StateTableSchema.sortKey, type: dynamodb.AttributeType.STRING },
      timeToLiveAttribute: StateTableSchema.ttl,
      stream: dynamodb.StreamViewType.NEW_IMAGE,
    });

    this.eventsTable = new dynamodb.Table(this, 'EventsTable', {
      ...tableDefaults,
      partitionKey: { name: EventsTableSchema.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: EventsTableSchema.sortKey, type: dynamodb.AttributeType.NUMBER },
      timeToLiveAttribute: EventsTableSchema.ttl,
    });
    this.eventsTable.addGlobalSecondaryIndex({
      indexName: EventsTableSchema.timeSearchIndex,
      partitionKey: { name: EventsTableSchema.indexPartitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: EventsTableSchema.indexSortKey, type: dynamodb.AttributeType.NUMBER },
      projectionType: dynamodb.ProjectionType.ALL,
    });

    this.logsBucket = new s3.Bucket(this, 'LogsBucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      lifecycleRules: [
        { id: 'expire-logs', expiration: Duration.days(logDays), noncurrentVersionExpiration: Duration.days(1) },
        { id: 'abort-multipart', abortIncompleteMultipartUploadAfter: Duration.days(abortDays) },
      ],
      removalPolicy,
    });
    Validations.of(this.logsBucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason: 'This is the access-log destination bucket itself; logging it into itself would loop.',
    });

    this.recordingsBucket = new s3.Bucket(this, 'RecordingsBucket', {
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: this.key,
      bucketKeyEnabled: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      serverAccessLogsBucket: this.logsBucket,
      serverAccessLogsPrefix: 'recordings-access/',
      lifecycleRules: [
        { id: 'expire-noncurrent', noncurrentVersionExpiration: Duration.days(noncurrentDays) },
        { id: 'abort-multipart', abortIncompleteMultipartUploadAfter: Duration.days(abortDays) },
      ],
      ...(props.objectLockRetentionDays !== undefined
        ? {
            objectLockEnabled: true,
            objectLockDefaultRetention: s3.ObjectLockRetention.governance(Duration.days(props.objectLockRetentionDays)),
          }
        : {}),
      removalPolicy,
    });
  }
}
