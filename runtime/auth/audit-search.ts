/**
 * Searching the audit log, for `tctl events ls` and users (`GET /v1/events`)
 * and for the web UI's audit page (the proxy's `/webapi/sites/:site/events/search`,
 * which names the web session's user). One query schema and one rule:
 * admins and the auth server search freely; a user only when a role of theirs
 * grants `list` on `event` (`rules: [{resources: [event], verbs: [list, read]}]`,
 * which the default `admin` role has, as Teleport 4.x's does), else 403.
 *
 * Query (URL parameters): `from`, `to` (RFC 3339; default: the 30 days up to now),
 * `event` (a type, repeatable: any of them), `user` (the event's `user`),
 * `limit` (1-10000, default 10000). Anything else, an unparsable time,
 * `from` after `to` or a limit out of range is a 400 that says which.
 */
import { z } from 'zod';
import { EventFields, SearchQuery } from '../events/filelog';
import { AccessDeniedError, BadParameterError, isReason } from '../utils/errors';
import { rulesAllow } from './access/decision';
import { AuthServer } from './server';

export const MAX_SEARCH_LIMIT = 10_000;
/** The window searched when `from` is not given: the month before `to`. */
const DEFAULT_WINDOW_MS = 30 * 86_400_000;
const MAX_EVENT_TYPES = 100;

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i;

const time = (name: string) =>
  z
    .string()
    .refine((v) => RFC3339.test(v) && !Number.isNaN(Date.parse(v)), { message: `${name} must be an RFC 3339 time such as 2026-01-02T15:04:05Z` })
    .transform((v) => new Date(v));

const querySchema = z
  .object({
    from: time('from').optional(),
    to: time('to').optional(),
    event: z.array(z.string().min(1, 'an event type cannot be empty').max(256)).max(MAX_EVENT_TYPES, `at most ${MAX_EVENT_TYPES} event types`).default([]),
    user: z.string().min(1, 'user cannot be empty').max(255).optional(),
    limit: z
      .string()
      .regex(/^\d{1,6}$/, 'limit must be a whole number')
      .transform(Number)
      .refine((n) => n >= 1 && n <= MAX_SEARCH_LIMIT, { message: `limit must be between 1 and ${MAX_SEARCH_LIMIT}` })
      .optional(),
  })
  .strict();

/** The store query a request's URL parameters ask for; BadParameterError naming what is wrong. */
export function parseSearchQuery(params: URLSearchParams): SearchQuery {
  const raw: Record<string, string | string[]> = {};
  for (const [k, v] of params) {
    if (k === 'event') (raw.event = (raw.event as string[] | undefined) ?? []).push(v);
    else if (k in raw) throw new BadParameterError(`audit search: ${k} is given more than once`);
    else raw[k] = v;
  }
  const parsed = querySchema.safeParse(raw);
  if (!parsed.success) {
    throw new BadParameterError(
      'audit search: ' +
        parsed.error.issues.map((i) => (i.code === 'unrecognized_keys' ? `unknown parameter ${i.keys.join(', ')}` : i.message)).join('; '),
    );
  }
  const q = parsed.data;
  const to = q.to ?? new Date();
  const from = q.from ?? new Date(to.getTime() - DEFAULT_WINDOW_MS);
  if (from > to) throw new BadParameterError(`audit search: from (${from.toISOString()}) is after to (${to.toISOString()})`);
  return { from, to, eventTypes: q.event, limit: q.limit ?? MAX_SEARCH_LIMIT, ...(q.user ? { user: q.user } : {}) };
}

/** Refuses a user whose roles do not grant `list` on `event`; `user` undefined is an admin or the auth server. */
export async function checkMaySearch(auth: AuthServer, user: string | undefined): Promise<void> {
  if (user === undefined) return;
  let allowed: boolean;
  try {
    allowed = rulesAllow(await auth.roles.forUser(await auth.users.get(user)), 'event', 'list');
  } catch (err) {
    if (isReason(err, 'not_found')) throw new AccessDeniedError(`access denied: user "${user}" may not read the audit log`);
    throw err;
  }
  if (!allowed) throw new AccessDeniedError(`access denied: the roles of user "${user}" do not allow reading the audit log (a rule with "list" on "event")`);
}

/** The events matching `params`, oldest first, if `user` may search the audit log. */
export async function searchAuditLog(auth: AuthServer, user: string | undefined, params: URLSearchParams): Promise<EventFields[]> {
  await checkMaySearch(auth, user);
  return auth.opts.audit.search(parseSearchQuery(params));
}
