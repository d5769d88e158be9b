/**
 * Facts every part of the local deployment agrees on: the account and region the synthesized
 * template is deployed into, the ARNs of its resources, and what one AWS call looks like to the
 * IAM audit. Physical names and ARNs come from `template.ts` (`Deployment.resolve`); the helpers
 * below build the same ARNs from names, so the gateway and the audit never disagree with it.
 */

/** The account of the local deployment (AWS's documentation account). */
export const ACCOUNT = '123456789012';
/** The region of the local deployment. */
export const REGION = 'eu-west-1';
export const PARTITION = 'aws';

/** ARNs of the resource kinds the deployment serves, built as AWS builds them. */
export const arn = {
  table: (name: string) => `arn:${PARTITION}:dynamodb:${REGION}:${ACCOUNT}:table/${name}`,
  /** A table's stream; `label` is the stream's creation time label. */
  stream: (table: string, label: string) => `arn:${PARTITION}:dynamodb:${REGION}:${ACCOUNT}:table/${table}/stream/${label}`,
  bucket: (name: string) => `arn:${PARTITION}:s3:::${name}`,
  object: (bucket: string, key: string) => `arn:${PARTITION}:s3:::${bucket}/${key}`,
  /** An SSM parameter; `name` starts with '/' for hierarchical names (the ARN has one slash). */
  parameter: (name: string) => `arn:${PARTITION}:ssm:${REGION}:${ACCOUNT}:parameter/${name.replace(/^\//, '')}`,
  key: (id: string) => `arn:${PARTITION}:kms:${REGION}:${ACCOUNT}:key/${id}`,
  function: (name: string) => `arn:${PARTITION}:lambda:${REGION}:${ACCOUNT}:function:${name}`,
  role: (name: string) => `arn:${PARTITION}:iam::${ACCOUNT}:role/${name}`,
  instance: (id: string) => `arn:${PARTITION}:ec2:${REGION}:${ACCOUNT}:instance/${id}`,
  autoScalingGroup: (name: string) => `arn:${PARTITION}:autoscaling:${REGION}:${ACCOUNT}:autoScalingGroup:00000000-0000-0000-0000-000000000000:autoScalingGroupName/${name}`,
  rule: (name: string) => `arn:${PARTITION}:events:${REGION}:${ACCOUNT}:rule/${name}`,
  logGroup: (name: string) => `arn:${PARTITION}:logs:${REGION}:${ACCOUNT}:log-group:${name}:*`,
};

/** One resource of a CloudFormation template, as synthesized. */
export interface CfnResource {
  readonly Type: string;
  readonly Properties?: Record<string, any>;
  readonly DependsOn?: string | string[];
  readonly Metadata?: Record<string, unknown>;
  readonly UpdatePolicy?: Record<string, any>;
  readonly CreationPolicy?: Record<string, any>;
  readonly DeletionPolicy?: string;
}

/** The resources of a template, by logical id. */
export type CfnResources = Readonly<Record<string, CfnResource>>;

/**
 * Resolves a template value: `Ref`, `Fn::GetAtt`, `Fn::Join`, `Fn::Sub`, `Fn::Select`,
 * `Fn::Split`, `Fn::Base64`, `Fn::GetAZs`, `Fn::If` and pseudo parameters, recursively, into
 * plain JSON with the deployment's physical names and ARNs.
 */
export type Resolve = (value: unknown) => any;

/** Who made an AWS call: an instance or a function, acting as one IAM role of the template. */
export interface Caller {
  /** The role's logical id in the template. */
  readonly roleLogicalId: string;
  /** The role's ARN. */
  readonly roleArn: string;
  /** The instance id or function name that holds the credentials. */
  readonly name: string;
}

/** One AWS API call as IAM evaluates it. */
export interface AwsCall {
  readonly caller: Caller;
  /** IAM action, `service:Action` (`dynamodb:PutItem`, `s3:PutObject`, `kms:Decrypt`). */
  readonly action: string;
  /** The resource ARN the action is on, or `*` for actions without a resource. */
  readonly resource: string;
  /**
   * Condition keys with their values for this request (`aws:SecureTransport`, `kms:ViaService`,
   * `aws:SourceArn`, ...). Global keys the audit can derive itself may be left out.
   */
  readonly context?: Readonly<Record<string, string | string[]>>;
  /** What the caller really asked for when this call is implied by another (`ssm:GetParameter` for a `kms:Decrypt` via SSM). */
  readonly via?: string;
  /**
   * The resource policy of a resource the endpoint made at run time (a KMS key's policy from CreateKey), which
   * the template does not hold; the template's own resources' policies are found by ARN.
   */
  readonly resourcePolicy?: { readonly description: string; readonly document: { readonly Statement: unknown } };
}

/** The IAM decision for one call. */
export interface IamDecision {
  readonly allowed: boolean;
  /** Why it was denied (no matching Allow, an explicit Deny in a named statement, ...). */
  readonly reason?: string;
}

/** Checks calls against the template's policies and remembers them for the report. */
export interface CallAuditor {
  /** Decides and records one call. A denied call must be refused by the endpoint that received it. */
  check(call: AwsCall): IamDecision;
}

/** Credentials handed to an instance (through IMDS) or a function (through its environment). */
export interface IssuedCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken: string;
  /** ISO time. */
  readonly expiration: string;
}

/** Progress lines of the deployment (`deploy:local` prints them; tests collect them). */
export type Log = (line: string) => void;
