/**
 * The CDK app's inputs: context values (`cdk.json` defaults, `-c key=value` on the command
 * line) parsed with one schema into {@link ClusterStackProps}. Command-line values are always
 * strings, so lists are comma-separated and booleans/numbers are parsed from text.
 */
import { z } from 'zod';
import { ClusterStackProps, TierSize } from './cluster-stack';

/** The context keys the app reads. */
export const CONTEXT_KEYS = [
  'clusterName',
  'domainName',
  'amiParameterName',
  'hostedZoneId',
  'hostedZoneName',
  'certificateArn',
  'createCertificate',
  'vpcId',
  'availabilityZones',
  'publicSubnetIds',
  'privateSubnetIds',
  'allowedCidrs',
  'kubernetes',
  'authInstanceType',
  'authMinCapacity',
  'authMaxCapacity',
  'proxyInstanceType',
  'proxyMinCapacity',
  'proxyMaxCapacity',
  'nodeInstanceType',
  'nodeMinCapacity',
  'nodeMaxCapacity',
  'recordingsObjectLockDays',
  'account',
  'region',
] as const;

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

const contextSchema = z.object({
  clusterName: z.string({ error: 'context clusterName is required (-c clusterName=...)' }).trim().min(1),
  domainName: z.string({ error: 'context domainName is required (-c domainName=teleport.example.com)' }).trim().min(1),
  amiParameterName: str,
  hostedZoneId: str,
  hostedZoneName: str,
  certificateArn: str,
  createCertificate: bool,
  vpcId: str,
  availabilityZones: list,
  publicSubnetIds: list,
  privateSubnetIds: list,
  allowedCidrs: list,
  kubernetes: bool,
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
  account: str,
  region: str,
});

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
    clusterName: c.clusterName,
    domainName: c.domainName,
    amiParameterName: c.amiParameterName,
    hostedZone: c.hostedZoneId !== undefined ? { hostedZoneId: c.hostedZoneId, zoneName: c.hostedZoneName! } : undefined,
    certificateArn: c.certificateArn,
    createCertificate: c.createCertificate,
    existingVpc:
      c.vpcId !== undefined
        ? { vpcId: c.vpcId, availabilityZones: c.availabilityZones!, publicSubnetIds: c.publicSubnetIds!, privateSubnetIds: c.privateSubnetIds! }
        : undefined,
    availabilityZones: c.vpcId === undefined ? c.availabilityZones : undefined,
    allowedCidrs: c.allowedCidrs,
    kubernetes: c.kubernetes,
    auth: tier(c.authInstanceType, c.authMinCapacity, c.authMaxCapacity),
    proxy: tier(c.proxyInstanceType, c.proxyMinCapacity, c.proxyMaxCapacity),
    node: tier(c.nodeInstanceType, c.nodeMinCapacity, c.nodeMaxCapacity),
    recordingsObjectLockDays: c.recordingsObjectLockDays,
    env: c.account !== undefined || c.region !== undefined ? { account: c.account, region: c.region } : undefined,
  };
}

/** The stack name for a cluster. */
export function clusterStackName(clusterName: string): string {
  return `Teleport-${clusterName}`;
}
