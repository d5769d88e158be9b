/**
 * Join tokens. Static tokens come from `auth_service.tokens` and never
 * expire; dynamic ones (`tctl nodes add`, `tctl tokens add`) live in the
 * backend with a TTL (30 minutes by default) and may be used until then.
 * A dynamic token is stored only as its SHA-256: the digest is the key, and
 * the stored resource names the token by its ID (the first 16 hex digits of
 * the digest), so neither the store nor `tctl tokens ls` ever holds its value.
 * Looking a token up by its digest leaks nothing about stored values through
 * timing; static tokens are compared in constant time.
 */
import { Backend } from '../backend';
import { Keys, rangeEnd } from '../contract/keys';
import { AccessDeniedError, BadParameterError, isReason, NotFoundError } from '../utils/errors';
import { constantTimeEqual, digestId, randomToken, TOKEN_ID_RE, tokenDigest, tokenId } from '../utils/secrets';
import { parseSystemRole, ProvisionToken, SystemRole, tokenSchema } from './resources';

export const DEFAULT_TOKEN_TTL_MS = 30 * 60_000;
export const MAX_TOKEN_TTL_MS = 48 * 3600_000;

export interface StaticToken {
  roles: string[];
  token: string;
}

/** A token as it can be listed: by its ID, never its value. */
export interface TokenInfo {
  id: string;
  roles: SystemRole[];
  /** Undefined for static tokens: they never expire. */
  expires?: Date;
  static: boolean;
}

/** A token just made: the only time its value is known. */
export interface NewToken extends TokenInfo {
  token: string;
}

export class Tokens {
  private staticTokens: { token: string; info: TokenInfo }[] = [];

  constructor(private readonly backend: Backend) {}

  /** Loads the static tokens from the configuration and records them (as digests) in the cluster state. */
  async setStatic(tokens: StaticToken[]): Promise<void> {
    this.staticTokens = tokens.map((t) => ({ token: t.token, info: { id: tokenId(t.token), roles: t.roles.map(parseSystemRole), static: true } }));
    const resource = {
      kind: 'static_tokens',
      version: 'v2',
      metadata: { name: 'static-tokens' },
      spec: { static_tokens: tokens.map((t) => ({ roles: t.roles.map(parseSystemRole), token_digest: tokenDigest(t.token) })) },
    };
    await this.backend.put({ key: Keys.staticTokens(), value: Buffer.from(JSON.stringify(resource)) });
  }

  async create(opts: { token?: string; roles: string[]; ttlMs?: number }): Promise<NewToken> {
    const ttl = opts.ttlMs ?? DEFAULT_TOKEN_TTL_MS;
    if (ttl <= 0 || ttl > MAX_TOKEN_TTL_MS) throw new BadParameterError('token TTL must be between 1s and 48h');
    const roles = opts.roles.map(parseSystemRole);
    if (!roles.length) throw new BadParameterError('a token needs at least one role');
    const token = opts.token ?? randomToken();
    if (token.length < 8 || token.length > 256 || /\s/.test(token)) throw new BadParameterError('a token must be 8 to 256 characters without spaces');
    const expires = new Date(Date.now() + ttl);
    const digest = tokenDigest(token);
    const resource: ProvisionToken = tokenSchema.parse({
      kind: 'token',
      version: 'v2',
      metadata: { name: digestId(digest), expires: expires.toISOString() },
      spec: { roles },
    });
    await this.backend.create({ key: Keys.token(digest), value: Buffer.from(JSON.stringify(resource)), expires });
    return { token, id: digestId(digest), roles, expires, static: false };
  }

  async list(): Promise<TokenInfo[]> {
    const items = await this.backend.getRange(Keys.tokens(), rangeEnd(Keys.tokens()));
    const dynamic = items.map((i) => {
      const t = JSON.parse(i.value.toString()) as ProvisionToken;
      return { id: digestId(i.key.slice(Keys.tokens().length)), roles: t.spec.roles as SystemRole[], expires: i.expires, static: false };
    });
    return [...this.staticTokens.map((t) => t.info), ...dynamic];
  }

  /** Revokes a dynamic token named by its value or by its ID. */
  async delete(tokenOrId: string): Promise<void> {
    if (this.staticTokens.some((t) => constantTimeEqual(t.token, tokenOrId) || t.info.id === tokenOrId)) {
      throw new BadParameterError('static tokens are set in the auth server configuration and cannot be deleted');
    }
    try {
      await this.backend.delete(Keys.token(tokenDigest(tokenOrId)));
      return;
    } catch (err) {
      if (!isReason(err, 'not_found')) throw err;
    }
    const byId = TOKEN_ID_RE.test(tokenOrId) ? await this.backend.getRange(Keys.token(tokenOrId), rangeEnd(Keys.token(tokenOrId))) : [];
    if (byId.length > 1) throw new BadParameterError(`several tokens have the ID ${tokenOrId}: name the token by its value`);
    if (!byId.length) throw new NotFoundError('token not found');
    try {
      await this.backend.delete(byId[0].key);
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError('token not found');
      throw err;
    }
  }

  /**
   * Checks that `token` is valid for `role`. Every failure gives the same
   * message so that a caller learns nothing about which tokens exist.
   * A dynamic token is found by its digest, which only its value gives.
   */
  async validate(token: string, role: SystemRole): Promise<TokenInfo> {
    const denied = () => new AccessDeniedError('invalid token, or the token does not allow this role, or it has expired');
    let found: TokenInfo | undefined;
    for (const t of this.staticTokens) {
      if (constantTimeEqual(t.token, token)) found = t.info;
    }
    if (!found) {
      try {
        const digest = tokenDigest(token);
        const item = await this.backend.get(Keys.token(digest));
        const t = JSON.parse(item.value.toString()) as ProvisionToken;
        found = { id: digestId(digest), roles: t.spec.roles as SystemRole[], expires: item.expires, static: false };
      } catch (err) {
        if (isReason(err, 'not_found')) throw denied();
        throw err;
      }
    }
    if (found.expires && found.expires.getTime() <= Date.now()) throw denied();
    if (!found.roles.includes(role)) throw denied();
    return found;
  }
}
