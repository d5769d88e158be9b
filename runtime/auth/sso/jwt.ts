/**
 * Verifying an OpenID Connect ID token (a JWS, RFC 7515/7519): its signature
 * with a key of the issuer's JWKS (RS*, PS*, ES*, EdDSA; never `none` nor an
 * HMAC), then `iss`, `aud` (and `azp` when there are several audiences),
 * `exp`, `iat` and `nonce` (OpenID Connect Core §3.1.3.7).
 */
import { constants, createPublicKey, JsonWebKey, KeyObject, verify } from 'node:crypto';
import { AccessDeniedError } from '../../utils/errors';
import { constantTimeEqual } from '../../utils/secrets';

/** Clock difference tolerated between this server and the provider. */
export const CLOCK_SKEW_S = 60;

type Alg = { hash: string | null; kty: string; pss?: number; ec?: boolean };
const ALGS: Record<string, Alg> = {
  RS256: { hash: 'sha256', kty: 'RSA' },
  RS384: { hash: 'sha384', kty: 'RSA' },
  RS512: { hash: 'sha512', kty: 'RSA' },
  PS256: { hash: 'sha256', kty: 'RSA', pss: 32 },
  PS384: { hash: 'sha384', kty: 'RSA', pss: 48 },
  PS512: { hash: 'sha512', kty: 'RSA', pss: 64 },
  ES256: { hash: 'sha256', kty: 'EC', ec: true },
  ES384: { hash: 'sha384', kty: 'EC', ec: true },
  ES512: { hash: 'sha512', kty: 'EC', ec: true },
  EdDSA: { hash: null, kty: 'OKP' },
};

export interface IdTokenExpectations {
  issuer: string;
  clientId: string;
  nonce: string;
  /** Seconds since the epoch. */
  now: number;
}

const refuse = (why: string) => new AccessDeniedError(`the ID token is not valid: ${why}`);

function b64json(part: string, what: string): Record<string, unknown> {
  try {
    const v = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw refuse(`its ${what} is not a base64url JSON object`);
}

function keyFor(jwk: JsonWebKey): KeyObject | undefined {
  try {
    return createPublicKey({ key: jwk, format: 'jwk' });
  } catch {
    return undefined;
  }
}

/** The token's claims when its signature is one of `jwks`' keys and its claims are what the login expects; AccessDeniedError otherwise. */
export function verifyIdToken(token: string, jwks: { keys?: unknown }, want: IdTokenExpectations): Record<string, unknown> {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((p) => /^[A-Za-z0-9_-]*$/.test(p))) throw refuse('it is not a compact JWS');
  const header = b64json(parts[0], 'header');
  const alg = typeof header.alg === 'string' && Object.hasOwn(ALGS, header.alg) ? ALGS[header.alg] : undefined;
  if (!alg) throw refuse(`its signature algorithm ${JSON.stringify(header.alg)} is not accepted`);
  if (header.crit !== undefined) throw refuse('it has critical header parameters');
  const candidates = (Array.isArray(jwks.keys) ? (jwks.keys as (JsonWebKey & { kid?: string; use?: string; alg?: string })[]) : []).filter(
    (k) => k && k.kty === alg.kty && (k.use === undefined || k.use === 'sig') && (k.alg === undefined || k.alg === header.alg) && (header.kid === undefined || k.kid === header.kid),
  );
  const data = Buffer.from(`${parts[0]}.${parts[1]}`);
  const sig = Buffer.from(parts[2], 'base64url');
  const signed = candidates.some((jwk) => {
    const key = keyFor(jwk);
    if (!key) return false;
    const opts = alg.pss ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: alg.pss } : alg.ec ? { key, dsaEncoding: 'ieee-p1363' as const } : key;
    try {
      return verify(alg.hash, data, opts, sig);
    } catch {
      return false;
    }
  });
  if (!signed) throw refuse(candidates.length ? 'its signature does not verify with the provider\'s keys' : `the provider's JWKS has no ${alg.kty} key${header.kid ? ` with kid ${JSON.stringify(header.kid)}` : ''}`);

  const claims = b64json(parts[1], 'payload');
  if (claims.iss !== want.issuer) throw refuse(`it was issued by ${JSON.stringify(claims.iss)}, not by ${want.issuer}`);
  const aud = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : [];
  if (!aud.includes(want.clientId)) throw refuse('it is not for this client (aud)');
  if (aud.length > 1 && claims.azp !== want.clientId) throw refuse('it has several audiences and its azp is not this client');
  if (typeof claims.exp !== 'number' || claims.exp + CLOCK_SKEW_S <= want.now) throw refuse('it has expired');
  if (typeof claims.iat !== 'number' || claims.iat - CLOCK_SKEW_S > want.now) throw refuse('it was issued in the future (iat)');
  if (typeof claims.nonce !== 'string' || !constantTimeEqual(claims.nonce, want.nonce)) throw refuse('its nonce is not the one of this login');
  if (typeof claims.sub !== 'string' || !claims.sub) throw refuse('it has no subject (sub)');
  return claims;
}
