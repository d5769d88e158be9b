/**
 * The OpenID Connect side of a login (authorization code flow with PKCE,
 * OpenID Connect Core §3.1): the provider is found by discovery at the
 * connector's `issuer_url`, whose document must name that very issuer; the
 * code is exchanged at its token endpoint with the client secret and the
 * PKCE verifier; the ID token is verified against the provider's JWKS
 * (jwt.ts); the userinfo endpoint's claims (same `sub`) join the ID token's.
 * `claims_to_roles` then decides the roles: no match, no login.
 */
import { createHash } from 'node:crypto';
import { AccessDeniedError, BadParameterError } from '../../utils/errors';
import type { OidcConnector } from './connectors';
import { fetchJson } from './fetch';
import { verifyIdToken } from './jwt';
import type { SsoIdentity } from './identity';
import { claimTraits, SsoRefusal } from './identity';

interface ProviderMetadata {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  jwks_uri: string;
  userinfo_endpoint?: string;
}

/** What a login keeps between sending the browser to the provider and its return. */
export interface OidcSecrets {
  nonce: string;
  codeVerifier: string;
}

const endpoint = (m: Record<string, unknown>, key: string, required: boolean): string | undefined => {
  const v = m[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || !/^https?:\/\//.test(v)) throw new BadParameterError(`OIDC discovery: the provider's ${key} is missing or not a URL`);
  return v;
};

/** The provider's metadata (`<issuer_url>/.well-known/openid-configuration`); refused when it names another issuer. */
export async function discover(c: OidcConnector): Promise<ProviderMetadata> {
  const issuer = c.spec.issuer_url;
  const url = issuer.replace(/\/+$/, '') + '/.well-known/openid-configuration';
  const m = await fetchJson(url, `OIDC discovery for connector "${c.metadata.name}"`);
  if (m.issuer !== issuer) {
    throw new AccessDeniedError(`OIDC discovery: the provider at ${url} says its issuer is ${JSON.stringify(m.issuer)}, not the connector's issuer_url ${issuer}`);
  }
  return {
    issuer,
    authorization_endpoint: endpoint(m, 'authorization_endpoint', true)!,
    token_endpoint: endpoint(m, 'token_endpoint', true)!,
    jwks_uri: endpoint(m, 'jwks_uri', true)!,
    ...(endpoint(m, 'userinfo_endpoint', false) ? { userinfo_endpoint: endpoint(m, 'userinfo_endpoint', false) } : {}),
  };
}

/** Where the browser goes: the provider's authorization endpoint with state, nonce and the PKCE challenge (S256). */
export async function oidcAuthorizeUrl(c: OidcConnector, state: string, secrets: OidcSecrets): Promise<string> {
  const m = await discover(c);
  const url = new URL(m.authorization_endpoint);
  const scopes = ['openid', ...c.spec.scope.filter((s) => s !== 'openid')];
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('client_id', c.spec.client_id);
  url.searchParams.set('redirect_uri', c.spec.redirect_url);
  url.searchParams.set('scope', scopes.join(' '));
  url.searchParams.set('state', state);
  url.searchParams.set('nonce', secrets.nonce);
  url.searchParams.set('code_challenge', createHash('sha256').update(secrets.codeVerifier).digest('base64url'));
  url.searchParams.set('code_challenge_method', 'S256');
  return url.toString();
}

/** The provider's answer to the code: the verified claims, mapped to a user of this cluster. */
export async function oidcIdentity(c: OidcConnector, code: string, secrets: OidcSecrets, nowMs = Date.now()): Promise<SsoIdentity> {
  const m = await discover(c);
  const basic = Buffer.from(`${encodeURIComponent(c.spec.client_id)}:${encodeURIComponent(c.spec.client_secret)}`).toString('base64');
  const tokens = await fetchJson<{ id_token?: unknown; access_token?: unknown }>(m.token_endpoint, 'OIDC code exchange', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${basic}` },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: c.spec.redirect_url, code_verifier: secrets.codeVerifier }).toString(),
  });
  if (typeof tokens.id_token !== 'string') throw new AccessDeniedError('OIDC code exchange: the provider returned no ID token');
  const jwks = await fetchJson<{ keys?: unknown }>(m.jwks_uri, 'OIDC provider keys (JWKS)');
  const claims = verifyIdToken(tokens.id_token, jwks, { issuer: m.issuer, clientId: c.spec.client_id, nonce: secrets.nonce, now: Math.floor(nowMs / 1000) });
  if (m.userinfo_endpoint && typeof tokens.access_token === 'string') {
    const info = await fetchJson(m.userinfo_endpoint, 'OIDC userinfo', { headers: { authorization: `Bearer ${tokens.access_token}` } });
    if (info.sub !== claims.sub) throw new AccessDeniedError('OIDC userinfo: its subject is not the ID token\'s');
    for (const [k, v] of Object.entries(info)) if (!(k in claims)) claims[k] = v;
  }
  return oidcIdentityOf(c, claims);
}

/** The user a set of verified claims is: named by `email` (unless the provider says it is not verified), with the roles of every `claims_to_roles` entry they match. */
export function oidcIdentityOf(c: OidcConnector, claims: Record<string, unknown>): SsoIdentity {
  const username = claims.email;
  if (typeof username !== 'string' || !username) throw new AccessDeniedError('the OIDC provider sent no email claim to name the user by (add the "email" scope to the connector)');
  // A provider that says the address is not verified does not vouch for who owns it.
  if (claims.email_verified === false) throw new SsoRefusal(username, `the OIDC provider says the email address ${username} is not verified`);
  const values = (claim: string): string[] => {
    const v = claims[claim];
    return typeof v === 'string' ? [v] : Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  };
  const roles = [...new Set(c.spec.claims_to_roles.filter((m) => values(m.claim).includes(m.value)).flatMap((m) => m.roles))];
  if (!roles.length) {
    const wanted = c.spec.claims_to_roles.map((m) => `${m.claim}=${m.value}`).join(', ');
    throw new SsoRefusal(username, `user ${username} matches no claims_to_roles entry of OIDC connector "${c.metadata.name}" (${wanted}): ask an administrator for access`);
  }
  return { username, roles, traits: claimTraits(claims), audit: { sub: claims.sub } };
}
