/**
 * Single sign-on logins, the auth server's side. `begin` makes a login
 * request: a random `state` (stored only as its SHA-256, for 10 minutes),
 * with the OIDC nonce and PKCE verifier, and says where the browser goes.
 * A web login is bound to the browser that began it: the proxy gives it a
 * random cookie whose digest the request keeps. A console login (`tsh login
 * --auth=<connector>`) carries tsh's public keys, its localhost callback and
 * a one-time key that seals the certificates on their way through the
 * browser (AES-256-GCM).
 * Logins begun are rate limited per source address (BEGIN_LIMIT).
 * `complete` takes the provider's answer: the request is deleted before
 * anything else (a state, and so a code, works once), the browser binding
 * is checked, the provider's identity is mapped by the connector to roles;
 * the user is then created or updated with those roles, to expire with the
 * certificate (or web session) issued. A local user of the same name, or a
 * user of another connector, is never taken over. Every attempt is audited
 * (`user.login`, method oidc/github, the connector's name).
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { Clock, systemClock } from '../../backend/clock';
import { Keys } from '../../contract/keys';
import { parseAuthorizedKey, parsePublicKeyBlob, USER_CERT_TTL } from '../../sshcert';
import { AccessDeniedError, BadParameterError, isReason, NotFoundError } from '../../utils/errors';
import { addressKey, RateLimiter } from '../../utils/ratelimit';
import { constantTimeEqual, randomToken, tokenDigest } from '../../utils/secrets';
import { accessFor } from '../access/decision';
import { hostSigners, type SSHLoginResponse } from '../login';
import { User, userSchema } from '../resources';
import type { AuthServer } from '../server';
import { WEB_SESSION_TTL_MS, type NewWebSession, type WebSessions } from '../websessions';
import { Connector, ConnectorKind, GithubConnector, OidcConnector } from './connectors';
import { githubAuthorizeUrl, githubIdentity } from './github';
import { SsoIdentity, SsoRefusal } from './identity';
import { oidcAuthorizeUrl, oidcIdentity } from './oidc';

/** How long a login may take between `begin` and the provider's answer. */
export const SSO_REQUEST_TTL_MS = 10 * 60_000;
/** Logins begun per source address (IPv6: per /64): 30 at once, one more every 2 s. Each costs a stored request and a call to the provider. */
export const BEGIN_LIMIT = { burst: 30, perSecond: 1 / 2 } as const;
/** Audit codes of single sign-on logins (formats.md §6.2). */
const SSO_LOGIN_CODE = { success: 'T1001I', failure: 'T1001W' };

export interface WebBegin {
  type: 'web';
  connector: string;
  /** SHA-256 (hex) of the random value the proxy put in the browser's cookie. */
  binding: string;
}

export interface ConsoleBegin {
  type: 'console';
  connector: string;
  /** tsh's callback: http on a loopback address. */
  redirectUrl: string;
  /** 32 bytes, base64url: seals the login's answer for tsh. */
  secretKey: string;
  /** authorized_keys line. */
  sshPublicKey: string;
  /** PEM SPKI. */
  tlsPublicKey?: string;
  ttlMs?: number;
}

/** A login request as stored, under the digest of its state. */
interface SsoRequest {
  kind: ConnectorKind;
  connector: string;
  nonce: string;
  code_verifier: string;
  expires: string;
  web?: { binding: string };
  console?: { redirect_url: string; secret_key: string; ssh_public_key: string; tls_public_key?: string; ttl_ms?: number };
}

/** The provider's answer, as the browser brought it to the proxy's callback. */
export interface SsoCallback {
  state: string;
  code?: string;
  error?: string;
  /** The browser's binding cookie, as it came (web logins). */
  binding?: string;
}

