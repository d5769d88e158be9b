import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  SshWriter,
  fingerprintSHA256,
  formatAuthorizedKey,
  generateKeyPair,
  KeyAlgorithm,
  KeyPair,
  parseAuthorizedKey,
  parsePublicKeyBlob,
  publicKeyBlob,
  signatureAlgorithm,
  signCertificate,
  sshKeyType,
  sshSign,
  sshVerify,
} from '../../../runtime/sshcert';
import { BadParameterError } from '../../../runtime/utils/errors';
import { ALGORITHMS, keyPair, makeTempDir, sshKeygenOk, writePublicKeyFile } from './fixtures';

const SSH_TYPES = {
  ed25519: 'ssh-ed25519',
  'ecdsa-p256': 'ecdsa-sha2-nistp256',
  'ecdsa-p384': 'ecdsa-sha2-nistp384',
  rsa: 'ssh-rsa',
} as const;

const dir = makeTempDir();
afterAll(() => dir.remove());

let rsaDefault: KeyPair | undefined;
/** The one default-size RSA key of this file; it doubles as the "other" RSA key. */
const rsaDefaultKey = (): KeyPair => (rsaDefault ??= generateKeyPair('rsa'));
const otherKey = (alg: KeyAlgorithm): KeyPair => (alg === 'rsa' ? rsaDefaultKey() : keyPair(alg, 'other'));

describe('generateKeyPair', () => {
  test.each(ALGORITHMS)('GIVEN %s WHEN generated THEN both halves have the matching SSH key type', (alg) => {
    // WHEN
    const kp = keyPair(alg);

    // THEN
    expect(kp.algorithm).toBe(alg);
    expect(kp.privateKey.type).toBe('private');
    expect(kp.publicKey.type).toBe('public');
    expect(sshKeyType(kp.privateKey)).toBe(SSH_TYPES[alg]);
    expect(sshKeyType(kp.publicKey)).toBe(SSH_TYPES[alg]);
  });

  test('GIVEN rsa without rsaBits WHEN generated THEN the modulus is 3072 bits', () => {
    const kp = rsaDefaultKey();
    expect(kp.publicKey.asymmetricKeyDetails?.modulusLength).toBe(3072);
  });

  test('GIVEN an RSA size below 2048 or an unknown algorithm WHEN generating THEN BadParameterError', () => {
    expect(() => generateKeyPair('rsa', { rsaBits: 1024 })).toThrow(BadParameterError);
    expect(() => generateKeyPair('dsa' as never)).toThrow(BadParameterError);
  });
});

