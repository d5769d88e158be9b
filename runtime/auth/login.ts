/**
 * Local users signing up and logging in: the server side of the sign-up page
 * (password and TOTP or security key registration with a `tctl users add`
 * token), of `tsh login` (password and second factor exchanged for
 * short-lived certificates) and of the web UI's login (`loginWith`, used by
 * websessions.ts). The second factor is `second_factor`'s: `otp` a TOTP
 * code, `webauthn` a security key's assertion (webauthn.ts), `on` either,
 * `optional` either, or none for a user who has no device, `off` none.
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
import { hashPassword, randomToken, tokenDigest, verifyPassword } from '../utils/secrets';
import { User } from './resources';
import { AuthServer } from './server';
import type { SecondFactor } from '../config/schema';
import { checkDeviceName, deviceInfo, MAX_MFA_DEVICES, MfaDevice, MfaDeviceInfo, MfaDeviceType, MfaSecret } from './mfa';
import { AssertionResponse, RegistrationResponse, RelyingParty, WebAuthn } from './webauthn';
import { WebAuthnCliRequests } from './webauthn-cli';
import type { PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
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

/** What a user proves who they are with: a password and a TOTP code or a security key's assertion. */
export interface Credentials {
  username: string;
  password: string;
  otpToken?: string;
  webauthn?: AssertionResponse;
}

/** Whether a cluster's `second_factor` takes TOTP codes, and security keys. */
export const takesOtp = (mode: SecondFactor) => mode === 'otp' || mode === 'on' || mode === 'optional';
export const takesWebAuthn = (mode: SecondFactor) => mode === 'webauthn' || mode === 'on' || mode === 'optional';
/** Whether every login needs a second factor (`optional`: only a user who has a device). */
const requiresSecondFactor = (mode: SecondFactor) => mode === 'otp' || mode === 'webauthn' || mode === 'on';
/** Whether a device of this kind counts under `mode`. */
const counts = (mode: SecondFactor, d: MfaDevice) => (d.webauthn ? takesWebAuthn(mode) : takesOtp(mode));

/** How a new device proves itself: a code from the offered secret, or a security key's registration. */
export interface NewDevice {
  name: string;
  otpToken?: string;
  webauthnRegistration?: RegistrationResponse;
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
  /** Present when the cluster's second factor takes TOTP codes (`otp`, `on`, `optional`). */
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

/** The second factor a request carries, as Credentials has it. */
const secondFactorOf = (r: { otpToken?: string; webauthn?: AssertionResponse }) => ({
  ...(r.otpToken ? { otpToken: r.otpToken } : {}),
  ...(r.webauthn ? { webauthn: r.webauthn } : {}),
});

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
  private readonly webauthn: WebAuthn;
  /** tsh login's requests for a security key's answer (webauthn-cli.ts). */
  readonly cliRequests: WebAuthnCliRequests;
  private dummyHash?: Promise<string>;

  constructor(
    private readonly auth: AuthServer,
    opts: LocalLoginsOptions = {},
  ) {
    this.userLimiter = opts.userLimiter ?? new RateLimiter(USER_LIMIT);
    this.sourceLimiter = opts.sourceLimiter ?? new RateLimiter(SOURCE_LIMIT);
    this.clock = opts.clock ?? systemClock;
    this.webauthn = new WebAuthn(auth.opts.backend, auth.clusterName, this.clock);
    this.cliRequests = new WebAuthnCliRequests(auth.opts.backend, this.clock);
  }

  private now(): number {
    return this.clock.now().getTime();
  }