/** Where the proxy sends the browser next; a web login's session, whose cookie it sets. */
export interface SsoOutcome {
  redirect_url: string;
  session?: NewWebSession;
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const STATE_RE = /^[0-9a-f]{64}$/;

/** tsh's callback: `http://127.0.0.1:<port>/…` (or [::1], localhost), nothing that leaves the machine. */
function loopbackCallback(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new BadParameterError('redirect_url must be tsh\'s callback URL (http://127.0.0.1:<port>/callback)');
  }
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const loopback = host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
  if (u.protocol !== 'http:' || !loopback || !u.port || u.username || u.password || u.hash) {
    throw new BadParameterError('redirect_url must be tsh\'s callback on a loopback address (http://127.0.0.1:<port>/callback)');
  }
  return u.toString();
}

/** tsh's answer sealed with its one-time key: base64url(iv ‖ ciphertext ‖ tag), AES-256-GCM. */
export function sealForClient(secretKey: string, value: unknown): string {
  const key = Buffer.from(secretKey, 'base64url');
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const ct = Buffer.concat([cipher.update(JSON.stringify(value)), cipher.final()]);
  return Buffer.concat([iv, ct, cipher.getAuthTag()]).toString('base64url');
}

export class SsoLogins {
  constructor(
    private readonly auth: AuthServer,
    private readonly sessions: WebSessions,
    /** Time for the requests' expiry and the rate limit. @default the system clock */
    private readonly clock: Clock = systemClock,
    private readonly beginLimiter = new RateLimiter(BEGIN_LIMIT),
  ) {}

  private now(): number {
    return this.clock.now().getTime();
  }

  /** Starts a login with connector `req.connector` of `kind`: where the browser goes, and the login's state. A refusal is audited. */
  async begin(kind: ConnectorKind, req: WebBegin | ConsoleBegin, remoteAddr: string): Promise<{ redirect_url: string; state: string }> {
    try {
      this.beginLimiter.take(addressKey(remoteAddr), this.now());
      return await this.request(kind, req);
    } catch (err) {
      await this.audit({ method: kind, connector: req.connector, user: '' }, remoteAddr, err as Error);
      throw err;
    }
  }

  private async request(kind: ConnectorKind, req: WebBegin | ConsoleBegin): Promise<{ redirect_url: string; state: string }> {
    const connector = await this.auth.connectors.get(kind, req.connector);
    const state = randomToken(32);
    const rec: SsoRequest = {
      kind,
      connector: connector.metadata.name,
      nonce: randomToken(32),
      code_verifier: randomBytes(32).toString('base64url'),
      expires: new Date(this.now() + SSO_REQUEST_TTL_MS).toISOString(),
    };
    if (req.type === 'web') {
      if (!/^[0-9a-f]{64}$/.test(req.binding)) throw new BadParameterError('binding must be a SHA-256 digest (hex)');
      rec.web = { binding: req.binding };
    } else {
      if (Buffer.from(req.secretKey, 'base64url').length !== 32 || !/^[A-Za-z0-9_-]{43}$/.test(req.secretKey)) throw new BadParameterError('secret_key must be 32 bytes, base64url');
      try {
        parsePublicKeyBlob(parseAuthorizedKey(req.sshPublicKey).blob);
      } catch (err) {
        throw new BadParameterError(`public_key is not an SSH public key in authorized_keys form: ${(err as Error).message}`);
      }
      if (req.ttlMs !== undefined && (req.ttlMs < USER_CERT_TTL.min || req.ttlMs > USER_CERT_TTL.max)) throw new BadParameterError('cert_ttl must be between 1m and 30h');
      rec.console = {
        redirect_url: loopbackCallback(req.redirectUrl),
        secret_key: req.secretKey,
        ssh_public_key: req.sshPublicKey,
        ...(req.tlsPublicKey ? { tls_public_key: req.tlsPublicKey } : {}),
        ...(req.ttlMs ? { ttl_ms: req.ttlMs } : {}),
      };
    }
    const secrets = { nonce: rec.nonce, codeVerifier: rec.code_verifier };
    const redirect_url = connector.kind === 'oidc' ? await oidcAuthorizeUrl(connector, state, secrets) : githubAuthorizeUrl(connector, state);
    await this.auth.backend.create({ key: Keys.ssoRequest(kind, tokenDigest(state)), value: json(rec), expires: new Date(rec.expires) });
    return { redirect_url, state };
  }

