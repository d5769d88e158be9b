/**
 * Local users signing up and logging in: the server side of the sign-up page
 * (password and TOTP registration with a `tctl users add` token), of
 * `tsh login` (password and TOTP exchanged for short-lived certificates) and
 * of the web UI's login (`loginWith`, used by websessions.ts).
 * Every login attempt is audited with the client's address; repeated
 * failures lock the user for a while; failures are rate limited per user
 * name and per source address. Callers learn only "it failed", never which
 * part was wrong nor whether the user exists or is locked: every failure
 * runs the same scrypt and records the same attempt, for any user name.
 */
import { createPublicKey } from 'node:crypto';
import { Clock, systemClock } from '../backend/clock';
import { formatAuthorizedKey, parseAuthorizedKey, parsePublicKeyBlob, USER_CERT_TTL } from '../sshcert';
import { AccessDeniedError, BadParameterError, isReason, NotFoundError } from '../utils/errors';
import { failedLogins } from '../service/metrics';
import { addressKey, RateLimiter } from '../utils/ratelimit';
import { hashPassword, randomToken, verifyPassword } from '../utils/secrets';
import { User } from './resources';
import { AuthServer } from './server';
import { deviceInfo, MfaDeviceInfo } from './mfa';
import { otpauthUrl, verifyTotp } from './totp';
import { checkPassword, SignupToken } from './users';

/** Failed attempts within `attemptWindowMs` that lock a user, and for how long. */
export const LOCKOUT = { maxAttempts: 5, attemptWindowMs: 30 * 60_000, lockMs: 20 * 60_000 } as const;

/** Login attempts per user name: 10 at once, one more every 6 s. */
export const USER_LIMIT = { burst: 10, perSecond: 1 / 6 } as const;

/**
 * Failed login attempts per source address (IPv6: per /64): 20 at once, one
 * more every 15 s (240 an hour). Successful logins give their token back,
 * so many users behind one address (NAT, a load balancer that does not
 * forward the client address) are held up only by failures.
 */
export const SOURCE_LIMIT = { burst: 20, perSecond: 1 / 15 } as const;

/** What a caller is told about any failed login, whatever the cause. */
export const INVALID_LOGIN = 'invalid username, password or second factor';

const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,254}$/;

/** What a user proves who they are with: a password and, with `otp`, a TOTP code. */
export interface Credentials {
  username: string;
  password: string;
  otpToken?: string;
}

export interface LoginRequest extends Credentials {
  /** authorized_keys line. */
  sshPublicKey: string;
  /** PEM SPKI, when a TLS certificate is wanted too. */
  tlsPublicKey?: string;
  /** @default USER_CERT_TTL.default (12 h), capped by the user's roles */
  ttlMs?: number;
  routeToCluster?: string;
}

/** A CA the client should trust (formats.md §4.3 TrustedCerts); byte fields base64. */
export interface TrustedCerts {
  domain_name: string;
  checking_keys: string[];
  tls_certs: string[];
}

/** formats.md §4.3 SSHLoginResponse; byte fields base64. */
export interface SSHLoginResponse {
  username: string;
  cert: string;
  tls_cert?: string;
  host_signers: TrustedCerts[];
}

export interface SignupTokenInfo {
  user: string;
  expires: string;
  second_factor: string;
  /** Present when the cluster's second factor is `otp`. */
  otp_url?: string;
  otp_secret?: string;
}

/** A failed login: the caller sees the generic message, the audit log sees `detail`. */
class LoginFailure extends AccessDeniedError {
  constructor(
    message: string,
    readonly detail: string,
  ) {
    super(message);
  }
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

function lockedUntil(user: User, now: number): Date | undefined {
  const s = user.spec.status;
  if (!s?.is_locked || !s.lock_expires) return undefined;
  const until = new Date(s.lock_expires);
  return until.getTime() > now ? until : undefined;
}

export interface LocalLoginsOptions {
  /** Login attempts per user name. @default USER_LIMIT */
  userLimiter?: RateLimiter;
  /** Failed login attempts per source address. @default SOURCE_LIMIT */
  sourceLimiter?: RateLimiter;
  /** Time for lockouts, rate limits, TOTP and sign-up token expiry. @default the system clock */
  clock?: Clock;
}

export class LocalLogins {
  private readonly userLimiter: RateLimiter;
  private readonly sourceLimiter: RateLimiter;
  private readonly clock: Clock;
  private dummyHash?: Promise<string>;

