/**
 * Policy statements shared by the tiers' instance roles. Every statement names its actions
 * exactly (no service wildcards) and the narrowest resource the action supports.
 */
import { CfnElement, Stack, Token, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import { Construct, IConstruct } from 'constructs';
import { CA_KEY_TAG, JoinRole, RECORDINGS_PREFIX, SsmPaths } from '../runtime/contract/aws';
import type { ClusterStorage } from './storage';

/** DynamoDB actions the auth server's backend and audit log call (runtime/backend/dynamodb.ts, runtime/events/dynamodb.ts). */
export const AUTH_TABLE_ACTIONS = [
  'dynamodb:BatchWriteItem',
  'dynamodb:DeleteItem',
  'dynamodb:DescribeTable',
  'dynamodb:DescribeTimeToLive',
  'dynamodb:GetItem',
  'dynamodb:PutItem',
  'dynamodb:Query',
  'dynamodb:UpdateItem',
] as const;
/** DynamoDB Streams actions of a stream reader (the backend's watcher; Lambda's event source mapping). */
export const STREAM_READ_ACTIONS = [
  'dynamodb:DescribeStream',
  'dynamodb:GetRecords',
  'dynamodb:GetShardIterator',
  'dynamodb:ListStreams',
] as const;
/** DynamoDB Streams actions the backend's watcher calls. */
export const AUTH_STREAM_ACTIONS = STREAM_READ_ACTIONS;
/** S3 object actions for session recordings (multipart upload with resume; HeadObject is GetObject). */
export const AUTH_OBJECT_ACTIONS = ['s3:AbortMultipartUpload', 's3:GetObject', 's3:PutObject'] as const;
export const AUTH_BUCKET_ACTIONS = ['s3:ListBucket', 's3:ListBucketMultipartUploads'] as const;
/** KMS actions for the tables and the SSE-KMS bucket. */
export const AUTH_KMS_ACTIONS = ['kms:Decrypt', 'kms:DescribeKey', 'kms:Encrypt', 'kms:GenerateDataKey'] as const;


/** ARN of an SSM parameter given by its path (`/teleport/...`). */
export function ssmParameterArn(scope: Construct, path: string): string {
  return Stack.of(scope).formatArn({ service: 'ssm', resource: 'parameter', resourceName: path.replace(/^\/+/, '') });
}

/**
 * What the SSM agent on every instance needs to register (`ssm:UpdateInstanceInformation`,
 * the permission whose absence broke the original CloudFormation template) and to serve
 * Session Manager (no SSH keys on the instances). These replace the broad
 * AmazonSSMManagedInstanceCore managed policy.
 */
export function ssmAgentStatements(scope: Construct): iam.PolicyStatement[] {
  const stack = Stack.of(scope);
  return [
    new iam.PolicyStatement({
      sid: 'SsmAgentRegister',
      actions: ['ssm:UpdateInstanceInformation'],
      resources: [stack.formatArn({ service: 'ec2', resource: 'instance', resourceName: '*' })],
    }),
    new iam.PolicyStatement({
      sid: 'SsmSessionManager',
      actions: [
        'ssmmessages:CreateControlChannel',
        'ssmmessages:CreateDataChannel',
        'ssmmessages:OpenControlChannel',
        'ssmmessages:OpenDataChannel',
      ],
      resources: ['*'],
    }),
  ];
}

/**
 * What an auth server needs to make its CA keys in AWS KMS (`caKeysInKms`): `kms:CreateKey` of ECC_NIST_P256
 * SIGN_VERIFY keys tagged `teleport-ca` (and nothing else), and `kms:TagResource`, which KMS checks for a
 * CreateKey with tags. Using a key needs no IAM permission: its key policy, set at CreateKey, names this role
 * alone for Sign (runtime/keystore/awskms.ts caKeyPolicy); the account's administrators keep administration
 * through IAM, not use. KMS has no resource to name before the key exists, hence `*` with conditions.
 */
export function caKeyStatements(): iam.PolicyStatement[] {
  const taggedOnly = {
    'ForAllValues:StringEquals': { 'aws:TagKeys': [CA_KEY_TAG] },
    Null: { [`aws:RequestTag/${CA_KEY_TAG}`]: 'false' },
  };
  return [
    new iam.PolicyStatement({
      sid: 'CaKeysCreate',
      actions: ['kms:CreateKey'],
      resources: ['*'],
      conditions: { StringEquals: { 'kms:KeySpec': 'ECC_NIST_P256', 'kms:KeyUsage': 'SIGN_VERIFY' }, ...taggedOnly },
    }),
    new iam.PolicyStatement({ sid: 'CaKeysTag', actions: ['kms:TagResource'], resources: ['*'], conditions: taggedOnly }),
  ];
}

/** `kms:Decrypt` of `key`, only when SSM calls it (reading a SecureString parameter). */
export function ssmDecryptStatement(scope: Construct, key: kms.IKey): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'DecryptSecureStrings',
    actions: ['kms:Decrypt'],
    resources: [key.keyArn],
    conditions: { StringEquals: { 'kms:ViaService': `ssm.${Stack.of(scope).region}.amazonaws.com` } },
  });
}

