/**
 * The auth API routes of WebAuthn ceremonies, which proxies call for browsers
 * (runtime/proxy/web.ts); `rp` is the relying party the proxy worked out from
 * the browser's request (runtime/proxy/relyingparty.ts):
 *   POST /v1/signuptokens/:token/webauthn   registration options for a key at sign-up
 *   POST /v1/webauthn/login                 password in, a challenge for the user's keys out (step one of a login)
 *   POST /v1/websessions/mfa/challenge      a challenge for the web session's user's keys (account changes)
 *   POST /v1/websessions/mfa/offer/webauthn password and second factor in, registration options for a new key out
 * and tsh login's requests for a key's answer (webauthn-cli.ts):
 *   POST /v1/webauthn/cli                   password in, `{id, secret, expires}` out
 *   POST /v1/webauthn/cli/:id/challenge     the proxy page: `{user, from, publicKey}`: whom tsh logs in, from where, the options for their keys
 *   POST /v1/webauthn/cli/:id/answer        the proxy page: the key's answer, kept for tsh (once)
 *   POST /v1/webauthn/cli/:id/collect       tsh, with the secret: `{webauthn_response}` once answered, else `{pending: true}`
 * The answers to these go with the calls they are for (login, sign-up, account changes: login-api.ts).
 */
import { z } from 'zod';
import { clientAddrSchema, route, Route } from './http';
import { LocalLogins } from './login';
import { AssertionResponse, assertionResponseSchema, relyingPartySchema } from './webauthn';

const clientAddr = clientAddrSchema;

const rpBody = z.object({ rp: relyingPartySchema }).strict();
const cliRequestBody = z.object({ user: z.string().min(1).max(255), password: z.string().max(1024), client_addr: clientAddr }).strict();
const cliAnswerBody = z.object({ webauthn_response: assertionResponseSchema }).strict();
const cliCollectBody = z.object({ secret: z.string().max(128) }).strict();
const loginChallengeBody = z.object({ user: z.string().min(1).max(255), password: z.string().max(1024), rp: relyingPartySchema, client_addr: clientAddr }).strict();
const sessionChallengeBody = z.object({ token: z.string().max(256), rp: relyingPartySchema }).strict();
const offerBody = z
  .object({
    token: z.string().max(256),
    password: z.string().min(1).max(1024),
    second_factor_token: z.string().max(16).optional(),
    webauthn_response: assertionResponseSchema.optional(),
    rp: relyingPartySchema,
    client_addr: clientAddr,
  })
  .strict();

/** The second factor of a body, as LocalLogins takes it. */
export const secondFactor = (b: { second_factor_token?: string; webauthn_response?: AssertionResponse }) => ({
  ...(b.second_factor_token ? { otpToken: b.second_factor_token } : {}),
  ...(b.webauthn_response ? { webauthn: b.webauthn_response } : {}),
});

export function webAuthnRoutes(logins: LocalLogins, userOf: (token: string) => Promise<string>): Route[] {
  return [
    route({
      method: 'POST',
      path: '/v1/signuptokens/:token/webauthn',
      allow: ['Proxy'],
      body: rpBody,
      handler: async ({ params, body }) => logins.signupWebAuthnOptions(params.token, body.rp),
    }),
    route({
      method: 'POST',
      path: '/v1/webauthn/login',
      allow: ['Proxy'],
      body: loginChallengeBody,
      handler: async ({ body, remoteAddr }) => logins.webAuthnLoginChallenge({ username: body.user, password: body.password }, body.rp, body.client_addr ?? remoteAddr),
    }),
    route({
      method: 'POST',
      path: '/v1/websessions/mfa/challenge',
      allow: ['Proxy'],
      body: sessionChallengeBody,
      handler: async ({ body }) => logins.webAuthnChallenge(await userOf(body.token), body.rp),
    }),
    route({
      method: 'POST',
      path: '/v1/websessions/mfa/offer/webauthn',
      allow: ['Proxy'],
      body: offerBody,
      handler: async ({ body, remoteAddr }) =>
        logins.offerWebAuthnDevice(await userOf(body.token), { password: body.password, ...secondFactor(body) }, body.rp, body.client_addr ?? remoteAddr),
    }),
    route({
      method: 'POST',
      path: '/v1/webauthn/cli',
      allow: ['Proxy'],
      body: cliRequestBody,
      handler: async ({ body, remoteAddr }) => {
        const r = await logins.webAuthnCliRequest({ username: body.user, password: body.password }, body.client_addr ?? remoteAddr);
        return { id: r.id, secret: r.secret, expires: r.expires.toISOString() };
      },
    }),
    route({
      method: 'POST',
      path: '/v1/webauthn/cli/:id/challenge',
      allow: ['Proxy'],
      body: rpBody,
      handler: async ({ params, body }) => logins.webAuthnCliChallenge(params.id, body.rp),
    }),
    route({
      method: 'POST',
      path: '/v1/webauthn/cli/:id/answer',
      allow: ['Proxy'],
      body: cliAnswerBody,
      handler: async ({ params, body }) => {
        await logins.cliRequests.answer(params.id, body.webauthn_response);
        return {};
      },
    }),
    route({
      method: 'POST',
      path: '/v1/webauthn/cli/:id/collect',
      allow: ['Proxy'],
      body: cliCollectBody,
      handler: async ({ params, body }) => {
        const got = await logins.cliRequests.collect(params.id, body.secret);
        return got ? { webauthn_response: got.answer } : { pending: true };
      },
    }),
  ];
}