  constructor(
    private readonly auth: AuthServer,
    opts: LocalLoginsOptions = {},
  ) {
    this.userLimiter = opts.userLimiter ?? new RateLimiter(USER_LIMIT);
    this.sourceLimiter = opts.sourceLimiter ?? new RateLimiter(SOURCE_LIMIT);
    this.clock = opts.clock ?? systemClock;
  }

  private now(): number {
    return this.clock.now().getTime();
  }

  private get secondFactor(): 'off' | 'otp' | 'u2f' {
    return this.auth.opts.clusterConfig.second_factor;
  }

  private checkSecondFactorSupported(): void {
    if (this.secondFactor === 'u2f') {
      throw new BadParameterError('auth_service.authentication.second_factor is u2f, which this auth server does not support for local users; use otp or off');
    }
  }

  private async liveSignupToken(token: string): Promise<SignupToken> {
    const rec = await this.auth.users.getSignupToken(token);
    if (new Date(rec.expires).getTime() <= this.now()) throw new NotFoundError('sign-up token not found or expired');
    return rec;
  }

  /** What the sign-up page shows for a token: the user and, with `otp`, the secret to register. */
  async signupToken(token: string): Promise<SignupTokenInfo> {
    this.checkSecondFactorSupported();
    const live = await this.liveSignupToken(token);
    if (this.secondFactor !== 'otp') return { user: live.user, expires: live.expires, second_factor: this.secondFactor };
    const rec = await this.auth.users.signupTokenWithSecret(token);
    return {
      user: rec.user,
      expires: rec.expires,
      second_factor: this.secondFactor,
      otp_url: otpauthUrl(this.auth.clusterName, rec.user, rec.otp_secret),
      otp_secret: rec.otp_secret,
    };
  }

  /**
   * Sets the user's password (and TOTP secret with `otp`) and uses up the token.
   * A wrong code leaves the token usable; a used or expired one is not found.
   */
  async completeSignup(token: string, password: string, otpToken?: string): Promise<{ username: string }> {
    this.checkSecondFactorSupported();
    const rec = await this.liveSignupToken(token);
    checkPassword(password);
    await this.auth.users.get(rec.user);
    let totpStepUsed: number | undefined;
    if (this.secondFactor === 'otp') {
      const step = rec.otp_secret && otpToken !== undefined ? verifyTotp(rec.otp_secret, otpToken, { timeMs: this.now() }) : undefined;
      if (step === undefined) {
        throw new AccessDeniedError('invalid second factor code: enter the current code from the authenticator app set up with this sign-up token');
      }
      totpStepUsed = step;
    }
    try {
      await this.auth.users.deleteSignupToken(token);
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError('sign-up token not found or expired');
      throw err;
    }
    await this.auth.users.setPassword(rec.user, password);
    if (totpStepUsed !== undefined) await this.auth.users.mfa.replaceAll(rec.user, 'otp', rec.otp_secret!, totpStepUsed, new Date(this.now()));
    await this.auth.emit({ event: 'user.password_change', user: rec.user, name: rec.user, method: 'signup', second_factor: this.secondFactor });
    return { username: rec.user };
  }

  /**
   * Checks the credentials, issues certificates and audits the attempt either
   * way. `remoteAddr` is the client's address (as the proxy saw it), for the
   * per-source limit and the audit log.
   */
  async login(req: LoginRequest, remoteAddr: string): Promise<SSHLoginResponse> {
    return this.audited(req.username, remoteAddr, async () => {
      const ttlMs = this.checkRequest(req);
      await this.authenticate(req, remoteAddr);
      const certs = await this.auth.generateUserCerts({
        username: req.username,
        sshPublicKey: req.sshPublicKey,
        ...(req.tlsPublicKey ? { tlsPublicKey: req.tlsPublicKey } : {}),
        ...(ttlMs ? { ttlMs } : {}),
        overrideRoleTtl: false,
        ...(req.routeToCluster ? { routeToCluster: req.routeToCluster } : {}),
      });
      const res: SSHLoginResponse = {
        username: req.username,
        cert: b64(certs.sshCert),
        ...(certs.tlsCert ? { tls_cert: b64(certs.tlsCert) } : {}),
        host_signers: await hostSigners(this.auth),
      };
      return res;
    });
  }

