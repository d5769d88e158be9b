import { execFile } from 'node:child_process';
import { generateKeyPairSync, KeyObject, randomInt } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  decodeOpenSSHPrivateKey,
  encodeOpenSSHPrivateKey,
  formatAuthorizedKey,
  generateKeyPair,
  KeyAlgorithm,
  loadPrivateKey,
  parseAuthorizedKey,
  publicKeyBlob,
  readOpenSSHPrivateKey,
  SshReader,
  SshWriter,
  sshSign,
  sshVerify,
} from '../../../runtime/sshcert';
import { BadParameterError } from '../../../runtime/utils/errors';
import { ALGORITHMS, keyPair, makeTempDir, sshKeygenOk, writePrivateKeyFile } from './fixtures';

const KEYGEN_ARGS = {
  ed25519: ['-t', 'ed25519'],
  'ecdsa-p256': ['-t', 'ecdsa', '-b', '256'],
  'ecdsa-p384': ['-t', 'ecdsa', '-b', '384'],
  rsa: ['-t', 'rsa', '-b', '2048'],
} as const;

const execFileAsync = promisify(execFile);

const dir = makeTempDir();
afterAll(() => dir.remove());

function body(text: string): Buffer {
  return Buffer.from(text.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

function armor(data: Buffer): string {
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${data.toString('base64')}\n-----END OPENSSH PRIVATE KEY-----\n`;
}

/** How many SSH strings/mpints each key type's private part has (PROTOCOL.key, sshkey_private_serialize). */
const KEY_FIELDS: Record<KeyAlgorithm, number> = { ed25519: 2, 'ecdsa-p256': 3, 'ecdsa-p384': 3, rsa: 6 };

/** The private section of a key file's body, and where it starts (its two check ints come first). */
function privateSection(data: Buffer): { section: Buffer; start: number } {
  const r = new SshReader(data.subarray(15));
  r.string();
  r.string();
  r.bytes();
  r.uint32();
  r.bytes();
  const section = r.bytes();
  return { section, start: 15 + r.position - section.length };
}

/** The bytes after the comment: the padding. */
function paddingOf(section: Buffer, alg: KeyAlgorithm): Buffer {
  const r = new SshReader(section);
  r.uint32();
  r.uint32();
  r.string();
  for (let i = 0; i < KEY_FIELDS[alg]; i++) r.bytes();
  r.string();
  return r.raw(r.remaining);
}

function oneTwoThree(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1);
}

describe('encodeOpenSSHPrivateKey', () => {
  test.each(ALGORITHMS)('GIVEN our %s key file WHEN ssh-keygen -y reads it THEN it prints the same public key and comment', (alg) => {
    // GIVEN
    const kp = keyPair(alg);
    const path = writePrivateKeyFile(dir.path, `ours-${alg}`, kp.privateKey, `${alg}@test`);

    // WHEN
    const out = sshKeygenOk(['-y', '-f', path]).trim();

    // THEN
    expect(out).toBe(formatAuthorizedKey(publicKeyBlob(kp.publicKey), `${alg}@test`));
  });

  test.each(ALGORITHMS)('GIVEN a %s key WHEN encoded THEN the layout is openssh-key-v1 with cipher none, equal check ints and 1,2,3… padding', (alg) => {
    // GIVEN
    const text = encodeOpenSSHPrivateKey(keyPair(alg).privateKey, 'c');

    // WHEN
    const data = body(text);
    const r = new SshReader(data.subarray(15));
    const header = [r.string(), r.string(), r.bytes().length, r.uint32()];
    r.bytes();
    const section = r.bytes();
    const pr = new SshReader(section);
    const checks = [pr.uint32(), pr.uint32()];

    // THEN
    expect(text.split('\n').every((l) => l.length <= 70 || l.startsWith('-----'))).toBe(true);
    expect(data.subarray(0, 15).toString('latin1')).toBe('openssh-key-v1\0');
    expect(header).toEqual(['none', 'none', 0, 1]);
    expect(r.atEnd()).toBe(true);
    expect(checks[0]).toBe(checks[1]);
    expect(section.length % 8).toBe(0);
    const padding = paddingOf(section, alg);
    expect(padding.length).toBeLessThan(8);
    expect([...padding]).toEqual(oneTwoThree(padding.length));
  });

  test.each(ALGORITHMS)('GIVEN a %s key WHEN encoded and decoded THEN the key and comment come back', (alg) => {
    // GIVEN
    const kp = keyPair(alg);

    // WHEN
    const { privateKey, comment } = readOpenSSHPrivateKey(encodeOpenSSHPrivateKey(kp.privateKey, 'round trip'));

    // THEN
    expect(comment).toBe('round trip');
    expect(privateKey.export({ format: 'jwk' })).toEqual(kp.privateKey.export({ format: 'jwk' }));
  });
});

describe('openssh-key-v1 interop with ssh-keygen', () => {
  const KEYS = 500;
  const LETTERS = 'abcdefghijklmnopqrstuvwxyz0123456789.@-';

  /** A fresh random key; RSA at 1024 bits (OpenSSH's minimum) keeps 125 of them fast, the layout is the same. */
  function randomKey(alg: KeyAlgorithm): KeyObject {
    return alg === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey : generateKeyPair(alg).privateKey;
  }

  function randomComment(length: number): string {
    return Array.from({ length }, () => LETTERS[randomInt(LETTERS.length)]).join('');
  }

  /** The file's body with the two random check ints zeroed, so two writers' outputs compare byte for byte. */
  function withoutCheckInts(text: string): Buffer {
    const data = body(text);
    const { start } = privateSection(data);
    data.fill(0, start, start + 8);
    return data;
  }

  /** Runs ssh-keygen without blocking, so the four key types' loops overlap. */
  async function keygen(args: string[]): Promise<string> {
    const { stdout } = await execFileAsync('ssh-keygen', args, { env: { ...process.env, TZ: 'UTC' }, encoding: 'utf8' });
    return stdout;
  }

  test(`GIVEN ${KEYS} random keys of every type with comments of 0 to 15 bytes WHEN we write each file, ssh-keygen -y reads it, ssh-keygen -c rewrites it and we read that THEN all agree byte for byte and every padding length 0…7 occurs on both sides`, async () => {
    // GIVEN
    const padLengths = { ours: new Map<KeyAlgorithm, Set<number>>(), keygen: new Map<KeyAlgorithm, Set<number>>() };
    const seen = (side: keyof typeof padLengths, alg: KeyAlgorithm, text: string) => {
      const set = padLengths[side].get(alg) ?? new Set<number>();
      set.add(paddingOf(privateSection(body(text)).section, alg).length);
      padLengths[side].set(alg, set);
    };

    const oneType = async (alg: KeyAlgorithm) => {
      const path = join(dir.path, `interop-${alg}`);
      for (let n = 0; n < KEYS / ALGORITHMS.length; n++) {
        const key = randomKey(alg);
        const ourComment = randomComment(n % 16);
        const keygenComment = randomComment((n + 5) % 16);

        // WHEN
        const ours = encodeOpenSSHPrivateKey(key, ourComment);
        rmSync(path, { force: true });
        writeFileSync(path, ours, { mode: 0o600 });
        const printed = (await keygen(['-y', '-f', path])).trim();
        await keygen(['-q', '-c', '-C', keygenComment, '-f', path]);
        const theirs = readFileSync(path, 'utf8');
        const read = readOpenSSHPrivateKey(theirs);
        seen('ours', alg, ours);
        seen('keygen', alg, theirs);

        // THEN (one object per key, so a failure names the key type and number)
        expect({ alg, n, printed, comment: read.comment, jwk: read.privateKey.export({ format: 'jwk' }) }).toEqual({
          alg,
          n,
          printed: formatAuthorizedKey(publicKeyBlob(key), ourComment),
          comment: keygenComment,
          jwk: key.export({ format: 'jwk' }),
        });
        const same = withoutCheckInts(theirs).equals(withoutCheckInts(encodeOpenSSHPrivateKey(key, keygenComment)));
        expect({ alg, n, same }).toEqual({ alg, n, same: true });
      }
    };
    const outcomes = await Promise.allSettled(ALGORITHMS.map(oneType)); // all loops end before the test does
    for (const outcome of outcomes) if (outcome.status === 'rejected') throw outcome.reason;

    // THEN every padding length, including none for an already aligned section, was exercised for every type
    for (const side of ['ours', 'keygen'] as const) {
      for (const alg of ALGORITHMS) {
        const lengths = [...(padLengths[side].get(alg) ?? [])].sort();
        expect({ side, alg, lengths }).toEqual({ side, alg, lengths: [0, 1, 2, 3, 4, 5, 6, 7] });
      }
    }
  });
});

describe('decodeOpenSSHPrivateKey', () => {
  test.each(ALGORITHMS)('GIVEN a %s key made by ssh-keygen -N "" WHEN decoded THEN it signs for the .pub key ssh-keygen wrote', (alg) => {
    // GIVEN
    const path = join(dir.path, `kg-${alg}`);
    sshKeygenOk(['-q', ...KEYGEN_ARGS[alg], '-N', '', '-C', 'from-keygen', '-f', path]);
    const pub = parseAuthorizedKey(readFileSync(path + '.pub', 'utf8'));

    // WHEN
    const { privateKey, comment } = readOpenSSHPrivateKey(readFileSync(path, 'utf8'));

    // THEN
    expect(comment).toBe('from-keygen');
    expect(publicKeyBlob(privateKey).equals(pub.blob)).toBe(true);
    const data = Buffer.from('proof of possession');
    expect(sshVerify(pub.blob, data, sshSign(privateKey, data))).toBe(true);
  });

  test('GIVEN a passphrase-protected key from ssh-keygen WHEN decoded THEN BadParameterError says it is encrypted', () => {
    // GIVEN
    const path = join(dir.path, 'encrypted');
    sshKeygenOk(['-q', '-t', 'ed25519', '-a', '1', '-N', 'secret passphrase', '-f', path]);

    // WHEN / THEN
    expect(() => decodeOpenSSHPrivateKey(readFileSync(path, 'utf8'))).toThrow(
      new BadParameterError(
        'OpenSSH private key is encrypted (cipher aes256-ctr, kdf bcrypt); only unencrypted keys are supported',
      ),
    );
  });

  test('GIVEN garbage WHEN decoded THEN BadParameterError, never another exception', () => {
    // GIVEN
    const good = body(encodeOpenSSHPrivateKey(keyPair('ed25519').privateKey));
    const cases: Array<[string, RegExp]> = [
      ['hello', /missing BEGIN\/END/],
      [armor(Buffer.from('not the magic at all')), /magic/],
      ['-----BEGIN OPENSSH PRIVATE KEY-----\n%%%\n-----END OPENSSH PRIVATE KEY-----', /not valid base64/],
      [armor(good.subarray(0, good.length - 9)), /truncated/],
      [armor(Buffer.concat([good, Buffer.from([0])])), /trailing bytes/],
    ];
    for (let i = 0; i < 100; i++) {
      const cut = good.subarray(0, Math.floor((good.length * i) / 100));
      cases.push([armor(cut), /OpenSSH private key/]);
    }

    // WHEN / THEN
    for (const [text, message] of cases) {
      expect(() => decodeOpenSSHPrivateKey(text)).toThrow(BadParameterError);
      expect(() => decodeOpenSSHPrivateKey(text)).toThrow(message);
    }
  });

  test('GIVEN a key whose check ints differ WHEN decoded THEN BadParameterError names the check ints', () => {
    // GIVEN
    const data = body(encodeOpenSSHPrivateKey(keyPair('ecdsa-p256').privateKey));
    const r = new SshReader(data.subarray(15));
    r.string();
    r.string();
    r.bytes();
    r.uint32();
    r.bytes();
    const checkOffset = 15 + r.position + 4; // magic, header fields, section length
    data[checkOffset] ^= 0xff;

    // WHEN / THEN
    expect(() => decodeOpenSSHPrivateKey(armor(data))).toThrow(/check ints differ/);
  });

  test('GIVEN a key whose public header belongs to another key WHEN decoded THEN BadParameterError', () => {
    // GIVEN
    const mine = body(encodeOpenSSHPrivateKey(keyPair('ed25519').privateKey));
    const other = publicKeyBlob(keyPair('ed25519', 'other').publicKey);
    const r = new SshReader(mine.subarray(15));
    const fields = [r.string(), r.string(), r.bytes(), r.uint32(), r.bytes(), r.bytes()] as const;
    const forged = new SshWriter()
      .raw(mine.subarray(0, 15))
      .string(fields[0])
      .string(fields[1])
      .string(fields[2])
      .uint32(fields[3])
      .string(other)
      .string(fields[5])
      .toBuffer();

    // WHEN / THEN
    expect(() => decodeOpenSSHPrivateKey(armor(forged))).toThrow(/public key does not match the private key/);
  });
});

describe('loadPrivateKey', () => {
  test.each([
    ['ed25519 PKCS#8', 'ed25519', 'pkcs8'],
    ['ECDSA P-256 SEC1', 'ecdsa-p256', 'sec1'],
    ['ECDSA P-384 PKCS#8', 'ecdsa-p384', 'pkcs8'],
    ['RSA PKCS#1', 'rsa', 'pkcs1'],
    ['RSA PKCS#8', 'rsa', 'pkcs8'],
  ] as const)('GIVEN a %s PEM WHEN loaded THEN it is the same key', (_name, alg, type) => {
    // GIVEN
    const kp = keyPair(alg);
    const pem = kp.privateKey.export({ type, format: 'pem' }) as string;

    // WHEN
    const key = loadPrivateKey(pem);

    // THEN
    expect(publicKeyBlob(key).equals(publicKeyBlob(kp.publicKey))).toBe(true);
  });

  test('GIVEN an OpenSSH key file WHEN loaded THEN it is the same key', () => {
    const kp = keyPair('rsa');
    expect(publicKeyBlob(loadPrivateKey(encodeOpenSSHPrivateKey(kp.privateKey))).equals(publicKeyBlob(kp.publicKey))).toBe(true);
  });

  test('GIVEN text that is no private key, an encrypted PEM or a broken PEM WHEN loaded THEN BadParameterError', () => {
    // GIVEN
    const encrypted = keyPair('ecdsa-p256').privateKey.export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-256-cbc',
      passphrase: 'pw',
    }) as string;

    // WHEN / THEN
    expect(() => loadPrivateKey('ssh-ed25519 AAAA')).toThrow(/not a private key/);
    expect(() => loadPrivateKey(encrypted)).toThrow(/encrypted/);
    expect(() => loadPrivateKey('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n')).toThrow(
      /cannot parse PEM private key/,
    );
    for (const text of ['ssh-ed25519 AAAA', encrypted]) expect(() => loadPrivateKey(text)).toThrow(BadParameterError);
  });
});
