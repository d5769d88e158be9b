/**
 * The IAM policies of a synthesized template, resolved to plain JSON: for each `AWS::IAM::Role`
 * the identity policies that AWS would evaluate for a session of that role, and the resource
 * policies of the template's buckets and KMS keys.
 *
 * A role's identity policies are:
 * - its inline `Policies` (each named `<role logical id>/<PolicyName>`);
 * - every `AWS::IAM::Policy` and `AWS::IAM::ManagedPolicy` whose `Roles` names it, and every
 *   `AWS::IAM::RolePolicy` whose `RoleName` does (each named by its logical id);
 * - its `ManagedPolicyArns` that are `AWS::IAM::ManagedPolicy` resources of the template
 *   (their `Ref` is the policy's ARN).
 * Its `PermissionsBoundary`, if any, must likewise be a managed policy of the template.
 * AWS managed policies (`arn:aws:iam::aws:policy/...`) are refused, naming the policy: neither
 * @cloud-copilot/iam-simulate nor its data package (iam-data) ships their documents, and
 * evaluating a role without them would deny what AWS allows.
 *
 * Resource policies: `AWS::S3::BucketPolicy` (`Bucket` + `PolicyDocument`) applies to the bucket
 * and its objects; `AWS::KMS::Key` `KeyPolicy` applies to the key, and a key without one gets the
 * policy AWS gives it (the account root may do `kms:*`, which delegates the key to IAM).
 *
 * Names follow sim/template.ts: `Ref` of a role is its name (ARN `arn.role(name)`), of a bucket
 * its name, of a key its key id, of a managed policy its ARN.
 */
import { ACCOUNT, arn, PARTITION, type CfnResource, type CfnResources, type Resolve } from '../types';

/** A resolved policy document. */
export interface PolicyDocument {
  readonly Version?: string;
  readonly Statement: PolicyStatement | PolicyStatement[];
}

/** A resolved policy statement (the fields the audit reads; the library reads all). */
export interface PolicyStatement {
  readonly Sid?: string;
  readonly Effect: 'Allow' | 'Deny';
  readonly Action?: string | string[];
  readonly NotAction?: string | string[];
  readonly Resource?: string | string[];
  readonly NotResource?: string | string[];
  readonly [key: string]: unknown;
}

/** One policy with the name the library and the report know it by. */
export interface NamedPolicy {
  /** Unique in the template: `<role logical id>/<PolicyName>` for inline policies, else the logical id. */
  readonly name: string;
  /** What it is, for reasons and the report (`inline policy teleport of AuthRole...`). */
  readonly description: string;
  readonly document: PolicyDocument;
}

/** What AWS evaluates for a session of one role. */
export interface RolePolicies {
  readonly logicalId: string;
  /** The role's name (`Ref`). */
  readonly name: string;
  readonly arn: string;
  readonly identity: readonly NamedPolicy[];
  readonly boundary?: NamedPolicy;
}

/** The template's policies. */
export interface TemplatePolicies {
  /** By role logical id. */
  readonly roles: ReadonlyMap<string, RolePolicies>;
  /** The resource policy that applies to a resource ARN (a bucket's to its objects too), if any. */
  resourcePolicy(resourceArn: string): NamedPolicy | undefined;
}

/** A policy the audit cannot evaluate as AWS would. */
export class PolicyError extends Error {
  constructor(
    /** The logical id of the resource that holds or attaches the policy. */
    readonly logicalId: string,
    readonly reason: string,
  ) {
    super(`${logicalId}: ${reason}`);
    this.name = 'PolicyError';
  }
}

/** The policy AWS gives a KMS key created without a key policy. */
export const DEFAULT_KEY_POLICY: PolicyDocument = {
  Version: '2012-10-17',
  Statement: [{ Sid: 'Enable IAM User Permissions', Effect: 'Allow', Principal: { AWS: `arn:${PARTITION}:iam::${ACCOUNT}:root` }, Action: 'kms:*', Resource: '*' }],
};

