import { Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { ClusterStorage } from '../../lib/storage';
import { testApp } from '../helpers/cdk';

/** Properties of the only resource of `type` whose logical id starts with `prefix`. */
function resourceOf(t: Template, type: string, prefix: string): { Properties: Record<string, any>; DeletionPolicy?: string } {
  const found = Object.entries(t.findResources(type)).filter(([id]) => id.startsWith(prefix));
  expect(found).toHaveLength(1);
  return found[0][1] as never;
}

describe('ClusterStorage (defaults)', () => {
  // GIVEN a stack with the storage construct
  const stack = new Stack(testApp(), 'S');
  new ClusterStorage(stack, 'Storage');
  // WHEN it is synthesised
  const t = Template.fromStack(stack);

  test('the state table matches what the DynamoDB backend creates: HashKey/FullPath, stream NEW_IMAGE, TTL Expires', () => {
    const table = resourceOf(t, 'AWS::DynamoDB::Table', 'StorageStateTable');
    // THEN keys, stream, TTL, on-demand billing, PITR and KMS encryption are set
    expect(table.Properties.KeySchema).toEqual([
      { AttributeName: 'HashKey', KeyType: 'HASH' },
      { AttributeName: 'FullPath', KeyType: 'RANGE' },
    ]);
    expect(table.Properties.AttributeDefinitions).toEqual([
      { AttributeName: 'HashKey', AttributeType: 'S' },
      { AttributeName: 'FullPath', AttributeType: 'S' },
    ]);
    expect(table.Properties.StreamSpecification).toEqual({ StreamViewType: 'NEW_IMAGE' });
    expect(table.Properties.TimeToLiveSpecification).toEqual({ AttributeName: 'Expires', Enabled: true });
    expect(table.Properties.BillingMode).toBe('PAY_PER_REQUEST');
    expect(table.Properties.PointInTimeRecoverySpecification).toEqual({ PointInTimeRecoveryEnabled: true });
    expect(table.Properties.SSESpecification).toEqual({
      SSEEnabled: true,
      SSEType: 'KMS',
      KMSMasterKeyId: { 'Fn::GetAtt': [expect.stringMatching(/^StorageKey/), 'Arn'] },
    });
    expect(table.DeletionPolicy).toBe('Retain');
  });

  test('the events table matches the audit log: SessionID/EventIndex keys and the timesearch index', () => {
    const table = resourceOf(t, 'AWS::DynamoDB::Table', 'StorageEventsTable');
    expect(table.Properties.KeySchema).toEqual([
      { AttributeName: 'SessionID', KeyType: 'HASH' },
      { AttributeName: 'EventIndex', KeyType: 'RANGE' },
    ]);
    expect(table.Properties.AttributeDefinitions).toEqual(
      expect.arrayContaining([
        { AttributeName: 'SessionID', AttributeType: 'S' },
        { AttributeName: 'EventIndex', AttributeType: 'N' },
        { AttributeName: 'EventNamespace', AttributeType: 'S' },
        { AttributeName: 'CreatedAt', AttributeType: 'N' },
      ]),
    );
    expect(table.Properties.GlobalSecondaryIndexes).toEqual([
      {
        IndexName: 'timesearch',
        KeySchema: [
          { AttributeName: 'EventNamespace', KeyType: 'HASH' },
          { AttributeName: 'CreatedAt', KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'ALL' },
      },
    ]);
    expect(table.Properties.TimeToLiveSpecification).toEqual({ AttributeName: 'Expires', Enabled: true });
    expect(table.Properties.PointInTimeRecoverySpecification).toEqual({ PointInTimeRecoveryEnabled: true });
    expect(table.Properties.SSESpecification).toMatchObject({ SSEEnabled: true, SSEType: 'KMS' });
    expect(table.Properties.StreamSpecification).toBeUndefined();
  });

  test('the KMS key rotates and is retained', () => {
    t.hasResource('AWS::KMS::Key', { Properties: { EnableKeyRotation: true }, DeletionPolicy: 'Retain' });
  });

  test('the recordings bucket is SSE-KMS, versioned, private, logged, with lifecycle rules and no Object Lock', () => {
    const bucket = resourceOf(t, 'AWS::S3::Bucket', 'StorageRecordingsBucket');
    expect(bucket.DeletionPolicy).toBe('Retain');
    expect(bucket.Properties.BucketEncryption.ServerSideEncryptionConfiguration[0]).toMatchObject({
      BucketKeyEnabled: true,
      ServerSideEncryptionByDefault: {
        SSEAlgorithm: 'aws:kms',
        KMSMasterKeyID: { 'Fn::GetAtt': [expect.stringMatching(/^StorageKey/), 'Arn'] },
      },
    });
    expect(bucket.Properties.VersioningConfiguration).toEqual({ Status: 'Enabled' });
    expect(bucket.Properties.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    expect(bucket.Properties.LoggingConfiguration).toEqual({
      DestinationBucketName: { Ref: expect.stringMatching(/^StorageLogsBucket/) },
      LogFilePrefix: 'recordings-access/',
    });
    expect(bucket.Properties.LifecycleConfiguration.Rules).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ NoncurrentVersionExpiration: { NoncurrentDays: 90 }, Status: 'Enabled' }),
        expect.objectContaining({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 }, Status: 'Enabled' }),
      ]),
    );
    expect(bucket.Properties.ObjectLockEnabled).toBeUndefined();
  });

  test('both buckets deny every request that is not over TLS', () => {
    const policies = Object.values(t.findResources('AWS::S3::BucketPolicy'));
    expect(policies).toHaveLength(2);
    for (const p of policies) {
      expect(p.Properties.PolicyDocument.Statement).toEqual(
        expect.arrayContaining([
          expect.objectContaining({
            Effect: 'Deny',
            Action: 's3:*',
            Principal: { AWS: '*' },
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ]),
      );
    }
  });

  test('the logs bucket lets S3 log delivery write by bucket policy (ACLs stay disabled)', () => {
    const logs = resourceOf(t, 'AWS::S3::Bucket', 'StorageLogsBucket');
    expect(logs.Properties.AccessControl).toBeUndefined();
    expect(logs.Properties.OwnershipControls).toEqual({ Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] });
    t.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Allow', Action: 's3:PutObject', Principal: { Service: 'logging.s3.amazonaws.com' } }),
        ]),
      },
    });
  });
});

describe('ClusterStorage (Object Lock and validation)', () => {
  test('objectLockRetentionDays turns on governance-mode Object Lock', () => {
    // GIVEN Object Lock retention of 30 days
    const stack = new Stack(testApp(), 'S');
    new ClusterStorage(stack, 'Storage', { objectLockRetentionDays: 30 });
    // THEN the recordings bucket has Object Lock with that default retention
    const bucket = resourceOf(Template.fromStack(stack), 'AWS::S3::Bucket', 'StorageRecordingsBucket');
    expect(bucket.Properties.ObjectLockEnabled).toBe(true);
    expect(bucket.Properties.ObjectLockConfiguration).toEqual({
      ObjectLockEnabled: 'Enabled',
      Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 30 } },
    });
  });

  test('a non-positive lifecycle value is rejected before anything is defined', () => {
    const stack = new Stack(testApp(), 'S');
    expect(() => new ClusterStorage(stack, 'Storage', { abortIncompleteMultipartUploadDays: 0 })).toThrow(
      /abortIncompleteMultipartUploadDays must be an integer between 1 and 365, got 0/,
    );
    expect(stack.node.findAll().filter((c) => c.node.path.includes('Storage/'))).toHaveLength(0);
  });
});
