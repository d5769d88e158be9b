/**
 * OpenSSH certificates (PROTOCOL.certkeys, `*-cert-v01@openssh.com`) for
 * ed25519, ECDSA P-256/P-384 and RSA subjects and CAs: build and sign, parse
 * strictly, and verify against trusted CA keys with OpenSSH's fail-closed rules.
 */
import { KeyObject, randomBytes, timingSafeEqual } from 'node:crypto';
import { AccessDeniedError, BadParameterError } from '../utils/errors';
import { SshReader, SshWriter } from './wire';
import type { Signer } from '../keystore/signer';
import {
  PLAIN_KEY_TYPES,
  blobType,
  fingerprintSHA256,
  parseAuthorizedKey,
  parsePublicKeyParts,
  partsToBlob,
  partsToKeyObject,
  publicKeyBlob,
  readPublicKeyParts,
  signatureAlgorithm,
  sshSign,
  sshSignWith,
  sshVerify,
  writePublicKeyParts,
} from './keys';

export const CERT_SUFFIX = '-cert-v01@openssh.com';
export const MAX_VALID_BEFORE = 0xffffffffffffffffn;

const CERT_TYPE_USER = 1;
const CERT_TYPE_HOST = 2;

export type CertType = 'user' | 'host';

export interface CertificateFields {
  certType: CertType;
  /** The subject's plain public key blob. */
  publicKey: Buffer;
  serial: bigint;
  keyId: string;
  principals: string[];
  /** Unix seconds. */
  validAfter: bigint;
  /** Unix seconds; MAX_VALID_BEFORE means forever. */
  validBefore: bigint;
  criticalOptions: Record<string, string>;
  extensions: Record<string, string>;
  /** 32 random bytes when not given. */
  nonce?: Buffer;
}

export interface Certificate extends CertificateFields {
  /** The certificate algorithm name, e.g. `ssh-ed25519-cert-v01@openssh.com`. */
  type: string;
  nonce: Buffer;
  /** The CA's public key blob. */
  signatureKey: Buffer;
  /** The CA's SSH signature blob. */
  signature: Buffer;
  /** The bytes the CA signed: the blob up to and including the signature key. */
  signedData: Buffer;
  /** The whole certificate blob. */
  blob: Buffer;
  reserved: Buffer;
}

export interface VerifyOptions {
  /** CA public key blobs to trust. */
  trustedCAs: Buffer[];
  certType: CertType;
  /** When given, it must be one of the certificate's principals. */
  principal?: string;
  now?: Date;
  /** Critical options the caller understands and enforces; any other fails. Default none. */
  allowedCriticalOptions?: string[];
}

export function isCertificateType(type: string): boolean {
  return type.endsWith(CERT_SUFFIX) && PLAIN_KEY_TYPES.includes(type.slice(0, -CERT_SUFFIX.length));
}

/** The certificate algorithm name for a plain key type (`ssh-ed25519` → `ssh-ed25519-cert-v01@openssh.com`). */
export function certTypeFor(plainKeyType: string): string {
  if (!PLAIN_KEY_TYPES.includes(plainKeyType)) throw new BadParameterError(`unsupported SSH key type "${plainKeyType}"`);
  return plainKeyType + CERT_SUFFIX;
}

/** The certificate algorithm name at the start of a certificate blob. */
export function certKeyType(blob: Buffer): string {
  const type = blobType(blob);
  if (!isCertificateType(type)) throw new BadParameterError(`not an SSH certificate: key type is "${type}"`);
  return type;
}

function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function encodeOptions(options: Record<string, string>, what: string): Buffer {
  const w = new SshWriter();
  for (const name of Object.keys(options).sort(compareNames)) {
    const value = options[name];
    if (name.length === 0) throw new BadParameterError(`${what}: option name must not be empty`);
    if (typeof value !== 'string') throw new BadParameterError(`${what}: value of "${name}" must be a string`);
    w.string(name);
    w.string(value === '' ? Buffer.alloc(0) : new SshWriter().string(value).toBuffer());
  }
  return w.toBuffer();
}

