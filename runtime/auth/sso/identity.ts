/**
 * Who a single sign-on login says the user is, before they become a user of
 * this cluster (logins.ts): their name, the roles the connector's mapping gives,
 * and their traits (OIDC claims, GitHub team logins) that role templates such
 * as `{{internal.logins}}` / `{{external.groups}}` expand.
 */
import { AccessDeniedError } from '../../utils/errors';

/** A user the provider named but the connector refuses (no mapping matches): the audit log names them. */
export class SsoRefusal extends AccessDeniedError {
  constructor(
    readonly user: string,
    message: string,
  ) {
    super(message);
  }
}

export interface SsoIdentity {
  username: string;
  roles: string[];
  traits: Record<string, string[]>;
  /** What the audit log records beside the user name (the OIDC subject, the GitHub teams). */
  audit: Record<string, unknown>;
}

const TRAIT_NAME = /^[a-z_]{1,64}$/;
/** Claims about the token or the authentication itself (OpenID Connect Core §2, §3.1.3.6), not about the user. */
const PROTOCOL_CLAIMS = new Set(['iss', 'sub', 'aud', 'azp', 'exp', 'iat', 'nbf', 'jti', 'nonce', 'at_hash', 'c_hash', 'auth_time', 'acr', 'amr', 'sid']);
const MAX_TRAITS = 64;
const MAX_VALUES = 64;
const MAX_VALUE = 256;

/** The claims that can be traits: those about the user, with lower-case names and string values (or lists of them) of bounded size. */
export function claimTraits(claims: Record<string, unknown>): Record<string, string[]> {
  const traits: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(claims)) {
    if (Object.keys(traits).length >= MAX_TRAITS || !TRAIT_NAME.test(k) || PROTOCOL_CLAIMS.has(k)) continue;
    const list = (typeof v === 'string' ? [v] : Array.isArray(v) ? v : []).filter((x): x is string => typeof x === 'string' && x.length > 0 && x.length <= MAX_VALUE);
    if (list.length) traits[k] = list.slice(0, MAX_VALUES);
  }
  return traits;
}
