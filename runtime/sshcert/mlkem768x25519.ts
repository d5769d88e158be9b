/**
 * The post-quantum hybrid key exchange mlkem768x25519-sha256
 * (draft-ietf-sshm-mlkem-hybrid-kex; OpenSSH 9.9's default): ML-KEM-768
 * (FIPS 203, from @noble/post-quantum) combined with X25519 (node:crypto).
 *
 *   C_INIT  = ML-KEM-768 encapsulation key (1184) || client X25519 public key (32)
 *   S_REPLY = ML-KEM-768 ciphertext (1088)        || server X25519 public key (32)
 *   K       = SHA-256(K_pq || K_x25519), 32 bytes
 *
 * K goes into the exchange hash and the key derivation as an SSH *string*
 * (not an mpint, unlike the classic key exchanges); the patched ssh2
 * (patches/ssh2+1.17.0.patch, `registerKemExchange`) does that encoding and
 * carries C_INIT / S_REPLY in SSH_MSG_KEX_ECDH_INIT / _REPLY (30 / 31).
 * As in OpenSSH, a C_INIT or S_REPLY of the wrong length, an encapsulation
 * key that fails FIPS 203's modulus check, or an all-zero X25519 secret fails
 * the exchange (that one connection).
 *
 * FIPS 203's modulus check of the encapsulation key is done here: the
 * pinned @noble/post-quantum 0.4.1 has one whose 12-bit decoding does not
 * reduce mod q, so it never fails (later, ESM-only releases fixed it).
 * Inputs reach the library as copies in plain Uint8Arrays (a node Buffer's
 * slice() is a view, which some of its in-place code does not expect).
 */
import { createHash, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, KeyObject, timingSafeEqual } from 'node:crypto';
import { ml_kem768 } from '@noble/post-quantum/ml-kem';
import { BadParameterError } from '../utils/errors';

export const MLKEM768_PUBLIC_KEY_LEN = 1184;
export const MLKEM768_CIPHERTEXT_LEN = 1088;
export const X25519_LEN = 32;
/** ML-KEM's q; the encapsulation key is 3 × 256 12-bit coefficients of t̂ (1152 bytes), then ρ (32 bytes). */
const Q = 3329;
const T_HAT_LEN = 1152;
export const C_INIT_LEN = MLKEM768_PUBLIC_KEY_LEN + X25519_LEN;
export const S_REPLY_LEN = MLKEM768_CIPHERTEXT_LEN + X25519_LEN;

const NAME = 'mlkem768x25519-sha256';
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const ZERO = Buffer.alloc(X25519_LEN);

/** Fixed randomness, for known-answer tests only. */
export interface ClientRandomness {
  /** d || z for ML-KEM.KeyGen (64 bytes). */
  mlkemSeed: Uint8Array;
  /** The X25519 private key (32 bytes). */
  x25519: Uint8Array;
}
export interface ServerRandomness {
  /** m for ML-KEM.Encaps (32 bytes). */
  mlkemMessage: Uint8Array;
  x25519: Uint8Array;
}

function x25519KeyPair(privateRaw?: Uint8Array): { privateKey: KeyObject; publicRaw: Buffer } {
  const privateKey = privateRaw
    ? createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, privateRaw]), format: 'der', type: 'pkcs8' })
    : generateKeyPairSync('x25519').privateKey;
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return { privateKey, publicRaw: Buffer.from(spki.subarray(spki.length - X25519_LEN)) };
}

function x25519Shared(privateKey: KeyObject, peerRaw: Uint8Array): Buffer {
  const publicKey = createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, peerRaw]), format: 'der', type: 'spki' });
  let shared: Buffer | undefined;
  try {
    shared = diffieHellman({ privateKey, publicKey });
  } catch {
    // OpenSSL refuses an all-zero result itself
  }
  if (!shared || timingSafeEqual(shared, ZERO)) throw new BadParameterError(`${NAME}: the peer's X25519 key is of low order (all-zero secret)`);
  return shared;
}

function combine(kPq: Uint8Array, kCl: Buffer): Buffer {
  const k = createHash('sha256').update(kPq).update(kCl).digest();
  kPq.fill(0);
  kCl.fill(0);
  return k;
}

/** A copy in a plain Uint8Array (see the module comment). */
const copy = (b: Uint8Array): Uint8Array => new Uint8Array(b);

/** FIPS 203 section 7.2 modulus check: ByteEncode12(ByteDecode12(t̂)) == t̂, i.e. every coefficient < q. */
function modulusCheck(ek: Uint8Array): void {
  for (let i = 0; i < T_HAT_LEN; i += 3) {
    const c0 = ek[i] | ((ek[i + 1] & 0x0f) << 8);
    const c1 = (ek[i + 1] >> 4) | (ek[i + 2] << 4);
    if (c0 >= Q || c1 >= Q) {
      throw new BadParameterError(`${NAME}: the client's ML-KEM-768 encapsulation key is invalid: coefficient ${c0 >= Q ? c0 : c1} at byte ${i} is not reduced mod ${Q}`);
    }
  }
}

function checkLength(what: string, got: Uint8Array, want: number): void {
  if (got.length !== want) throw new BadParameterError(`${NAME}: the ${what} is ${got.length} bytes, want ${want}`);
}

export interface ClientExchange {
  /** C_INIT, sent in SSH_MSG_KEX_ECDH_INIT. */
  readonly init: Buffer;
  /** K from the server's S_REPLY; throws BadParameterError when S_REPLY is malformed. */
  finish(reply: Uint8Array): Buffer;
}

/** The client's side: fresh keys and their C_INIT. */
export function clientExchange(random?: ClientRandomness): ClientExchange {
  const kem = ml_kem768.keygen(random && copy(random.mlkemSeed));
  const x = x25519KeyPair(random?.x25519);
  let done = false;
  return {
    init: Buffer.concat([kem.publicKey, x.publicRaw]),
    finish(reply: Uint8Array): Buffer {
      if (done) throw new BadParameterError(`${NAME}: the exchange is already finished`);
      done = true;
      checkLength('server reply (S_REPLY)', reply, S_REPLY_LEN);
      const kPq = ml_kem768.decapsulate(copy(reply.subarray(0, MLKEM768_CIPHERTEXT_LEN)), kem.secretKey);
      kem.secretKey.fill(0);
      return combine(kPq, x25519Shared(x.privateKey, reply.subarray(MLKEM768_CIPHERTEXT_LEN)));
    },
  };
}

/** The server's side: S_REPLY and K for a client's C_INIT; throws BadParameterError when C_INIT is malformed. */
export function serverExchange(init: Uint8Array, random?: ServerRandomness): { reply: Buffer; secret: Buffer } {
  checkLength('client init (C_INIT)', init, C_INIT_LEN);
  modulusCheck(init);
  let enc: { cipherText: Uint8Array; sharedSecret: Uint8Array };
  try {
    enc = ml_kem768.encapsulate(copy(init.subarray(0, MLKEM768_PUBLIC_KEY_LEN)), random && copy(random.mlkemMessage));
  } catch (err) {
    throw new BadParameterError(`${NAME}: the client's ML-KEM-768 encapsulation key is invalid: ${(err as Error).message}`);
  }
  const x = x25519KeyPair(random?.x25519);
  const secret = combine(enc.sharedSecret, x25519Shared(x.privateKey, init.subarray(MLKEM768_PUBLIC_KEY_LEN)));
  return { reply: Buffer.concat([enc.cipherText, x.publicRaw]), secret };
}