/**
 * How cdk-nag spells an ARN built with `Stack.formatArn` in a finding id: pseudo parameters
 * appear as `<AWS::Region>` etc. in an environment-agnostic stack, as literals otherwise.
 */
export function nagArn(scope: Construct, service: string, resource: string): string {
  const stack = Stack.of(scope);
  const region = Token.isUnresolved(stack.region) ? '<AWS::Region>' : stack.region;
  const account = Token.isUnresolved(stack.account) ? '<AWS::AccountId>' : stack.account;
  return `arn:<AWS::Partition>:${service}:${region}:${account}:${resource}`;
}

/** The cdk-nag acknowledgements every instance role carries, each naming the finding it covers. */
export function acknowledgeInstanceRoleFindings(role: IConstruct): void {
  Validations.of(role).acknowledge({
    id: `AwsSolutions-IAM5[Resource::${nagArn(role, 'ec2', 'instance/*')}]`,
    reason: 'ssm:UpdateInstanceInformation is called by the SSM agent of whichever instance in this account/region assumes the role; instance ids are not known at deploy time.',
  });
  Validations.of(role).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason:
      'ssmmessages:* channel actions (Session Manager) and elasticloadbalancing:DescribeTargetHealth (the readiness signal) support no resource-level permissions; the actions are listed individually. ' +
      'With caKeysInKms, the auth role\'s kms:CreateKey and kms:TagResource have no key before it exists: conditions allow only ECC_NIST_P256 SIGN_VERIFY keys tagged teleport-ca, whose own key policy limits their use to this role.',
  });
}

/**
 * A tier's instance role (construct id `Role`): its own statements plus the SSM agent's, and the
 * acknowledgements every instance role carries.
 */
