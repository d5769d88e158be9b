/**
 * SSM as a gateway route (JSON 1.1, `X-Amz-Target: AmazonSSM.<Action>`): Parameter Store
 * (GetParameter, GetParameters, GetParametersByPath, PutParameter, DeleteParameter) and the
 * instance inventory the SSM agent keeps (UpdateInstanceInformation from the agent on each
 * instance, DescribeInstanceInformation for the control plane).
 *
 * IAM calls: `ssm:<Action>` on `arn.parameter(name)` (GetParametersByPath on the path itself,
 * DescribeInstanceInformation on `*`, UpdateInstanceInformation on the calling instance). A
 * SecureString write implies `kms:Encrypt`, a decrypting read `kms:Decrypt`, on the parameter's
 * key (`KeyId`, by default `alias/aws/ssm`) via SSM, with the parameter's ARN as encryption context.
 * Without `WithDecryption` a SecureString's value is an opaque ciphertext, as in AWS.
 *
 * Not served: version and label selectors (`name:3`), parameter policies, labels, history,
 * DescribeParameters, and SSM's throttling of concurrent writes (TooManyUpdates).
 */
import { randomBytes } from 'node:crypto';
import type { AwsCall } from '../types';
import { arn } from '../types';
import type { ServiceHandler, ServiceRequest } from './gateway';
import { keyArn, viaService } from './kms';
import { AwsError, jsonRequest, jsonResponse, refusal } from './protocol';

type Call = Omit<AwsCall, 'caller'>;
type Input = Record<string, any>;

export type ParameterType = 'String' | 'StringList' | 'SecureString';
const TYPES: readonly ParameterType[] = ['String', 'StringList', 'SecureString'];
const TIERS = ['Standard', 'Advanced', 'Intelligent-Tiering'];
export const DEFAULT_SSM_KEY = 'alias/aws/ssm';

/** One stored parameter. */
export interface Parameter {
  readonly name: string;
  readonly type: ParameterType;
  readonly value: string;
  /** What GetParameter without decryption shows for a SecureString. */
  readonly ciphertext?: string;
  readonly version: number;
  readonly lastModified: Date;
  /** The key ARN of a SecureString. */
  readonly keyArn?: string;
  readonly tier: string;
  readonly dataType: string;
  readonly description?: string;
  readonly allowedPattern?: string;
}

/** What the SSM agent reported about one instance. */
export interface InstanceInformation {
  readonly instanceId: string;
  readonly lastPing: Date;
  /** The agent's fields (`IPAddress`, `ComputerName`, `PlatformType`, `AgentVersion`, ...). */
  readonly fields: Readonly<Record<string, string>>;
}

/** Agent fields kept from UpdateInstanceInformation and returned by DescribeInstanceInformation. */
const AGENT_FIELDS = ['AgentName', 'AgentVersion', 'AgentStatus', 'IPAddress', 'ComputerName', 'PlatformType', 'PlatformName', 'PlatformVersion', 'AvailabilityZone', 'AvailabilityZoneId', 'SourceId', 'SourceType'];

const validation = (message: string) => new AwsError(400, 'ValidationException', message);
const notFound = (name: string) => new AwsError(400, 'ParameterNotFound', `Parameter ${name} not found.`);

