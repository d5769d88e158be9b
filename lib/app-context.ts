/**
 * The CDK app's inputs: context values (`cdk.json` defaults, `-c key=value` on the command
 * line) parsed with one schema per stack into {@link ClusterStackProps} or
 * {@link StarterStackProps}; `stack` chooses which. Command-line values are always strings, so
 * lists are comma-separated and booleans/numbers are parsed from text.
 */
import { z } from 'zod';
import { ClusterStackProps, TierSize } from './cluster-stack';
import { STARTER_STORAGE, StarterStackProps } from './starter-stack';

const emptyToUndefined = (v: unknown) => (v === '' || v === null ? undefined : v);
const str = z.preprocess(emptyToUndefined, z.string().trim().min(1).optional());
const list = z.preprocess(
  (v) => (typeof v === 'string' ? (v.trim() === '' ? undefined : v.split(',').map((s) => s.trim()).filter(Boolean)) : emptyToUndefined(v)),
  z.array(z.string().min(1)).optional(),
);
const bool = z.preprocess((v) => {
  if (typeof v !== 'string') return emptyToUndefined(v);
  if (v === '') return undefined;
  if (/^(true|yes|1|on)$/i.test(v)) return true;
  if (/^(false|no|0|off)$/i.test(v)) return false;
  return v;
}, z.boolean().optional());
const int = z.preprocess((v) => (typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : emptyToUndefined(v)), z.number().int().optional());

/** Keys both stacks read. */
const sharedShape = {
  clusterName: z.string({ error: 'context clusterName is required (-c clusterName=...)' }).trim().min(1),
  amiParameterName: str,
  hostedZoneId: str,
  hostedZoneName: str,
  certificateArn: str,
  createCertificate: bool,
  vpcId: str,
  availabilityZones: list,
  publicSubnetIds: list,
  allowedCidrs: list,
  kubernetes: bool,
  account: str,
  region: str,
  logRetentionDays: int,
  sessionRecording: z.preprocess(emptyToUndefined, z.enum(['node', 'proxy', 'off'], { error: 'expected node, proxy or off' }).optional()),
  caKeysInKms: bool,
};

const contextSchema = z.object({
  ...sharedShape,
  domainName: z.string({ error: 'context domainName is required (-c domainName=teleport.example.com)' }).trim().min(1),
  privateSubnetIds: list,
  authInstanceType: str,
  authMinCapacity: int,
  authMaxCapacity: int,
  proxyInstanceType: str,
  proxyMinCapacity: int,
  proxyMaxCapacity: int,
  nodeInstanceType: str,
  nodeMinCapacity: int,
  nodeMaxCapacity: int,
  recordingsObjectLockDays: int,
  alarmEmail: str,
});

/** The context keys the cluster stack reads. */
export const CONTEXT_KEYS = Object.keys(contextSchema.shape);

type Shared = z.output<z.ZodObject<typeof sharedShape>>;

/** The hosted zone and environment props both stacks take from the shared keys. */
function sharedProps(c: Shared) {
  return {
    clusterName: c.clusterName,
    amiParameterName: c.amiParameterName,
    hostedZone: c.hostedZoneId !== undefined ? { hostedZoneId: c.hostedZoneId, zoneName: c.hostedZoneName! } : undefined,
    certificateArn: c.certificateArn,
    createCertificate: c.createCertificate,
    availabilityZones: c.vpcId === undefined ? c.availabilityZones : undefined,
    allowedCidrs: c.allowedCidrs,
    kubernetes: c.kubernetes,
    env: c.account !== undefined || c.region !== undefined ? { account: c.account, region: c.region } : undefined,
    logRetentionDays: c.logRetentionDays,
    sessionRecording: c.sessionRecording,
    caKeysInKms: c.caKeysInKms,
  };
}

/**
 * Props of the cluster stack from context values; `get` reads one key
 * (`app.node.tryGetContext`). Throws an Error listing every invalid key.
 */