describe('publicKeyBlob', () => {
  test.each(ALGORITHMS)('GIVEN a %s key WHEN blobbed from private and public halves THEN both give the same blob, which parses back to the key', (alg) => {
    // GIVEN
    const kp = keyPair(alg);

    // WHEN
    const fromPrivate = publicKeyBlob(kp.privateKey);
    const fromPublic = publicKeyBlob(kp.publicKey);
    const parsed = parsePublicKeyBlob(fromPublic);

    // THEN
    expect(fromPrivate.equals(fromPublic)).toBe(true);
    expect(parsed.type).toBe(SSH_TYPES[alg]);
    expect(parsed.publicKey.export({ type: 'spki', format: 'der' })).toEqual(kp.publicKey.export({ type: 'spki', format: 'der' }));
  });

  test.each(['ecdsa-p256', 'ecdsa-p384', 'rsa'] as const)(
    'GIVEN a %s public key in PKCS#8 PEM WHEN ssh-keygen -i converts it THEN it prints our authorized_keys line',
    (alg) => {
      // GIVEN
      const kp = keyPair(alg);
      const pem = join(dir.path, `pub-${alg}.pem`);
      writeFileSync(pem, kp.publicKey.export({ type: 'spki', format: 'pem' }));

      // WHEN
      const out = sshKeygenOk(['-i', '-m', 'PKCS8', '-f', pem]).trim();

      // THEN
      expect(out).toBe(formatAuthorizedKey(publicKeyBlob(kp.publicKey)));
    },
  );

  test.each(ALGORITHMS)('GIVEN a %s public key file WHEN ssh-keygen -l fingerprints it THEN fingerprintSHA256 agrees', (alg) => {
    // GIVEN
    const blob = publicKeyBlob(keyPair(alg).publicKey);
    const file = writePublicKeyFile(dir.path, `fp-${alg}.pub`, blob, 'fp');

    // WHEN
    const out = sshKeygenOk(['-l', '-E', 'sha256', '-f', file]);

    // THEN
    expect(out.split(' ')[1]).toBe(fingerprintSHA256(blob));
    expect(fingerprintSHA256(blob)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });

  test('GIVEN a certificate blob WHEN parsed as a plain key THEN BadParameterError says it is a certificate', () => {
    // GIVEN
    const ca = keyPair('ed25519');
    const cert = signCertificate(
      {
        certType: 'user',
        publicKey: publicKeyBlob(ca.publicKey),
        serial: 1n,
        keyId: 'x',
        principals: [],
        validAfter: 0n,
        validBefore: 10n,
        criticalOptions: {},
        extensions: {},
      },
      ca.privateKey,
    );

    // WHEN / THEN
    expect(() => parsePublicKeyBlob(cert)).toThrow(/expected a plain public key, got a certificate/);
  });

  test('GIVEN malformed key blobs WHEN parsed THEN BadParameterError names the defect', () => {
    // GIVEN
    const good = publicKeyBlob(keyPair('ed25519').publicKey);
    const p256 = publicKeyBlob(keyPair('ecdsa-p256').publicKey);
    const offCurve = Buffer.from(p256);
    offCurve[offCurve.length - 1] ^= 1;

    // WHEN / THEN
    expect(() => parsePublicKeyBlob(good.subarray(0, good.length - 1))).toThrow(/truncated reading ed25519 public key/);
    expect(() => parsePublicKeyBlob(Buffer.concat([good, Buffer.from([0])]))).toThrow(/1 unexpected trailing bytes/);
    expect(() => parsePublicKeyBlob(new SshWriter().string('ssh-dss').string('x').toBuffer())).toThrow(/unsupported SSH key type "ssh-dss"/);
    expect(() => parsePublicKeyBlob(new SshWriter().string('ssh-ed25519').string(Buffer.alloc(31)).toBuffer())).toThrow(/31 bytes, want 32/);
    expect(() => parsePublicKeyBlob(offCurve)).toThrow(BadParameterError);
    expect(() =>
      parsePublicKeyBlob(new SshWriter().string('ecdsa-sha2-nistp256').string('nistp384').string(Buffer.alloc(65, 4)).toBuffer()),
    ).toThrow(/curve "nistp384" does not match/);
    expect(() => parsePublicKeyBlob(new SshWriter().string('ssh-rsa').mpint(65537n).mpint(0xffffn).toBuffer())).toThrow(
      /below the minimum of 1024/,
    );
  });
});

describe('authorized_keys lines', () => {
  test('GIVEN a blob and a comment with spaces WHEN formatted and parsed THEN type, blob and comment round-trip', () => {
    // GIVEN
    const blob = publicKeyBlob(keyPair('ecdsa-p384').publicKey);

    // WHEN
    const line = formatAuthorizedKey(blob, 'alice at laptop');
    const parsed = parseAuthorizedKey(line + '\n');

    // THEN
    expect(line.startsWith('ecdsa-sha2-nistp384 AAAA')).toBe(true);
    expect(parsed).toEqual({ type: 'ecdsa-sha2-nistp384', blob, comment: 'alice at laptop' });
    expect(parseAuthorizedKey(formatAuthorizedKey(blob)).comment).toBe('');
  });

  test('GIVEN a key made by ssh-keygen WHEN its .pub line is parsed THEN the blob is a key that matches its private key', () => {
    // GIVEN
    const path = join(dir.path, 'kg-ed25519');
    sshKeygenOk(['-q', '-t', 'ed25519', '-N', '', '-C', 'made by ssh-keygen', '-f', path]);
    const line = sshKeygenOk(['-y', '-f', path]).trim();

    // WHEN
    const parsed = parseAuthorizedKey(line);

    // THEN
    expect(parsed.type).toBe('ssh-ed25519');
    expect(parsed.comment).toBe('made by ssh-keygen');
    expect(parsePublicKeyBlob(parsed.blob).type).toBe('ssh-ed25519');
  });

  test('GIVEN bad lines WHEN parsed THEN BadParameterError says what is wrong', () => {
    const blob = publicKeyBlob(keyPair('ed25519').publicKey);
    expect(() => parseAuthorizedKey('ssh-ed25519')).toThrow(/must be "<type> <base64> \[comment\]"/);
    expect(() => parseAuthorizedKey('ssh-ed25519 AAAA*AAA')).toThrow(/not valid base64/);
    expect(() => parseAuthorizedKey('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA=')).toThrow(/not valid base64/);
    expect(() => parseAuthorizedKey(`ssh-rsa ${blob.toString('base64')}`)).toThrow(/says "ssh-rsa" but the key data is "ssh-ed25519"/);
  });
});

describe('sshSign / sshVerify', () => {
  const data = Buffer.from('the data to sign');

  test.each(ALGORITHMS)('GIVEN a %s key WHEN data is signed THEN the signature verifies with the key and its blob, and not for other data', (alg) => {
    // GIVEN
    const kp = keyPair(alg);

    // WHEN
    const sig = sshSign(kp.privateKey, data);

    // THEN
    expect(signatureAlgorithm(sig)).toBe(alg === 'rsa' ? 'rsa-sha2-512' : SSH_TYPES[alg]);
    expect(sshVerify(kp.publicKey, data, sig)).toBe(true);
    expect(sshVerify(publicKeyBlob(kp.publicKey), data, sig)).toBe(true);
    expect(sshVerify(kp.publicKey, Buffer.from('other data'), sig)).toBe(false);
    expect(sshVerify(otherKey(alg).publicKey, data, sig)).toBe(false);
  });

  test('GIVEN RSA PKCS#1 signatures named rsa-sha2-256 and ssh-rsa WHEN verified THEN SHA-256 is accepted and SHA-1 refused', () => {
    // GIVEN
    const kp = keyPair('rsa');
    const blobOf = (alg: string, hash: string) =>
      new SshWriter().string(alg).string(sign(hash, data, kp.privateKey)).toBuffer();

    // WHEN / THEN
    expect(sshVerify(kp.publicKey, data, blobOf('rsa-sha2-256', 'sha256'))).toBe(true);
    expect(sshVerify(kp.publicKey, data, blobOf('ssh-rsa', 'sha1'))).toBe(false);
    expect(sshVerify(kp.publicKey, data, blobOf('rsa-sha2-512', 'sha256'))).toBe(false);
  });

  test('GIVEN a valid signature relabelled with another algorithm WHEN verified THEN it is refused', () => {
    // GIVEN
    const kp = keyPair('ecdsa-p256');
    const sig = sshSign(kp.privateKey, data);
    const r = sig.subarray(4 + 'ecdsa-sha2-nistp256'.length);
    const relabelled = Buffer.concat([new SshWriter().string('ecdsa-sha2-nistp384').toBuffer(), r]);

    // WHEN / THEN
    expect(sshVerify(kp.publicKey, data, relabelled)).toBe(false);
    expect(sshVerify(keyPair('ed25519').publicKey, data, sig)).toBe(false);
  });

  test.each(ALGORITHMS)('GIVEN malformed %s signatures WHEN verified THEN false, never an exception', (alg) => {
    // GIVEN
    const kp = keyPair(alg);
    const sig = sshSign(kp.privateKey, data);
    const inputs = [
      Buffer.alloc(0),
      randomBytes(64),
      sig.subarray(0, sig.length - 1),
      Buffer.concat([sig, Buffer.from([0])]),
      new SshWriter().string(signatureAlgorithm(sig)!).string(Buffer.alloc(0)).toBuffer(),
      new SshWriter().string(signatureAlgorithm(sig)!).string(randomBytes(600)).toBuffer(),
    ];
    for (let pos = 0; pos < sig.length; pos += 3) {
      const flipped = Buffer.from(sig);
      flipped[pos] ^= 1 << pos % 8;
      inputs.push(flipped);
    }

    // WHEN
    const results = inputs.map((s) => sshVerify(kp.publicKey, data, s));

    // THEN
    expect(results.every((ok) => ok === false)).toBe(true);
  });

  test('GIVEN a public key WHEN used to sign THEN BadParameterError', () => {
    expect(() => sshSign(keyPair('ed25519').publicKey, data)).toThrow(new BadParameterError('sshSign needs a private key'));
  });

  test('GIVEN an unsupported curve WHEN its type is asked THEN BadParameterError names the curve', () => {
    const p521 = generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey;
    expect(() => sshKeyType(p521)).toThrow(/unsupported ECDSA curve "secp521r1"/);
  });
});