/** Refuses a parameter name SSM would refuse. */
function checkName(name: unknown): string {
  if (typeof name !== 'string' || !name) throw validation("1 validation error detected: Value null at 'name' failed to satisfy constraint: Member must not be null");
  if (name.length > 2048) throw validation("1 validation error detected: Value at 'name' failed to satisfy constraint: Member must have length less than or equal to 2048");
  if (name.includes('/') && !name.startsWith('/')) throw validation('Parameter name must be a fully qualified name.');
  const segments = name.replace(/^\//, '').split('/');
  if (!/^[a-zA-Z0-9_.\-/]+$/.test(name) || segments.some((s) => !s) || /^\/?(aws|ssm)/i.test(name)) {
    throw validation(
      'Parameter name: can\'t be prefixed with "aws" or "ssm" (case-insensitive). If formed as a path, it can consist of sub-paths divided by slash symbol; each sub-path can be formed as a mix of letters, numbers and the following 3 symbols .-_',
    );
  }
  if (segments.length > 15) throw validation('Parameter name hierarchy exceeds the maximum of 15 levels.');
  return name;
}

export class ParameterStore {
  private readonly parameters = new Map<string, Parameter>();
  private readonly agents = new Map<string, InstanceInformation>();

  /** The gateway route for `ssm`. */
  readonly handler: ServiceHandler = async (req, authorize) => {
    const { op: action, input } = jsonRequest(req, ['AmazonSSM']);
    const serve = this.actions[action];
    if (!serve) throw new AwsError(400, 'InvalidAction', `The action ${action} is not served by the local deployment.`);
    const step = serve(input, req);
    const denied = refusal('ssm', req.caller, authorize, step.calls);
    return denied ?? jsonResponse('ssm', step.run());
  };

  /** A parameter as stored (for the deployment's report and tests). */
  get(name: string): Parameter | undefined {
    return this.parameters.get(name);
  }

  /** What the SSM agent of an instance last reported, if it did. */
  instance(instanceId: string): InstanceInformation | undefined {
    return this.agents.get(instanceId);
  }

  /** Each action: the IAM calls it makes, then what it does once they are allowed. */
  private readonly actions: Record<string, (input: Input, req: ServiceRequest) => { calls: Call[]; run: () => unknown }> = {
    GetParameter: (input) => {
      const name = checkSelectorFree(input.Name);
      const p = this.parameters.get(name);
      return {
        calls: [{ action: 'ssm:GetParameter', resource: arn.parameter(name) }, ...this.decryptions(p ? [p] : [], input, 'ssm:GetParameter')],
        run: () => {
          if (!p) throw notFound(name);
          return { Parameter: shape(p, input.WithDecryption === true) };
        },
      };
    },
    GetParameters: (input) => {
      const names = Array.isArray(input.Names) ? input.Names.map(String) : [];
      if (names.length < 1 || names.length > 10) throw validation(`1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length less than or equal to 10 and greater than or equal to 1`);
      const found = names.map((n: string) => this.parameters.get(n)).filter((p: Parameter | undefined): p is Parameter => p !== undefined);
      return {
        calls: [...names.map((n: string) => ({ action: 'ssm:GetParameters', resource: arn.parameter(n) })), ...this.decryptions(found, input, 'ssm:GetParameters')],
        run: () => ({ Parameters: found.map((p) => shape(p, input.WithDecryption === true)), InvalidParameters: names.filter((n: string) => !this.parameters.has(n)) }),
      };
    },
    GetParametersByPath: (input) => {
      const path = String(input.Path ?? '');
      if (!path.startsWith('/')) throw validation('The parameter doesn\'t meet the parameter name requirements. The parameter name must begin with a forward slash "/".');
      const prefix = path.endsWith('/') ? path : `${path}/`;
      const under = [...this.parameters.values()]
        .filter((p) => p.name.startsWith(prefix) && (input.Recursive === true || !p.name.slice(prefix.length).includes('/')))
        .sort((a, b) => a.name.localeCompare(b.name));
      const max = Number(input.MaxResults ?? 10);
      if (!Number.isInteger(max) || max < 1 || max > 10) throw validation("1 validation error detected: Value at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 10");
      const start = input.NextToken ? Number(Buffer.from(String(input.NextToken), 'base64').toString('utf8')) : 0;
      if (!Number.isInteger(start) || start < 0) throw validation('The specified token is not valid.');
      const page = under.slice(start, start + max);
      const next = start + max < under.length ? Buffer.from(String(start + max)).toString('base64') : undefined;
      return {
        calls: [{ action: 'ssm:GetParametersByPath', resource: arn.parameter(path) }, ...this.decryptions(page, input, 'ssm:GetParametersByPath')],
        run: () => ({ Parameters: page.map((p) => shape(p, input.WithDecryption === true)), ...(next ? { NextToken: next } : {}) }),
      };
    },
    PutParameter: (input) => {
      const p = this.checkedWrite(input);
      return {
        calls: [
          { action: 'ssm:PutParameter', resource: arn.parameter(p.name) },
          ...(p.keyArn ? [viaService('kms:Encrypt', p.keyArn, 'ssm', 'ssm:PutParameter', { 'kms:EncryptionContext:PARAMETER_ARN': arn.parameter(p.name) })] : []),
        ],
        run: () => {
          if (this.parameters.has(p.name) && input.Overwrite !== true) {
            throw new AwsError(400, 'ParameterAlreadyExists', 'The parameter already exists. To overwrite this value, set the overwrite option in the request to true.');
          }
          const version = (this.parameters.get(p.name)?.version ?? 0) + 1;
          this.parameters.set(p.name, { ...p, version, lastModified: new Date() });
          return { Version: version, Tier: p.tier };
        },
      };
    },
    DeleteParameter: (input) => {
      const name = checkName(input.Name);
      return {
        calls: [{ action: 'ssm:DeleteParameter', resource: arn.parameter(name) }],
        run: () => {
          if (!this.parameters.delete(name)) throw notFound(name);
          return {};
        },
      };
    },
    UpdateInstanceInformation: (input, req) => {
      const instanceId = req.caller.name;
      if (input.InstanceId !== undefined && input.InstanceId !== instanceId) throw new AwsError(400, 'InvalidInstanceId', `The instance ${String(input.InstanceId)} is not the calling instance.`);
      const fields: Record<string, string> = {};
      for (const f of AGENT_FIELDS) if (typeof input[f] === 'string') fields[f] = input[f];
      return {
        calls: [{ action: 'ssm:UpdateInstanceInformation', resource: arn.instance(instanceId) }],
        run: () => {
          this.agents.set(instanceId, { instanceId, lastPing: new Date(), fields });
          return {};
        },
      };
    },
    DescribeInstanceInformation: (input) => {
      const filters: { key: string; values: string[] }[] = [
        ...((input.Filters ?? []) as Input[]).map((f) => ({ key: String(f.Key), values: (f.Values ?? []).map(String) })),
        ...((input.InstanceInformationFilterList ?? []) as Input[]).map((f) => ({ key: String(f.key), values: (f.valueSet ?? []).map(String) })),
      ];
      for (const f of filters) if (f.key !== 'InstanceIds') throw new AwsError(400, 'InvalidFilterKey', `The filter key ${f.key} is not served by the local deployment.`);
      const wanted = filters.length ? new Set(filters.flatMap((f) => f.values)) : undefined;
      return {
        calls: [{ action: 'ssm:DescribeInstanceInformation', resource: '*' }],
        run: () => ({
          InstanceInformationList: [...this.agents.values()]
            .filter((i) => !wanted || wanted.has(i.instanceId))
            .map((i) => ({ ...i.fields, InstanceId: i.instanceId, PingStatus: 'Online', LastPingDateTime: i.lastPing.getTime() / 1000, IsLatestVersion: true, ResourceType: 'EC2Instance' })),
        }),
      };
    },
  };

  /** The kms:Decrypt calls a read with `WithDecryption` makes for its SecureStrings. */
  private decryptions(params: readonly Parameter[], input: Input, via: string): Call[] {
    if (input.WithDecryption !== true) return [];
    return params.filter((p) => p.keyArn).map((p) => viaService('kms:Decrypt', p.keyArn as string, 'ssm', via, { 'kms:EncryptionContext:PARAMETER_ARN': arn.parameter(p.name) }));
  }

  /** The parameter a PutParameter would store (version and time still to set), or SSM's refusal of its input. */
  private checkedWrite(input: Input): Omit<Parameter, 'version' | 'lastModified'> {
    const name = checkName(input.Name);
    const old = this.parameters.get(name);
    if (typeof input.Value !== 'string' || !input.Value) throw validation("1 validation error detected: Value at 'value' failed to satisfy constraint: Member must have length greater than or equal to 1");
    const type = (input.Type ?? old?.type) as ParameterType | undefined;
    if (type === undefined) throw validation('A parameter type is required when you create a parameter.');
    if (!TYPES.includes(type)) throw validation(`1 validation error detected: Value '${String(type)}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [SecureString, StringList, String]`);
    const tier = String(input.Tier ?? old?.tier ?? 'Standard');
    if (!TIERS.includes(tier)) throw validation(`1 validation error detected: Value '${tier}' at 'tier' failed to satisfy constraint: Member must satisfy enum value set: [Standard, Advanced, Intelligent-Tiering]`);
    const limit = tier === 'Standard' ? 4096 : 8192;
    if (input.Value.length > limit) {
      throw validation(
        tier === 'Standard'
          ? 'Standard tier parameters support a maximum parameter value of 4096 characters. To create a larger parameter value, upgrade the parameter to use the advanced-parameter tier. For more information, see https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-advanced-parameters.html'
          : 'Advanced tier parameters support a maximum parameter value of 8192 characters.',
      );
    }
    if (input.KeyId !== undefined && type !== 'SecureString') throw validation('KeyId is required for SecureString type parameter only.');
    if (typeof input.AllowedPattern === 'string' && !new RegExp(input.AllowedPattern).test(input.Value)) {
      throw new AwsError(400, 'ParameterPatternMismatchException', `Parameter value, cannot be validated against allowedPattern: ${input.AllowedPattern}`);
    }
    const secure = type === 'SecureString';
    return {
      name,
      type,
      value: input.Value,
      tier: tier === 'Intelligent-Tiering' ? (input.Value.length > 4096 ? 'Advanced' : 'Standard') : tier,
      dataType: String(input.DataType ?? 'text'),
      ...(secure ? { keyArn: keyArn(String(input.KeyId ?? DEFAULT_SSM_KEY)), ciphertext: randomBytes(48 + input.Value.length).toString('base64') } : {}),
      ...(typeof input.Description === 'string' ? { description: input.Description } : (old?.description ? { description: old.description } : {})),
      ...(typeof input.AllowedPattern === 'string' ? { allowedPattern: input.AllowedPattern } : {}),
    };
  }
}

/** A name with a version or label selector (`name:3`) is not served. */
function checkSelectorFree(name: unknown): string {
  if (typeof name === 'string' && name.includes(':') && !name.startsWith('arn:')) throw validation('Parameter version and label selectors are not served by the local deployment.');
  return checkName(name);
}

/** A parameter as GetParameter returns it. */
function shape(p: Parameter, decrypt: boolean): Record<string, unknown> {
  return {
    Name: p.name,
    Type: p.type,
    Value: p.ciphertext && !decrypt ? p.ciphertext : p.value,
    Version: p.version,
    LastModifiedDate: p.lastModified.getTime() / 1000,
    ARN: arn.parameter(p.name),
    DataType: p.dataType,
  };
}
