/**
 * SSH public keys and signatures on node:crypto: key generation, the SSH wire
 * form of ed25519 / ECDSA P-256 / P-384 / RSA public keys, authorized_keys lines,
 * SSH signature blobs (RSA always signs with rsa-sha2-512) and SHA256 fingerprints.
 */
import {
  KeyObject,
  createHash,
  createPublicKey,
  generateKeyPairSync,
  verify as cryptoVerify,
  JsonWebKey,
} from 'node:crypto';
import { BadParameterError } from '../utils/errors';
import { SshReader, SshWriter, padStart, bytesToBigint } from './wire';
import { signLocally, type SignatureHash, type Signer } from '../keystore/signer';

export type KeyAlgorithm = 'ed25519' | 'ecdsa-p256' | 'ecdsa-p384' | 'rsa';

export interface KeyPair {
  algorithm: KeyAlgorithm;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export const DEFAULT_RSA_BITS = 3072;
/** OpenSSH refuses RSA keys below this size (SSH_RSA_MINIMUM_MODULUS_SIZE). */
export const MIN_RSA_BITS = 1024;

export const SSH_ED25519 = 'ssh-ed25519';
export const SSH_RSA = 'ssh-rsa';
export const ECDSA_P256 = 'ecdsa-sha2-nistp256';
export const ECDSA_P384 = 'ecdsa-sha2-nistp384';
export const RSA_SHA2_256 = 'rsa-sha2-256';
export const RSA_SHA2_512 = 'rsa-sha2-512';

interface CurveInfo {
  sshType: string;
  sshCurve: 'nistp256' | 'nistp384';
  jwkCurve: 'P-256' | 'P-384';
  size: number;
  hash: 'sha256' | 'sha384';
}

const CURVES: CurveInfo[] = [
  { sshType: ECDSA_P256, sshCurve: 'nistp256', jwkCurve: 'P-256', size: 32, hash: 'sha256' },
  { sshType: ECDSA_P384, sshCurve: 'nistp384', jwkCurve: 'P-384', size: 48, hash: 'sha384' },
];

/** The public data of a plain SSH key, in wire order. */
export type PublicKeyParts =
  | { kind: 'ed25519'; type: typeof SSH_ED25519; pk: Buffer }
  | { kind: 'ecdsa'; type: string; curve: 'nistp256' | 'nistp384'; q: Buffer }
  | { kind: 'rsa'; type: typeof SSH_RSA; e: Buffer; n: Buffer };

export const PLAIN_KEY_TYPES: readonly string[] = [SSH_ED25519, ECDSA_P256, ECDSA_P384, SSH_RSA];

export function generateKeyPair(alg: KeyAlgorithm, opts: { rsaBits?: number } = {}): KeyPair {
  switch (alg) {
    case 'ed25519': {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      return { algorithm: alg, privateKey, publicKey };
    }
    case 'ecdsa-p256':
    case 'ecdsa-p384': {
      const namedCurve = alg === 'ecdsa-p256' ? 'P-256' : 'P-384';
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve });
      return { algorithm: alg, privateKey, publicKey };
    }
    case 'rsa': {
      const bits = opts.rsaBits ?? DEFAULT_RSA_BITS;
      if (!Number.isInteger(bits) || bits < 2048 || bits > 16384) {
        throw new BadParameterError(`rsaBits must be an integer between 2048 and 16384, got ${bits}`);
      }
      const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: bits, publicExponent: 65537 });
      return { algorithm: alg, privateKey, publicKey };
    }
    default:
      throw new BadParameterError(`unsupported key algorithm "${String(alg)}"`);
  }
}

function curveOfKey(key: KeyObject): CurveInfo {
  const named = key.asymmetricKeyDetails?.namedCurve;
  if (named === 'prime256v1' || named === 'P-256') return CURVES[0];
  if (named === 'secp384r1' || named === 'P-384') return CURVES[1];
  throw new BadParameterError(`unsupported ECDSA curve "${named ?? 'unknown'}" (want P-256 or P-384)`);
}