  /**
   * Completes a login with the provider's answer. An unknown, used or expired state, or a web
   * login from another browser, is refused; so is what the provider or the connector refuses:
   * a web login then lands on the login page with the reason, a console login on tsh's callback.
   */
  async complete(kind: ConnectorKind, cb: SsoCallback, remoteAddr: string): Promise<SsoOutcome> {
    const audit = { method: kind, connector: '', user: '' };
    let rec: SsoRequest;
    try {
      rec = await this.takeRequest(kind, cb);
    } catch (err) {
      await this.audit(audit, remoteAddr, err as Error);
      throw err;
    }
    audit.connector = rec.connector;
    try {
      const connector = await this.auth.connectors.get(kind, rec.connector);
      if (cb.error !== undefined) throw new AccessDeniedError(`the identity provider refused the login: ${cb.error.slice(0, 200)}`);
      if (!cb.code) throw new BadParameterError('the identity provider sent no code');
      const identity =
        connector.kind === 'oidc'
          ? await oidcIdentity(connector as OidcConnector, cb.code, { nonce: rec.nonce, codeVerifier: rec.code_verifier })
          : await githubIdentity(connector as GithubConnector, cb.code);
      audit.user = identity.username;
      const outcome = await this.signIn(connector, identity, rec, cb.state);
      await this.audit(audit, remoteAddr, undefined, identity.audit);
      return outcome;
    } catch (err) {
      if (err instanceof SsoRefusal) audit.user = err.user;
      await this.audit(audit, remoteAddr, err as Error);
      const message = (err as Error).message;
      if (rec.console) {
        const u = new URL(rec.console.redirect_url);
        u.searchParams.set('state', cb.state);
        u.searchParams.set('error', message.slice(0, 500));
        return { redirect_url: u.toString() };
      }
      throw err;
    }
  }

  /** The request of this state, deleted (so it works once), live, and (web) of this browser. */
  private async takeRequest(kind: ConnectorKind, cb: SsoCallback): Promise<SsoRequest> {
    const unknown = () => new AccessDeniedError('unknown, used or expired single sign-on state: start the login again');
    if (!STATE_RE.test(cb.state)) throw unknown();
    const key = Keys.ssoRequest(kind, tokenDigest(cb.state));
    let rec: SsoRequest;
    try {
      rec = JSON.parse((await this.auth.backend.get(key)).value.toString()) as SsoRequest;
      await this.auth.backend.delete(key);
    } catch (err) {
      if (isReason(err, 'not_found')) throw unknown();
      throw err;
    }
    if (new Date(rec.expires).getTime() <= this.now()) throw unknown();
    if (rec.web && !(cb.binding && constantTimeEqual(tokenDigest(cb.binding), rec.web.binding))) {
      throw new AccessDeniedError('this single sign-on login was started in another browser (its cookie is missing or wrong): start the login again');
    }
    return rec;
  }

