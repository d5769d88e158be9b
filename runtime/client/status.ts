/** What `tsh status` and `tsh login` print about a profile and its certificate (formats.md §8.3). */
import type { Certificate } from '../sshcert/cert';
import { EXT_TELEPORT_ROLES, EXT_TELEPORT_ROUTE_TO_CLUSTER, EXT_TELEPORT_TRAITS } from '../sshcert/issue';
import { formatHostPort } from './weblogin';
import { Profile, profileProxyHost, splitHostPort } from './profile';

const INTERNAL_EXTENSIONS = new Set([EXT_TELEPORT_ROLES, EXT_TELEPORT_TRAITS, EXT_TELEPORT_ROUTE_TO_CLUSTER]);

/** The roles in the certificate's `teleport-roles` extension. */
export function certRoles(cert: Certificate): string[] {
  const raw = cert.extensions[EXT_TELEPORT_ROLES];
  if (!raw) return [];
  try {
    const v = JSON.parse(raw) as { roles?: unknown };
    return Array.isArray(v.roles) ? v.roles.filter((r): r is string => typeof r === 'string') : [];
  } catch {
    return [];
  }
}

/** Go-style duration: `11h59m59s`. */
export function formatDuration(ms: number): string {
  let s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (h) return `${h}h${m}m${s}s`;
  if (m) return `${m}m${s}s`;
  return `${s}s`;
}

/** `2026-11-22 17:39:44 +0000 UTC` */
export function formatTime(d: Date): string {
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' +0000 UTC');
}

export function profileUrl(p: Profile): string {
  const { port } = splitHostPort(p.web_proxy_addr);
  return `${p.web_proxy_scheme}://${formatHostPort(profileProxyHost(p), port)}`;
}

export function formatStatus(p: Profile, cert: Certificate, now = new Date()): string {
  const until = new Date(Number(cert.validBefore) * 1000);
  const left = until.getTime() - now.getTime();
  const validity = left > 0 ? `[valid for ${formatDuration(left)}]` : '[EXPIRED]';
  const rows: [string, string][] = [
    ['Profile URL:', profileUrl(p)],
    ['Logged in as:', cert.keyId],
    ['Cluster:', p.cluster],
    ['Roles:', certRoles(cert).map((r) => `${r}*`).join(', ')],
    ['Logins:', cert.principals.join(', ')],
    ['Valid until:', `${formatTime(until)} ${validity}`],
    ['Extensions:', Object.keys(cert.extensions).filter((e) => !INTERNAL_EXTENSIONS.has(e)).sort().join(', ')],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v], i) => `${i === 0 ? '> ' : '  '}${k.padEnd(w)} ${v}`.trimEnd()).join('\n') + '\n';
}
