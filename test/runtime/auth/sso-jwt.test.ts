/**
 * ID token verification (runtime/auth/sso/jwt.ts) with tokens signed here by keys whose public halves
 * make the provider's JWKS: each check (signature, algorithm, iss, aud, azp, exp, iat, nonce, sub)
 * refuses the token that breaks it, and a token that breaks nothing passes.
 */
import { createHmac, generateKeyPairSync, KeyObject, sign } from 'node:crypto';
import { verifyIdToken } from '../../../runtime/auth/sso/jwt';

const NOW = 1_800_000_000;
const ISSUER = 'https://idp.example.com';
const want = { issuer: ISSUER, clientId: 'teleport', nonce: 'n-0123456789', now: NOW };
const good = { iss: ISSUER, aud: 'teleport', sub: 'alice', nonce: want.nonce, iat: NOW - 10, exp: NOW + 300, email: 'alice@example.com' };

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ed = generateKeyPairSync('ed25519');
const other = generateKeyPairSync('rsa', { modulusLength: 2048 });

const jwk = (k: KeyObject, kid: string) => ({ ...k.export({ format: 'jwk' }), kid });
const jwks = { keys: [jwk(rsa.publicKey, 'rsa1'), jwk(ec.publicKey, 'ec1'), jwk(ed.publicKey, 'ed1')] };

const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

function jwt(claims: Record<string, unknown>, header: Record<string, unknown> = { alg: 'RS256', kid: 'rsa1' }, key: KeyObject = rsa.privateKey): string {
  const data = `${part(header)}.${part(claims)}`;
  const alg = header.alg as string;
  const sig =
    alg === 'ES256'
      ? sign('sha256', Buffer.from(data), { key, dsaEncoding: 'ieee-p1363' })
      : alg === 'EdDSA'
        ? sign(null, Buffer.from(data), key)
        : sign('sha256', Buffer.from(data), key);
  return `${data}.${sig.toString('base64url')}`;
}

const refusal = (token: string) => {
  try {
    verifyIdToken(token, jwks, want);
    return 'accepted';
  } catch (err) {
    return (err as Error).message;
  }
};

describe('ID token verification', () => {
  test.each([
    ['RS256', jwt(good)],
    ['ES256', jwt(good, { alg: 'ES256', kid: 'ec1' }, ec.privateKey)],
    ['EdDSA', jwt(good, { alg: 'EdDSA', kid: 'ed1' }, ed.privateKey)],
    ['RS256 without kid', jwt(good, { alg: 'RS256' })],
  ])('GIVEN a valid token signed %s WHEN verified THEN its claims come back', (_alg, token) => {
    expect(verifyIdToken(token, jwks, want)).toMatchObject({ sub: 'alice', email: 'alice@example.com' });
  });

  test('GIVEN a token signed by a key not in the JWKS WHEN verified THEN refused', () => {
    expect(refusal(jwt(good, { alg: 'RS256', kid: 'rsa1' }, other.privateKey))).toContain("signature does not verify with the provider's keys");
  });

  test('GIVEN a token whose payload was changed after signing WHEN verified THEN refused', () => {
    const [h, , s] = jwt(good).split('.');
    expect(refusal(`${h}.${part({ ...good, sub: 'root' })}.${s}`)).toContain('signature does not verify');
  });

  test('GIVEN alg none, or HS256 keyed with the public key WHEN verified THEN refused', () => {
    expect(refusal(`${part({ alg: 'none' })}.${part(good)}.`)).toContain('signature algorithm "none" is not accepted');
    const data = `${part({ alg: 'HS256', kid: 'rsa1' })}.${part(good)}`;
    const mac = createHmac('sha256', rsa.publicKey.export({ format: 'pem', type: 'spki' })).update(data).digest('base64url');
    expect(refusal(`${data}.${mac}`)).toContain('signature algorithm "HS256" is not accepted');
  });

  test('GIVEN an RS256 header naming an EC key WHEN verified THEN refused (no key of that type)', () => {
    expect(refusal(jwt(good, { alg: 'RS256', kid: 'ec1' }))).toContain('has no RSA key with kid "ec1"');
  });

  test.each([
    ['another issuer', { iss: 'https://evil.example.com' }, 'issued by "https://evil.example.com", not by https://idp.example.com'],
    ['another audience', { aud: 'someone-else' }, 'not for this client (aud)'],
    ['several audiences without azp', { aud: ['teleport', 'other'] }, 'several audiences and its azp is not this client'],
    ['several audiences with another azp', { aud: ['teleport', 'other'], azp: 'other' }, 'several audiences and its azp is not this client'],
    ['an expiry past the clock skew', { exp: NOW - 61 }, 'has expired'],
    ['no expiry', { exp: undefined }, 'has expired'],
    ['an issue time in the future', { iat: NOW + 120 }, 'issued in the future'],
    ['another nonce', { nonce: 'n-replayed' }, 'nonce is not the one of this login'],
    ['no nonce', { nonce: undefined }, 'nonce is not the one of this login'],
    ['no subject', { sub: undefined }, 'no subject'],
  ])('GIVEN a token with %s WHEN verified THEN refused', (_what, change, message) => {
    expect(refusal(jwt({ ...good, ...change }))).toContain(message);
  });

  test('GIVEN several audiences with azp this client WHEN verified THEN accepted', () => {
    expect(refusal(jwt({ ...good, aud: ['teleport', 'other'], azp: 'teleport' }))).toBe('accepted');
  });

  test('GIVEN something that is not a compact JWS WHEN verified THEN refused', () => {
    expect(refusal('a.b')).toContain('not a compact JWS');
    expect(refusal(`${part({ alg: 'RS256' })}.!!.x`)).toContain('not a compact JWS');
  });
});