  /**
   * Checks a user's credentials exactly as `login` does (rate limit, lockout,
   * TOTP replay), then runs `then` (which makes what the login is for, e.g. a
   * web session); the attempt is audited either way.
   */
  async loginWith<T>(creds: Credentials, remoteAddr: string, then: () => Promise<T>): Promise<T> {
    return this.audited(creds.username, remoteAddr, async () => {
      this.checkCredentials(creds);
      await this.authenticate(creds, remoteAddr);
      return then();
    });
  }

  /**
   * Changes the password of `username` (a web session's user): the current password and second
   * factor are checked exactly as at login, then the new password is stored. Audited as
   * `user.password_change` either way. Certificates and web sessions already issued stay valid,
   * as in Teleport.
   */
  async changePassword(username: string, req: { oldPassword: string; newPassword: string; otpToken?: string }, remoteAddr: string): Promise<void> {
    await this.accountChange('user.password_change', username, remoteAddr, { name: username, method: 'change' }, async () => {
      checkPassword(req.newPassword);
      if (req.newPassword === req.oldPassword) throw new BadParameterError('the new password is the same as the current one');
      this.checkSecondFactorSupported();
      await this.authenticate({ username, password: req.oldPassword, ...(req.otpToken ? { otpToken: req.otpToken } : {}) }, remoteAddr);
      await this.auth.users.setPassword(username, req.newPassword);
    });
  }

  /** The second-factor devices of `username`, without their secrets. */
  async mfaDevices(username: string): Promise<MfaDeviceInfo[]> {
    return (await this.auth.users.mfa.list(username)).map(deviceInfo);
  }

  /**
   * First step of adding a device: after the password and a code from a device the user has
   * (checked as at login), a new TOTP secret to set up in an authenticator app, for 5 minutes.
   * A refused attempt is audited as a failed `mfa.add`.
   */
  async offerMfaDevice(username: string, creds: { password: string; otpToken?: string }, remoteAddr: string): Promise<{ otp_secret: string; otp_url: string; expires: string }> {
    return this.accountChange('mfa.add', username, remoteAddr, { mfa_device_type: 'TOTP' }, async () => {
      this.requireDevices();
      await this.authenticate({ username, ...creds }, remoteAddr);
      const offer = await this.auth.users.mfa.offerTotp(username, new Date(this.now()));
      return { otp_secret: offer.key, otp_url: otpauthUrl(this.auth.clusterName, username, offer.key), expires: offer.expires.toISOString() };
    }, false);
  }

  /** Second step: the offered secret becomes device `name` when `otpToken` comes from it. Audited as `mfa.add`. */
  async addMfaDevice(username: string, req: { name: string; otpToken: string }, remoteAddr: string): Promise<MfaDeviceInfo> {
    const fields: Record<string, unknown> = { mfa_device_type: 'TOTP', mfa_device_name: req.name };
    return this.accountChange('mfa.add', username, remoteAddr, fields, async () => {
      this.requireDevices();
      const device = await this.auth.users.mfa.confirmTotp(username, req.name, req.otpToken, new Date(this.now()));
      fields.mfa_device_uuid = device.id;
      return deviceInfo(device);
    });
  }

  /**
   * Removes device `name` after the password and a code (from any device, this one included),
   * checked as at login. The last device cannot go while the cluster requires a second factor:
   * the user could not log in again. Audited as `mfa.delete`.
   */
  async deleteMfaDevice(username: string, req: { name: string; password: string; otpToken?: string }, remoteAddr: string): Promise<void> {
    const fields: Record<string, unknown> = { mfa_device_type: 'TOTP', mfa_device_name: req.name };
    await this.accountChange('mfa.delete', username, remoteAddr, fields, async () => {
      this.requireDevices();
      await this.authenticate({ username, password: req.password, ...(req.otpToken ? { otpToken: req.otpToken } : {}) }, remoteAddr);
      const devices = await this.auth.users.mfa.list(username);
      if (!devices.some((d) => d.metadata.name === req.name)) throw new NotFoundError(`no second-factor device named "${req.name}"`);
      if (devices.length === 1) throw new BadParameterError('this is your only second-factor device and the cluster requires one: add another device before removing it');
      fields.mfa_device_uuid = (await this.auth.users.mfa.remove(username, req.name)).id;
    });
  }

