/**
 * Browser sessions for the proxy's web UI: after a password and second
 * factor (the same checks, lockout and audit as `tsh login`), the user gets a
 * random bearer token, shown once. Only its SHA-256 is stored, under the user
 * (`/web/users/<user>/sessions/<sha256>`, so deleting the user ends them),
 * with an index from the digest to the user; both expire with the session:
 * 12 hours, or less when the user's roles say so (`max_session_ttl`).
 * Logging out is audited (`user.logout`). The proxy's browser terminal gets a
 * user certificate for a session's user (`sshCert`), valid no longer than the
 * session, for a key the proxy made for that one terminal.
 */
import { Backend } from '../backend';
import { Keys } from '../contract/keys';
import { parseAuthorizedKey, parsePublicKeyBlob, USER_CERT_TTL } from '../sshcert';
import { AccessDeniedError, BadParameterError, isReason, NotFoundError } from '../utils/errors';
import { randomToken, tokenDigest } from '../utils/secrets';
import { Credentials, LocalLogins } from './login';
import { accessFor } from './access/decision';
import { AuthServer, UserNode } from './server';
import { listActiveSessions } from './active-sessions';
import type { ActiveSession } from '../node/shared';

export const WEB_SESSION_TTL_MS = 12 * 3600_000;
/** 32 random bytes, hex. */
export const WEB_SESSION_TOKEN_BYTES = 32;
const TOKEN_RE = /^[0-9a-f]{64}$/;

/** What is stored for a session (never the token itself). */
export interface WebSessionRecord {
  user: string;
  created: string;
  expires: string;
}

/** A new session: the token is in no other place than this answer. */
export interface NewWebSession {
  token: string;
  user: string;
  expires: string;
  /** Seconds. */
  expires_in: number;
}

/** The same answer for an unknown, malformed, expired or ended session. */
const noSession = () => new AccessDeniedError('invalid or expired web session; log in again');

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

export class WebSessions {
  constructor(
    private readonly auth: AuthServer,
    private readonly logins: LocalLogins,
  ) {}

  private get backend(): Backend {
    return this.auth.backend;
  }

  /** Logs a user in with their credentials and starts a session; `remoteAddr` is the client's address. */
  async create(creds: Credentials, remoteAddr: string): Promise<NewWebSession> {
    return this.logins.loginWith(creds, remoteAddr, () => this.start(creds.username));
  }

  /** A session for a user who has proved who they are (a password login, or single sign-on: runtime/auth/sso). */
  async start(username: string): Promise<NewWebSession> {
    const user = await this.auth.users.get(username);
    const ttlMs = Math.min(WEB_SESSION_TTL_MS, accessFor(user, await this.auth.roles.forUser(user)).maxSessionTtlMs);
    const token = randomToken(WEB_SESSION_TOKEN_BYTES);
    const digest = tokenDigest(token);
    const now = Date.now();
    const expires = new Date(now + ttlMs);
    const rec: WebSessionRecord = { user: user.metadata.name, created: new Date(now).toISOString(), expires: expires.toISOString() };
    await this.backend.create({ key: Keys.webSession(rec.user, digest), value: json(rec), expires });
    await this.backend.create({ key: Keys.webSessionOwner(digest), value: json({ user: rec.user }), expires });
    return { token, user: rec.user, expires: rec.expires, expires_in: Math.floor(ttlMs / 1000) };
  }

  /** The live session of a bearer token; AccessDeniedError for anything else. */
  async get(token: string): Promise<WebSessionRecord> {
    if (!TOKEN_RE.test(token)) throw noSession();
    const digest = tokenDigest(token);
    try {
      const { user } = JSON.parse((await this.backend.get(Keys.webSessionOwner(digest))).value.toString()) as { user: string };
      const rec = JSON.parse((await this.backend.get(Keys.webSession(user, digest))).value.toString()) as WebSessionRecord;
      if (new Date(rec.expires).getTime() <= Date.now()) throw noSession();
      return rec;
    } catch (err) {
      if (isReason(err, 'not_found')) throw noSession();
      throw err;
    }
  }

  /** The nodes the session's user may see, each with the logins they may use on it. */
  /** The running sessions on the nodes the session's user may see, each with whether they may join it (its login is theirs there). */
  async activeSessions(token: string): Promise<(ActiveSession & { joinable: boolean })[]> {
    const nodes = new Map((await this.nodes(token)).map((n) => [n.server.metadata.name, n]));
    return (await listActiveSessions(this.auth, 'default'))
      .filter((s) => nodes.has(s.server_id))
      .map((s) => ({ ...s, joinable: nodes.get(s.server_id)!.logins.includes(s.login) }));
  }

  async nodes(token: string): Promise<UserNode[]> {
    const { user } = await this.get(token);
    try {
      return await this.auth.nodesForUser(user);
    } catch (err) {
      if (err instanceof NotFoundError) throw noSession(); // the user was deleted
      throw err;
    }
  }

  /**
   * A user certificate for the session's user and `sshPublicKey` (authorized_keys
   * line), issued as at `tsh login` (the logins and permissions of the user's
   * current roles, at most their `max_session_ttl`) and expiring with the session
   * (or after 1 minute, the shortest certificate, when the session ends sooner).
   */
  async sshCert(token: string, sshPublicKey: string): Promise<{ cert: string }> {
    const rec = await this.get(token);
    try {
      parsePublicKeyBlob(parseAuthorizedKey(sshPublicKey).blob);
    } catch (err) {
      throw new BadParameterError(`pub_key is not an SSH public key in authorized_keys form: ${(err as Error).message}`);
    }
    // Until the session ends, but at least as long as the shortest user certificate (the terminal closes with the session anyway).
    const ttlMs = Math.max(USER_CERT_TTL.min, new Date(rec.expires).getTime() - Date.now());
    try {
      const certs = await this.auth.generateUserCerts({ username: rec.user, sshPublicKey, ttlMs, overrideRoleTtl: false });
      return { cert: certs.sshCert };
    } catch (err) {
      if (err instanceof NotFoundError) throw noSession(); // the user was deleted
      throw err;
    }
  }

  /** Ends a session (logout) and audits it; ending one that is gone already is refused like any unknown token. */
  async delete(token: string, remoteAddr: string): Promise<void> {
    const { user } = await this.get(token);
    const digest = tokenDigest(token);
    await this.backend.delete(Keys.webSession(user, digest)).catch((err) => {
      if (!isReason(err, 'not_found')) throw err;
    });
    await this.backend.delete(Keys.webSessionOwner(digest)).catch((err) => {
      if (!isReason(err, 'not_found')) throw err;
    });
    await this.auth.emit({ event: 'user.logout', user, method: 'web', ...(remoteAddr ? { 'addr.remote': remoteAddr } : {}) });
  }
}
