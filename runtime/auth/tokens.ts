/**
 * Join tokens. Static tokens come from `auth_service.tokens` and never
 * expire; dynamic ones (`tctl nodes add`, `tctl tokens add`) live in the
 * backend with a TTL (30 minutes by default) and may be used until then.
 * Dynamic tokens are stored under the SHA-256 of their value, so looking one
 * up leaks nothing about its value through timing; static tokens are
 * compared in constant time.
 */
import { Backend } from '../backend';
import { Keys, rangeEnd } from '../contract/keys';
import { AccessDeniedError, BadParameterError, isReason, NotFoundError } from '../utils/errors';
import { constantTimeEqual, randomToken, tokenDigest } from '../utils/secrets';
import { parseSystemRole, ProvisionToken, SystemRole, tokenSchema } from './resources';

export const DEFAULT_TOKEN_TTL_MS = 30 * 60_000;
export const MAX_TOKEN_TTL_MS = 48 * 3600_000;

export interface StaticToken {
  roles: string[];
  token: string;
}

export interface TokenInfo {
  token: string;
  roles: SystemRole[];
  /** Undefined for static tokens: they never expire. */
  expires?: Date;
  static: boolean;
}

export class Tokens {
  constructor(
    private readonly backend: Backend,
    private staticTokens: TokenInfo[] = [],
  ) {}

  /** Loads the static tokens from the configuration and records them in the cluster state. */
  async setStatic(tokens: StaticToken[]): Promise<void> {
    this.staticTokens = tokens.map((t) => ({ token: t.token, roles: t.roles.map(parseSystemRole), static: true }));
    const resource = { kind: 'static_tokens', version: 'v2', metadata: { name: 'static-tokens' }, spec: { static_tokens: this.staticTokens.map((t) => ({ roles: t.roles, token_digest: tokenDigest(t.token) })) } };
    await this.backend.put({ key: Keys.staticTokens(), value: Buffer.from(JSON.stringify(resource)) });
  }

  async create(opts: { token?: string; roles: string[]; ttlMs?: number }): Promise<TokenInfo> {
    const ttl = opts.ttlMs ?? DEFAULT_TOKEN_TTL_MS;
    if (ttl <= 0 || ttl > MAX_TOKEN_TTL_MS) throw new BadParameterError('token TTL must be between 1s and 48h');
    const roles = opts.roles.map(parseSystemRole);
    if (!roles.length) throw new BadParameterError('a token needs at least one role');
    const token = opts.token ?? randomToken();
    if (token.length < 8 || token.length > 256 || /\s/.test(token)) throw new BadParameterError('a token must be 8 to 256 characters without spaces');
    const expires = new Date(Date.now() + ttl);
    const resource: ProvisionToken = tokenSchema.parse({
      kind: 'token',
      version: 'v2',
      metadata: { name: token, expires: expires.toISOString() },
      spec: { roles },
    });
    await this.backend.create({ key: Keys.token(tokenDigest(token)), value: Buffer.from(JSON.stringify(resource)), expires });
    return { token, roles, expires, static: false };
  }

  async list(): Promise<TokenInfo[]> {
    const items = await this.backend.getRange(Keys.tokens(), rangeEnd(Keys.tokens()));
    const dynamic = items.map((i) => {
      const t = JSON.parse(i.value.toString()) as ProvisionToken;
      return { token: t.metadata.name, roles: t.spec.roles as SystemRole[], expires: i.expires, static: false };
    });
    return [...this.staticTokens, ...dynamic];
  }

  async delete(token: string): Promise<void> {
    if (this.staticTokens.some((t) => constantTimeEqual(t.token, token))) {
      throw new BadParameterError('static tokens are set in the auth server configuration and cannot be deleted');
    }
    try {
      await this.backend.delete(Keys.token(tokenDigest(token)));
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError('token not found');
      throw err;
    }
  }

  /**
   * Checks that `token` is valid for `role`. Every failure gives the same
   * message so that a caller learns nothing about which tokens exist.
   */
  async validate(token: string, role: SystemRole): Promise<TokenInfo> {
    const denied = () => new AccessDeniedError('invalid token, or the token does not allow this role, or it has expired');
    let found: TokenInfo | undefined;
    for (const t of this.staticTokens) {
      if (constantTimeEqual(t.token, token)) found = t;
    }
    if (!found) {
      try {
        const item = await this.backend.get(Keys.token(tokenDigest(token)));
        const t = JSON.parse(item.value.toString()) as ProvisionToken;
        if (!constantTimeEqual(t.metadata.name, token)) throw denied();
        found = { token, roles: t.spec.roles as SystemRole[], expires: item.expires, static: false };
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