export function instanceRole(
  scope: Construct,
  description: string,
  statements: iam.PolicyStatement[],
  opts: { signalsStack?: boolean; readsTargetHealth?: boolean } = {},
): iam.Role {
  const role = new iam.Role(scope, 'Role', {
    assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
    description,
    inlinePolicies: {
      teleport: new iam.PolicyDocument({
        statements: [
          ...statements,
          ...(opts.signalsStack ? [signalStatement(scope)] : []),
          ...(opts.readsTargetHealth ? [targetHealthStatement()] : []),
          ...ssmAgentStatements(scope),
        ],
      }),
    },
  });
  acknowledgeInstanceRoleFindings(role);
  if (opts.signalsStack) {
    Validations.of(role).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${nagArn(role, 'cloudformation', `stack/${Stack.of(scope).stackName}/*`)}]`,
      reason: 'SignalResource to this stack only; the wildcard is the stack id CloudFormation assigns at creation.',
    });
  }
  return role;
}

/**
 * `teleport signal-ready`'s SignalResource to its own stack (the auto scaling group's creation and
 * rolling updates wait for it).
 */
function signalStatement(scope: Construct): iam.PolicyStatement {
  const stack = Stack.of(scope);
  return new iam.PolicyStatement({
    sid: 'SignalReadiness',
    actions: ['cloudformation:SignalResource'],
    resources: [stack.formatArn({ service: 'cloudformation', resource: 'stack', resourceName: `${stack.stackName}/*` })],
  });
}

/** `teleport signal-ready` waits until the instance's target groups report it healthy (DescribeTargetHealth has no resource-level permissions). */
function targetHealthStatement(): iam.PolicyStatement {
  return new iam.PolicyStatement({ sid: 'TargetHealth', actions: ['elasticloadbalancing:DescribeTargetHealth'], resources: ['*'] });
}

/** What a tier that joins with a token needs: its own join token and the CA pin from SSM, and the key to decrypt them. */
export function joinStatements(scope: Construct, clusterName: string, role: JoinRole, key: kms.IKey): iam.PolicyStatement[] {
  return [
    new iam.PolicyStatement({
      sid: 'JoinParameters',
      actions: ['ssm:GetParameter'],
      resources: [ssmParameterArn(scope, SsmPaths.token(clusterName, role)), ssmParameterArn(scope, SsmPaths.caPin(clusterName))],
    }),
    ssmDecryptStatement(scope, key),
  ];
}

/**
 * What an auth service with DynamoDB/S3 storage needs of `storage` (the auth tier's instances
 * and the starter's): the two tables and the audit index, the state table's stream, the
 * recordings under `records/` and the bucket listing, and the data key.
 */
export function storageStatements(storage: ClusterStorage): iam.PolicyStatement[] {
  const tables = [storage.stateTable.tableArn, storage.eventsTable.tableArn];
  return [
    new iam.PolicyStatement({
      sid: 'Tables',
      actions: [...AUTH_TABLE_ACTIONS],
      resources: [...tables, `${storage.eventsTable.tableArn}/index/timesearch`],
    }),
    new iam.PolicyStatement({
      sid: 'StateTableStream',
      actions: [...AUTH_STREAM_ACTIONS],
      resources: [`${storage.stateTable.tableArn}/stream/*`],
    }),
    new iam.PolicyStatement({
      sid: 'Recordings',
      actions: [...AUTH_OBJECT_ACTIONS],
      resources: [storage.recordingsBucket.arnForObjects(`${RECORDINGS_PREFIX}/*`)],
    }),
    new iam.PolicyStatement({
      sid: 'RecordingsBucket',
      actions: [...AUTH_BUCKET_ACTIONS],
      resources: [storage.recordingsBucket.bucketArn],
    }),
    new iam.PolicyStatement({ sid: 'DataKey', actions: [...AUTH_KMS_ACTIONS], resources: [storage.key.keyArn] }),
  ];
}

/** The cdk-nag acknowledgements of a role carrying {@link storageStatements}, each naming the wildcard it covers. */
export function acknowledgeStorageFindings(role: IConstruct, storage: ClusterStorage): void {
  const stack = Stack.of(role);
  const logicalId = (c: IConstruct) => stack.getLogicalId(c.node.defaultChild as CfnElement);
  Validations.of(role).acknowledge({
    id: `AwsSolutions-IAM5[Resource::<${logicalId(storage.stateTable)}.Arn>/stream/*]`,
    reason: 'A stream ARN ends in its creation time and changes whenever the stream is re-enabled; the wildcard covers only streams of the state table.',
  });
  Validations.of(role).acknowledge({
    id: `AwsSolutions-IAM5[Resource::<${logicalId(storage.recordingsBucket)}.Arn>/${RECORDINGS_PREFIX}/*]`,
    reason: 'Session recordings are objects created at run time under the records/ prefix of the recordings bucket; the wildcard is limited to that prefix.',
  });
}
