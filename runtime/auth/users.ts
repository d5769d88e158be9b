/**
 * Local users: the user record, its password hash, its second-factor
 * devices (mfa.ts), the failed login attempts that lead to a lockout, and the single-use sign-up
 * tokens that `tctl users add` and `tctl users reset` hand out (1 hour by
 * default). A sign-up token is stored only under its SHA-256: its value is
 * known only to the caller that created it.
 */
import { randomUUID } from 'node:crypto';
import { Backend } from '../backend';
import { Keys, rangeEnd } from '../contract/keys';
import { AlreadyExistsError, BadParameterError, CompareFailedError, isReason, NotFoundError } from '../utils/errors';
import { digestId, hashPassword, randomToken, tokenDigest } from '../utils/secrets';
import { User, userSchema } from './resources';
import { MfaDevices } from './mfa';
import { generateTotpSecret } from './totp';

export const SIGNUP_TOKEN_TTL_MS = 3600_000;
export const MAX_SIGNUP_TOKEN_TTL_MS = 48 * 3600_000;

/** A pending sign-up token as stored (under the SHA-256 of its value, which is not stored). */
export interface SignupToken {
  user: string;
  expires: string;
  created: string;
  /** The TOTP secret offered to the user at sign-up, made on first read so a reload shows the same one. */
  otp_secret?: string;
}

/** A sign-up token just made: the only time its value is known. */
export interface NewSignupToken extends SignupToken {
  token: string;
}

/** A pending sign-up token as listed: by its ID (the start of its digest), without its TOTP secret. */
export interface PendingSignupToken {
  id: string;
  user: string;
  expires: string;
  created: string;
}

/** Throws BadParameterError unless a sign-up token may live this long. */
export function checkSignupTtl(ttlMs: number): void {
  if (!(ttlMs > 0) || ttlMs > MAX_SIGNUP_TOKEN_TTL_MS) throw new BadParameterError('sign-up token TTL must be between 1s and 48h');
}