  /** Devices are for a cluster whose logins ask for a code. */
  private requireDevices(): void {
    if (this.secondFactor !== 'otp') {
      throw new BadParameterError(`this cluster does not use second-factor devices (auth_service.authentication.second_factor is ${this.secondFactor})`);
    }
  }

  /**
   * A change to a logged-in user's account, audited as `event` with `fields` (as they are when
   * `change` ends) either way; a success only when `auditSuccess`. A wrong current password or
   * code gets the login's answer, nothing more.
   */
  private async accountChange<T>(
    event: 'user.password_change' | 'mfa.add' | 'mfa.delete',
    username: string,
    remoteAddr: string,
    fields: Record<string, unknown>,
    change: () => Promise<T>,
    auditSuccess = true,
  ): Promise<T> {
    const addr = remoteAddr ? { 'addr.remote': remoteAddr } : {};
    let result: T;
    try {
      result = await change();
    } catch (err) {
      const detail = err instanceof LoginFailure ? err.detail : (err as Error).message;
      await this.auth.emit({ event, user: username, ...fields, success: false, error: detail, ...addr });
      if (err instanceof LoginFailure) throw new AccessDeniedError('invalid current password or second factor');
      throw err;
    }
    if (auditSuccess) await this.auth.emit({ event, user: username, ...fields, success: true, ...addr });
    return result;
  }

  /** Runs a login attempt and writes its `user.login` audit event, whatever the outcome. */
  private async audited<T>(username: string, remoteAddr: string, attempt: () => Promise<T>): Promise<T> {
    const addr = remoteAddr ? { 'addr.remote': remoteAddr } : {};
    try {
      const res = await attempt();
      await this.auth.emit({ event: 'user.login', user: username, method: 'local', success: true, ...addr });
      return res;
    } catch (err) {
      const detail = err instanceof LoginFailure ? err.detail : (err as Error).message;
      failedLogins.inc();
      await this.auth.emit({ event: 'user.login', user: username.slice(0, 255), method: 'local', success: false, error: detail, ...addr });
      throw err;
    }
  }

  private checkCredentials(creds: Credentials): void {
    if (!USER_NAME.test(creds.username)) throw new BadParameterError('invalid user name: letters, digits, ".", "_", "@" or "-", starting with a letter or digit');
    this.checkSecondFactorSupported();
  }

  /** Validates what does not depend on the user; returns the TTL asked for, if any. */
  private checkRequest(req: LoginRequest): number | undefined {
    this.checkCredentials(req);
    if (req.ttlMs !== undefined && req.ttlMs !== 0 && (req.ttlMs < USER_CERT_TTL.min || req.ttlMs > USER_CERT_TTL.max)) {
      throw new BadParameterError('ttl must be between 1m and 30h');
    }
    try {
      parsePublicKeyBlob(parseAuthorizedKey(req.sshPublicKey).blob);
    } catch (err) {
      throw new BadParameterError(`pub_key is not an SSH public key in authorized_keys form: ${(err as Error).message}`);
    }
    if (req.tlsPublicKey) {
      try {
        createPublicKey(req.tlsPublicKey);
      } catch {
        throw new BadParameterError('tls_pub_key is not a PEM public key');
      }
    }
    return req.ttlMs || undefined;
  }

  /** A hash of a random password, so an unknown user costs the same scrypt run as a known one. */
  private placeholderHash(): Promise<string> {
    this.dummyHash ??= hashPassword(randomToken());
    return this.dummyHash;
  }

