/**
 * The synthesized stack as CloudFormation would deploy it: reads a cloud assembly (`cdk.out`),
 * gives every resource its physical name and ARN, and resolves template values (`Ref`,
 * `Fn::GetAtt`, `Fn::Join`, `Fn::Sub`, `Fn::Select`, `Fn::Split`, `Fn::Base64`, `Fn::GetAZs`,
 * `Fn::If` with the template's conditions, `Fn::FindInMap`, pseudo parameters) into plain JSON.
 *
 * Names follow CloudFormation's pattern (`<stack>-<logical id>-<suffix>`, lower case for buckets)
 * unless the template names the resource; the suffix is derived from the logical id, so a
 * deployment of the same template gets the same names. Values only known once a resource exists
 * (a table's stream ARN, a custom resource's physical id and data) are recorded with
 * {@link Deployment.setAttribute} and resolved from then on. Load balancers' `DNSName` is their
 * virtual IP address on the deployment's network.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ACCOUNT, arn, PARTITION, REGION, type CfnResource, type CfnResources } from './types';

/** A template value that cannot be resolved, naming the resource (or output) and the value. */
export class TemplateError extends Error {
  override readonly name = 'TemplateError';
}

interface CfnTemplate {
  readonly Resources: Record<string, CfnResource>;
  readonly Parameters?: Record<string, { Type: string; Default?: unknown }>;
  readonly Conditions?: Record<string, unknown>;
  readonly Mappings?: Record<string, Record<string, Record<string, unknown>>>;
  readonly Outputs?: Record<string, { Value: unknown; Description?: string }>;
}

/** The AMI id every launch template resolves to: instances boot this repository's build (see instance.ts). */
export const LOCAL_IMAGE_ID = 'ami-0000000000local';
const AZS = ['a', 'b', 'c'].map((z) => `${REGION}${z}`);
const NO_VALUE = Symbol('AWS::NoValue');

export interface DeploymentOptions {
  /** The cloud assembly directory. */
  readonly cdkOut: string;
  /** The stack to deploy; the assembly's only stack when absent. */
  readonly stackName?: string;
  /** The virtual IP of the n-th load balancer of the template (0-based, template order). */
  readonly loadBalancerAddress: (index: number) => string;
}

export class Deployment {
  readonly stackName: string;
  readonly resources: CfnResources;
  readonly outputs: Record<string, { Value: unknown; Description?: string }>;
  private readonly template: CfnTemplate;
  private readonly attributes = new Map<string, unknown>();
  private readonly physicalIds = new Map<string, string>();
  private readonly conditions = new Map<string, boolean>();
  private readonly loadBalancers: string[];

  private constructor(
    readonly cdkOut: string,
    stackName: string,
    template: CfnTemplate,
    private readonly lbAddress: (index: number) => string,
  ) {
    this.stackName = stackName;
    this.template = template;
    this.resources = template.Resources;
    this.outputs = template.Outputs ?? {};
    this.loadBalancers = this.ofType('AWS::ElasticLoadBalancingV2::LoadBalancer');
  }

  /** Reads the stack's template from the assembly's manifest. */
  static load(opts: DeploymentOptions): Deployment {
    const manifestFile = path.join(opts.cdkOut, 'manifest.json');
    if (!fs.existsSync(manifestFile)) throw new TemplateError(`${manifestFile} is missing: synthesize the app first (npx cdk synth -o ${opts.cdkOut})`);
    const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as { artifacts?: Record<string, { type: string; properties?: { templateFile?: string } }> };
    const stacks = Object.entries(manifest.artifacts ?? {}).filter(([, a]) => a.type === 'aws:cloudformation:stack');
    const chosen = opts.stackName ? stacks.filter(([name]) => name === opts.stackName) : stacks;
    if (chosen.length !== 1) {
      throw new TemplateError(`${opts.cdkOut}: ${opts.stackName ? `no stack ${opts.stackName}` : `${chosen.length} stacks`} (stacks: ${stacks.map(([n]) => n).join(', ') || 'none'})`);
    }
    const [name, artifact] = chosen[0];
    const template = JSON.parse(fs.readFileSync(path.join(opts.cdkOut, artifact.properties!.templateFile!), 'utf8')) as CfnTemplate;
    return new Deployment(opts.cdkOut, name, template, opts.loadBalancerAddress);
  }