/** Throws BadParameterError unless the password is acceptable. */
export function checkPassword(password: string): void {
  if (password.length < 6) throw new BadParameterError('password must be at least 6 characters long');
  if (password.length > 128) throw new BadParameterError('password must be at most 128 characters long');
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

export class Users {
  readonly mfa: MfaDevices;

  constructor(private readonly backend: Backend) {
    this.mfa = new MfaDevices(backend);
  }

  async get(name: string): Promise<User> {
    try {
      const item = await this.backend.get(Keys.user(name));
      return userSchema.parse(JSON.parse(item.value.toString()));
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError(`user "${name}" not found`);
      throw err;
    }
  }

  async list(): Promise<User[]> {
    const items = await this.backend.getRange(Keys.users(), rangeEnd(Keys.users()));
    return items.filter((i) => i.key.endsWith('/params')).map((i) => userSchema.parse(JSON.parse(i.value.toString())));
  }

  /** Creates the user record (refused when the name is taken); with `expires`, it disappears then. */
  async create(user: User, expires?: Date): Promise<void> {
    try {
      await this.backend.create({ key: Keys.user(user.metadata.name), value: json(user), ...(expires ? { expires } : {}) });
    } catch (err) {
      if (isReason(err, 'already_exists')) throw new AlreadyExistsError(`user "${user.metadata.name}" already exists`);
      throw err;
    }
    // Failed logins are recorded for unknown names too; those made before the user existed do not count.
    await this.clearLoginAttempts(user.metadata.name);
  }

  /** Writes the user record; with `expires`, it disappears then (a single sign-on user lives as long as their certificate). */
  async upsert(user: User, expires?: Date): Promise<void> {
    await this.backend.put({ key: Keys.user(user.metadata.name), value: json(user), ...(expires ? { expires } : {}) });
  }

  /** Read-modify-write of a user record that never overwrites a concurrent change. */
  async update(name: string, change: (user: User) => User): Promise<User> {
    for (let attempt = 0; attempt < 10; attempt++) {
      let item;
      try {
        item = await this.backend.get(Keys.user(name));
      } catch (err) {
        if (isReason(err, 'not_found')) throw new NotFoundError(`user "${name}" not found`);
        throw err;
      }
      const next = change(userSchema.parse(JSON.parse(item.value.toString())));
      try {
        await this.backend.compareAndSwap({ key: item.key, value: item.value }, { key: item.key, value: json(next), ...(item.expires ? { expires: item.expires } : {}) });
        return next;
      } catch (err) {
        if (!isReason(err, 'compare_failed')) throw err;
      }
    }
    throw new CompareFailedError(`user "${name}" kept changing while it was being updated; try again`);
  }

  /** Deletes the user with its password, sessions and pending sign-up tokens. */
  async delete(name: string): Promise<void> {
    try {
      await this.backend.delete(Keys.user(name));
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError(`user "${name}" not found`);
      throw err;
    }
    await this.backend.deleteRange(Keys.userPrefix(name), rangeEnd(Keys.userPrefix(name)));
    await this.deleteSignupTokensOf(name);
  }

  /**
   * Takes away everything the user proves who they are with: pending sign-up
   * tokens, password, second factor and browser sessions. The user record
   * (roles, logins) stays. Certificates already issued stay valid until they expire.
   */
  async resetCredentials(name: string): Promise<void> {
    await this.get(name);
    await this.deleteSignupTokensOf(name);
    await this.backend.delete(Keys.userPassword(name)).catch((err) => {
      if (!isReason(err, 'not_found')) throw err;
    });
    await this.mfa.removeAll(name);
    await this.backend.deleteRange(Keys.webSessions(name), rangeEnd(Keys.webSessions(name)));
  }

  async setPassword(name: string, password: string): Promise<void> {
    checkPassword(password);
    await this.get(name);
    await this.backend.put({ key: Keys.userPassword(name), value: Buffer.from(await hashPassword(password)) });
  }

  async passwordHash(name: string): Promise<string | undefined> {
    try {
      return (await this.backend.get(Keys.userPassword(name))).value.toString();
    } catch (err) {
      if (isReason(err, 'not_found')) return undefined;
      throw err;
    }
  }

  /** Records a failed login (for any user name, existing or not) that counts for `windowMs`. */
  async addLoginAttempt(name: string, windowMs: number, now = Date.now()): Promise<void> {
    await this.backend.put({
      key: Keys.userLoginAttempt(name, randomUUID()),
      value: json({ time: new Date(now).toISOString(), success: false }),
      expires: new Date(now + windowMs),
    });
  }

  async countLoginAttempts(name: string): Promise<number> {
    return (await this.backend.getRange(Keys.userLoginAttempts(name), rangeEnd(Keys.userLoginAttempts(name)))).length;
  }

  async clearLoginAttempts(name: string): Promise<void> {
    await this.backend.deleteRange(Keys.userLoginAttempts(name), rangeEnd(Keys.userLoginAttempts(name)));
  }

  async createSignupToken(user: string, ttlMs = SIGNUP_TOKEN_TTL_MS): Promise<NewSignupToken> {
    checkSignupTtl(ttlMs);
    const token = randomToken();
    const now = Date.now();
    const rec: SignupToken = { user, expires: new Date(now + ttlMs).toISOString(), created: new Date(now).toISOString() };
    await this.backend.create({ key: Keys.signupToken(tokenDigest(token)), value: json(rec), expires: new Date(now + ttlMs) });
    return { token, ...rec };
  }

  async getSignupToken(token: string): Promise<SignupToken> {
    try {
      const item = await this.backend.get(Keys.signupToken(tokenDigest(token)));
      return JSON.parse(item.value.toString()) as SignupToken;
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError('sign-up token not found or expired');
      throw err;
    }
  }

  /** The token with its TOTP secret, generating and storing the secret on the first call. */
  async signupTokenWithSecret(token: string): Promise<SignupToken & { otp_secret: string }> {
    const key = Keys.signupToken(tokenDigest(token));
    for (let attempt = 0; attempt < 10; attempt++) {
      let item;
      try {
        item = await this.backend.get(key);
      } catch (err) {
        if (isReason(err, 'not_found')) throw new NotFoundError('sign-up token not found or expired');
        throw err;
      }
      const rec = JSON.parse(item.value.toString()) as SignupToken;
      if (rec.otp_secret) return rec as SignupToken & { otp_secret: string };
      const next = { ...rec, otp_secret: generateTotpSecret() };
      try {
        await this.backend.compareAndSwap({ key, value: item.value }, { key, value: json(next), ...(item.expires ? { expires: item.expires } : {}) });
        return next;
      } catch (err) {
        if (!isReason(err, 'compare_failed')) throw err;
      }
    }
    throw new CompareFailedError('sign-up token kept changing while its TOTP secret was being stored; try again');
  }

  async deleteSignupToken(token: string): Promise<void> {
    await this.backend.delete(Keys.signupToken(tokenDigest(token)));
  }

  /** The pending tokens, by ID, without their TOTP secrets. */
  async listSignupTokens(): Promise<PendingSignupToken[]> {
    const items = await this.backend.getRange(Keys.signupTokens(), rangeEnd(Keys.signupTokens()));
    return items.map((i) => {
      const rec = JSON.parse(i.value.toString()) as SignupToken;
      return { id: digestId(i.key.slice(Keys.signupTokens().length)), user: rec.user, expires: rec.expires, created: rec.created };
    });
  }

  /** Deletes the user's pending sign-up tokens. */
  private async deleteSignupTokensOf(name: string): Promise<void> {
    const items = await this.backend.getRange(Keys.signupTokens(), rangeEnd(Keys.signupTokens()));
    for (const i of items) {
      if ((JSON.parse(i.value.toString()) as SignupToken).user !== name) continue;
      await this.backend.delete(i.key).catch((err) => {
        if (!isReason(err, 'not_found')) throw err;
      });
    }
  }
}
