/**
 * What both stacks (`ClusterStack`, `StarterStack`) take the same way: the cluster name, the AMI,
 * how the web endpoint is published (Route 53 zone, ACM certificate, allowed CIDRs, Kubernetes),
 * zones of a new VPC and the fate of the data on deletion; and their one shared validation.
 */
import { RemovalPolicy, StackProps } from 'aws-cdk-lib';
import { HostedZoneRef } from './dns';
import { checkCertificateArn, checkCidr, checkClusterName, checkDomainName, checkHostedZoneId, checkInZone, checkKubernetes, checkSsmParameterName } from './validation';
import { checkLogRetentionDays } from './telemetry';

/** The SSM parameter both stacks read the AMI id from unless told otherwise. */
export const DEFAULT_AMI_PARAMETER = '/teleport/ami/latest';

/** Properties both stacks share. */
export interface TeleportStackProps extends StackProps {
  /**
   * The cluster name: lower-case letters, digits and hyphens, at most 20 characters (it
   * prefixes load balancer names, which are limited to 32).
   */
  readonly clusterName: string;

  /**
   * SSM parameter holding the Teleport AMI id, resolved at deploy time: publishing a new AMI
   * and redeploying replaces the instances.
   *
   * @default '/teleport/ami/latest'
   */
  readonly amiParameterName?: string;

  /**
   * Route 53 zone for the domain's record (and DNS validation of a new certificate).
   *
   * @default - no DNS record; point the domain at the stack's load balancer or IP output yourself
   */
  readonly hostedZone?: HostedZoneRef;

  /**
   * ACM certificate for the domain: the web UI/API is then served by an ALB on 443.
   *
   * @default - none (see `createCertificate`)
   */
  readonly certificateArn?: string;

  /**
   * Request a DNS-validated ACM certificate for the domain (needs `hostedZone`).
   *
   * @default false
   */
  readonly createCertificate?: boolean;

  /**
   * Availability zones of a new VPC; required when `env` names an account and region.
   *
   * @default - two zones chosen at deploy time
   */
  readonly availabilityZones?: string[];

  /**
   * IPv4 CIDR blocks allowed to reach the public listeners.
   *
   * @default ['0.0.0.0/0']
   */
  readonly allowedCidrs?: string[];

  /**
   * Publish the Kubernetes proxy port 3026. The Kubernetes proxy is not built yet: `true` is
   * refused with a validation error (nothing would serve 3026); `false` is accepted.
   *
   * @default false
   */
  readonly kubernetes?: boolean;

  /**
   * What happens to the tables, buckets and key when the stack is deleted.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly dataRemovalPolicy?: RemovalPolicy;

  /**
   * How long CloudWatch Logs keeps the instances' logs and the metric events their CloudWatch agent
   * writes, in days: one of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
   * 1827, 2192, 2557, 2922, 3288, 3653. The log groups follow `dataRemovalPolicy`.
   *
   * @default 30
   */
  readonly logRetentionDays?: number;

  /**
   * Where sessions are recorded (`auth_service.session_recording`): `node` (each node records its
   * sessions), `proxy` (recording proxy mode: the proxies record them, for OpenSSH servers without
   * the node service; see the README) or `off`.
   *
   * @default 'node'
   */
  readonly sessionRecording?: 'node' | 'proxy' | 'off';
}

/** Throws an Error naming the first invalid shared prop; `domainName` is the stack's domain, if any. */
export function validateTeleportStackProps(props: TeleportStackProps, domainName: string | undefined): void {
  checkClusterName('clusterName', props.clusterName);
  if (domainName !== undefined) checkDomainName('domainName', domainName);
  checkSsmParameterName('amiParameterName', props.amiParameterName ?? DEFAULT_AMI_PARAMETER);
  const needsDomain = (prop: string, why: string) => {
    if (domainName === undefined) throw new Error(`${prop} needs domainName (${why})`);
  };
  if (props.hostedZone) {
    needsDomain('hostedZone', 'the record to create in the zone');
    checkHostedZoneId('hostedZone.hostedZoneId', props.hostedZone.hostedZoneId);
    checkDomainName('hostedZone.zoneName', props.hostedZone.zoneName.replace(/\.$/, ''));
    checkInZone('domainName', domainName!, props.hostedZone.zoneName);
  }
  if (props.certificateArn !== undefined) {
    needsDomain('certificateArn', 'the name the certificate is for');
    checkCertificateArn('certificateArn', props.certificateArn);
    if (props.createCertificate) throw new Error('give either certificateArn or createCertificate, not both');
  }
  if (props.createCertificate) {
    if (!props.hostedZone) throw new Error('createCertificate needs hostedZone (the certificate is validated with DNS records in it)');
    needsDomain('createCertificate', 'the name the certificate is for');
  }
  const cidrs = props.allowedCidrs ?? ['0.0.0.0/0'];
  if (cidrs.length === 0) throw new Error('allowedCidrs must list at least one CIDR block');
  cidrs.forEach((c) => checkCidr('allowedCidrs', c));
  checkKubernetes(props.kubernetes);
  if (props.logRetentionDays !== undefined) checkLogRetentionDays('logRetentionDays', props.logRetentionDays);
  if (props.sessionRecording !== undefined && !['node', 'proxy', 'off'].includes(props.sessionRecording)) {
    throw new Error(`sessionRecording must be node, proxy or off, not "${String(props.sessionRecording)}"`);
  }
}