  /** Logical ids of the resources of `type`, in template order. */
  ofType(type: string): string[] {
    return Object.keys(this.resources).filter((id) => this.resources[id].Type === type);
  }

  /** The resource `id`, or a TemplateError. */
  resource(id: string): CfnResource {
    const r = this.resources[id];
    if (!r) throw new TemplateError(`no resource ${id} in the template of ${this.stackName}`);
    return r;
  }

  /** Records a value known once the resource exists: `Ref` (attribute 'Ref') or an attribute. */
  setAttribute(id: string, attribute: string, value: unknown): void {
    if (attribute === 'Ref') this.physicalIds.set(id, String(value));
    else this.attributes.set(`${id}.${attribute}`, value);
  }

  /** The resource's physical name or id (`Ref`). */
  physicalId(id: string): string {
    const known = this.physicalIds.get(id);
    if (known !== undefined) return known;
    const r = this.resource(id);
    const p = r.Properties ?? {};
    const given = (key: string) => (p[key] !== undefined ? String(this.resolve(p[key])) : undefined);
    const suffix = createHash('sha256').update(`${this.stackName}/${id}`).digest('hex').slice(0, 12).toUpperCase();
    const cfnName = (max = 64) => `${this.stackName}-${id}`.slice(0, max - suffix.length - 1) + `-${suffix}`;
    let value: string;
    switch (r.Type) {
      case 'AWS::DynamoDB::Table':
        value = given('TableName') ?? cfnName(255);
        break;
      case 'AWS::S3::Bucket':
        value = given('BucketName') ?? cfnName(63).toLowerCase();
        break;
      case 'AWS::Lambda::Function':
        value = given('FunctionName') ?? cfnName(64);
        break;
      case 'AWS::IAM::Role':
        value = given('RoleName') ?? cfnName(64);
        break;
      case 'AWS::IAM::InstanceProfile':
        value = given('InstanceProfileName') ?? cfnName(128);
        break;
      case 'AWS::AutoScaling::AutoScalingGroup':
        value = given('AutoScalingGroupName') ?? cfnName(255);
        break;
      case 'AWS::Events::Rule':
        value = given('Name') ?? cfnName(64);
        break;
      case 'AWS::Logs::LogGroup':
        value = given('LogGroupName') ?? cfnName(512);
        break;
      case 'AWS::SSM::Parameter':
        value = given('Name') ?? `CFN-${id}-${suffix}`;
        break;
      case 'AWS::KMS::Key':
        value = `${suffix.toLowerCase().slice(0, 8)}-0000-4000-8000-${suffix.toLowerCase()}`;
        break;
      case 'AWS::ElasticLoadBalancingV2::LoadBalancer': {
        const kind = p.Type === 'network' ? 'net' : 'app';
        value = `arn:${PARTITION}:elasticloadbalancing:${REGION}:${ACCOUNT}:loadbalancer/${kind}/${given('Name') ?? id.slice(0, 32)}/${suffix.toLowerCase()}`;
        break;
      }
      case 'AWS::ElasticLoadBalancingV2::TargetGroup':
        value = `arn:${PARTITION}:elasticloadbalancing:${REGION}:${ACCOUNT}:targetgroup/${(given('Name') ?? id).slice(0, 32)}/${createHash('sha256').update(id).digest('hex').slice(0, 16)}`;
        break;
      case 'AWS::ElasticLoadBalancingV2::Listener':
        value = `arn:${PARTITION}:elasticloadbalancing:${REGION}:${ACCOUNT}:listener/${id}/${suffix.toLowerCase()}`;
        break;
      case 'AWS::EC2::LaunchTemplate':
        value = `lt-${suffix.toLowerCase()}`;
        break;
      default:
        value = r.Type.startsWith('AWS::EC2::') ? `${r.Type.split('::')[2].replace(/[a-z]/g, '').toLowerCase()}-${suffix.toLowerCase()}` : `${id}-${suffix}`;
    }
    this.physicalIds.set(id, value);
    return value;
  }

