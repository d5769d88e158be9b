/**
 * TOTP: the RFC 6238 appendix B vectors, the ±1 step window, refusing used
 * steps, base32 round trips and the otpauth URL.
 */
import { createHmac } from 'node:crypto';
import {
  base32Decode,
  base32Encode,
  generateTotpSecret,
  hotp,
  otpauthUrl,
  totp,
  TotpAlgorithm,
  totpStep,
  verifyTotp,
} from '../../../runtime/auth/totp';

// RFC 6238 appendix B: the seeds are ASCII digits of the hash's natural key length.
const SEEDS: Record<TotpAlgorithm, Buffer> = {
  sha1: Buffer.from('12345678901234567890'),
  sha256: Buffer.from('12345678901234567890123456789012'),
  sha512: Buffer.from('1234567890123456789012345678901234567890123456789012345678901234'),
};
const VECTORS: [number, Record<TotpAlgorithm, string>][] = [
  [59, { sha1: '94287082', sha256: '46119246', sha512: '90693936' }],
  [1111111109, { sha1: '07081804', sha256: '68084774', sha512: '25091201' }],
  [1111111111, { sha1: '14050471', sha256: '67062674', sha512: '99943326' }],
  [1234567890, { sha1: '89005924', sha256: '91819424', sha512: '93441116' }],
  [2000000000, { sha1: '69279037', sha256: '90698825', sha512: '38618901' }],
  [20000000000, { sha1: '65353130', sha256: '77737706', sha512: '47863826' }],
];

describe('TOTP (RFC 6238)', () => {
  it.each(VECTORS)('GIVEN the RFC seed at T=%ss WHEN 8-digit codes are computed THEN they match appendix B', (seconds, expected) => {
    for (const alg of ['sha1', 'sha256', 'sha512'] as const) {
      expect([alg, totp(SEEDS[alg], { timeMs: seconds * 1000, digits: 8, algorithm: alg })]).toEqual([alg, expected[alg]]);
    }
  });

  it('GIVEN the RFC 4226 appendix D secret THEN HOTP values for counters 0..9 match', () => {
    const expected = ['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489'];
    expect(expected.map((_, i) => hotp(SEEDS.sha1, i))).toEqual(expected);
  });

  it('GIVEN a 6-digit code THEN it is the last 6 digits of the 8-digit one', () => {
    expect(totp(SEEDS.sha1, { timeMs: 59_000 })).toBe('287082');
    expect(totp(base32Encode(SEEDS.sha1), { timeMs: 1111111109_000 })).toBe('081804');
  });

  it('GIVEN a code WHEN checked THEN the steps one either side are accepted and two away are refused', () => {
    const secret = generateTotpSecret();
    const t = 1_700_000_000_000;
    const step = totpStep(t);
    const codeAt = (s: number) => hotp(base32Decode(secret), s);
    expect(verifyTotp(secret, codeAt(step), { timeMs: t })).toBe(step);
    expect(verifyTotp(secret, codeAt(step - 1), { timeMs: t })).toBe(step - 1);
    expect(verifyTotp(secret, codeAt(step + 1), { timeMs: t })).toBe(step + 1);
    const far = [step - 2, step + 2].map(codeAt).filter((c) => ![step - 1, step, step + 1].map(codeAt).includes(c));
    for (const c of far) expect(verifyTotp(secret, c, { timeMs: t })).toBeUndefined();
    expect(far.length).toBeGreaterThan(0);
  });

  it('GIVEN a step already used WHEN its code (or an earlier one) comes again THEN it is refused, a later one is not', () => {
    const secret = generateTotpSecret();
    const t = 1_700_000_000_000;
    const step = totpStep(t);
    const key = base32Decode(secret);
    expect(verifyTotp(secret, hotp(key, step), { timeMs: t, afterStep: step })).toBeUndefined();
    expect(verifyTotp(secret, hotp(key, step - 1), { timeMs: t, afterStep: step })).toBeUndefined();
    expect(verifyTotp(secret, hotp(key, step + 1), { timeMs: t, afterStep: step })).toBe(step + 1);
  });

  it('GIVEN input that is not 6 digits THEN it never matches', () => {
    const secret = generateTotpSecret();
    const code = totp(secret);
    for (const bad of ['', code.slice(1), code + '0', ` ${code}`, 'abcdef']) expect(verifyTotp(secret, bad)).toBeUndefined();
  });

  it('GIVEN byte strings of every length THEN base32 round-trips and matches RFC 4648 vectors', () => {
    const rfc: [string, string][] = [['', ''], ['f', 'MY'], ['fo', 'MZXQ'], ['foo', 'MZXW6'], ['foob', 'MZXW6YQ'], ['fooba', 'MZXW6YTB'], ['foobar', 'MZXW6YTBOI']];
    for (const [plain, enc] of rfc) {
      expect(base32Encode(Buffer.from(plain))).toBe(enc);
      expect(base32Decode(enc).toString()).toBe(plain);
    }
    expect(base32Decode('mzxw 6ytb oi======').toString()).toBe('foobar');
    for (let n = 0; n < 40; n++) {
      const bytes = createHmac('sha512', String(n)).digest().subarray(0, n);
      expect(base32Decode(base32Encode(bytes)).equals(bytes)).toBe(true);
    }
    expect(() => base32Decode('MZXW1')).toThrow(/invalid base32 character "1"/);
  });

  it('GIVEN a new secret THEN it is 20 random bytes in base32, different each time', () => {
    const a = generateTotpSecret();
    expect(a).toMatch(/^[A-Z2-7]{32}$/);
    expect(base32Decode(a)).toHaveLength(20);
    expect(generateTotpSecret()).not.toBe(a);
  });

  it('GIVEN a cluster and a user THEN the otpauth URL names both and carries the secret', () => {
    const url = new URL(otpauthUrl('example.com', 'joe', 'JBSWY3DPEHPK3PXP'));
    expect(url.protocol).toBe('otpauth:');
    expect(url.host).toBe('totp');
    expect(decodeURIComponent(url.pathname)).toBe('/example.com:joe');
    expect(url.searchParams.get('secret')).toBe('JBSWY3DPEHPK3PXP');
    expect(url.searchParams.get('issuer')).toBe('example.com');
  });
});
