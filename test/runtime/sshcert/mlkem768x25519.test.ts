/**
 * mlkem768x25519-sha256 (draft-ietf-sshm-mlkem-hybrid-kex): the C_INIT /
 * S_REPLY layouts and K = SHA-256(K_pq || K_x25519), checked against the
 * primitives and known answers (RFC 7748 for X25519, C2SP/CCTV for
 * ML-KEM-768), and the malformed inputs that must fail the exchange.
 */
import { createHash } from 'node:crypto';
import { ml_kem768 } from '@noble/post-quantum/ml-kem';
import { shake128 } from '@noble/hashes/sha3';
import {
  C_INIT_LEN,
  clientExchange,
  MLKEM768_CIPHERTEXT_LEN,
  MLKEM768_PUBLIC_KEY_LEN,
  S_REPLY_LEN,
  serverExchange,
} from '../../../runtime/sshcert/mlkem768x25519';
import { BadParameterError } from '../../../runtime/utils/errors';

const hex = (s: string) => Buffer.from(s, 'hex');

// RFC 7748 section 6.1
const ALICE_PRIVATE = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
const ALICE_PUBLIC = hex('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
const BOB_PRIVATE = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
const BOB_PUBLIC = hex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
const X25519_SHARED = hex('4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742');

const MLKEM_SEED = Buffer.alloc(64, 0x11);
const MLKEM_MESSAGE = Buffer.alloc(32, 0x22);

describe('mlkem768x25519-sha256', () => {
  test('GIVEN fixed randomness WHEN client and server exchange THEN C_INIT, S_REPLY and K are built as the draft says', () => {
    // GIVEN: the ML-KEM-768 and X25519 values computed from the primitives alone
    const kem = ml_kem768.keygen(MLKEM_SEED);
    const enc = ml_kem768.encapsulate(kem.publicKey, MLKEM_MESSAGE);
    const wantK = createHash('sha256').update(enc.sharedSecret).update(X25519_SHARED).digest();

    // WHEN
    const client = clientExchange({ mlkemSeed: MLKEM_SEED, x25519: ALICE_PRIVATE });
    const server = serverExchange(client.init, { mlkemMessage: MLKEM_MESSAGE, x25519: BOB_PRIVATE });
    const clientK = client.finish(server.reply);

    // THEN: C_INIT = encapsulation key || client X25519 key; S_REPLY = ciphertext || server X25519 key
    expect(client.init).toHaveLength(C_INIT_LEN);
    expect(client.init.subarray(0, MLKEM768_PUBLIC_KEY_LEN).equals(Buffer.from(kem.publicKey))).toBe(true);
    expect(client.init.subarray(MLKEM768_PUBLIC_KEY_LEN).equals(ALICE_PUBLIC)).toBe(true);
    expect(server.reply).toHaveLength(S_REPLY_LEN);
    expect(server.reply.subarray(0, MLKEM768_CIPHERTEXT_LEN).equals(Buffer.from(enc.cipherText))).toBe(true);
    expect(server.reply.subarray(MLKEM768_CIPHERTEXT_LEN).equals(BOB_PUBLIC)).toBe(true);
    // K = SHA-256(K_pq || K_x25519), 32 raw bytes (ssh2 encodes it as an SSH string)
    expect(server.secret.equals(wantK)).toBe(true);
    expect(clientK.equals(wantK)).toBe(true);
    // and the known answer for these inputs, so that a change in either primitive shows
    expect(wantK.toString('hex')).toBe(KNOWN_K);
  });

  test('GIVEN fresh randomness WHEN two exchanges run THEN both sides agree and the secrets differ', () => {
    const a = clientExchange();
    const sa = serverExchange(a.init);
    const b = clientExchange();
    const sb = serverExchange(b.init);
    expect(a.finish(sa.reply).equals(sa.secret)).toBe(true);
    expect(b.finish(sb.reply).equals(sb.secret)).toBe(true);
    expect(sa.secret.equals(sb.secret)).toBe(false);
  });

  test.each([
    ['empty', 0],
    ['one byte short', C_INIT_LEN - 1],
    ['one byte long', C_INIT_LEN + 1],
    ['only the X25519 key', 32],
  ])('GIVEN a C_INIT that is %s WHEN the server answers THEN it refuses with the length', (_what, len) => {
    expect(() => serverExchange(Buffer.alloc(len, 1))).toThrow(new BadParameterError(`mlkem768x25519-sha256: the client init (C_INIT) is ${len} bytes, want ${C_INIT_LEN}`));
  });

  test.each([
    ['every coefficient 4095', () => Buffer.alloc(MLKEM768_PUBLIC_KEY_LEN, 0xff), 'coefficient 4095 at byte 0'],
    ['the first coefficient q', () => withCoefficient(0, 3329), 'coefficient 3329 at byte 0'],
    ['the last coefficient q', () => withCoefficient(767, 3329), 'coefficient 3329 at byte 1149'],
  ])('GIVEN an encapsulation key with %s WHEN the server answers THEN it refuses (FIPS 203 modulus check)', (_what, ek, where) => {
    const init = Buffer.concat([ek(), ALICE_PUBLIC]);
    expect(() => serverExchange(init)).toThrow(`mlkem768x25519-sha256: the client's ML-KEM-768 encapsulation key is invalid: ${where} is not reduced mod 3329`);
  });

  test('GIVEN an encapsulation key whose coefficients are all q - 1 WHEN the server answers THEN the modulus check lets it through', () => {
    let ek: Buffer = Buffer.from(ml_kem768.keygen(MLKEM_SEED).publicKey);
    for (let i = 0; i < 768; i++) ek = withCoefficient(i, 3328, ek);
    expect(serverExchange(Buffer.concat([ek, ALICE_PUBLIC])).reply).toHaveLength(S_REPLY_LEN);
  });

  test.each([
    ['zero', Buffer.alloc(32)],
    ['one (low order)', Buffer.concat([Buffer.from([1]), Buffer.alloc(31)])],
  ])('GIVEN a client X25519 key of %s WHEN the server answers THEN it refuses the all-zero secret', (_what, x25519) => {
    const init = Buffer.concat([clientExchange().init.subarray(0, MLKEM768_PUBLIC_KEY_LEN), x25519]);
    expect(() => serverExchange(init)).toThrow(new BadParameterError("mlkem768x25519-sha256: the peer's X25519 key is of low order (all-zero secret)"));
  });

  test('GIVEN a short S_REPLY, a zero server X25519 key or a second reply WHEN the client finishes THEN it refuses', () => {
    const short = clientExchange();
    expect(() => short.finish(Buffer.alloc(S_REPLY_LEN - 1))).toThrow(`the server reply (S_REPLY) is ${S_REPLY_LEN - 1} bytes, want ${S_REPLY_LEN}`);
    const zero = clientExchange();
    const reply = serverExchange(zero.init).reply;
    expect(() => zero.finish(Buffer.concat([reply.subarray(0, MLKEM768_CIPHERTEXT_LEN), Buffer.alloc(32)]))).toThrow(/X25519 key is of low order/);
    const twice = clientExchange();
    const ok = serverExchange(twice.init);
    twice.finish(ok.reply);
    expect(() => twice.finish(ok.reply)).toThrow(/already finished/);
  });

  test('GIVEN the C2SP/CCTV accumulated ML-KEM-768 vectors (10 000 key pairs, encapsulations, implicit rejections) THEN the pinned @noble/post-quantum hashes to the published value', () => {
    // GIVEN: inputs from one SHAKE-128 stream over the empty string; outputs into another
    const rng = shake128.create({});
    const acc = shake128.create({});
    for (let i = 0; i < 10_000; i++) {
      const d = rng.xof(32);
      const z = rng.xof(32);
      const m = rng.xof(32);
      const badCt = rng.xof(MLKEM768_CIPHERTEXT_LEN);
      // WHEN
      const { publicKey: ek, secretKey: dk } = ml_kem768.keygen(new Uint8Array([...d, ...z]));
      const { cipherText: ct, sharedSecret: k } = ml_kem768.encapsulate(ek, m);
      if (!Buffer.from(ml_kem768.decapsulate(ct, dk)).equals(Buffer.from(k))) throw new Error(`vector ${i}: decapsulation disagrees`);
      acc.update(ek).update(dk).update(ct).update(k).update(ml_kem768.decapsulate(badCt, dk));
    }
    // THEN: FIPS 203 final, as published with the vectors
    expect(Buffer.from(acc.xof(32)).toString('hex')).toBe('f959d18d3d1180121433bf0e05f11e7908cf9d03edc150b2b07cb90bef5bc1c1');
  }, 300_000);
});

const KNOWN_K = 'a04c49fcf0b9687902ae099ec9228746e16d35f1c1460d50c62f138106378c83';

/** A valid encapsulation key (or `ek`) with 12-bit coefficient `n` of t̂ set to `value`. */
function withCoefficient(n: number, value: number, ek: Buffer = Buffer.from(ml_kem768.keygen(MLKEM_SEED).publicKey)): Buffer {
  const out = Buffer.from(ek);
  const at = Math.floor(n / 2) * 3;
  if (n % 2 === 0) {
    out[at] = value & 0xff;
    out[at + 1] = (out[at + 1] & 0xf0) | (value >> 8);
  } else {
    out[at + 1] = (out[at + 1] & 0x0f) | ((value & 0x0f) << 4);
    out[at + 2] = value >> 4;
  }
  return out;
}
