/**
 * Time-based one-time passwords (RFC 6238 on RFC 4226 HOTP) for the `otp`
 * second factor: base32 secrets, the `otpauth://` URL authenticator apps
 * scan, and checking a code within a window of time steps.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { BadParameterError } from '../utils/errors';

export const TOTP_STEP_SECONDS = 30;
export const TOTP_DIGITS = 6;
/** Steps either side of now that are accepted, for clock skew and typing time. */
export const TOTP_WINDOW = 1;
export const TOTP_SECRET_BYTES = 20;

export type TotpAlgorithm = 'sha1' | 'sha256' | 'sha512';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 without padding, as authenticator apps expect. */
export function base32Encode(data: Buffer): string {
  let out = '';
  let bits = 0;
  let acc = 0;
  for (const byte of data) {
    acc = ((acc << 8) | byte) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(acc << (5 - bits)) & 31];
  return out;
}

/** Decodes base32, ignoring case, spaces and `=` padding. */
export function base32Decode(text: string): Buffer {
  const clean = text.replace(/[\s=]/g, '').toUpperCase();
  const out: number[] = [];
  let bits = 0;
  let acc = 0;
  for (let i = 0; i < clean.length; i++) {
    const v = ALPHABET.indexOf(clean[i]);
    if (v < 0) throw new BadParameterError(`invalid base32 character ${JSON.stringify(clean[i])} at position ${i} of a TOTP secret`);
    acc = ((acc << 5) | v) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      out.push((acc >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** A new secret: 20 random bytes (the SHA-1 block's natural key size), base32. */
export function generateTotpSecret(): string {
  return base32Encode(randomBytes(TOTP_SECRET_BYTES));
}

/** The RFC 4226 HOTP value of `counter`. */
export function hotp(key: Buffer, counter: number, digits = TOTP_DIGITS, algorithm: TotpAlgorithm = 'sha1'): string {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac(algorithm, key).update(msg).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const value = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(value % 10 ** digits).padStart(digits, '0');
}

/** The time step that `timeMs` falls in. */
export function totpStep(timeMs: number, stepSeconds = TOTP_STEP_SECONDS): number {
  return Math.floor(timeMs / 1000 / stepSeconds);
}

export interface TotpOptions {
  /** @default Date.now() */
  timeMs?: number;
  /** @default 30 */
  stepSeconds?: number;
  /** @default 6 */
  digits?: number;
  /** @default 'sha1' */
  algorithm?: TotpAlgorithm;
}

function keyOf(secret: string | Buffer): Buffer {
  return typeof secret === 'string' ? base32Decode(secret) : secret;
}

/** The code for a time; `secret` is base32 text or the raw key. */
export function totp(secret: string | Buffer, opts: TotpOptions = {}): string {
  return hotp(keyOf(secret), totpStep(opts.timeMs ?? Date.now(), opts.stepSeconds), opts.digits, opts.algorithm);
}

export interface VerifyTotpOptions {
  /** @default Date.now() */
  timeMs?: number;
  /** @default TOTP_WINDOW (1) */
  window?: number;
  /** Steps up to and including this one are refused: they were used already. */
  afterStep?: number;
}

/**
 * The time step whose code `code` is, within the window around now and after
 * `afterStep`, or undefined. Every step in the window is checked in constant time.
 */
export function verifyTotp(secret: string, code: string, opts: VerifyTotpOptions = {}): number | undefined {
  if (!/^\d{6}$/.test(code)) return undefined;
  const key = base32Decode(secret);
  const now = totpStep(opts.timeMs ?? Date.now());
  const window = opts.window ?? TOTP_WINDOW;
  const given = Buffer.from(code);
  let found: number | undefined;
  for (let step = now - window; step <= now + window; step++) {
    const match = timingSafeEqual(Buffer.from(hotp(key, step)), given);
    if (match && step > (opts.afterStep ?? -1)) found = step;
  }
  return found;
}

/** The `otpauth://totp/...` URL that authenticator apps read from a QR code. */
export function otpauthUrl(clusterName: string, user: string, secret: string): string {
  const label = `${encodeURIComponent(clusterName)}:${encodeURIComponent(user)}`;
  return `otpauth://totp/${label}?secret=${secret}&issuer=${encodeURIComponent(clusterName)}`;
}