/** Reads the policies of `resources`, resolving every template value with `resolve`. */
export function templatePolicies(resources: CfnResources, resolve: Resolve): TemplatePolicies {
  const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
  const props = (r: CfnResource) => r.Properties ?? {};

  const roleIdByName = new Map<string, string>();
  for (const [id] of ofType('AWS::IAM::Role')) roleIdByName.set(String(resolve({ Ref: id })), id);

  const managedByArn = new Map<string, NamedPolicy>();
  for (const [id, r] of ofType('AWS::IAM::ManagedPolicy')) {
    managedByArn.set(String(resolve({ Ref: id })), named(id, `managed policy ${id}`, props(r).PolicyDocument));
  }

  // Policies attached from the policy's side (`Roles` / `RoleName`), by role logical id.
  const attached = new Map<string, NamedPolicy[]>();
  const attach = (roleRef: unknown, policy: NamedPolicy) => {
    const roleId = roleIdByName.get(String(resolve(roleRef)));
    if (roleId) attached.set(roleId, [...(attached.get(roleId) ?? []), policy]);
  };
  for (const [id, r] of ofType('AWS::IAM::Policy')) {
    for (const role of props(r).Roles ?? []) attach(role, named(id, `policy ${id}`, props(r).PolicyDocument));
  }
  for (const [id, r] of ofType('AWS::IAM::ManagedPolicy')) {
    for (const role of props(r).Roles ?? []) attach(role, managedByArn.get(String(resolve({ Ref: id })))!);
  }
  for (const [id, r] of ofType('AWS::IAM::RolePolicy')) attach(props(r).RoleName, named(id, `role policy ${id}`, props(r).PolicyDocument));

  const managed = (roleId: string, policyArn: unknown): NamedPolicy => {
    const resolved = String(resolve(policyArn));
    const policy = managedByArn.get(resolved);
    if (policy) return policy;
    if (/^arn:[^:]+:iam::aws:policy\//.test(resolved)) {
      throw new PolicyError(roleId, `AWS managed policy ${resolved} cannot be evaluated: @cloud-copilot/iam-simulate and iam-data do not ship AWS managed policy documents; use an inline or template-managed policy instead`);
    }
    throw new PolicyError(roleId, `managed policy ${resolved} is neither an AWS::IAM::ManagedPolicy of the template nor an AWS managed policy`);
  };

  const roles = new Map<string, RolePolicies>();
  for (const [id, r] of ofType('AWS::IAM::Role')) {
    const p = props(r);
    const name = String(resolve({ Ref: id }));
    const inline = (p.Policies ?? []).map((ip: any) => {
      const policyName = String(resolve(ip.PolicyName));
      return named(`${id}/${policyName}`, `inline policy ${policyName} of ${id}`, ip.PolicyDocument);
    });
    roles.set(id, {
      logicalId: id,
      name,
      arn: arn.role(name),
      identity: distinct([...inline, ...(p.ManagedPolicyArns ?? []).map((a: unknown) => managed(id, a)), ...(attached.get(id) ?? [])]),
      ...(p.PermissionsBoundary !== undefined ? { boundary: managed(id, p.PermissionsBoundary) } : {}),
    });
  }

  const byResource = new Map<string, NamedPolicy>();
  for (const [id, r] of ofType('AWS::S3::BucketPolicy')) {
    const bucket = String(resolve(props(r).Bucket));
    byResource.set(arn.bucket(bucket), named(id, `bucket policy ${id} of bucket ${bucket}`, props(r).PolicyDocument));
  }
  for (const [id, r] of ofType('AWS::KMS::Key')) {
    const keyPolicy = props(r).KeyPolicy;
    byResource.set(arn.key(String(resolve({ Ref: id }))), keyPolicy === undefined
      ? { name: id, description: `default key policy of ${id}`, document: DEFAULT_KEY_POLICY }
      : named(id, `key policy of ${id}`, keyPolicy));
  }

  function named(name: string, description: string, document: unknown): NamedPolicy {
    const resolved = resolve(document);
    if (!resolved || typeof resolved !== 'object' || !('Statement' in resolved)) {
      throw new PolicyError(name, `${description} has no policy document with a Statement`);
    }
    return { name, description, document: resolved as PolicyDocument };
  }

  return {
    roles,
    resourcePolicy: (resourceArn) => byResource.get(bucketOf(resourceArn) ?? resourceArn),
  };
}

/** Each policy once (a managed policy may be attached from both sides). */
function distinct(policies: NamedPolicy[]): NamedPolicy[] {
  return [...new Map(policies.map((p) => [p.name, p])).values()];
}

/** The bucket ARN of an S3 bucket or object ARN. */
function bucketOf(resourceArn: string): string | undefined {
  const m = /^(arn:[^:]+:s3:::[^/]+)/.exec(resourceArn);
  return m?.[1];
}

/** The statements of a policy, as a list. */
export function statementsOf(policy: NamedPolicy): PolicyStatement[] {
  return [policy.document.Statement].flat();
}
