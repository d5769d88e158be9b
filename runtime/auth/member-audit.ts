/**
 * What a cluster member (a node or a proxy) may write to the audit log, and
 * as whom. A member writes only the events of the connections and sessions it
 * serves (MEMBER_EVENTS), and only as itself: `server_id` is the host ID its
 * certificate names, filled in when missing; another server's ID is refused.
 * So are events only the auth service emits (`user.login`, `user.create`,
 * `session.upload`, ...) and a `code` that is not one of the event's.
 * Every refusal is answered 403 and is itself audited as `audit.rejected`,
 * naming the host and what it tried.
 */
import { EventCodes } from '../events/codes';
import { EventFields } from '../events/filelog';
import { AccessDeniedError, isReason } from '../utils/errors';
import { Caller, callerHostId } from './http';
import type { AuthServer } from './server';

const codesOf = (...events: (keyof typeof EventCodes)[]): string[] => events.flatMap((e) => Object.values(EventCodes[e]) as string[]);

/** The events members send (runtime/node, runtime/proxy), with the codes each may carry. */
const MEMBER_EVENTS: ReadonlyMap<string, readonly string[]> = new Map([
  ...(['auth', 'client.disconnect', 'exec', 'port', 'resize', 'session.start', 'session.join', 'session.leave', 'session.end', 'subsystem'] as const).map((e): [string, string[]] => [e, codesOf(e)]),
  ['scp', codesOf('scp.download', 'scp.upload')],
]);

/** The event as the auth service records it for `hostId`; AccessDeniedError if that host may not write it. */
export function memberEvent(fields: EventFields, hostId: string): EventFields {
  const codes = MEMBER_EVENTS.get(fields.event);
  if (!codes) throw new AccessDeniedError(`host ${hostId} may not write "${clip(fields.event)}" events: only the auth service writes them`);
  if (fields.code !== undefined && !codes.includes(fields.code)) {
    throw new AccessDeniedError(`host ${hostId} sent a "${fields.event}" event with code ${clip(String(fields.code))}, which is not one of that event's`);
  }
  if (fields.server_id !== undefined && fields.server_id !== hostId) {
    throw new AccessDeniedError(`host ${hostId} may not write events for server ${clip(String(fields.server_id))}`);
  }
  return { ...fields, server_id: hostId };
}

/** The event as `memberEvent` stamps it for the caller; a refusal is audited. */
export function acceptMemberEvent(auth: AuthServer, req: { caller: Caller; remoteAddr: string }, fields: EventFields): Promise<EventFields> {
  const attempted = { attempted_event: fields.event, ...(fields.server_id !== undefined ? { attempted_server_id: String(fields.server_id) } : {}) };
  return auditRefusals(auth, req, attempted, () => memberEvent(fields, memberHostId(auth, req.caller)));
}

/** The caller's host ID, or AccessDeniedError when it is no cluster member. */
export function memberHostId(auth: AuthServer, caller: Caller): string {
  const host = callerHostId(caller, auth.clusterName);
  if (host === undefined) throw new AccessDeniedError('only cluster members write audit events and recordings');
  return host;
}

/**
 * Runs `check`; when it refuses (AccessDeniedError) the refusal is audited as
 * `audit.rejected` with what was `attempted` (clipped) before the error goes on.
 */
export async function auditRefusals<T>(
  auth: AuthServer,
  req: { caller: Caller; remoteAddr: string },
  attempted: Record<string, string>,
  check: () => T | Promise<T>,
): Promise<T> {
  try {
    return await check();
  } catch (err) {
    if (!isReason(err, 'access_denied')) throw err;
    const { caller } = req;
    await auth.emit({
      event: 'audit.rejected',
      success: false,
      user: caller.kind === 'nop' ? 'anonymous' : caller.identity.username,
      ...(caller.kind === 'system' ? { role: caller.role } : {}),
      server_id: callerHostId(caller, auth.clusterName) ?? '',
      'addr.remote': req.remoteAddr,
      ...Object.fromEntries(Object.entries(attempted).map(([k, v]) => [k, clip(v)])),
      error: (err as Error).message,
    });
    throw err;
  }
}

function clip(s: string): string {
  return s.length > 128 ? s.slice(0, 128) + '…' : s;
}
