/**
 * The cluster's certificate policy on top of cert.ts: what goes into a user
 * certificate (logins, TTL bounds, permit-* and teleport-* extensions) and a
 * host certificate (principals built from host UUID, node name and cluster),
 * both backdated by the clock-skew allowance (formats.md §1.3, §1.5, §1.6).
 */
import { KeyObject, randomBytes } from 'node:crypto';
import { BadParameterError } from '../utils/errors';
import { CertificateFields, MAX_VALID_BEFORE, signCertificate } from './cert';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

export const USER_CERT_TTL = { default: 12 * HOUR, min: MINUTE, max: 30 * HOUR } as const;
export const CLOCK_SKEW_MS = 60_000;

export const EXT_PERMIT_PTY = 'permit-pty';
export const EXT_PERMIT_PORT_FORWARDING = 'permit-port-forwarding';
export const EXT_PERMIT_AGENT_FORWARDING = 'permit-agent-forwarding';
export const EXT_PERMIT_X11_FORWARDING = 'permit-X11-forwarding';
export const EXT_TELEPORT_ROLES = 'teleport-roles';
export const EXT_TELEPORT_TRAITS = 'teleport-traits';
export const EXT_TELEPORT_ROUTE_TO_CLUSTER = 'teleport-route-to-cluster';
export const EXT_TELEPORT_ROLE = 'x-teleport-role';
export const EXT_TELEPORT_AUTHORITY = 'x-teleport-authority';

export interface UserCertPermissions {
  pty: boolean;
  portForwarding: boolean;
  agentForwarding: boolean;
  x11Forwarding: boolean;
}

export interface UserCertParams extends UserCertPolicy {
  caPrivateKey: KeyObject;
}

/** What a user certificate says; signUserCert signs it in process, userCertFields builds it for a Signer. */
export interface UserCertPolicy {
  /** The user's plain public key blob. */
  publicKey: Buffer;
  /** The Teleport username; becomes the key id. */
  username: string;
  /** OS logins; become the principals. */
  logins: string[];
  /** @default USER_CERT_TTL.default (12 h) */
  ttlMs?: number;
  now?: Date;
  permit: UserCertPermissions;
  roles: string[];
  traits?: Record<string, string[]>;
  routeToCluster?: string;
}

export interface HostCertParams extends HostCertPolicy {
  caPrivateKey: KeyObject;
}

/** What a host certificate says; signHostCert signs it in process, hostCertFields builds it for a Signer. */
export interface HostCertPolicy {
  /** The host's plain public key blob. */
  publicKey: Buffer;
  hostUUID: string;
  nodeName?: string;
  clusterName: string;
  /** The system role: 'Node' | 'Proxy' | 'Auth' | 'Admin' … */
  role: string;
  additionalPrincipals?: string[];
  /** @default 0 (never expires) */
  ttlMs?: number;
  now?: Date;
}

function nowOf(now: Date | undefined): number {
  const ms = (now ?? new Date()).getTime();
  if (!Number.isFinite(ms)) throw new BadParameterError('now is not a valid date');
  return ms;
}

function seconds(ms: number): bigint {
  return BigInt(Math.floor(ms / 1000));
}

function randomSerial(): bigint {
  return randomBytes(8).readBigUInt64BE(0);
}

function requireName(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new BadParameterError(`${what} is required`);
  return value;
}

/** The roles extension value, `{"version":"v1","roles":[...]}`. */
export function marshalCertRoles(roles: string[]): string {
  return JSON.stringify({ version: 'v1', roles });
}

/** The roles a user certificate carries (`teleport-roles`); none when the extension is missing or malformed. */
export function certRoles(extensions: Record<string, string>): string[] {
  try {
    const v = JSON.parse(extensions[EXT_TELEPORT_ROLES] ?? '') as { roles?: unknown };
    return Array.isArray(v.roles) ? v.roles.filter((r): r is string => typeof r === 'string') : [];
  } catch {
    return [];
  }
}

