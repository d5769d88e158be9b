/**
 * Secret handling: random tokens, token digests used as storage keys,
 * constant-time comparison and password hashing with scrypt.
 */
import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

const scrypt = promisify(scryptCb) as (pw: string, salt: Buffer, keylen: number, opts: object) => Promise<Buffer>;

/** 16 random bytes as 32 hex characters (formats.md §1.6 TokenLenBytes). */
export function randomToken(bytes = 16): string {
  return randomBytes(bytes).toString('hex');
}

/** The SHA-256 hex digest of a token: tokens are stored and looked up by it, never by their value. */
export function tokenDigest(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** Hex digits of a digest that name a stored token where its value is not known (`tctl tokens ls`). */
export const TOKEN_ID_LENGTH = 16;
export const TOKEN_ID_RE = /^[0-9a-f]{16}$/;

/** A stored token's ID: the start of its digest. It is no secret: it joins nothing and does not reveal the token. */
export function digestId(digest: string): string {
  return digest.slice(0, TOKEN_ID_LENGTH);
}

export function tokenId(token: string): string {
  return digestId(tokenDigest(token));
}

export function constantTimeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}

const N = 1 << 15;
const R = 8;
const P = 1;
const KEYLEN = 32;
const MAXMEM = 64 * 1024 * 1024;

/** `$scrypt$N$r$p$salt$hash`, salt and hash base64. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(password, salt, KEYLEN, { N, r: R, p: P, maxmem: MAXMEM });
  return ['', 'scrypt', N, R, P, salt.toString('base64'), hash.toString('base64')].join('$');
}

export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const parts = encoded.split('$');
  if (parts.length !== 7 || parts[1] !== 'scrypt') return false;
  const [n, r, p] = parts.slice(2, 5).map(Number);
  const salt = Buffer.from(parts[5], 'base64');
  const expected = Buffer.from(parts[6], 'base64');
  const actual = await scrypt(password, salt, expected.length, { N: n, r, p, maxmem: MAXMEM });
  return timingSafeEqual(actual, expected);
}