  private get secondFactor(): SecondFactor {
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

  /** What the sign-up page shows for a token: the user and, when TOTP codes count, the secret to register. */
  async signupToken(token: string): Promise<SignupTokenInfo> {
    this.checkSecondFactorSupported();
    const live = await this.liveSignupToken(token);
    if (!takesOtp(this.secondFactor)) return { user: live.user, expires: live.expires, second_factor: this.secondFactor };
    const rec = await this.auth.users.signupTokenWithSecret(token);
    return {
      user: rec.user,
      expires: rec.expires,
      second_factor: this.secondFactor,
      otp_url: otpauthUrl(this.auth.clusterName, rec.user, rec.otp_secret),
      otp_secret: rec.otp_secret,
    };
  }

  /** The options for registering a security key at sign-up with `token`, for the proxy `rp`. */
  async signupWebAuthnOptions(token: string, rp: RelyingParty): Promise<PublicKeyCredentialCreationOptionsJSON> {
    this.checkSecondFactorSupported();
    const live = await this.liveSignupToken(token);
    this.requireKeys();
    return this.webauthn.registrationOptions({ user: live.user, purpose: 'signup', token: tokenDigest(token) }, rp, []);
  }

  /**
   * Sets the user's password and second factor (a TOTP code from the token's secret, or a security
   * key's registration made with `signupWebAuthnOptions`) and uses up the token. A wrong code leaves
   * the token usable; a used or expired one is not found.
   */
  async completeSignup(token: string, password: string, second: { otpToken?: string; webauthnRegistration?: RegistrationResponse } = {}): Promise<{ username: string }> {
    this.checkSecondFactorSupported();
    const rec = await this.liveSignupToken(token);
    checkPassword(password);
    await this.auth.users.get(rec.user);
    const mode = this.secondFactor;
    let device: { name: string; secret: MfaSecret } | undefined;
    if (second.webauthnRegistration) {
      this.requireKeys();
      const key = await this.webauthn.verifyRegistration({ user: rec.user, purpose: 'signup', token: tokenDigest(token) }, second.webauthnRegistration, []);
      device = { name: 'webauthn', secret: { webauthn: key } };
    } else if (takesOtp(mode) && (second.otpToken !== undefined || mode !== 'optional')) {
      const step = rec.otp_secret && second.otpToken !== undefined ? verifyTotp(rec.otp_secret, second.otpToken, { timeMs: this.now() }) : undefined;
      if (step === undefined) {
        throw new AccessDeniedError('invalid second factor code: enter the current code from the authenticator app set up with this sign-up token');
      }
      device = { name: 'otp', secret: { totp: { key: rec.otp_secret!, last_step: step } } };
    } else if (mode === 'webauthn') {
      throw new AccessDeniedError('register a security key: this cluster requires one');
    }
    try {
      await this.auth.users.deleteSignupToken(token);
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError('sign-up token not found or expired');
      throw err;
    }
    await this.auth.users.setPassword(rec.user, password);
    if (device) await this.auth.users.mfa.replaceAll(rec.user, device.name, device.secret, new Date(this.now()));
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
  async changePassword(username: string, req: { oldPassword: string; newPassword: string; otpToken?: string; webauthn?: AssertionResponse }, remoteAddr: string): Promise<void> {
    await this.accountChange('user.password_change', username, remoteAddr, { name: username, method: 'change' }, async () => {
      checkPassword(req.newPassword);
      if (req.newPassword === req.oldPassword) throw new BadParameterError('the new password is the same as the current one');
      this.checkSecondFactorSupported();
      await this.authenticate({ username, password: req.oldPassword, ...secondFactorOf(req) }, remoteAddr);
      await this.auth.users.setPassword(username, req.newPassword);
    });
  }

  /** The second-factor devices of `username`, without their secrets. */
  async mfaDevices(username: string): Promise<MfaDeviceInfo[]> {
    return (await this.auth.users.mfa.list(username)).map(deviceInfo);
  }

  /**
   * Step one of a login with a security key: the password, checked as at login (a failure is
   * counted and audited as one), then a challenge for the user's keys, for the proxy `rp`. The
   * login itself sends the password again with the key's answer (`login`, `loginWith`).
   */
  async webAuthnLoginChallenge(creds: { username: string; password: string }, rp: RelyingParty, remoteAddr: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
    return this.passwordStep(creds, remoteAddr, async () => this.webauthn.assertionOptions(creds.username, rp, await this.auth.users.mfa.list(creds.username)));
  }

  /**
   * Step one of `tsh login` with a security key: the password, checked as at login (a failure is
   * counted and audited as one), then a request the proxy's page answers with the user's key
   * (webauthn-cli.ts).
   */
  async webAuthnCliRequest(creds: { username: string; password: string }, remoteAddr: string): Promise<{ id: string; secret: string; expires: Date }> {
    return this.passwordStep(creds, remoteAddr, async () => {
      if (!(await this.auth.users.mfa.list(creds.username)).some((d) => d.webauthn)) throw new BadParameterError('no security key is registered for this user');
      return this.cliRequests.open(creds.username, remoteAddr);
    });
  }

  /** Step one of a login with a security key: the password, checked as at login (a failure is counted and audited as one), then `then`. */
  private passwordStep<T>(creds: { username: string; password: string }, remoteAddr: string, then: () => Promise<T>): Promise<T> {
    return this.audited(
      creds.username,
      remoteAddr,
      async () => {
        this.checkCredentials(creds);
        this.requireKeys();
        await this.authenticate(creds, remoteAddr, false);
        return then();
      },
      false,
    );
  }

  /** The challenge of tsh login's request `id`, for the proxy page `rp`. */
  async webAuthnCliChallenge(id: string, rp: RelyingParty): Promise<{ user: string; from: string; publicKey: PublicKeyCredentialRequestOptionsJSON }> {
    const { user, from } = await this.cliRequests.pending(id);
    return { user, from, publicKey: await this.webauthn.assertionOptions(user, rp, await this.auth.users.mfa.list(user)) };
  }

  /** A challenge for the keys of `username` (a web session's user), for an account change that asks for the second factor. */
  async webAuthnChallenge(username: string, rp: RelyingParty): Promise<PublicKeyCredentialRequestOptionsJSON> {
    this.requireKeys();
    return this.webauthn.assertionOptions(username, rp, await this.auth.users.mfa.list(username));
  }

  /**
   * First step of adding a TOTP device: after the password and the second factor (checked as at
   * login), a new secret to set up in an authenticator app, for 5 minutes.
   * A refused attempt is audited as a failed `mfa.add`.
   */
  async offerMfaDevice(
    username: string,
    creds: { password: string; otpToken?: string; webauthn?: AssertionResponse },
    remoteAddr: string,
  ): Promise<{ otp_secret: string; otp_url: string; expires: string }> {
    return this.accountChange('mfa.add', username, remoteAddr, { mfa_device_type: 'TOTP' }, async () => {
      this.requireDevices('TOTP');
      await this.authenticate({ username, ...creds }, remoteAddr);
      const offer = await this.auth.users.mfa.offerTotp(username, new Date(this.now()));
      return { otp_secret: offer.key, otp_url: otpauthUrl(this.auth.clusterName, username, offer.key), expires: offer.expires.toISOString() };
    }, false);
  }

  /**
   * First step of adding a security key: after the password and the second factor (checked as at
   * login), the options of its registration ceremony for the proxy `rp`.
   * A refused attempt is audited as a failed `mfa.add`.
   */
  async offerWebAuthnDevice(
    username: string,
    creds: { password: string; otpToken?: string; webauthn?: AssertionResponse },
    rp: RelyingParty,
    remoteAddr: string,
  ): Promise<PublicKeyCredentialCreationOptionsJSON> {
    return this.accountChange('mfa.add', username, remoteAddr, { mfa_device_type: 'WebAuthn' }, async () => {
      this.requireDevices('WebAuthn');
      await this.authenticate({ username, ...creds }, remoteAddr);
      const devices = await this.auth.users.mfa.list(username);
      if (devices.length >= MAX_MFA_DEVICES) throw new BadParameterError(`a user may have at most ${MAX_MFA_DEVICES} second-factor devices; remove one first`);
      return this.webauthn.registrationOptions({ user: username, purpose: 'register' }, rp, devices);
    }, false);
  }

  /**
   * Second step: the offered secret becomes device `name` when `otpToken` comes from it, or the
   * security key whose registration answers the offered challenge does. Audited as `mfa.add`.
   */
  async addMfaDevice(username: string, req: NewDevice, remoteAddr: string): Promise<MfaDeviceInfo> {
    const type: MfaDeviceType = req.webauthnRegistration ? 'WebAuthn' : 'TOTP';
    const fields: Record<string, unknown> = { mfa_device_type: type, mfa_device_name: req.name };
    return this.accountChange('mfa.add', username, remoteAddr, fields, async () => {
      this.requireDevices(type);
      const now = new Date(this.now());
      let device: MfaDevice;
      if (req.webauthnRegistration) {
        checkDeviceName(req.name);
        const key = await this.webauthn.verifyRegistration({ user: username, purpose: 'register' }, req.webauthnRegistration, await this.auth.users.mfa.list(username));
        device = await this.auth.users.mfa.addWebAuthn(username, req.name, key, now);
      } else {
        if (!req.otpToken) throw new BadParameterError('the code from the new device is missing');
        device = await this.auth.users.mfa.confirmTotp(username, req.name, req.otpToken, now);
      }
      fields.mfa_device_uuid = device.id;
      return deviceInfo(device);
    });
  }

  /**
   * Removes device `name` after the password and the second factor (from any device, this one
   * included), checked as at login. The last device that counts cannot go while the cluster
   * requires a second factor: the user could not log in again. Audited as `mfa.delete`.
   */
  async deleteMfaDevice(username: string, req: { name: string; password: string; otpToken?: string; webauthn?: AssertionResponse }, remoteAddr: string): Promise<void> {
    const fields: Record<string, unknown> = { mfa_device_name: req.name };
    await this.accountChange('mfa.delete', username, remoteAddr, fields, async () => {
      this.requireDevices();
      await this.authenticate({ username, password: req.password, ...secondFactorOf(req) }, remoteAddr);
      const devices = await this.auth.users.mfa.list(username);
      const device = devices.find((d) => d.metadata.name === req.name);
      if (!device) throw new NotFoundError(`no second-factor device named "${req.name}"`);
      fields.mfa_device_type = deviceInfo(device).type;
      const mode = this.secondFactor;
      if (requiresSecondFactor(mode) && counts(mode, device) && devices.filter((d) => counts(mode, d)).length === 1) {
        throw new BadParameterError('this is your only second-factor device and the cluster requires one: add another device before removing it');
      }
      fields.mfa_device_uuid = (await this.auth.users.mfa.remove(username, req.name)).id;
    });
  }

  /** Security key ceremonies are for a cluster whose second factor takes them. */
  private requireKeys(): void {
    if (!takesWebAuthn(this.secondFactor)) {
      throw new BadParameterError(`this cluster does not use security keys (auth_service.authentication.second_factor is ${this.secondFactor})`);
    }
  }

  /** Devices are for a cluster whose logins ask for a second factor; `type`: one of a kind it takes. */
  private requireDevices(type?: MfaDeviceType): void {
    const mode = this.secondFactor;
    if (mode === 'off') {
      throw new BadParameterError(`this cluster does not use second-factor devices (auth_service.authentication.second_factor is ${mode})`);
    }
    if ((type === 'TOTP' && !takesOtp(mode)) || (type === 'WebAuthn' && !takesWebAuthn(mode))) {
      throw new BadParameterError(`this cluster does not use ${type} devices (auth_service.authentication.second_factor is ${mode})`);
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

  /** Runs a login attempt and writes its `user.login` audit event, whatever the outcome (a success only when `auditSuccess`). */
  private async audited<T>(username: string, remoteAddr: string, attempt: () => Promise<T>, auditSuccess = true): Promise<T> {
    const addr = remoteAddr ? { 'addr.remote': remoteAddr } : {};
    try {
      const res = await attempt();
      if (auditSuccess) await this.auth.emit({ event: 'user.login', user: username, method: 'local', success: true, ...addr });
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
   * the same answer. Without `secondFactor` (step one of a login with a
   * security key) it stops after the password, the failures so far kept.
   */
  private async authenticate(req: Credentials, remoteAddr: string, secondFactor = true): Promise<void> {
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
    if (!secondFactor) return;
    await this.checkSecondFactor(user, req);
    await this.auth.users.clearLoginAttempts(name);
    if (user.spec.status?.is_locked) {
      await this.auth.users.update(name, (u) => ({ ...u, spec: { ...u.spec, status: { is_locked: false } } }));
    }
    this.sourceLimiter.giveBack(source);
  }

  /** The second factor `second_factor` asks for: a TOTP code or a security key's assertion, either, or none. */
  private async checkSecondFactor(user: User, req: Credentials): Promise<void> {
    const mode = this.secondFactor;
    const name = user.metadata.name;
    if (mode === 'off') return;
    if (req.webauthn) {
      if (!takesWebAuthn(mode)) return this.failed(name, user, `a security key was given but second_factor is ${mode}`);
      return this.checkWebAuthn(user, req.webauthn);
    }
    if (req.otpToken) {
      if (!takesOtp(mode)) return this.failed(name, user, `a one-time code was given but second_factor is ${mode}`);
      return this.checkTotp(user, req.otpToken);
    }
    if (mode === 'optional' && !(await this.auth.users.mfa.list(name)).length) return;
    return this.failed(name, user, mode === 'otp' ? 'no second factor code given' : 'no second factor given');
  }

  private async checkWebAuthn(user: User, assertion: AssertionResponse): Promise<void> {
    const name = user.metadata.name;
    const check = await this.webauthn.verifyAssertion(name, assertion, await this.auth.users.mfa.list(name));
    if (!check.ok) return this.failed(name, user, check.why);
    try {
      await this.auth.users.mfa.recordWebAuthnUse(name, check.device, check.counter, new Date(this.now()));
    } catch (err) {
      if (!isReason(err, 'compare_failed') && !isReason(err, 'not_found')) throw err;
      return this.failed(name, user, 'the security key was used by another login at the same time');
    }
  }

  private async checkTotp(user: User, code: string): Promise<void> {
    const name = user.metadata.name;
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
