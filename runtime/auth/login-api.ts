/**
 * The auth API routes the proxy calls for local users: reading and
 * completing a sign-up token, logging in with a password and second
 * factor (the proxy's `POST /webapi/ssh/certs`, formats.md §4.3), and the
 * web UI's browser sessions (bearer tokens travel in bodies, never in URLs),
 * what a session's user does on the account page (password, second-factor
 * devices: `/v1/websessions/mfa/*`), the user certificates of the browser
 * terminal (`/v1/websessions/certs`) and the audit page's search
 * (`/v1/websessions/events/search`, as the session's user).
 * Only proxies (and the auth server's own identities) may call them; a proxy
 * names the client's address in `client_addr` (else the proxy's own address
 * counts), for the per-source login limit and the audit log.
 */
import { z } from 'zod';
import { searchAuditLog } from './audit-search';
import { clientAddrSchema, route, Route } from './http';
import { LocalLogins } from './login';
import { AuthServer } from './server';
import type { RecordingReader } from './sessions-api';
import { assertionResponseSchema, registrationResponseSchema } from './webauthn';
import { secondFactor, webAuthnRoutes } from './webauthn-api';
import { WebSessions } from './websessions';

const NS_PER_MS = 1_000_000;
const unb64 = (s: string) => Buffer.from(s, 'base64').toString();

/** The address of the client the proxy serves, as the proxy worked it out (runtime/proxy/clientaddr.ts). */
const clientAddr = clientAddrSchema;

const completeSignupBody = z
  .object({ password: z.string().max(1024), otp_token: z.string().max(32).optional(), webauthn_registration: registrationResponseSchema.optional() })
  .strict();
/** A security key's answer to a challenge, instead of a TOTP code. */
const webauthnResponse = assertionResponseSchema.optional();

const loginBody = z
  .object({
    password: z.string().max(1024),
    otp_token: z.string().max(32).optional(),
    webauthn_response: webauthnResponse,
    /** authorized_keys line, base64. */
    pub_key: z.string().min(1).max(16384),
    /** PEM SPKI, base64. */
    tls_pub_key: z.string().max(16384).optional(),
    /** Nanoseconds. */
    ttl: z.number().int().nonnegative().optional(),
    route_to_cluster: z.string().max(255).optional(),
    client_addr: clientAddr,
  })
  .strict();

const webSessionBody = z
  .object({ user: z.string().min(1).max(255), password: z.string().max(1024), otp_token: z.string().max(32).optional(), webauthn_response: webauthnResponse, client_addr: clientAddr })
  .strict();

const bearerBody = z.object({ token: z.string().max(256) }).strict();

const sessionCertBody = z.object({ token: z.string().max(256), pub_key: z.string().min(1).max(16384) }).strict();

const logoutBody = z.object({ token: z.string().max(256), client_addr: clientAddr }).strict();

const sid = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'must be a session ID');
const count = z.number().int().nonnegative().optional();
const recordingEventsBody = z.object({ token: z.string().max(256), sid, after: count, limit: count }).strict();
const recordingStreamBody = z.object({ token: z.string().max(256), sid, offset: count, bytes: count }).strict();
const eventSearchBody = z.object({ token: z.string().max(256), query: z.string().max(16384) }).strict();
const asQuery = (n?: number) => (n === undefined ? null : String(n));
const secondFactorToken = z.string().max(16).optional();
const mfaOfferBody = z
  .object({ token: z.string().max(256), password: z.string().min(1).max(1024), second_factor_token: secondFactorToken, webauthn_response: webauthnResponse, client_addr: clientAddr })
  .strict();
const mfaAddBody = z
  .object({
    token: z.string().max(256),
    name: z.string().max(64),
    second_factor_token: secondFactorToken,
    webauthn_registration: registrationResponseSchema.optional(),
    client_addr: clientAddr,
  })
  .strict();
const mfaDeleteBody = z
  .object({
    token: z.string().max(256),
    name: z.string().max(64),
    password: z.string().min(1).max(1024),
    second_factor_token: secondFactorToken,
    webauthn_response: webauthnResponse,
    client_addr: clientAddr,
  })
  .strict();

const changePasswordBody = z
  .object({
    token: z.string().max(256),
    old_password: z.string().min(1).max(1024),
    new_password: z.string().min(1).max(1024),
    second_factor_token: secondFactorToken,
    webauthn_response: webauthnResponse,
    client_addr: clientAddr,
  })
  .strict();