export function signUserCert(p: UserCertParams): Buffer {
  return signCertificate(userCertFields(p), p.caPrivateKey);
}

/** The fields of a user certificate by the cluster's policy; throws on a bad TTL, no logins or an empty name. */
export function userCertFields(p: UserCertPolicy): CertificateFields {
  const username = requireName(p.username, 'user certificate username');
  const ttl = p.ttlMs ?? USER_CERT_TTL.default;
  if (!Number.isFinite(ttl) || ttl < USER_CERT_TTL.min || ttl > USER_CERT_TTL.max) {
    throw new BadParameterError(
      `user certificate TTL ${ttl} ms is outside ${USER_CERT_TTL.min} ms (1m) .. ${USER_CERT_TTL.max} ms (30h)`,
    );
  }
  if (!Array.isArray(p.logins) || p.logins.length === 0) {
    throw new BadParameterError(`user certificate for "${username}" needs at least one login`);
  }
  p.logins.forEach((l, i) => requireName(l, `login #${i + 1} of "${username}"`));
  const now = nowOf(p.now);
  const extensions: Record<string, string> = {};
  if (p.permit.pty) extensions[EXT_PERMIT_PTY] = '';
  if (p.permit.portForwarding) extensions[EXT_PERMIT_PORT_FORWARDING] = '';
  if (p.permit.agentForwarding) extensions[EXT_PERMIT_AGENT_FORWARDING] = '';
  if (p.permit.x11Forwarding) extensions[EXT_PERMIT_X11_FORWARDING] = '';
  extensions[EXT_TELEPORT_ROLES] = marshalCertRoles(p.roles);
  if (p.traits) extensions[EXT_TELEPORT_TRAITS] = JSON.stringify(p.traits);
  if (p.routeToCluster) extensions[EXT_TELEPORT_ROUTE_TO_CLUSTER] = p.routeToCluster;
  return {
    certType: 'user',
    publicKey: p.publicKey,
    serial: randomSerial(),
    keyId: username,
    principals: [...p.logins],
    validAfter: seconds(now - CLOCK_SKEW_MS),
    validBefore: seconds(now + ttl),
    criticalOptions: {},
    extensions,
  };
}

/** Host certificate principals in order (formats.md §1.5), de-duplicated. */
export function hostPrincipals(p: Pick<HostCertPolicy, 'hostUUID' | 'nodeName' | 'clusterName' | 'role' | 'additionalPrincipals'>): string[] {
  if (p.role === 'Admin') return [p.hostUUID];
  const all = [`${p.hostUUID}.${p.clusterName}`, p.hostUUID];
  if (p.nodeName) all.push(`${p.nodeName}.${p.clusterName}`, p.nodeName);
  all.push(...(p.additionalPrincipals ?? []).filter((x) => x !== ''));
  return [...new Set(all)];
}

export function signHostCert(p: HostCertParams): Buffer {
  return signCertificate(hostCertFields(p), p.caPrivateKey);
}

/** The fields of a host certificate by the cluster's policy (formats.md §1.5). */
export function hostCertFields(p: HostCertPolicy): CertificateFields {
  requireName(p.hostUUID, 'host certificate hostUUID');
  requireName(p.clusterName, 'host certificate clusterName');
  requireName(p.role, 'host certificate role');
  const ttl = p.ttlMs ?? 0;
  if (!Number.isFinite(ttl) || ttl < 0) throw new BadParameterError(`host certificate TTL must be >= 0 ms, got ${ttl}`);
  const now = nowOf(p.now);
  return {
    certType: 'host',
    publicKey: p.publicKey,
    serial: randomSerial(),
    keyId: `${p.hostUUID}.${p.clusterName}`,
    principals: hostPrincipals(p),
    validAfter: seconds(now - CLOCK_SKEW_MS),
    validBefore: ttl === 0 ? MAX_VALID_BEFORE : seconds(now + ttl),
    criticalOptions: {},
    extensions: { [EXT_TELEPORT_ROLE]: p.role, [EXT_TELEPORT_AUTHORITY]: p.clusterName },
  };
}