/** The SSH key type name of a public or private KeyObject. */
export function sshKeyType(key: KeyObject): string {
  switch (key.asymmetricKeyType) {
    case 'ed25519':
      return SSH_ED25519;
    case 'ec':
      return curveOfKey(key).sshType;
    case 'rsa':
      return SSH_RSA;
    default:
      throw new BadParameterError(`unsupported key type "${key.asymmetricKeyType ?? key.type}" for SSH`);
  }
}

/** The KeyAlgorithm of a public or private KeyObject. */
export function keyAlgorithmOf(key: KeyObject): KeyAlgorithm {
  switch (sshKeyType(key)) {
    case SSH_ED25519:
      return 'ed25519';
    case ECDSA_P256:
      return 'ecdsa-p256';
    case ECDSA_P384:
      return 'ecdsa-p384';
    default:
      return 'rsa';
  }
}

function b64u(s: string | undefined, what: string): Buffer {
  if (typeof s !== 'string') throw new BadParameterError(`key is missing JWK field ${what}`);
  return Buffer.from(s, 'base64url');
}

export function keyObjectToParts(key: KeyObject): PublicKeyParts {
  const type = sshKeyType(key);
  const jwk = key.export({ format: 'jwk' }) as JsonWebKey;
  if (type === SSH_ED25519) return { kind: 'ed25519', type, pk: b64u(jwk.x, 'x') };
  if (type === SSH_RSA) return { kind: 'rsa', type, e: b64u(jwk.e, 'e'), n: b64u(jwk.n, 'n') };
  const curve = curveOfKey(key);
  const q = Buffer.concat([
    Buffer.from([4]),
    padStart(b64u(jwk.x, 'x'), curve.size, 'EC x'),
    padStart(b64u(jwk.y, 'y'), curve.size, 'EC y'),
  ]);
  return { kind: 'ecdsa', type, curve: curve.sshCurve, q };
}

export function writePublicKeyParts(w: SshWriter, parts: PublicKeyParts): SshWriter {
  switch (parts.kind) {
    case 'ed25519':
      return w.string(parts.pk);
    case 'ecdsa':
      return w.string(parts.curve).string(parts.q);
    case 'rsa':
      return w.mpint(parts.e).mpint(parts.n);
  }
}

/** Reads the key fields that follow the type name (and, in a cert, the nonce). */
export function readPublicKeyParts(r: SshReader, type: string): PublicKeyParts {
  if (type === SSH_ED25519) {
    const pk = r.bytes('ed25519 public key');
    if (pk.length !== 32) throw new BadParameterError(`ed25519 public key is ${pk.length} bytes, want 32`);
    return { kind: 'ed25519', type, pk };
  }
  if (type === SSH_RSA) {
    const e = r.mpint('RSA exponent e');
    const n = r.mpint('RSA modulus n');
    return { kind: 'rsa', type, e, n };
  }
  const curve = CURVES.find((c) => c.sshType === type);
  if (!curve) throw new BadParameterError(`unsupported SSH key type "${type}"`);
  const name = r.string('ECDSA curve name');
  if (name !== curve.sshCurve) {
    throw new BadParameterError(`ECDSA curve "${name}" does not match key type "${type}"`);
  }
  const q = r.bytes('ECDSA public point');
  if (q.length !== 1 + 2 * curve.size || q[0] !== 4) {
    throw new BadParameterError(`ECDSA public point for ${curve.sshCurve} must be uncompressed (${1 + 2 * curve.size} bytes)`);
  }
  return { kind: 'ecdsa', type, curve: curve.sshCurve, q };
}

