/** Audit event names and codes (formats.md §6.2). */
export const EventCodes = {
  'user.login': { success: 'T1000I', failure: 'T1000W' },
  'user.create': { success: 'T1002I' },
  'user.update': { success: 'T1003I' },
  'user.delete': { success: 'T1004I' },
  'user.password_change': { success: 'T1005I' },
  /** Teleport 6+: a second-factor device added or removed (failures are ours). */
  'mfa.add': { success: 'T1006I', failure: 'T1006W' },
  'mfa.delete': { success: 'T1007I', failure: 'T1007W' },
  'session.start': { success: 'T2000I' },
  'session.join': { success: 'T2001I' },
  resize: { success: 'T2002I' },
  'session.leave': { success: 'T2003I' },
  'session.end': { success: 'T2004I' },
  'session.upload': { success: 'T2005I' },
  'session.data': { success: 'T2006I' },
  subsystem: { success: 'T3001I', failure: 'T3001E' },
  exec: { success: 'T3002I', failure: 'T3002E' },
  port: { success: 'T3003I', failure: 'T3003E' },
  'scp.download': { success: 'T3004I', failure: 'T3004E' },
  'scp.upload': { success: 'T3005I', failure: 'T3005E' },
  'client.disconnect': { success: 'T3006I' },
  auth: { failure: 'T3007W' },
  'reset_password_token.create': { success: 'T6000I' },
  'github.created': { success: 'T8000I' },
  'github.deleted': { success: 'T8001I' },
  'oidc.created': { success: 'T8100I' },
  'oidc.deleted': { success: 'T8101I' },
  'role.created': { success: 'T9000I' },
  'role.deleted': { success: 'T9001I' },
  /** Not in 4.x: a CA rotation step (`tctl auth rotate`, or an automatic rotation's schedule). */
  'ca.rotate': { success: 'TC001I' },
  /** Not in 4.x: a user ending their web session (DELETE /webapi/sessions). */
  'user.logout': { success: 'TL001I' },
  /** Not in 4.x: a host joining the cluster with a token (success) or being refused (failure). */
  'instance.join': { success: 'TJ001I', failure: 'TJ001E' },
  /** Not in 4.x: a node or proxy tried to write audit data it may not (another server's events, an auth-only event, another host's recording). */
  'audit.rejected': { failure: 'TA001W' },
} as const;

export type EventType = keyof typeof EventCodes | 'scp';

export function codeFor(event: string, failed = false): string | undefined {
  const entry = (EventCodes as Record<string, { success?: string; failure?: string }>)[event];
  if (!entry) return undefined;
  return failed ? (entry.failure ?? entry.success) : (entry.success ?? entry.failure);
}
