/**
 * Private key files: the OpenSSH `openssh-key-v1` format (unencrypted, as
 * `ssh-keygen -N ''` writes it) for ed25519, ECDSA P-256/P-384 and RSA, plus a
 * loader that also takes PEM (PKCS#8, PKCS#1, SEC1) through node:crypto.
 */
import { KeyObject, JsonWebKey, createPrivateKey, randomBytes } from 'node:crypto';
import { BadParameterError } from '../utils/errors';
import { SshReader, SshWriter, bigintToBytes, bytesToBigint, padStart } from './wire';
import {
  ECDSA_P256,
  ECDSA_P384,
  SSH_ED25519,
  SSH_RSA,
  decodeBase64Strict,
  parsePublicKeyParts,
  partsToBlob,
  publicKeyBlob,
  sshKeyType,
} from './keys';

const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----';
const END = '-----END OPENSSH PRIVATE KEY-----';
/** The cipher "none" pads the private section to 8-byte blocks. */
const BLOCK_SIZE = 8;

function jwkOf(key: KeyObject): JsonWebKey {
  return key.export({ format: 'jwk' }) as JsonWebKey;
}

function field(jwk: JsonWebKey, name: keyof JsonWebKey): Buffer {
  const v = jwk[name];
  if (typeof v !== 'string') throw new BadParameterError(`private key is missing JWK field ${String(name)}`);
  return Buffer.from(v, 'base64url');
}

function wrap(b64: string, width: number): string {
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += width) lines.push(b64.slice(i, i + width));
  return lines.join('\n');
}

/** Writes an unencrypted `openssh-key-v1` file (what `ssh-keygen -N ''` produces). */
export function encodeOpenSSHPrivateKey(privateKey: KeyObject, comment = ''): string {
  if (privateKey.type !== 'private') throw new BadParameterError('encodeOpenSSHPrivateKey needs a private key');
  const type = sshKeyType(privateKey);
  const pubBlob = publicKeyBlob(privateKey);
  const jwk = jwkOf(privateKey);
  const check = randomBytes(4).readUInt32BE(0);
  const priv = new SshWriter().uint32(check).uint32(check).string(type);
  if (type === SSH_ED25519) {
    const pk = field(jwk, 'x');
    priv.string(pk).string(Buffer.concat([field(jwk, 'd'), pk]));
  } else if (type === SSH_RSA) {
    priv
      .mpint(field(jwk, 'n'))
      .mpint(field(jwk, 'e'))
      .mpint(field(jwk, 'd'))
      .mpint(field(jwk, 'qi'))
      .mpint(field(jwk, 'p'))
      .mpint(field(jwk, 'q'));
  } else {
    const parts = parsePublicKeyParts(pubBlob);
    if (parts.kind !== 'ecdsa') throw new BadParameterError(`unexpected key parts for ${type}`);
    priv.string(parts.curve).string(parts.q).mpint(field(jwk, 'd'));
  }
  priv.string(comment);
  // Pad with 1, 2, 3, … up to the next multiple of the block size and add nothing when the section is
  // already aligned: what ssh-keygen writes (PROTOCOL.key; the interop test compares the bytes).
  for (let pad = 1; priv.size % BLOCK_SIZE !== 0; pad++) priv.raw(Buffer.from([pad]));
  const body = new SshWriter()
    .raw(MAGIC)
    .string('none')
    .string('none')
    .string('')
    .uint32(1)
    .string(pubBlob)
    .string(priv.toBuffer())
    .toBuffer();
  return `${BEGIN}\n${wrap(body.toString('base64'), 70)}\n${END}\n`;
}

function unarmor(text: string): Buffer {
  const begin = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (begin < 0 || end < 0 || end < begin) {
    throw new BadParameterError('not an OpenSSH private key: missing BEGIN/END OPENSSH PRIVATE KEY lines');
  }
  const b64 = text.slice(begin + BEGIN.length, end).replace(/\s+/g, '');
  return decodeBase64Strict(b64, 'OpenSSH private key body');
}

