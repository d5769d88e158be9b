/**
 * Input checks shared by the constructs. Each throws a plain `Error` naming the prop and
 * the rule it broke, at construction time, before any resource is defined (the way
 * aws-cdk-lib's own constructs validate their props).
 */
import { Token } from 'aws-cdk-lib';
import type { InstanceRole } from '../runtime/contract/aws';
import { Ports, servedPorts } from '../runtime/contract/ports';

/** Elastic Load Balancing names: alphanumerics and hyphens, at most 32 characters, no leading/trailing hyphen. */
export const LB_NAME_MAX = 32;

/** Throws unless `value` is an integer in [min, max]. Tokens are accepted unchecked. */
export function checkInt(prop: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (Token.isUnresolved(value)) return;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${prop} must be an integer between ${min} and ${max}, got ${value}`);
  }
}

const CLUSTER_NAME_RE = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
/** The longest suffix added to the cluster name in a load balancer or target group name ("-prx-3026" etc.). */
export const CLUSTER_NAME_MAX = 20;

/**
 * A cluster name usable in resource names: lower-case alphanumerics and hyphens,
 * at most {@link CLUSTER_NAME_MAX} characters so `<name>-<suffix>` fits the 32-character
 * load balancer limit (aws-deployment.md §7.10).
 */
export function checkClusterName(prop: string, name: string): void {
  if (!CLUSTER_NAME_RE.test(name) || name.length > CLUSTER_NAME_MAX) {
    throw new Error(
      `${prop} must be 1-${CLUSTER_NAME_MAX} lower-case letters, digits or hyphens, starting and ending with a letter or digit (it is used in load balancer names); got '${name}'`,
    );
  }
}

const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const DOMAIN_RE = new RegExp(`^(?:${LABEL}\\.)+[a-z]{2,63}$`);

/** A fully qualified DNS name without a trailing dot, e.g. `teleport.example.com`. */
export function checkDomainName(prop: string, name: string): void {
  if (name.length > 253 || !DOMAIN_RE.test(name)) {
    throw new Error(`${prop} must be a lower-case DNS name such as teleport.example.com, got '${name}'`);
  }
}

/** `domain` equals `zone` or is a subdomain of it. */
export function checkInZone(domainProp: string, domain: string, zone: string): void {
  const z = zone.replace(/\.$/, '');
  if (domain !== z && !domain.endsWith(`.${z}`)) {
    throw new Error(`${domainProp} '${domain}' is not inside the hosted zone '${z}'`);
  }
}

const ZONE_ID_RE = /^Z[A-Z0-9]{1,31}$/;
export function checkHostedZoneId(prop: string, id: string): void {
  if (!ZONE_ID_RE.test(id)) throw new Error(`${prop} must be a Route 53 hosted zone id such as Z0123456789ABCDEFGHIJ, got '${id}'`);
}

const CERT_ARN_RE = /^arn:aws(?:-[a-z]+)*:acm:[a-z0-9-]+:\d{12}:certificate\/[0-9a-f-]{36}$/;
export function checkCertificateArn(prop: string, arn: string): void {
  if (!CERT_ARN_RE.test(arn)) {
    throw new Error(`${prop} must be an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<uuid>), got '${arn}'`);
  }
}

const EMAIL_RE = /^[^\s@",;<>]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$/;
/** One e-mail address such as ops@example.com (no display name, no list). */
export function checkEmail(prop: string, email: string): void {
  if (!EMAIL_RE.test(email) || email.length > 254) throw new Error(`${prop} must be one e-mail address such as ops@example.com, got '${email}'`);
}

const INSTANCE_TYPE_RE = /^[a-z][a-z0-9-]*\.[a-z0-9]+$/;
export function checkInstanceType(prop: string, type: string): void {
  if (!INSTANCE_TYPE_RE.test(type)) throw new Error(`${prop} must be an EC2 instance type such as t3.medium, got '${type}'`);
}

/** An IPv4 CIDR block such as `203.0.113.0/24`. */
export function checkCidr(prop: string, cidr: string): void {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  const ok = m !== null && m.slice(1, 5).every((o) => Number(o) <= 255) && Number(m[5]) <= 32;
  if (!ok) throw new Error(`${prop} must contain IPv4 CIDR blocks such as 203.0.113.0/24, got '${cidr}'`);
}

export function checkSsmParameterName(prop: string, name: string): void {
  if (!/^\/[A-Za-z0-9_.\-/]+$/.test(name) || name.length > 2048) {
    throw new Error(`${prop} must be an SSM parameter name starting with '/', got '${name}'`);
  }
}

export function checkVpcId(prop: string, id: string): void {
  if (!/^vpc-[0-9a-f]{8,17}$/.test(id)) throw new Error(`${prop} must be a VPC id such as vpc-0123456789abcdef0, got '${id}'`);
}

export function checkSubnetIds(prop: string, ids: readonly string[]): void {
  if (ids.length < 2) throw new Error(`${prop} must list at least two subnets (in different availability zones), got ${ids.length}`);
  for (const id of ids) {
    if (!/^subnet-[0-9a-f]{8,17}$/.test(id)) throw new Error(`${prop} must contain subnet ids such as subnet-0123456789abcdef0, got '${id}'`);
  }
}

/**
 * Throws unless instances with `TELEPORT_ROLE=role` serve `port` (runtime/contract/ports.ts): a load
 * balancer or security group must never lead to a port nothing listens on. Returns the port.
 */
export function checkServed(role: InstanceRole, port: number, what: string): number {
  const served = servedPorts(role);
  if (!served.includes(port)) {
    throw new Error(`${what}: port ${port} is not served by the ${role} runtime (it serves ${served.join(', ')}), so it cannot be published`);
  }
  return port;
}

/** The Kubernetes proxy (3026) does not exist yet: `kubernetes: true` is refused rather than publishing a port nothing serves. */
export function checkKubernetes(kubernetes: boolean | undefined): void {
  if (kubernetes) {
    throw new Error(`kubernetes: the Kubernetes proxy is not built yet, so nothing would serve port ${Ports.kube}; leave kubernetes unset (or false)`);
  }
}
