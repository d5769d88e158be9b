/**
 * The auth API's single sign-on routes. Admins (tctl) manage connectors:
 * `GET/PUT /v1/connectors/<kind>`, `DELETE /v1/connectors/<kind>/<name>`
 * (secrets only with `?with_secrets=true`). Proxies list them for the login
 * page (names and display names only) and run logins: `POST
 * /v1/sso/<kind>/begin` and `POST /v1/sso/<kind>/complete` (logins.ts).
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { BadParameterError } from '../../utils/errors';
import { Caller, route, Route } from '../http';
import { LocalLogins } from '../login';
import { parseResource } from '../resources';
import type { AuthServer } from '../server';
import { WebSessions } from '../websessions';
import { CONNECTOR_KINDS, ConnectorKind, connectorInfo, connectorSchema, connectorView } from './connectors';
import { SsoLogins } from './logins';

const NS_PER_MS = 1_000_000;
const clientAddr = z.string().max(64).refine((s) => isIP(s) !== 0, 'an IP address').optional();

const beginBody = z.discriminatedUnion('type', [
  z.object({ type: z.literal('web'), connector_id: z.string().min(1).max(255), binding: z.string().max(64), client_addr: clientAddr }).strict(),
  z
    .object({
      type: z.literal('console'),
      connector_id: z.string().min(1).max(255),
      redirect_url: z.string().max(2048),
      secret_key: z.string().max(64),
      public_key: z.string().min(1).max(16384),
      tls_public_key: z.string().max(16384).optional(),
      cert_ttl: z.number().int().nonnegative().optional(),
      client_addr: clientAddr,
    })
    .strict(),
]);

const completeBody = z
  .object({
    state: z.string().max(256),
    code: z.string().max(4096).optional(),
    error: z.string().max(1024).optional(),
    binding: z.string().max(256).optional(),
    client_addr: clientAddr,
  })
  .strict();

function kindOf(v: string): ConnectorKind {
  if (!(CONNECTOR_KINDS as readonly string[]).includes(v)) throw new BadParameterError(`unknown connector kind "${v}": expected oidc or github`);
  return v as ConnectorKind;
}

const unb64 = (s: string) => Buffer.from(s, 'base64').toString();

export function ssoRoutes(auth: AuthServer, who: (caller: Caller) => string): Route[] {
  const sso = new SsoLogins(auth, new WebSessions(auth, new LocalLogins(auth)));
  return [
    route({ method: 'GET', path: '/v1/connectors', allow: ['Proxy'], handler: async () => (await auth.connectors.listAll()).map(connectorInfo) }),
    route({
      method: 'GET',
      path: '/v1/connectors/:kind',
      allow: [],
      handler: async ({ params, query }) => (await auth.connectors.list(kindOf(params.kind))).map((c) => connectorView(c, query.get('with_secrets') === 'true')),
    }),
    route({
      method: 'PUT',
      path: '/v1/connectors/:kind',
      allow: [],
      handler: async ({ params, body, query, caller }) => {
        const kind = kindOf(params.kind);
        const c = parseResource(connectorSchema(kind), body, `${kind} connector`);
        await auth.connectors.upsert(c, query.get('create') === 'true');
        await auth.emit({ event: `${kind}.created`, user: who(caller), name: c.metadata.name });
        return {};
      },
    }),
    route({
      method: 'DELETE',
      path: '/v1/connectors/:kind/:name',
      allow: [],
      handler: async ({ params, caller }) => {
        const kind = kindOf(params.kind);
        await auth.connectors.delete(kind, params.name);
        await auth.emit({ event: `${kind}.deleted`, user: who(caller), name: params.name });
        return {};
      },
    }),
    route({
      method: 'POST',
      path: '/v1/sso/:kind/begin',
      allow: ['Proxy'],
      body: beginBody,
      handler: async ({ params, body, remoteAddr }) =>
        sso.begin(
          kindOf(params.kind),
          body.type === 'web'
            ? { type: 'web', connector: body.connector_id, binding: body.binding }
            : {
                type: 'console',
                connector: body.connector_id,
                redirectUrl: body.redirect_url,
                secretKey: body.secret_key,
                sshPublicKey: unb64(body.public_key),
                ...(body.tls_public_key ? { tlsPublicKey: unb64(body.tls_public_key) } : {}),
                ...(body.cert_ttl ? { ttlMs: Math.round(body.cert_ttl / NS_PER_MS) } : {}),
              },
          body.client_addr ?? remoteAddr,
        ),
    }),
    route({
      method: 'POST',
      path: '/v1/sso/:kind/complete',
      allow: ['Proxy'],
      body: completeBody,
      handler: async ({ params, body, remoteAddr }) => {
        const { client_addr, ...cb } = body;
        return sso.complete(kindOf(params.kind), cb, client_addr ?? remoteAddr);
      },
    }),
  ];
}