export function partsToKeyObject(parts: PublicKeyParts): KeyObject {
  let jwk: JsonWebKey;
  switch (parts.kind) {
    case 'ed25519':
      jwk = { kty: 'OKP', crv: 'Ed25519', x: parts.pk.toString('base64url') };
      break;
    case 'ecdsa': {
      const curve = CURVES.find((c) => c.sshCurve === parts.curve)!;
      jwk = {
        kty: 'EC',
        crv: curve.jwkCurve,
        x: parts.q.subarray(1, 1 + curve.size).toString('base64url'),
        y: parts.q.subarray(1 + curve.size).toString('base64url'),
      };
      break;
    }
    case 'rsa': {
      const bits = bytesToBigint(parts.n).toString(2).length;
      if (bits < MIN_RSA_BITS) throw new BadParameterError(`RSA key is ${bits} bits, below the minimum of ${MIN_RSA_BITS}`);
      if (parts.e.length === 0 || (parts.e[parts.e.length - 1] & 1) === 0) {
        throw new BadParameterError('RSA public exponent is invalid');
      }
      jwk = { kty: 'RSA', n: parts.n.toString('base64url'), e: parts.e.toString('base64url') };
      break;
    }
  }
  try {
    return createPublicKey({ key: jwk, format: 'jwk' });
  } catch (err) {
    throw new BadParameterError(`invalid ${parts.type} public key: ${(err as Error).message}`);
  }
}

export function partsToBlob(parts: PublicKeyParts): Buffer {
  return writePublicKeyParts(new SshWriter().string(parts.type), parts).toBuffer();
}

const blobCache = new WeakMap<KeyObject, Buffer>();

/** The SSH wire form of a key's public half; works for private or public KeyObjects. */
export function publicKeyBlob(key: KeyObject): Buffer {
  let blob = blobCache.get(key);
  if (!blob) {
    blob = partsToBlob(keyObjectToParts(key));
    blobCache.set(key, blob);
  }
  return blob;
}

/** The type name at the start of any SSH key or certificate blob. */
export function blobType(blob: Buffer): string {
  return new SshReader(blob, 'SSH key blob').string('key type');
}

/** Parses a plain (non-certificate) public key blob, checking the key is valid. */
export function parsePublicKeyParts(blob: Buffer): PublicKeyParts {
  const r = new SshReader(blob, 'SSH public key');
  const type = r.string('key type');
  if (type.endsWith('-cert-v01@openssh.com')) {
    throw new BadParameterError(`expected a plain public key, got a certificate (${type})`);
  }
  if (!PLAIN_KEY_TYPES.includes(type)) throw new BadParameterError(`unsupported SSH key type "${type}"`);
  const parts = readPublicKeyParts(r, type);
  r.expectEnd(`SSH public key (${type})`);
  return parts;
}

export function parsePublicKeyBlob(blob: Buffer): { type: string; publicKey: KeyObject } {
  const parts = parsePublicKeyParts(blob);
  return { type: parts.type, publicKey: partsToKeyObject(parts) };
}

export function formatAuthorizedKey(blob: Buffer, comment?: string): string {
  const type = blobType(blob);
  const line = `${type} ${blob.toString('base64')}`;
  return comment ? `${line} ${comment}` : line;
}

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict base64 decoding (Buffer.from silently skips bad characters). */
export function decodeBase64Strict(text: string, what: string): Buffer {
  if (text.length === 0 || !BASE64_RE.test(text)) throw new BadParameterError(`${what} is not valid base64`);
  return Buffer.from(text, 'base64');
}

/** Parses `<type> <base64> [comment]` and checks the blob's own type matches. */
export function parseAuthorizedKey(line: string): { type: string; blob: Buffer; comment: string } {
  const m = /^\s*(\S+)\s+(\S+)(?:\s+(.*?))?\s*$/.exec(line);
  if (!m) throw new BadParameterError('authorized key line must be "<type> <base64> [comment]"');
  const [, type, data, comment] = m;
  const blob = decodeBase64Strict(data, `key data of "${type}" line`);
  const inner = blobType(blob);
  if (inner !== type) {
    throw new BadParameterError(`authorized key line says "${type}" but the key data is "${inner}"`);
  }
  return { type, blob, comment: comment ?? '' };
}