/** The routes proxies call for browsers: sign-up, logins, web sessions and what a web session may do (nodes, sessions, recordings). */
export function loginRoutes(auth: AuthServer, recordings: RecordingReader, logins = new LocalLogins(auth)): Route[] {
  const sessions = new WebSessions(auth, logins);
  const userOf = async (token: string) => (await sessions.get(token)).user;
  return [
    route({
      method: 'GET',
      path: '/v1/signuptokens/:token',
      allow: ['Proxy'],
      handler: async ({ params }) => logins.signupToken(params.token),
    }),
    route({
      method: 'POST',
      path: '/v1/signuptokens/:token/complete',
      allow: ['Proxy'],
      body: completeSignupBody,
      handler: async ({ params, body }) =>
        logins.completeSignup(params.token, body.password, {
          ...(body.otp_token !== undefined ? { otpToken: body.otp_token } : {}),
          ...(body.webauthn_registration ? { webauthnRegistration: body.webauthn_registration } : {}),
        }),
    }),
    route({
      method: 'POST',
      path: '/v1/users/:name/login',
      allow: ['Proxy'],
      body: loginBody,
      handler: async ({ params, body, remoteAddr }) =>
        logins.login(
          {
            username: params.name,
            password: body.password,
            ...(body.otp_token !== undefined ? { otpToken: body.otp_token } : {}),
            ...(body.webauthn_response ? { webauthn: body.webauthn_response } : {}),
            sshPublicKey: unb64(body.pub_key),
            ...(body.tls_pub_key ? { tlsPublicKey: unb64(body.tls_pub_key) } : {}),
            ...(body.ttl ? { ttlMs: Math.round(body.ttl / NS_PER_MS) } : {}),
            ...(body.route_to_cluster ? { routeToCluster: body.route_to_cluster } : {}),
          },
          body.client_addr ?? remoteAddr,
        ),
    }),
    route({
      method: 'POST',
      path: '/v1/websessions',
      allow: ['Proxy'],
      body: webSessionBody,
      handler: async ({ body, remoteAddr }) =>
        sessions.create(
          {
            username: body.user,
            password: body.password,
            ...(body.otp_token !== undefined ? { otpToken: body.otp_token } : {}),
            ...(body.webauthn_response ? { webauthn: body.webauthn_response } : {}),
          },
          body.client_addr ?? remoteAddr,
        ),
    }),
    route({
      method: 'POST',
      path: '/v1/websessions/get',
      allow: ['Proxy'],
      body: bearerBody,
      handler: async ({ body }) => sessions.get(body.token),
    }),
    route({
      method: 'POST',
      path: '/v1/websessions/nodes',
      allow: ['Proxy'],
      body: bearerBody,
      handler: async ({ body }) => sessions.nodes(body.token),
    }),
    route({
      method: 'POST',
      path: '/v1/websessions/activesessions',
      allow: ['Proxy'],
      body: bearerBody,
      handler: async ({ body }) => sessions.activeSessions(body.token),
    }),
    route({
      method: 'PUT',
      path: '/v1/websessions/password',
      allow: ['Proxy'],
      body: changePasswordBody,
      handler: async ({ body, remoteAddr }) => {
        const user = await userOf(body.token);
        await logins.changePassword(
          user,
          { oldPassword: body.old_password, newPassword: body.new_password, ...secondFactor(body) },
          body.client_addr ?? remoteAddr,
        );
        return {};
      },
    }),
    route({
      method: 'POST',
      path: '/v1/websessions/context',
      allow: ['Proxy'],
      body: bearerBody,
      handler: async ({ body }) => {
        const user = await userOf(body.token);
        return { user, roles: (await auth.users.get(user)).spec.roles, second_factor: auth.opts.clusterConfig.second_factor };
      },
    }),
    route({
      method: 'POST',
      path: '/v1/websessions/mfa/devices',
      allow: ['Proxy'],
      body: bearerBody,
      handler: async ({ body }) => logins.mfaDevices(await userOf(body.token)),
    }),
    route({
      method: 'POST',
      path: '/v1/websessions/mfa/offer',
      allow: ['Proxy'],
      body: mfaOfferBody,
      handler: async ({ body, remoteAddr }) =>
        logins.offerMfaDevice(await userOf(body.token), { password: body.password, ...secondFactor(body) }, body.client_addr ?? remoteAddr),
    }),
    route({
      method: 'POST',
      path: '/v1/websessions/mfa/add',
      allow: ['Proxy'],
      body: mfaAddBody,
      handler: async ({ body, remoteAddr }) =>
        logins.addMfaDevice(
          await userOf(body.token),
          {
            name: body.name,
            ...(body.second_factor_token ? { otpToken: body.second_factor_token } : {}),
            ...(body.webauthn_registration ? { webauthnRegistration: body.webauthn_registration } : {}),
          },
          body.client_addr ?? remoteAddr,
        ),
    }),
    route({
      method: 'POST',
      path: '/v1/websessions/mfa/delete',
      allow: ['Proxy'],
      body: mfaDeleteBody,
      handler: async ({ body, remoteAddr }) => {
        await logins.deleteMfaDevice(await userOf(body.token), { name: body.name, password: body.password, ...secondFactor(body) }, body.client_addr ?? remoteAddr);
        return {};
      },
    }),
    ...webAuthnRoutes(logins, userOf),
    route({
      method: 'POST',
      path: '/v1/websessions/recording/events',
      allow: ['Proxy'],
      body: recordingEventsBody,
      handler: async ({ body }) => recordings.events(await userOf(body.token), 'default', body.sid, { after: asQuery(body.after), limit: asQuery(body.limit), print: 'true' }),
    }),
    route({
      method: 'POST',
      path: '/v1/websessions/recording/stream',
      allow: ['Proxy'],
      body: recordingStreamBody,
      handler: async ({ body }) => recordings.stream(await userOf(body.token), 'default', body.sid, { offset: asQuery(body.offset), bytes: asQuery(body.bytes) }),
    }),
    route({
      method: 'POST',
      path: '/v1/websessions/events/search',
      allow: ['Proxy'],
      body: eventSearchBody,
      // The web audit page: the search the session's user may make (the query is the page's URL query, checked in audit-search.ts).
      handler: async ({ body }) => searchAuditLog(auth, await userOf(body.token), new URLSearchParams(body.query)),
    }),
    route({
      method: 'POST',
      path: '/v1/websessions/certs',
      allow: ['Proxy'],
      body: sessionCertBody,
      handler: async ({ body }) => sessions.sshCert(body.token, body.pub_key),
    }),
    route({
      method: 'POST',
      path: '/v1/websessions/delete',
      allow: ['Proxy'],
      body: logoutBody,
      handler: async ({ body, remoteAddr }) => {
        await sessions.delete(body.token, body.client_addr ?? remoteAddr);
        return {};
      },
    }),
  ];
}