export function clusterPropsFromContext(get: (key: string) => unknown): ClusterStackProps {
  const raw = Object.fromEntries(CONTEXT_KEYS.map((k) => [k, get(k)]));
  const parsed = contextSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'context'}: ${i.message}`);
    throw new Error(`invalid CDK context:\n  ${problems.join('\n  ')}`);
  }
  const c = parsed.data;
  if ((c.hostedZoneId === undefined) !== (c.hostedZoneName === undefined)) {
    throw new Error('invalid CDK context: give both hostedZoneId and hostedZoneName, or neither');
  }
  const vpcKeys = [c.availabilityZones, c.publicSubnetIds, c.privateSubnetIds];
  if (c.vpcId === undefined && (c.publicSubnetIds !== undefined || c.privateSubnetIds !== undefined)) {
    throw new Error('invalid CDK context: publicSubnetIds and privateSubnetIds need vpcId');
  }
  if (c.vpcId !== undefined && vpcKeys.some((v) => v === undefined)) {
    throw new Error('invalid CDK context: vpcId needs availabilityZones, publicSubnetIds and privateSubnetIds');
  }
  const tier = (instanceType?: string, minCapacity?: number, maxCapacity?: number): TierSize | undefined =>
    instanceType === undefined && minCapacity === undefined && maxCapacity === undefined ? undefined : { instanceType, minCapacity, maxCapacity };
  return {
    ...sharedProps(c),
    domainName: c.domainName,
    existingVpc:
      c.vpcId !== undefined
        ? { vpcId: c.vpcId, availabilityZones: c.availabilityZones!, publicSubnetIds: c.publicSubnetIds!, privateSubnetIds: c.privateSubnetIds! }
        : undefined,
    auth: tier(c.authInstanceType, c.authMinCapacity, c.authMaxCapacity),
    proxy: tier(c.proxyInstanceType, c.proxyMinCapacity, c.proxyMaxCapacity),
    node: tier(c.nodeInstanceType, c.nodeMinCapacity, c.nodeMaxCapacity),
    recordingsObjectLockDays: c.recordingsObjectLockDays,
    alarmEmail: c.alarmEmail,
  };
}

/** The stack name for a cluster. */
export function clusterStackName(clusterName: string): string {
  return `Teleport-${clusterName}`;
}

/** The stacks the app can build: `-c stack=cluster` (the default) or `-c stack=starter`. */
export const STACK_KINDS = ['cluster', 'starter'] as const;
export type StackKind = (typeof STACK_KINDS)[number];

const stackSchema = z.preprocess(
  emptyToUndefined,
  z.enum(STACK_KINDS, { error: (i) => `must be one of ${STACK_KINDS.join(', ')}, got '${String(i.input)}'` }).default('cluster'),
);

/** Which stack the context asks for. Throws an Error naming the key when it is not one of {@link STACK_KINDS}. */
export function stackKindFromContext(get: (key: string) => unknown): StackKind {
  const parsed = stackSchema.safeParse(get('stack'));
  if (!parsed.success) throw new Error(`invalid CDK context:\n  stack: ${parsed.error.issues[0].message}`);
  return parsed.data;
}

const starterSchema = z.object({
  ...sharedShape,
  domainName: str,
  instanceType: str,
  letsEncryptEmail: str,
  storage: z.preprocess(
    emptyToUndefined,
    z.enum(STARTER_STORAGE, { error: (i) => `must be one of ${STARTER_STORAGE.join(', ')}, got '${String(i.input)}'` }).optional(),
  ),
});

/** The context keys the starter stack reads. */
export const STARTER_CONTEXT_KEYS = Object.keys(starterSchema.shape);

/**
 * Props of the starter stack from context values; `get` reads one key
 * (`app.node.tryGetContext`). Throws an Error listing every invalid key.
 */
export function starterPropsFromContext(get: (key: string) => unknown): StarterStackProps {
  const raw = Object.fromEntries(STARTER_CONTEXT_KEYS.map((k) => [k, get(k)]));
  const parsed = starterSchema.safeParse(raw);
  const problems: string[] = parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.') || 'context'}: ${i.message}`);
  const given = (k: string) => emptyToUndefined(raw[k]) !== undefined;
  if (given('hostedZoneId') !== given('hostedZoneName')) problems.push('hostedZoneId, hostedZoneName: give both, or neither');
  if (!given('vpcId') && given('publicSubnetIds')) problems.push('publicSubnetIds: needs vpcId');
  if (given('vpcId') && (!given('availabilityZones') || !given('publicSubnetIds'))) {
    problems.push('vpcId: needs availabilityZones and publicSubnetIds');
  }
  if (!parsed.success || problems.length > 0) throw new Error(`invalid CDK context:\n  ${problems.join('\n  ')}`);
  const c = parsed.data;
  return {
    ...sharedProps(c),
    domainName: c.domainName,
    instanceType: c.instanceType,
    storage: c.storage,
    letsEncryptEmail: c.letsEncryptEmail,
    existingVpc: c.vpcId !== undefined ? { vpcId: c.vpcId, availabilityZones: c.availabilityZones!, publicSubnetIds: c.publicSubnetIds! } : undefined,
  };
}

/** The stack name of a cluster's starter (distinct from {@link clusterStackName}, so both can exist). */
export function starterStackName(clusterName: string): string {
  return `Teleport-${clusterName}-starter`;
}