function readPrivateSection(r: SshReader, type: string): JsonWebKey {
  const ctx = `OpenSSH private key (${type})`;
  if (type === SSH_ED25519) {
    const pk = r.bytes('ed25519 public key');
    const sk = r.bytes('ed25519 private key');
    if (pk.length !== 32 || sk.length !== 64 || !sk.subarray(32).equals(pk)) {
      throw new BadParameterError(`${ctx}: malformed ed25519 key material`);
    }
    return { kty: 'OKP', crv: 'Ed25519', x: pk.toString('base64url'), d: sk.subarray(0, 32).toString('base64url') };
  }
  if (type === SSH_RSA) {
    const n = r.mpint('RSA n');
    const e = r.mpint('RSA e');
    const d = r.mpint('RSA d');
    const iqmp = r.mpint('RSA iqmp');
    const p = r.mpint('RSA p');
    const q = r.mpint('RSA q');
    const dBig = bytesToBigint(d);
    const pBig = bytesToBigint(p);
    const qBig = bytesToBigint(q);
    if (pBig < 3n || qBig < 3n) throw new BadParameterError(`${ctx}: invalid RSA primes`);
    const b = (x: Buffer) => x.toString('base64url');
    return {
      kty: 'RSA',
      n: b(n),
      e: b(e),
      d: b(d),
      p: b(p),
      q: b(q),
      dp: b(bigintToBytes(dBig % (pBig - 1n))),
      dq: b(bigintToBytes(dBig % (qBig - 1n))),
      qi: b(iqmp),
    };
  }
  if (type === ECDSA_P256 || type === ECDSA_P384) {
    const size = type === ECDSA_P256 ? 32 : 48;
    const curve = r.string('ECDSA curve name');
    if (curve !== (type === ECDSA_P256 ? 'nistp256' : 'nistp384')) {
      throw new BadParameterError(`${ctx}: curve "${curve}" does not match the key type`);
    }
    const q = r.bytes('ECDSA public point');
    if (q.length !== 1 + 2 * size || q[0] !== 4) throw new BadParameterError(`${ctx}: malformed ECDSA public point`);
    const d = padStart(r.mpint('ECDSA private scalar'), size, `${ctx}: ECDSA private scalar`);
    return {
      kty: 'EC',
      crv: type === ECDSA_P256 ? 'P-256' : 'P-384',
      x: q.subarray(1, 1 + size).toString('base64url'),
      y: q.subarray(1 + size).toString('base64url'),
      d: d.toString('base64url'),
    };
  }
  throw new BadParameterError(`OpenSSH private key: unsupported key type "${type}"`);
}

/** Reads an unencrypted `openssh-key-v1` file with its comment. */
export function readOpenSSHPrivateKey(text: string): { privateKey: KeyObject; comment: string } {
  const body = unarmor(text);
  if (body.length < MAGIC.length || !body.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new BadParameterError('OpenSSH private key: missing "openssh-key-v1" magic');
  }
  const r = new SshReader(body.subarray(MAGIC.length), 'OpenSSH private key');
  const cipher = r.string('cipher name');
  const kdf = r.string('kdf name');
  r.bytes('kdf options');
  if (cipher !== 'none' || kdf !== 'none') {
    throw new BadParameterError(
      `OpenSSH private key is encrypted (cipher ${cipher}, kdf ${kdf}); only unencrypted keys are supported`,
    );
  }
  const count = r.uint32('number of keys');
  if (count !== 1) throw new BadParameterError(`OpenSSH private key holds ${count} keys; exactly 1 is supported`);
  const pubBlob = r.bytes('public key');
  const section = r.bytes('private section');
  r.expectEnd('OpenSSH private key');
  if (section.length % BLOCK_SIZE !== 0) {
    throw new BadParameterError('OpenSSH private key: private section is not a multiple of the block size');
  }
  const pr = new SshReader(section, 'OpenSSH private key section');
  const check1 = pr.uint32('check int 1');
  const check2 = pr.uint32('check int 2');
  if (check1 !== check2) {
    throw new BadParameterError('OpenSSH private key: check ints differ (corrupt key or wrong passphrase)');
  }
  const type = pr.string('key type');
  const jwk = readPrivateSection(pr, type);
  const comment = pr.string('comment');
  const padding = pr.raw(pr.remaining, 'padding');
  for (let i = 0; i < padding.length; i++) {
    if (padding[i] !== ((i + 1) & 0xff)) throw new BadParameterError('OpenSSH private key: bad padding');
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: jwk, format: 'jwk' });
  } catch (err) {
    throw new BadParameterError(`OpenSSH private key: invalid ${type} key: ${(err as Error).message}`);
  }
  const headerParts = parsePublicKeyParts(pubBlob);
  if (!partsToBlob(headerParts).equals(publicKeyBlob(privateKey))) {
    throw new BadParameterError('OpenSSH private key: the public key does not match the private key');
  }
  return { privateKey, comment };
}

export function decodeOpenSSHPrivateKey(text: string): KeyObject {
  return readOpenSSHPrivateKey(text).privateKey;
}

/** Loads a private key from OpenSSH format or PEM (PKCS#8, PKCS#1, SEC1). */
export function loadPrivateKey(text: string): KeyObject {
  if (text.includes(BEGIN)) return decodeOpenSSHPrivateKey(text);
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    throw new BadParameterError('not a private key: expected OpenSSH or PEM (PKCS#8, PKCS#1, SEC1) format');
  }
  if (text.includes('ENCRYPTED')) {
    throw new BadParameterError('private key is encrypted; only unencrypted keys are supported');
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: text, format: 'pem' });
  } catch (err) {
    throw new BadParameterError(`cannot parse PEM private key: ${(err as Error).message}`);
  }
  sshKeyType(key);
  return key;
}