  /** `Fn::GetAtt [id, attribute]`. */
  attribute(id: string, attribute: string): unknown {
    const known = this.attributes.get(`${id}.${attribute}`);
    if (known !== undefined) return known;
    const r = this.resource(id);
    const name = () => this.physicalId(id);
    switch (`${r.Type}.${attribute}`) {
      case 'AWS::DynamoDB::Table.Arn':
        return arn.table(name());
      case 'AWS::DynamoDB::Table.StreamArn':
        throw new TemplateError(`${id}.StreamArn is known once the table exists (the stores record it)`);
      case 'AWS::S3::Bucket.Arn':
        return arn.bucket(name());
      case 'AWS::S3::Bucket.DomainName':
        return `${name()}.s3.amazonaws.com`;
      case 'AWS::S3::Bucket.RegionalDomainName':
        return `${name()}.s3.${REGION}.amazonaws.com`;
      case 'AWS::KMS::Key.Arn':
        return arn.key(name());
      case 'AWS::KMS::Key.KeyId':
        return name();
      case 'AWS::IAM::Role.Arn':
        return arn.role(name());
      case 'AWS::IAM::Role.RoleId':
        return `AROA${name().replace(/[^A-Z0-9]/gi, '').toUpperCase().slice(-17)}`;
      case 'AWS::IAM::InstanceProfile.Arn':
        return `arn:${PARTITION}:iam::${ACCOUNT}:instance-profile/${name()}`;
      case 'AWS::Lambda::Function.Arn':
        return arn.function(name());
      case 'AWS::Events::Rule.Arn':
        return arn.rule(name());
      case 'AWS::Logs::LogGroup.Arn':
        return arn.logGroup(name());
      case 'AWS::EC2::LaunchTemplate.LatestVersionNumber':
      case 'AWS::EC2::LaunchTemplate.DefaultVersionNumber':
        return '1';
      case 'AWS::EC2::SecurityGroup.GroupId':
      case 'AWS::EC2::EIP.AllocationId':
        return name();
      case 'AWS::ElasticLoadBalancingV2::LoadBalancer.DNSName':
        return this.lbAddress(this.loadBalancers.indexOf(id));
      case 'AWS::ElasticLoadBalancingV2::LoadBalancer.CanonicalHostedZoneID':
        return 'Z2IFOLAFXWLO4F';
      case 'AWS::ElasticLoadBalancingV2::LoadBalancer.LoadBalancerFullName':
        return name().split(':loadbalancer/')[1];
      case 'AWS::ElasticLoadBalancingV2::TargetGroup.TargetGroupFullName':
        return name().split(':')[5];
      default:
        throw new TemplateError(`Fn::GetAtt ${id}.${attribute} (${r.Type}) is not known to the local deployment`);
    }
  }

  /** Resolves a template value into plain JSON (see the module comment). */
  resolve = (value: unknown): any => {
    const v = this.resolveValue(value);
    return v === NO_VALUE ? undefined : v;
  };

  /** The stack's outputs, resolved (an output whose value cannot be resolved yet is left out). */
  resolvedOutputs(): Record<string, { value: string; description?: string }> {
    const out: Record<string, { value: string; description?: string }> = {};
    for (const [key, o] of Object.entries(this.outputs)) {
      try {
        out[key] = { value: String(this.resolve(o.Value)), ...(o.Description ? { description: o.Description } : {}) };
      } catch {
        // an output of a resource that does not exist yet
      }
    }
    return out;
  }

