/**
 * `/etc/teleport.d/conf`: the `KEY=value` lines user data writes (the AWS guide's variable
 * names, {@link ConfVars}), read without a shell and validated by one schema. Errors name the
 * file and line; a name that looks like one of ours but is not (a typo such as
 * `TELEPORT_ROLLE`) is an error rather than silently ignored.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfVars, IAM_ROLE_ARN, InstanceRole } from '../contract/aws';
import { ConfigError, type ConfigIssue } from '../config/errors';
import { closestName } from '../utils/didyoumean';

/** Variables of the AWS guide this image does not act on (monitoring, licences, later Teleport features): accepted, reported. */
export const UNSUPPORTED_VARS = [
  'TELEPORT_INFLUXDB_ADDRESS',
  'TELEPORT_LICENSE_PATH',
  'TELEPORT_LOCKS_TABLE_NAME',
  'TELEPORT_AUTH_TYPE',
  'USE_TLS_ROUTING',
  'TELEPORT_ENABLE_MYSQL',
  'TELEPORT_ENABLE_POSTGRES',
  'TELEPORT_ENABLE_MONGODB',
] as const;

/** Every role of the seeds, in the order `TELEPORT_ROLE=auth,node,proxy` lists them. */
const ALL_ROLES = ['auth', 'node', 'proxy'] as const;

/** A validated conf file. */
export interface InstanceConf {
  /** The role this instance takes; `auth,node,proxy` also for an empty `TELEPORT_ROLE` (the generic all-in-one). */
  readonly role: InstanceRole;
  readonly useAcm: boolean;
  /** `USE_LETSENCRYPT=true` (all-in-one only): the proxy's certificate from Let's Encrypt, for the domain. */
  readonly letsEncrypt?: { readonly email?: string };
  readonly region?: string;
  readonly clusterName?: string;
  readonly authServerLb?: string;
  readonly domainName?: string;
  readonly externalHostname?: string;
  readonly externalPort?: number;
  readonly proxyServerLb?: string;
  readonly proxyServerNlbAlias?: string;
  /** DynamoDB and S3 storage: all three names, or none. */
  readonly dynamo?: { readonly stateTable: string; readonly eventsTable: string; readonly recordingsBucket: string };
  readonly ssmKeyArn?: string;
  /**
   * Where the instance signals its readiness (CloudFormation SignalResource): stack and resource
   * both, or neither; and the target groups that must report it healthy first (none when its
   * group has no load balancer).
   */
  readonly signal?: { readonly stack: string; readonly resource: string; readonly targetGroups: readonly string[] };
  /** Where the CloudWatch agent sends the instance's logs and metrics: both groups, or neither (no agent config). */
  readonly telemetry?: { readonly logGroup: string; readonly metricsLogGroup: string };
  /** `auth_service.session_recording` of an auth instance; undefined: the default (node). */
  readonly sessionRecording?: 'node' | 'proxy' | 'off';
  /** Auth instances: the CA keys are in AWS KMS, usable by this role only (`ca_key_params.aws_kms.signer_role_arn`). */
  readonly caKmsRoleArn?: string;
  /** Names of {@link UNSUPPORTED_VARS} that were set (not empty). */
  readonly ignored: string[];
}

