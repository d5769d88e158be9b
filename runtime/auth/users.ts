/**
 * Local users: the user record, its password hash, and the single-use
 * sign-up tokens that `tctl users add` hands out (1 hour by default).
 */
import { Backend } from '../backend';
import { Keys, rangeEnd } from '../contract/keys';
import { AlreadyExistsError, BadParameterError, isReason, NotFoundError } from '../utils/errors';
import { hashPassword, randomToken, tokenDigest } from '../utils/secrets';
import { User, userSchema } from './resources';

export const SIGNUP_TOKEN_TTL_MS = 3600_000;
export const MAX_SIGNUP_TOKEN_TTL_MS = 48 * 3600_000;

export interface SignupToken {
  token: string;
  user: string;
  expires: string;
  created: string;
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

export class Users {
  constructor(private readonly backend: Backend) {}

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

  async create(user: User): Promise<void> {
    try {
      await this.backend.create({ key: Keys.user(user.metadata.name), value: json(user) });
    } catch (err) {
      if (isReason(err, 'already_exists')) throw new AlreadyExistsError(`user "${user.metadata.name}" already exists`);
      throw err;
    }
  }

  async upsert(user: User): Promise<void> {
    await this.backend.put({ key: Keys.user(user.metadata.name), value: json(user) });
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
    for (const t of await this.listSignupTokens()) {
      if (t.user === name) await this.backend.delete(Keys.signupToken(tokenDigest(t.token))).catch(() => undefined);
    }
  }

  async setPassword(name: string, password: string): Promise<void> {
    if (password.length < 6) throw new BadParameterError('password must be at least 6 characters long');
    if (password.length > 128) throw new BadParameterError('password must be at most 128 characters long');
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

  async createSignupToken(user: string, ttlMs = SIGNUP_TOKEN_TTL_MS): Promise<SignupToken> {
    if (ttlMs <= 0 || ttlMs > MAX_SIGNUP_TOKEN_TTL_MS) throw new BadParameterError('sign-up token TTL must be between 1s and 48h');
    const token = randomToken();
    const now = Date.now();
    const rec: SignupToken = { token, user, expires: new Date(now + ttlMs).toISOString(), created: new Date(now).toISOString() };
    await this.backend.create({ key: Keys.signupToken(tokenDigest(token)), value: json(rec), expires: new Date(now + ttlMs) });
    return rec;
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

  async deleteSignupToken(token: string): Promise<void> {
    await this.backend.delete(Keys.signupToken(tokenDigest(token)));
  }

  async listSignupTokens(): Promise<SignupToken[]> {
    const items = await this.backend.getRange(Keys.signupTokens(), rangeEnd(Keys.signupTokens()));
    return items.map((i) => JSON.parse(i.value.toString()) as SignupToken);
  }
}
