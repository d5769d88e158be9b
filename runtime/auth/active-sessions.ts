/**
 * The interactive sessions running now, as nodes publish them
 * (runtime/node/shared.ts): `tsh join` and the web UI find a session's node
 * and login here. A node writes and removes only its own sessions' records;
 * each expires unless renewed, so a stopped node's sessions drop off. A user
 * sees the sessions of the nodes their roles let them see (the same decision
 * as `tsh ls`); proxies see all.
 */
import { z } from 'zod';
import { Keys, rangeEnd } from '../contract/keys';
import { checkNamespace, checkSessionId } from '../recordings/limits';
import { AccessDeniedError, isReason, NotFoundError } from '../utils/errors';
import type { ActiveSession } from '../node/shared';
import { ACTIVE_SESSION_TTL_MS } from '../node/shared';
import { Caller, route, Route } from './http';
import { memberHostId } from './member-audit';
import { AuthServer } from './server';

const activeSessionBody = z
  .object({
    id: z.string().max(64),
    namespace: z.string().max(255),
    server_id: z.string().max(128),
    server_hostname: z.string().max(255),
    login: z.string().max(64),
    parties: z.array(z.object({ id: z.string().max(64), user: z.string().max(255), remote_addr: z.string().max(128), joined: z.string().max(64) }).strict()).max(256),
    terminal_params: z.object({ w: z.number().int().min(0).max(10_000), h: z.number().int().min(0).max(10_000) }).strict(),
    created: z.string().max(64),
  })
  .strict();

/** The live sessions of namespace `ns`. */
export async function listActiveSessions(auth: AuthServer, ns: string): Promise<ActiveSession[]> {
  const now = Date.now();
  const items = await auth.backend.getRange(Keys.activeSessions(ns), rangeEnd(Keys.activeSessions(ns)));
  return items.filter((i) => !i.expires || i.expires.getTime() > now).map((i) => JSON.parse(i.value.toString()) as ActiveSession);
}

export function activeSessionRoutes(auth: AuthServer): Route[] {
  const base = '/v1/namespaces/:ns/sessions/:sid';
  const read = async (ns: string, sid: string): Promise<ActiveSession | undefined> => {
    try {
      const item = await auth.backend.get(Keys.activeSession(ns, sid));
      return JSON.parse(item.value.toString()) as ActiveSession;
    } catch (err) {
      if (isReason(err, 'not_found')) return undefined;
      throw err;
    }
  };
  /** The sessions `caller` may see: all for proxies and admins, those on visible nodes for users. */
  const visible = async (caller: Caller, ns: string, sessions: ActiveSession[]): Promise<ActiveSession[]> => {
    if (caller.kind !== 'user') return sessions;
    const nodes = new Set((await auth.nodesForUser(caller.identity.username, ns, caller.identity.groups)).map((n) => n.server.metadata.name));
    return sessions.filter((s) => nodes.has(s.server_id));
  };
  return [
    route({
      method: 'PUT',
      path: `${base}/active`,
      allow: ['Node'],
      body: activeSessionBody,
      handler: async ({ params, body, caller }) => {
        const ns = checkNamespace(params.ns);
        const sid = checkSessionId(params.sid);
        const host = memberHostId(auth, caller);
        if (body.id !== sid || body.namespace !== ns || body.server_id !== host) throw new AccessDeniedError(`host ${host} may only publish its own session ${sid}`);
        const existing = await read(ns, sid);
        if (existing && existing.server_id !== host) throw new AccessDeniedError(`session ${sid} runs on another node`);
        await auth.backend.put({ key: Keys.activeSession(ns, sid), value: Buffer.from(JSON.stringify(body)), expires: new Date(Date.now() + ACTIVE_SESSION_TTL_MS) });
        return {};
      },
    }),
    route({
      method: 'DELETE',
      path: `${base}/active`,
      allow: ['Node'],
      handler: async ({ params, caller }) => {
        const ns = checkNamespace(params.ns);
        const sid = checkSessionId(params.sid);
        const existing = await read(ns, sid);
        if (existing && existing.server_id !== memberHostId(auth, caller)) throw new AccessDeniedError(`session ${sid} runs on another node`);
        if (existing) await auth.backend.delete(Keys.activeSession(ns, sid));
        return {};
      },
    }),
    route({
      method: 'GET',
      path: '/v1/namespaces/:ns/sessions',
      allow: ['user', 'Proxy'],
      handler: async ({ params, caller }) => {
        const ns = checkNamespace(params.ns);
        return visible(caller, ns, await listActiveSessions(auth, ns));
      },
    }),
    route({
      method: 'GET',
      path: base,
      allow: ['user', 'Proxy'],
      handler: async ({ params, caller }) => {
        const ns = checkNamespace(params.ns);
        const sid = checkSessionId(params.sid);
        const s = await read(ns, sid);
        const [seen] = s ? await visible(caller, ns, [s]) : [];
        if (!seen) throw new NotFoundError(`no active session ${sid}`);
        return seen;
      },
    }),
  ];
}