/** CloudWatch Logs group names: 1 to 512 of these characters. */
const LOG_GROUP = /^[A-Za-z0-9._\/#-]{1,512}$/;
const HOST = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const opt = <T extends z.ZodType>(t: T) => z.preprocess((v) => (v === '' ? undefined : v), t.optional());
const host = (what: string) => opt(z.string().regex(HOST, `expected ${what} (a DNS name or IP address)`));

const role = z.preprocess(
  (v) => (typeof v === 'string' ? v.trim().toLowerCase() : v),
  z.string().transform((v, ctx): InstanceRole => {
    if (v === '') return 'auth,node,proxy';
    if (v === 'auth' || v === 'proxy' || v === 'node') return v;
    const parts = v.split(',').map((p) => p.trim());
    if (parts.length === 3 && ALL_ROLES.every((r) => parts.includes(r))) return 'auth,node,proxy';
    ctx.addIssue({ code: 'custom', message: `unknown role "${v}" (expected auth, proxy, node, or auth,node,proxy for all roles on one instance)` });
    return z.NEVER;
  }),
);

const bool = opt(
  z.string().transform((v, ctx) => {
    const t = v.trim().toLowerCase();
    if (t === 'true' || t === 'yes' || t === '1') return true;
    if (t === 'false' || t === 'no' || t === '0') return false;
    ctx.addIssue({ code: 'custom', message: `expected true or false, got "${v}"` });
    return z.NEVER;
  }),
);

const port = opt(
  z.string().transform((v, ctx) => {
    const n = /^\d{1,5}$/.test(v.trim()) ? Number(v) : NaN;
    if (n >= 1 && n <= 65535) return n;
    ctx.addIssue({ code: 'custom', message: `expected a port number from 1 to 65535, got "${v}"` });
    return z.NEVER;
  }),
);

const name = (what: string, re: RegExp) => opt(z.string().regex(re, `expected ${what}`));

const ConfSchema = z.object({
  [ConfVars.role]: z.preprocess((v) => v ?? '', role),
  [ConfVars.useAcm]: bool,
  [ConfVars.useLetsEncrypt]: bool,
  [ConfVars.domainAdminEmail]: name('an e-mail address', /^[A-Za-z0-9._+=-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$/),
  [ConfVars.region]: name('an AWS region such as eu-west-1', /^[a-z]{2}(-[a-z]+)+-\d$/),
  [ConfVars.clusterName]: name('a cluster name (letters, digits, dots, hyphens)', /^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/),
  [ConfVars.authServerLb]: host('the auth load balancer address'),
  [ConfVars.domainName]: host('the proxy domain name'),
  [ConfVars.externalHostname]: host('the external host name'),
  [ConfVars.externalPort]: port,
  [ConfVars.proxyServerLb]: host('the proxy load balancer address'),
  [ConfVars.proxyServerNlbAlias]: host('the proxy NLB alias'),
  [ConfVars.stateTable]: name('a DynamoDB table name', /^[A-Za-z0-9_.-]{3,255}$/),
  [ConfVars.eventsTable]: name('a DynamoDB table name', /^[A-Za-z0-9_.-]{3,255}$/),
  [ConfVars.recordingsBucket]: name('an S3 bucket name', /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/),
  [ConfVars.ssmKeyArn]: name('a KMS key ARN', /^arn:aws[a-z-]*:kms:/),
  [ConfVars.cfnStack]: name('a CloudFormation stack name', /^[A-Za-z][A-Za-z0-9-]{0,127}$/),
  [ConfVars.cfnResource]: name('a CloudFormation logical id', /^[A-Za-z0-9]{1,255}$/),
  [ConfVars.logGroup]: name('a CloudWatch Logs group name', LOG_GROUP),
  [ConfVars.metricsLogGroup]: name('a CloudWatch Logs group name', LOG_GROUP),
  [ConfVars.sessionRecording]: opt(z.enum(['node', 'proxy', 'off'], { error: 'expected node, proxy or off' })),
  [ConfVars.caKmsRoleArn]: name('an IAM role ARN', IAM_ROLE_ARN),
  [ConfVars.targetGroups]: opt(
    z
      .string()
      .transform((v) => v.split(',').map((a) => a.trim()).filter(Boolean))
      .pipe(z.array(z.string().regex(/^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:targetgroup\/[A-Za-z0-9-]{1,32}\/[0-9a-f]{16}$/, 'expected comma-separated target group ARNs')).min(1)),
  ),
});

/** `KEY=value` lines: comments, blank lines, `export`, and single or double quotes as a shell would take them. */
export function parseConfText(text: string, file: string): { vars: Record<string, string>; lineOf: Record<string, number> } {
  const vars: Record<string, string> = {};
  const lineOf: Record<string, number> = {};
  const issues: ConfigIssue[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) {
      issues.push({ file, line: i + 1, message: `expected KEY=value, got ${JSON.stringify(raw.length > 60 ? raw.slice(0, 57) + '...' : raw)}` });
      return;
    }
    const value = unquote(m[2]);
    if (value === undefined) {
      issues.push({ file, line: i + 1, message: `${m[1]}: unbalanced quotes or an unquoted space in ${JSON.stringify(m[2])}` });
      return;
    }
    vars[m[1]] = value;
    lineOf[m[1]] = i + 1;
  });
  if (issues.length > 0) throw new ConfigError(issues);
  return { vars, lineOf };
}

function unquote(v: string): string | undefined {
  if (/^"[^"\\$`]*"$/.test(v) || /^'[^']*'$/.test(v)) return v.slice(1, -1);
  if (/^[^\s"'\\$`;&|<>()]*$/.test(v)) return v;
  return undefined;
}

const OUR_PREFIXES = /^(TELEPORT_|USE_|EC2_)/;

