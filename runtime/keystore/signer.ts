/**
 * What a certificate authority signs with: a key it may never see. The SSH
 * and X.509 CAs hand the bytes to sign and the hash to a Signer and get the
 * raw signature back; where the private key lives (process memory, a PKCS#11
 * token, AWS KMS) is the Signer's business.
 */
import { createPublicKey, KeyObject, sign as cryptoSign } from 'node:crypto';

export type SignatureHash = 'sha256' | 'sha384' | 'sha512';

export interface Signer {
  /** The public half of the key (ECDSA P-256/P-384, RSA or ed25519). */
  readonly publicKey: KeyObject;
  /**
   * Signs `data`, hashing it with `hash` (null for ed25519, which hashes itself).
   * ECDSA signatures are r||s (IEEE P1363, each half the curve's size), RSA
   * signatures PKCS#1 v1.5, ed25519 signatures the 64 raw bytes.
   */
  sign(data: Buffer, hash: SignatureHash | null): Promise<Buffer>;
}

/** The in-process signature of `data`, in the formats of Signer.sign. */
export function signLocally(privateKey: KeyObject, data: Buffer, hash: SignatureHash | null): Buffer {
  return cryptoSign(hash, data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
}

/** A signer over a private key held in this process (the default: the key is stored in the backend). */
export function localSigner(privateKey: KeyObject): Signer {
  const publicKey = createPublicKey(privateKey);
  return { publicKey, sign: async (data, hash) => signLocally(privateKey, data, hash) };
}
