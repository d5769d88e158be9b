/**
 * What the CDK app (lib/), the control plane Lambdas (runtime/controlplane)
 * and the AMI's boot-time config generator must agree on: SSM parameter
 * paths, the `/etc/teleport.d/conf` variable names (the AWS guide's), and the
 * roles an instance can take. lib/ may import only runtime/contract.
 */

/** SSM parameters under `/teleport/<cluster>/` (aws-deployment.md §1.8). */
export const SsmPaths = {
  prefix: (cluster: string) => `/teleport/${cluster}`,
  /** SecureString: the current join token for `role`, written by the token rotator. */
  token: (cluster: string, role: JoinRole) => `/teleport/${cluster}/tokens/${role}`,
  /** String: `sha256:<hex>` of the cluster's TLS CA, written by the token rotator. */
  caPin: (cluster: string) => `/teleport/${cluster}/ca-pin`,
} as const;

/** Roles that join with a token published in SSM. */
export type JoinRole = 'node' | 'proxy';
export const JOIN_ROLES: readonly JoinRole[] = ['node', 'proxy'];

/** `TELEPORT_ROLE` values: one tier, or every role on one instance (the starter). */
export type InstanceRole = 'auth' | 'proxy' | 'node' | 'auth,node,proxy';

/** `/etc/teleport.d/conf`: `KEY=value` lines written by user data (aws-deployment.md §2.2). */
export const CONF_FILE = '/etc/teleport.d/conf';

export const ConfVars = {
  role: 'TELEPORT_ROLE',
  region: 'EC2_REGION',
  clusterName: 'TELEPORT_CLUSTER_NAME',
  authServerLb: 'TELEPORT_AUTH_SERVER_LB',
  domainName: 'TELEPORT_DOMAIN_NAME',
  stateTable: 'TELEPORT_DYNAMO_TABLE_NAME',
  eventsTable: 'TELEPORT_DYNAMO_EVENTS_TABLE_NAME',
  recordingsBucket: 'TELEPORT_S3_BUCKET',
  proxyServerLb: 'TELEPORT_PROXY_SERVER_LB',
  proxyServerNlbAlias: 'TELEPORT_PROXY_SERVER_NLB_ALIAS',
  useAcm: 'USE_ACM',
  /** All-in-one only: the proxy gets its web certificate from Let's Encrypt (`proxy_service.acme`), its web listener on 443. */
  useLetsEncrypt: 'USE_LETSENCRYPT',
  /** The Let's Encrypt account's contact address (optional). */
  domainAdminEmail: 'TELEPORT_DOMAIN_ADMIN_EMAIL',
  ssmKeyArn: 'TELEPORT_SSM_KEY_ARN',
  externalHostname: 'TELEPORT_EXTERNAL_HOSTNAME',
  externalPort: 'TELEPORT_EXTERNAL_PORT',
  /** The CloudFormation stack and the logical id of the instance's auto scaling group: where `teleport signal-ready` sends its SignalResource. */
  cfnStack: 'TELEPORT_CFN_STACK',
  cfnResource: 'TELEPORT_CFN_RESOURCE',
  /** Comma-separated ARNs of the target groups the instance's group registers it with: `signal-ready` waits until each reports it healthy. */
  targetGroups: 'TELEPORT_TARGET_GROUP_ARNS',
  /** The CloudWatch Logs group the instance's unit logs go to (runtime/contract/telemetry.ts); with the next, turns the CloudWatch agent on. */
  logGroup: 'TELEPORT_LOG_GROUP',
  /** The CloudWatch Logs group the agent writes the scraped metrics to (embedded metric format), from which CloudWatch extracts them. */
  metricsLogGroup: 'TELEPORT_METRICS_LOG_GROUP',
  /** Auth instances: `auth_service.session_recording` (node, proxy or off); empty: node, the default. */
  sessionRecording: 'TELEPORT_SESSION_RECORDING',
  /**
   * Auth instances: the ARN of their IAM role. When set, the auth servers make and keep the CA keys in AWS KMS
   * (`ca_key_params.aws_kms` in the role's account and the instance's region), each key with a key policy that
   * lets only this role sign with it.
   */
  caKmsRoleArn: 'TELEPORT_CA_KMS_ROLE_ARN',
} as const;

export type ConfVar = (typeof ConfVars)[keyof typeof ConfVars];

/** The tag every CA key made in AWS KMS has (its value is the key's label); the auth role may create only keys with it. */
export const CA_KEY_TAG = 'teleport-ca';

/** An IAM role ARN, `arn:<partition>:iam::<account>:role/<path/><name>` (IAM's name characters); group 1 is the account. */
export const IAM_ROLE_ARN = /^arn:aws[a-z-]*:iam::(\d{12}):role\/[\w+=,.@/-]{1,512}$/;

/** Session recordings go under this prefix of the recordings bucket: `audit_sessions_uri: s3://<bucket>/records`. */
export const RECORDINGS_PREFIX = 'records';

/** Join tokens live this long; the rotator runs more often, so a published token is always valid. */
export const JOIN_TOKEN_TTL_MS = 4 * 3600_000;
export const TOKEN_ROTATION_PERIOD_MS = 3600_000;