/** Validates conf variables; every problem becomes one `file:line: KEY: ...` issue of a ConfigError. */
export function validateConf(vars: Record<string, string>, file: string, lineOf: Record<string, number> = {}): InstanceConf {
  const issues: ConfigIssue[] = [];
  const at = (key: string, message: string) => issues.push({ file, line: lineOf[key], message: `${key}: ${message}` });
  const known = new Set<string>([...Object.values(ConfVars), ...UNSUPPORTED_VARS]);
  for (const key of Object.keys(vars)) {
    if (OUR_PREFIXES.test(key) && !known.has(key)) {
      const hint = closestName(key, [...known], 2);
      at(key, `unknown variable${hint ? ` (did you mean ${hint}?)` : ''}`);
    }
  }
  // Each variable on its own, so one bad value does not hide what else is wrong: the role rules
  // below still run over the values that parsed (a value that did not is not also "required").
  const failed = new Set<string>();
  const parsed: Record<string, unknown> = {};
  for (const [key, schema] of Object.entries(ConfSchema.shape)) {
    const r = (schema as z.ZodType).safeParse(vars[key]);
    if (r.success) parsed[key] = r.data;
    else {
      failed.add(key);
      for (const issue of r.error.issues) at(key, issue.message);
    }
  }
  if (failed.has(ConfVars.role)) throw new ConfigError(issues);
  const c = parsed as z.output<typeof ConfSchema>;
  const conf: InstanceConf = {
    role: c[ConfVars.role],
    useAcm: c[ConfVars.useAcm] ?? false,
    ...(c[ConfVars.useLetsEncrypt] ? { letsEncrypt: c[ConfVars.domainAdminEmail] !== undefined ? { email: c[ConfVars.domainAdminEmail] } : {} } : {}),
    region: c[ConfVars.region],
    clusterName: c[ConfVars.clusterName],
    authServerLb: c[ConfVars.authServerLb],
    domainName: c[ConfVars.domainName],
    externalHostname: c[ConfVars.externalHostname],
    externalPort: c[ConfVars.externalPort],
    proxyServerLb: c[ConfVars.proxyServerLb],
    proxyServerNlbAlias: c[ConfVars.proxyServerNlbAlias],
    ssmKeyArn: c[ConfVars.ssmKeyArn],
    ...(c[ConfVars.sessionRecording] !== undefined ? { sessionRecording: c[ConfVars.sessionRecording] } : {}),
    ...(c[ConfVars.caKmsRoleArn] !== undefined ? { caKmsRoleArn: c[ConfVars.caKmsRoleArn] } : {}),
    ...(c[ConfVars.cfnStack] !== undefined && c[ConfVars.cfnResource] !== undefined
      ? { signal: { stack: c[ConfVars.cfnStack]!, resource: c[ConfVars.cfnResource]!, targetGroups: c[ConfVars.targetGroups] ?? [] } }
      : {}),
    ...(c[ConfVars.logGroup] !== undefined && c[ConfVars.metricsLogGroup] !== undefined
      ? { telemetry: { logGroup: c[ConfVars.logGroup]!, metricsLogGroup: c[ConfVars.metricsLogGroup]! } }
      : {}),
    ignored: UNSUPPORTED_VARS.filter((k) => (vars[k] ?? '') !== ''),
  };

  // What each role needs.
  const need = (key: string, value: unknown, why: string) => {
    if (value === undefined && !failed.has(key)) at(key, `is required ${why}`);
  };
  const dynamoKeys = [ConfVars.stateTable, ConfVars.eventsTable, ConfVars.recordingsBucket] as const;
  const dynamoSet = dynamoKeys.filter((k) => c[k] !== undefined);
  const roleWhy = `for TELEPORT_ROLE=${conf.role}`;
  if (conf.role !== 'auth,node,proxy') need(ConfVars.clusterName, conf.clusterName, roleWhy);
  if (conf.role === 'proxy' || conf.role === 'node') {
    need(ConfVars.authServerLb, conf.authServerLb, `${roleWhy} (the auth servers to join)`);
    need(ConfVars.region, conf.region, `${roleWhy} (the join token is read from SSM)`);
  }
  if (conf.role === 'proxy') need(ConfVars.domainName, conf.domainName, `${roleWhy} (the proxy's public address)`);
  if (conf.useAcm && conf.role !== 'auth' && conf.role !== 'node') {
    need(ConfVars.domainName, conf.domainName, '(the domain the ACM certificate is for) when USE_ACM=true');
  }
  if (conf.useAcm && conf.role === 'proxy' && conf.proxyServerLb === undefined && conf.proxyServerNlbAlias === undefined) {
    at(ConfVars.proxyServerLb, `is required ${roleWhy} with USE_ACM=true (SSH and tunnel clients reach the proxies through the NLB, not the ALB)`);
  }
  if (conf.letsEncrypt) {
    if (conf.role !== 'auth,node,proxy') at(ConfVars.useLetsEncrypt, `is for the all-in-one instance only (TELEPORT_ROLE=auth,node,proxy), not ${roleWhy}`);
    if (conf.useAcm) at(ConfVars.useLetsEncrypt, `cannot be used with ${ConfVars.useAcm}=true: the certificate comes from ACM or from Let's Encrypt, not both`);
    need(ConfVars.domainName, conf.domainName, `with ${ConfVars.useLetsEncrypt}=true (the name the certificate is for)`);
  }
  if (c[ConfVars.domainAdminEmail] !== undefined && !conf.letsEncrypt) {
    at(ConfVars.domainAdminEmail, `is only used with ${ConfVars.useLetsEncrypt}=true (the Let's Encrypt account's contact)`);
  }
  if (dynamoSet.length > 0 && dynamoSet.length < dynamoKeys.length) {
    const missing = dynamoKeys.filter((k) => c[k] === undefined);
    at(missing[0], `is required with ${dynamoSet.join(' and ')} (DynamoDB and S3 storage needs all of ${dynamoKeys.join(', ')})`);
  }
  if (dynamoSet.length > 0) {
    if (conf.role === 'proxy' || conf.role === 'node') at(dynamoSet[0], `is only for the auth service, not ${roleWhy}`);
    need(ConfVars.region, conf.region, '(the region of the DynamoDB tables)');
  }
  if (conf.sessionRecording !== undefined && (conf.role === 'proxy' || conf.role === 'node')) {
    at(ConfVars.sessionRecording, `is for the auth service (proxies and nodes read it from there), not ${roleWhy}`);
  }
  if (conf.caKmsRoleArn !== undefined) {
    if (conf.role === 'proxy' || conf.role === 'node') at(ConfVars.caKmsRoleArn, `is for the auth service (the CA keys are the auth servers'), not ${roleWhy}`);
    need(ConfVars.region, conf.region, `with ${ConfVars.caKmsRoleArn} (the region the CA keys are created in)`);
  }
  if (c[ConfVars.targetGroups] !== undefined && c[ConfVars.cfnStack] === undefined) {
    at(ConfVars.targetGroups, `is only used with ${ConfVars.cfnStack} and ${ConfVars.cfnResource} (the readiness signal waits on the target groups)`);
  }
  if ((c[ConfVars.cfnStack] === undefined) !== (c[ConfVars.cfnResource] === undefined)) {
    const missing = c[ConfVars.cfnStack] === undefined ? ConfVars.cfnStack : ConfVars.cfnResource;
    at(missing, `is required with ${missing === ConfVars.cfnStack ? ConfVars.cfnResource : ConfVars.cfnStack} (the stack and resource the instance signals)`);
  }
  if ((c[ConfVars.logGroup] === undefined) !== (c[ConfVars.metricsLogGroup] === undefined)) {
    const [missing, other] = c[ConfVars.logGroup] === undefined ? [ConfVars.logGroup, ConfVars.metricsLogGroup] : [ConfVars.metricsLogGroup, ConfVars.logGroup];
    if (!failed.has(missing)) at(missing, `is required with ${other} (the CloudWatch agent sends logs and metrics, each to its group)`);
  }
  if (conf.signal) need(ConfVars.region, conf.region, `with ${ConfVars.cfnStack} (the region of the stack to signal)`);
  if (conf.role === 'auth' && dynamoSet.length === 0) {
    at(ConfVars.stateTable, `is required ${roleWhy} (an auth tier shares its state in DynamoDB)`);
  }
  if (issues.length > 0) throw new ConfigError(issues);
  return dynamoSet.length === dynamoKeys.length
    ? { ...conf, dynamo: { stateTable: c[ConfVars.stateTable]!, eventsTable: c[ConfVars.eventsTable]!, recordingsBucket: c[ConfVars.recordingsBucket]! } }
    : conf;
}

/** Reads and validates a conf file. */
export function loadConf(file: string): InstanceConf {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError([{ file, message: code === 'ENOENT' ? 'no such file (user data writes it at first boot)' : (err as Error).message }]);
  }
  const { vars, lineOf } = parseConfText(text, file);
  return validateConf(vars, file, lineOf);
}