export function fingerprintSHA256(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

/** The SSH signature algorithm this module signs with for a key type. */
export function signatureAlgorithmFor(keyType: string): string {
  return keyType === SSH_RSA ? RSA_SHA2_512 : keyType;
}

function rsaModulusBytes(key: KeyObject): number {
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (!bits) throw new BadParameterError('RSA key without a modulus length');
  return Math.ceil(bits / 8);
}

/**
 * How an SSH signature by `key` (public or private) is made: the hash to sign
 * with, and how the raw signature (Signer.sign's format) becomes the SSH
 * signature blob (`string alg, string sig`).
 */
function sshSignatureOf(key: KeyObject): { hash: SignatureHash | null; blob(raw: Buffer): Buffer } {
  const type = sshKeyType(key);
  const w = new SshWriter();
  if (type === SSH_ED25519) return { hash: null, blob: (raw) => w.string(type).string(raw).toBuffer() };
  if (type === SSH_RSA) {
    return {
      hash: 'sha512',
      blob: (raw) => w.string(RSA_SHA2_512).string(padStart(raw, rsaModulusBytes(key), 'RSA signature')).toBuffer(),
    };
  }
  const curve = curveOfKey(key);
  return {
    hash: curve.hash,
    blob: (rs) => {
      if (rs.length !== 2 * curve.size) throw new BadParameterError(`ECDSA signature is ${rs.length} bytes, expected ${2 * curve.size}`);
      const inner = new SshWriter().mpint(rs.subarray(0, curve.size)).mpint(rs.subarray(curve.size)).toBuffer();
      return w.string(type).string(inner).toBuffer();
    },
  };
}

/** Signs `data` with a private key in this process and returns an SSH signature blob (`string alg, string sig`). */
export function sshSign(privateKey: KeyObject, data: Buffer): Buffer {
  if (privateKey.type !== 'private') throw new BadParameterError('sshSign needs a private key');
  const how = sshSignatureOf(privateKey);
  return how.blob(signLocally(privateKey, data, how.hash));
}

/** Signs `data` through a Signer (a key that may live outside this process) and returns an SSH signature blob. */
export async function sshSignWith(signer: Signer, data: Buffer): Promise<Buffer> {
  const how = sshSignatureOf(signer.publicKey);
  return how.blob(await signer.sign(data, how.hash));
}

/** The signature algorithm named in an SSH signature blob, or undefined if malformed. */
export function signatureAlgorithm(signature: Buffer): string | undefined {
  try {
    return new SshReader(signature, 'SSH signature').string('signature algorithm');
  } catch {
    return undefined;
  }
}

/**
 * Verifies an SSH signature blob. Accepts rsa-sha2-256/512 for RSA keys, refuses
 * ssh-rsa (SHA-1) and any algorithm that does not match the key; returns false
 * (never throws) for a malformed signature.
 */
export function sshVerify(publicKeyOrBlob: KeyObject | Buffer, data: Buffer, signature: Buffer): boolean {
  const key = Buffer.isBuffer(publicKeyOrBlob) ? parsePublicKeyBlob(publicKeyOrBlob).publicKey : publicKeyOrBlob;
  const type = sshKeyType(key);
  try {
    const r = new SshReader(signature, 'SSH signature');
    const alg = r.string('signature algorithm');
    const sig = r.bytes('signature');
    if (!r.atEnd()) return false;
    if (type === SSH_ED25519) {
      return alg === SSH_ED25519 && sig.length === 64 && cryptoVerify(null, data, key, sig);
    }
    if (type === SSH_RSA) {
      const hash = alg === RSA_SHA2_512 ? 'sha512' : alg === RSA_SHA2_256 ? 'sha256' : undefined;
      if (!hash) return false;
      const size = rsaModulusBytes(key);
      if (sig.length > size) return false;
      return cryptoVerify(hash, data, key, padStart(sig, size, 'RSA signature'));
    }
    const curve = curveOfKey(key);
    if (alg !== curve.sshType) return false;
    const inner = new SshReader(sig, 'ECDSA signature');
    const rr = inner.mpint('r');
    const ss = inner.mpint('s');
    if (!inner.atEnd() || rr.length === 0 || ss.length === 0) return false;
    if (rr.length > curve.size || ss.length > curve.size) return false;
    const rs = Buffer.concat([padStart(rr, curve.size, 'r'), padStart(ss, curve.size, 's')]);
    return cryptoVerify(curve.hash, data, { key, dsaEncoding: 'ieee-p1363' }, rs);
  } catch {
    return false;
  }
}