  /** Creates or refreshes the user, then issues what the login is for: a web session, or tsh's certificates (sealed). */
  private async signIn(connector: Connector, id: SsoIdentity, rec: SsoRequest, state: string): Promise<SsoOutcome> {
    const roles = [];
    for (const r of id.roles) {
      try {
        roles.push(await this.auth.roles.get(r));
      } catch (err) {
        if (err instanceof NotFoundError) throw new AccessDeniedError(`${connector.kind} connector "${connector.metadata.name}" maps ${id.username} to role "${r}", which does not exist`);
        throw err;
      }
    }
    const user = this.userOf(connector, id);
    const access = accessFor(user, roles);
    const ttlMs = rec.web ? Math.min(access.maxSessionTtlMs, WEB_SESSION_TTL_MS) : Math.min(rec.console!.ttl_ms ?? USER_CERT_TTL.default, access.maxSessionTtlMs);
    // The user lives as long as what this login issues: the certificate, or the web session (exactly its expiry).
    await this.saveUser(user, new Date(Date.now() + ttlMs));
    if (rec.web) {
      const session = await this.sessions.start(id.username);
      await this.saveUser(user, new Date(session.expires));
      return { redirect_url: '/web', session };
    }
    const c = rec.console!;
    const certs = await this.auth.generateUserCerts({
      username: id.username,
      sshPublicKey: c.ssh_public_key,
      ...(c.tls_public_key ? { tlsPublicKey: c.tls_public_key } : {}),
      ttlMs,
      overrideRoleTtl: false,
    });
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const answer: SSHLoginResponse = { username: id.username, cert: b64(certs.sshCert), ...(certs.tlsCert ? { tls_cert: b64(certs.tlsCert) } : {}), host_signers: await hostSigners(this.auth) };
    const u = new URL(c.redirect_url);
    u.searchParams.set('state', state);
    u.searchParams.set('response', sealForClient(c.secret_key, answer));
    return { redirect_url: u.toString() };
  }

  private userOf(connector: Connector, id: SsoIdentity): User {
    return userSchema.parse({
      kind: 'user',
      version: 'v2',
      metadata: { name: id.username, namespace: 'default' },
      spec: {
        roles: id.roles,
        traits: id.traits,
        status: { is_locked: false },
        created_by: { time: new Date().toISOString(), connector: { type: connector.kind, id: connector.metadata.name, identity: id.username } },
      },
    });
  }

  /** Stores the user until `expires`; a local user, or one of another connector, of that name is refused. */
  private async saveUser(user: User, expires: Date): Promise<void> {
    const name = user.metadata.name;
    if (!/^[A-Za-z0-9][A-Za-z0-9._@-]{0,254}$/.test(name)) throw new AccessDeniedError(`"${name.slice(0, 64)}" cannot be a user name here: letters, digits, ".", "_", "@" or "-"`);
    let existing: User | undefined;
    try {
      existing = await this.auth.users.get(name);
    } catch (err) {
      if (!isReason(err, 'not_found')) throw err;
    }
    const was = existing?.spec.created_by?.connector;
    const now = user.spec.created_by!.connector!;
    if (existing && (!was || was.type !== now.type || was.id !== now.id)) {
      throw new AccessDeniedError(`a user named ${name} exists already (${was ? `from ${was.type} connector "${was.id}"` : 'a local user'}): single sign-on does not take it over`);
    }
    const stored = { ...user, spec: { ...user.spec, expires: expires.toISOString() } };
    if (existing) return this.auth.users.upsert(stored, expires);
    // Created only if the name is still free: a local user made meanwhile is not overwritten.
    try {
      await this.auth.users.create(stored, expires);
    } catch (err) {
      if (isReason(err, 'already_exists')) throw new AccessDeniedError(`a user named ${name} exists already: single sign-on does not take it over`);
      throw err;
    }
    await this.auth.emit({ event: 'user.create', user: `system`, name, roles: user.spec.roles, connector: now.id, expires: expires.toISOString() });
  }

  private async audit(who: { method: string; connector: string; user: string }, remoteAddr: string, err?: Error, fields: Record<string, unknown> = {}): Promise<void> {
    await this.auth.emit({
      event: 'user.login',
      code: err ? SSO_LOGIN_CODE.failure : SSO_LOGIN_CODE.success,
      user: who.user,
      method: who.method,
      connector: who.connector,
      success: !err,
      ...(err ? { error: err.message } : fields),
      ...(remoteAddr ? { 'addr.remote': remoteAddr } : {}),
    });
  }
}