  /**
   * The one credential check behind every login: rate limits, password,
   * lockout, second factor. Unknown, locked and signed-up-halfway users take
   * the same path as a wrong password: one scrypt run, one recorded attempt,
   * the same answer.
   */
  private async authenticate(req: Credentials, remoteAddr: string): Promise<void> {
    const { username: name } = req;
    const source = addressKey(remoteAddr);
    this.sourceLimiter.take(source, this.now());
    this.userLimiter.take(name, this.now());
    let user: User | undefined;
    try {
      user = await this.auth.users.get(name);
    } catch (err) {
      if (!isReason(err, 'not_found')) throw err;
    }
    const hash = user ? await this.auth.users.passwordHash(name) : undefined;
    const passwordOk = await verifyPassword(req.password, hash ?? (await this.placeholderHash()));
    if (!user) return this.failed(name, undefined, 'unknown user');
    const sso = user.spec.created_by?.connector;
    if (sso) return this.failed(name, user, `the user logs in with single sign-on (${sso.type} connector "${sso.id}"), not with a password`);
    if (lockedUntil(user, this.now())) return this.failed(name, user, 'user is locked');
    if (!hash) return this.failed(name, user, 'the user has not completed sign-up');
    if (!passwordOk) return this.failed(name, user, 'invalid password');
    if (this.secondFactor === 'otp') await this.checkTotp(user, req.otpToken);
    await this.auth.users.clearLoginAttempts(name);
    if (user.spec.status?.is_locked) {
      await this.auth.users.update(name, (u) => ({ ...u, spec: { ...u.spec, status: { is_locked: false } } }));
    }
    this.sourceLimiter.giveBack(source);
  }

  private async checkTotp(user: User, code: string | undefined): Promise<void> {
    const name = user.metadata.name;
    if (!code) return this.failed(name, user, 'no second factor code given');
    const check = await this.auth.users.mfa.checkTotp(name, code, new Date(this.now()));
    if (check.ok) return;
    const why = { 'no device': 'the user has no second factor registered', replayed: 'second factor code already used', invalid: 'invalid second factor code' };
    return this.failed(name, user, why[check.why]);
  }

  /**
   * Records a failed attempt against the user name, whether or not such a
   * user exists (so both cost the same), and after too many locks the user
   * if there is one and it is not locked already. The answer is always
   * INVALID_LOGIN; the audit log gets `detail`.
   */
  private async failed(name: string, user: User | undefined, detail: string): Promise<never> {
    const now = this.now();
    await this.auth.users.addLoginAttempt(name, LOCKOUT.attemptWindowMs, now);
    if ((await this.auth.users.countLoginAttempts(name)) < LOCKOUT.maxAttempts) throw new LoginFailure(INVALID_LOGIN, detail);
    await this.auth.users.clearLoginAttempts(name);
    if (!user || lockedUntil(user, now)) throw new LoginFailure(INVALID_LOGIN, detail);
    const until = new Date(now + LOCKOUT.lockMs);
    await this.auth.users.update(name, (u) => ({
      ...u,
      spec: {
        ...u.spec,
        status: { is_locked: true, locked_time: new Date(now).toISOString(), lock_expires: until.toISOString(), locked_message: 'user has exceeded maximum failed login attempts' },
      },
    }));
    throw new LoginFailure(INVALID_LOGIN, `${detail}; user locked until ${until.toISOString()} after ${LOCKOUT.maxAttempts} failed attempts`);
  }
}

/** The host CAs the client should trust, of this cluster and any trusted one. */
export async function hostSigners(auth: AuthServer): Promise<TrustedCerts[]> {
  const own = (await auth.authorities.list('host')).map((ca) => ({
    domain_name: ca.clusterName,
    checking_keys: ca.checkingKeys().map((k) => b64(formatAuthorizedKey(k))),
    tls_certs: ca.resource.spec.tls_key_pairs.map((p) => p.cert),
  }));
  // Leaf clusters' host CAs, so that tsh can check their nodes and auth servers (reached through this proxy).
  const leaves = (await auth.trust.list('remote')).map((r) => ({
    domain_name: r.metadata.name,
    checking_keys: r.spec.host_ca.spec.checking_keys,
    tls_certs: r.spec.host_ca.spec.tls_key_pairs.map((p) => p.cert),
  }));
  return [...own, ...leaves];
}
