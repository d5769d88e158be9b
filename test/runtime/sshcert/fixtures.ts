/**
 * Shared fixtures for the sshcert tests: keys generated once per test file, a
 * temp directory, and the real `ssh-keygen` (run with TZ=UTC) plus a parser
 * for its `-L` certificate listing.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyObject } from 'node:crypto';
import { encodeOpenSSHPrivateKey, formatAuthorizedKey, generateKeyPair, KeyAlgorithm, KeyPair, publicKeyBlob } from '../../../runtime/sshcert';

export const ALGORITHMS: KeyAlgorithm[] = ['ed25519', 'ecdsa-p256', 'ecdsa-p384', 'rsa'];

/** RSA keys in tests are 2048 bits to keep them fast; the 3072 default is tested once. */
export const TEST_RSA_BITS = 2048;

const cache = new Map<string, KeyPair>();

/** A key pair per (algorithm, name), generated once per test file. */
export function keyPair(alg: KeyAlgorithm, name = 'default'): KeyPair {
  const id = `${alg}/${name}`;
  let kp = cache.get(id);
  if (!kp) {
    kp = generateKeyPair(alg, { rsaBits: TEST_RSA_BITS });
    cache.set(id, kp);
  }
  return kp;
}

export function makeTempDir(): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), 'sshcert-test-'));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function sshKeygen(args: string[], input?: string): RunResult {
  const r = spawnSync('ssh-keygen', args, { env: { ...process.env, TZ: 'UTC' }, input, encoding: 'utf8' });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs ssh-keygen and fails with its stderr when it exits non-zero. */
export function sshKeygenOk(args: string[]): string {
  const r = sshKeygen(args);
  if (r.status !== 0) throw new Error(`ssh-keygen ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

export function writePrivateKeyFile(dir: string, name: string, key: KeyObject, comment = ''): string {
  const path = join(dir, name);
  writeFileSync(path, encodeOpenSSHPrivateKey(key, comment), { mode: 0o600 });
  return path;
}

export function writePublicKeyFile(dir: string, name: string, key: KeyObject | Buffer, comment = ''): string {
  const path = join(dir, name);
  const blob = Buffer.isBuffer(key) ? key : publicKeyBlob(key);
  writeFileSync(path, formatAuthorizedKey(blob, comment) + '\n');
  return path;
}

/** What `ssh-keygen -L` printed about one certificate. */
export interface KeygenListing {
  algorithm: string;
  certType: 'user' | 'host';
  publicKeyFingerprint: string;
  caKind: string;
  caFingerprint: string;
  caSignatureAlgorithm: string;
  keyId: string;
  serial: bigint;
  valid: string;
  principals: string[];
  criticalOptions: Record<string, string>;
  extensions: Record<string, string>;
}

function optionValue(rest: string): string {
  if (rest === '') return '';
  const unknown = /^UNKNOWN OPTION: ([0-9a-f]+) \(len \d+\)$/.exec(rest);
  if (!unknown) return rest;
  const data = Buffer.from(unknown[1], 'hex');
  const len = data.readUInt32BE(0);
  if (len !== data.length - 4) throw new Error(`option value is not a single SSH string: ${unknown[1]}`);
  return data.subarray(4).toString('utf8');
}

/** Parses `ssh-keygen -L` output; unknown option values are hex of the SSH string and are decoded. */
export function parseKeygenListing(output: string): KeygenListing {
  const lines = output.split('\n');
  const get = (label: string): string => {
    const line = lines.find((l) => l.trimStart().startsWith(label + ':'));
    if (line === undefined) throw new Error(`ssh-keygen -L output has no "${label}" line:\n${output}`);
    return line.trimStart().slice(label.length + 1).trim();
  };
  const list = (label: string): string[] => {
    const start = lines.findIndex((l) => l.trimStart().startsWith(label + ':'));
    if (start < 0) throw new Error(`ssh-keygen -L output has no "${label}" section`);
    if (lines[start].includes('(none)')) return [];
    const items: string[] = [];
    for (let i = start + 1; i < lines.length && lines[i].startsWith('                '); i++) items.push(lines[i].slice(16));
    return items;
  };
  const options = (label: string): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const item of list(label)) {
      const sp = item.indexOf(' ');
      out[sp < 0 ? item : item.slice(0, sp)] = sp < 0 ? '' : optionValue(item.slice(sp + 1));
    }
    return out;
  };
  const type = /^(\S+) (user|host) certificate$/.exec(get('Type'));
  const ca = /^(\S+) (SHA256:\S+) \(using (\S+)\)$/.exec(get('Signing CA'));
  const pub = /^\S+ (SHA256:\S+)$/.exec(get('Public key'));
  const keyId = /^"(.*)"$/.exec(get('Key ID'));
  if (!type || !ca || !pub || !keyId) throw new Error(`unexpected ssh-keygen -L output:\n${output}`);
  return {
    algorithm: type[1],
    certType: type[2] as 'user' | 'host',
    publicKeyFingerprint: pub[1],
    caKind: ca[1],
    caFingerprint: ca[2],
    caSignatureAlgorithm: ca[3],
    keyId: keyId[1],
    serial: BigInt(get('Serial')),
    valid: get('Valid'),
    principals: list('Principals'),
    criticalOptions: options('Critical Options'),
    extensions: options('Extensions'),
  };
}

function keygenTime(seconds: bigint): string {
  return new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
}

/** The "Valid:" text ssh-keygen prints for a validity interval (in UTC). */
export function keygenValidity(validAfter: bigint, validBefore: bigint): string {
  const forever = validBefore === 0xffffffffffffffffn;
  if (validAfter === 0n && forever) return 'forever';
  if (validAfter === 0n) return `before ${keygenTime(validBefore)}`;
  if (forever) return `after ${keygenTime(validAfter)}`;
  return `from ${keygenTime(validAfter)} to ${keygenTime(validBefore)}`;
}