function decodeOptions(data: Buffer, what: string): Record<string, string> {
  const r = new SshReader(data, `certificate ${what}`);
  const out: Record<string, string> = {};
  let last: string | undefined;
  while (!r.atEnd()) {
    const name = r.string('option name');
    const raw = r.bytes(`value of "${name}"`);
    if (last !== undefined && compareNames(name, last) <= 0) {
      throw new BadParameterError(`certificate ${what}: "${name}" is duplicated or out of lexical order`);
    }
    last = name;
    let value = '';
    if (raw.length > 0) {
      const vr = new SshReader(raw, `certificate ${what} "${name}"`);
      value = vr.string('value');
      vr.expectEnd();
    }
    Object.defineProperty(out, name, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function encodePrincipals(principals: string[]): Buffer {
  const w = new SshWriter();
  for (const p of principals) {
    if (typeof p !== 'string') throw new BadParameterError('certificate principals must be strings');
    w.string(p);
  }
  return w.toBuffer();
}

function decodePrincipals(data: Buffer): string[] {
  const r = new SshReader(data, 'certificate principals');
  const out: string[] = [];
  while (!r.atEnd()) out.push(r.string('principal'));
  return out;
}

function checkUint64(v: bigint, what: string): void {
  if (typeof v !== 'bigint' || v < 0n || v > MAX_VALID_BEFORE) {
    throw new BadParameterError(`certificate ${what} must be a bigint in 0..2^64-1`);
  }
}

/** The bytes a CA signs: the certificate blob up to and including the CA's public key. */
function toBeSigned(fields: CertificateFields, caKey: KeyObject): Buffer {
  if (fields.certType !== 'user' && fields.certType !== 'host') {
    throw new BadParameterError(`certificate type must be "user" or "host", got "${String(fields.certType)}"`);
  }
  checkUint64(fields.serial, 'serial');
  checkUint64(fields.validAfter, 'validAfter');
  checkUint64(fields.validBefore, 'validBefore');
  if (fields.validAfter >= fields.validBefore) {
    throw new BadParameterError('certificate validAfter must be before validBefore');
  }
  const subject = parsePublicKeyParts(fields.publicKey);
  partsToKeyObject(subject);
  const w = new SshWriter().string(certTypeFor(subject.type)).string(fields.nonce ?? randomBytes(32));
  writePublicKeyParts(w, subject)
    .uint64(fields.serial)
    .uint32(fields.certType === 'user' ? CERT_TYPE_USER : CERT_TYPE_HOST)
    .string(fields.keyId)
    .string(encodePrincipals(fields.principals))
    .uint64(fields.validAfter)
    .uint64(fields.validBefore)
    .string(encodeOptions(fields.criticalOptions, 'critical options'))
    .string(encodeOptions(fields.extensions, 'extensions'))
    .string(Buffer.alloc(0))
    .string(publicKeyBlob(caKey));
  return w.toBuffer();
}

/** Builds and signs a certificate with a CA key in this process; returns the certificate blob. */
export function signCertificate(fields: CertificateFields, caPrivateKey: KeyObject): Buffer {
  const signed = toBeSigned(fields, caPrivateKey);
  return new SshWriter().raw(signed).string(sshSign(caPrivateKey, signed)).toBuffer();
}

/** Builds a certificate and signs it through a CA Signer (the key may be in an HSM or KMS); returns the certificate blob. */
export async function signCertificateWith(fields: CertificateFields, ca: Signer): Promise<Buffer> {
  const signed = toBeSigned(fields, ca.publicKey);
  return new SshWriter().raw(signed).string(await sshSignWith(ca, signed)).toBuffer();
}

function toBlob(input: Buffer | string): Buffer {
  if (Buffer.isBuffer(input)) return input;
  if (typeof input !== 'string') throw new BadParameterError('certificate must be a Buffer or an authorized_keys line');
  const { type, blob } = parseAuthorizedKey(input.trim());
  if (!isCertificateType(type)) throw new BadParameterError(`not an SSH certificate: key type is "${type}"`);
  return blob;
}

/** Parses a certificate blob or `*-cert-v01@openssh.com AAAA…` line; throws BadParameterError on any defect. */
export function parseCertificate(input: Buffer | string): Certificate {
  const blob = toBlob(input);
  const r = new SshReader(blob, 'SSH certificate');
  const type = r.string('key type');
  if (!isCertificateType(type)) throw new BadParameterError(`SSH certificate: unknown certificate type "${type}"`);
  const nonce = r.bytes('nonce');
  const subject = readPublicKeyParts(r, type.slice(0, -CERT_SUFFIX.length));
  const serial = r.uint64('serial');
  const rawType = r.uint32('certificate type');
  if (rawType !== CERT_TYPE_USER && rawType !== CERT_TYPE_HOST) {
    throw new BadParameterError(`SSH certificate: unknown certificate type ${rawType} (want 1 user or 2 host)`);
  }
  const keyId = r.string('key id');
  const principals = decodePrincipals(r.bytes('valid principals'));
  const validAfter = r.uint64('valid after');
  const validBefore = r.uint64('valid before');
  const criticalOptions = decodeOptions(r.bytes('critical options'), 'critical options');
  const extensions = decodeOptions(r.bytes('extensions'), 'extensions');
  const reserved = r.bytes('reserved');
  const signatureKey = r.bytes('signature key');
  const signedLength = r.position;
  const signature = r.bytes('signature');
  r.expectEnd('SSH certificate');

  partsToKeyObject(subject);
  let caParts;
  try {
    caParts = parsePublicKeyParts(signatureKey);
  } catch (err) {
    throw new BadParameterError(`SSH certificate: bad signature key: ${(err as Error).message}`);
  }
  partsToKeyObject(caParts);
  const sr = new SshReader(signature, 'SSH certificate signature');
  sr.string('signature algorithm');
  sr.bytes('signature');
  sr.expectEnd();

  return {
    type,
    certType: rawType === CERT_TYPE_USER ? 'user' : 'host',
    nonce,
    publicKey: partsToBlob(subject),
    serial,
    keyId,
    principals,
    validAfter,
    validBefore,
    criticalOptions,
    extensions,
    reserved,
    signatureKey,
    signature,
    signedData: blob.subarray(0, signedLength),
    blob,
  };
}

function sameBlob(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function formatTime(seconds: bigint): string {
  if (seconds >= MAX_VALID_BEFORE) return 'forever';
  const ms = Number(seconds) * 1000;
  return ms <= 8.64e15 ? new Date(ms).toISOString() : `${seconds} (unix seconds)`;
}

/**
 * Checks a certificate the way sshd does; throws AccessDeniedError naming the
 * failed check. The checks run on the signed blob, not on the object's fields.
 */
export function verifyCertificate(cert: Certificate, opts: VerifyOptions): void {
  const c = parseCertificate(cert.blob);
  if (!opts.trustedCAs.some((ca) => sameBlob(ca, c.signatureKey))) {
    throw new AccessDeniedError(
      `certificate "${c.keyId}" is signed by an untrusted CA (${fingerprintSHA256(c.signatureKey)})`,
    );
  }
  const alg = signatureAlgorithm(c.signature);
  if (alg === 'ssh-rsa') {
    throw new AccessDeniedError(`certificate "${c.keyId}": CA signature uses ssh-rsa (SHA-1), which is refused`);
  }
  if (!sshVerify(c.signatureKey, c.signedData, c.signature)) {
    throw new AccessDeniedError(`certificate "${c.keyId}": CA signature is invalid (algorithm ${alg ?? 'unknown'})`);
  }
  if (c.certType !== opts.certType) {
    throw new AccessDeniedError(
      `certificate "${c.keyId}" is a ${c.certType} certificate, expected a ${opts.certType} certificate`,
    );
  }
  const now = BigInt(Math.floor((opts.now ?? new Date()).getTime() / 1000));
  if (now < c.validAfter) {
    throw new AccessDeniedError(`certificate "${c.keyId}" is not yet valid (valid after ${formatTime(c.validAfter)})`);
  }
  if (now >= c.validBefore) {
    throw new AccessDeniedError(`certificate "${c.keyId}" has expired (valid before ${formatTime(c.validBefore)})`);
  }
  if (opts.principal !== undefined && !c.principals.includes(opts.principal)) {
    throw new AccessDeniedError(
      `certificate "${c.keyId}": principal "${opts.principal}" is not listed (principals: ${c.principals.join(', ') || 'none'})`,
    );
  }
  const allowed = opts.allowedCriticalOptions ?? [];
  for (const name of Object.keys(c.criticalOptions)) {
    if (!allowed.includes(name)) {
      throw new AccessDeniedError(`certificate "${c.keyId}": unsupported critical option "${name}"`);
    }
  }
}