  private resolveValue(value: unknown): unknown {
    if (Array.isArray(value)) return value.map((v) => this.resolveValue(v)).filter((v) => v !== NO_VALUE);
    if (value === null || typeof value !== 'object') return value;
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 1) {
      const [fn, arg] = entries[0];
      if (fn === 'Ref') return this.ref(String(arg));
      if (fn.startsWith('Fn::') || fn === 'Condition') return this.intrinsic(fn, arg);
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of entries) {
      const r = this.resolveValue(v);
      if (r !== NO_VALUE) out[k] = r;
    }
    return out;
  }

  private ref(name: string): unknown {
    switch (name) {
      case 'AWS::Region':
        return REGION;
      case 'AWS::AccountId':
        return ACCOUNT;
      case 'AWS::Partition':
        return PARTITION;
      case 'AWS::URLSuffix':
        return 'amazonaws.com';
      case 'AWS::StackName':
        return this.stackName;
      case 'AWS::StackId':
        return `arn:${PARTITION}:cloudformation:${REGION}:${ACCOUNT}:stack/${this.stackName}/00000000-0000-4000-8000-000000000000`;
      case 'AWS::NoValue':
        return NO_VALUE;
    }
    const param = this.template.Parameters?.[name];
    if (param) {
      if (param.Type === 'AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>') return LOCAL_IMAGE_ID;
      if (name === 'BootstrapVersion') return '21';
      if (param.Default !== undefined) return param.Default;
      throw new TemplateError(`parameter ${name} has no default`);
    }
    return this.physicalId(name);
  }

  private intrinsic(fn: string, arg: any): unknown {
    const r = (v: unknown) => this.resolveValue(v);
    switch (fn) {
      case 'Fn::GetAtt': {
        const [id, attribute] = typeof arg === 'string' ? [arg.slice(0, arg.indexOf('.')), arg.slice(arg.indexOf('.') + 1)] : (arg as string[]);
        return this.attribute(id, attribute);
      }
      case 'Fn::Join': {
        const [sep, parts] = arg as [string, unknown];
        return (r(parts) as unknown[]).join(sep);
      }
      case 'Fn::Sub': {
        const [text, vars] = typeof arg === 'string' ? [arg, {}] : (arg as [string, Record<string, unknown>]);
        const bound = r(vars) as Record<string, unknown>;
        return text.replace(/\$\{([^}!][^}]*)\}/g, (_, name: string) => {
          if (Object.hasOwn(bound, name)) return String(bound[name]);
          const dot = name.indexOf('.');
          return String(dot > 0 && !name.startsWith('AWS::') ? this.attribute(name.slice(0, dot), name.slice(dot + 1)) : this.ref(name));
        }).replace(/\$\{!/g, '${');
      }
      case 'Fn::Base64':
        return Buffer.from(String(r(arg))).toString('base64');
      case 'Fn::Select': {
        const [index, list] = arg as [unknown, unknown];
        const items = r(list) as unknown[];
        const i = Number(r(index));
        if (!Array.isArray(items) || !(i in items)) throw new TemplateError(`Fn::Select index ${i} out of range`);
        return items[i];
      }
      case 'Fn::Split': {
        const [sep, text] = arg as [string, unknown];
        return String(r(text)).split(sep);
      }
      case 'Fn::GetAZs':
        return AZS;
      case 'Fn::FindInMap': {
        const [map, top, second] = (arg as unknown[]).map((a) => String(r(a)));
        const v = this.template.Mappings?.[map]?.[top]?.[second];
        if (v === undefined) throw new TemplateError(`Fn::FindInMap ${map}.${top}.${second} is not in the template's mappings`);
        return v;
      }
      case 'Fn::If': {
        const [cond, yes, no] = arg as [string, unknown, unknown];
        return r(this.condition(cond) ? yes : no);
      }
      case 'Fn::Equals': {
        const [a, b] = (arg as unknown[]).map(r);
        return JSON.stringify(a) === JSON.stringify(b);
      }
      case 'Fn::Not':
        return !r((arg as unknown[])[0]);
      case 'Fn::And':
        return (arg as unknown[]).every((c) => r(c));
      case 'Fn::Or':
        return (arg as unknown[]).some((c) => r(c));
      case 'Condition':
        return this.condition(String(arg));
      default:
        throw new TemplateError(`${fn} is not supported by the local deployment`);
    }
  }

  private condition(name: string): boolean {
    let v = this.conditions.get(name);
    if (v === undefined) {
      const def = this.template.Conditions?.[name];
      if (def === undefined) throw new TemplateError(`condition ${name} is not in the template`);
      v = Boolean(this.resolveValue(def));
      this.conditions.set(name, v);
    }
    return v;
  }

  /** The asset directory of a Lambda function's `Code` (`cdk.out/asset.<hash>`). */
  assetDir(functionId: string): string {
    const r = this.resource(functionId);
    const assetPath = r.Metadata?.['aws:asset:path'];
    const key = String(this.resolve(r.Properties?.Code?.S3Key ?? ''));
    const dir = path.join(this.cdkOut, typeof assetPath === 'string' ? assetPath : `asset.${key.replace(/\.zip$/, '')}`);
    if (!fs.existsSync(dir)) throw new TemplateError(`the code of ${functionId} is not in the assembly: ${dir} is missing`);
    return dir;
  }
}

