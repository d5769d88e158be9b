/**
 * Certificates against the real ssh-keygen (OpenSSH 9.2): ours listed by
 * `ssh-keygen -L` (which also checks the CA signature), and theirs made by
 * `ssh-keygen -s` read and verified by us.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  Certificate,
  fingerprintSHA256,
  formatAuthorizedKey,
  KeyAlgorithm,
  parseCertificate,
  publicKeyBlob,
  signatureAlgorithm,
  signCertificate,
  signHostCert,
  signUserCert,
  sshKeyType,
  verifyCertificate,
} from '../../../runtime/sshcert';
import { AccessDeniedError } from '../../../runtime/utils/errors';
import {
  ALGORITHMS,
  keyPair,
  keygenValidity,
  makeTempDir,
  parseKeygenListing,
  sshKeygen,
  sshKeygenOk,
  writePrivateKeyFile,
  writePublicKeyFile,
} from './fixtures';

const CA_KIND: Record<KeyAlgorithm, string> = { ed25519: 'ED25519', 'ecdsa-p256': 'ECDSA', 'ecdsa-p384': 'ECDSA', rsa: 'RSA' };
const CA_SIG_ALG: Record<KeyAlgorithm, string> = {
  ed25519: 'ssh-ed25519',
  'ecdsa-p256': 'ecdsa-sha2-nistp256',
  'ecdsa-p384': 'ecdsa-sha2-nistp384',
  rsa: 'rsa-sha2-512',
};
/** Each CA signs a subject of the next algorithm, so all four certificate types are covered. */
const subjectFor = (ca: KeyAlgorithm): KeyAlgorithm => ALGORITHMS[(ALGORITHMS.indexOf(ca) + 1) % ALGORITHMS.length];

const dir = makeTempDir();
afterAll(() => dir.remove());

function listWithKeygen(name: string, blob: Buffer) {
  const path = join(dir.path, `${name}-cert.pub`);
  writeFileSync(path, formatAuthorizedKey(blob, name) + '\n');
  return parseKeygenListing(sshKeygenOk(['-L', '-f', path]));
}

function expectListingAgrees(listing: ReturnType<typeof parseKeygenListing>, cert: Certificate, caAlg: KeyAlgorithm): void {
  expect(listing).toEqual({
    algorithm: cert.type,
    certType: cert.certType,
    publicKeyFingerprint: fingerprintSHA256(cert.publicKey),
    caKind: CA_KIND[caAlg],
    caFingerprint: fingerprintSHA256(publicKeyBlob(keyPair(caAlg).publicKey)),
    caSignatureAlgorithm: CA_SIG_ALG[caAlg],
    keyId: cert.keyId,
    serial: cert.serial,
    valid: keygenValidity(cert.validAfter, cert.validBefore),
    principals: cert.principals,
    criticalOptions: cert.criticalOptions,
    extensions: cert.extensions,
  });
}

describe('our certificates, listed by ssh-keygen -L', () => {
  test.each(ALGORITHMS)('GIVEN a %s CA WHEN it signs a user certificate with options THEN ssh-keygen -L agrees on every field', (caAlg) => {
    // GIVEN
    const ca = keyPair(caAlg);
    const subject = keyPair(subjectFor(caAlg));

    // WHEN
    const blob = signCertificate(
      {
        certType: 'user',
        publicKey: publicKeyBlob(subject.publicKey),
        serial: 0xfffffffffffffffen,
        keyId: 'alice@example.com',
        principals: ['alice', 'root', 'ec2-user'],
        validAfter: 1_700_000_000n,
        validBefore: 1_700_043_200n,
        criticalOptions: { 'source-address': '10.0.0.0/8,192.168.1.1/32', 'force-command': '/usr/bin/id -a' },
        extensions: {
          'permit-pty': '',
          'permit-X11-forwarding': '',
          'permit-agent-forwarding': '',
          'teleport-roles': '{"version":"v1","roles":["admin"]}',
          'teleport-route-to-cluster': 'leaf.example.com',
        },
      },
      ca.privateKey,
    );
    const cert = parseCertificate(blob);

    // THEN
    const listing = listWithKeygen(`user-${caAlg}`, blob);
    expectListingAgrees(listing, cert, caAlg);
    expect(listing.algorithm).toBe(`${sshKeyType(subject.publicKey)}-cert-v01@openssh.com`);
    expect(listing.serial).toBe(0xfffffffffffffffen);
    expect(listing.valid).toBe('from 2023-11-14T22:13:20 to 2023-11-15T10:13:20');
    expect(listing.criticalOptions).toEqual({ 'force-command': '/usr/bin/id -a', 'source-address': '10.0.0.0/8,192.168.1.1/32' });
    expect(listing.extensions['teleport-roles']).toBe('{"version":"v1","roles":["admin"]}');
  });

  test.each(ALGORITHMS)('GIVEN a %s CA WHEN signHostCert issues a host certificate THEN ssh-keygen -L agrees on every field', (caAlg) => {
    // GIVEN
    const ca = keyPair(caAlg);
    const subject = keyPair(subjectFor(caAlg));

    // WHEN
    const blob = signHostCert({
      caPrivateKey: ca.privateKey,
      publicKey: publicKeyBlob(subject.publicKey),
      hostUUID: '5a1e0b7c-7d44-4a43-a2f5-0c1b2c3d4e5f',
      nodeName: 'web-1',
      clusterName: 'example.com',
      role: 'Node',
      additionalPrincipals: ['10.1.2.3', 'web-1'],
      now: new Date('2030-01-02T03:04:05Z'),
    });
    const cert = parseCertificate(blob);

    // THEN
    const listing = listWithKeygen(`host-${caAlg}`, blob);
    expectListingAgrees(listing, cert, caAlg);
    expect(listing.certType).toBe('host');
    expect(listing.valid).toBe('after 2030-01-02T03:03:05');
    expect(listing.principals).toEqual([
      '5a1e0b7c-7d44-4a43-a2f5-0c1b2c3d4e5f.example.com',
      '5a1e0b7c-7d44-4a43-a2f5-0c1b2c3d4e5f',
      'web-1.example.com',
      'web-1',
      '10.1.2.3',
    ]);
    expect(listing.extensions).toEqual({ 'x-teleport-authority': 'example.com', 'x-teleport-role': 'Node' });
  });

  test('GIVEN signUserCert with every permission, traits and a route WHEN listed THEN ssh-keygen shows the policy extensions', () => {
    // GIVEN
    const ca = keyPair('ed25519');

    // WHEN
    const blob = signUserCert({
      caPrivateKey: ca.privateKey,
      publicKey: publicKeyBlob(keyPair('ecdsa-p256').publicKey),
      username: 'alice',
      logins: ['alice', 'root'],
      permit: { pty: true, portForwarding: true, agentForwarding: true, x11Forwarding: true },
      roles: ['admin', 'dev'],
      traits: { logins: ['alice', 'root'] },
      routeToCluster: 'leaf',
      now: new Date('2030-06-01T12:00:00Z'),
    });

    // THEN
    const listing = listWithKeygen('policy-user', blob);
    expectListingAgrees(listing, parseCertificate(blob), 'ed25519');
    expect(listing.valid).toBe('from 2030-06-01T11:59:00 to 2030-06-02T00:00:00');
    expect(listing.extensions).toEqual({
      'permit-X11-forwarding': '',
      'permit-agent-forwarding': '',
      'permit-port-forwarding': '',
      'permit-pty': '',
      'teleport-roles': '{"version":"v1","roles":["admin","dev"]}',
      'teleport-route-to-cluster': 'leaf',
      'teleport-traits': '{"logins":["alice","root"]}',
    });
  });

  test('GIVEN one of our certificates with a flipped signature byte WHEN ssh-keygen -L reads it THEN ssh-keygen refuses it too', () => {
    // GIVEN
    const ca = keyPair('ed25519');
    const blob = signHostCert({
      caPrivateKey: ca.privateKey,
      publicKey: publicKeyBlob(keyPair('ed25519', 'subject').publicKey),
      hostUUID: 'u',
      clusterName: 'c',
      role: 'Node',
    });
    blob[blob.length - 1] ^= 1;
    const path = writePublicKeyFile(dir.path, 'tampered-cert.pub', blob);

    // WHEN
    const r = sshKeygen(['-L', '-f', path]);

    // THEN
    expect(r.status).not.toBe(0);
    expect(() => verifyCertificate(parseCertificate(blob), { trustedCAs: [publicKeyBlob(ca.publicKey)], certType: 'host' })).toThrow(
      /CA signature is invalid/,
    );
  });
});

describe('certificates made by ssh-keygen -s, read and verified by us', () => {
  // 2030-01-01T00:00:00Z .. 2030-01-02T00:00:00Z; TZ=UTC makes ssh-keygen read -V in UTC.
  const VALIDITY = '20300101000000:20300102000000';
  const FROM = 1893456000n;
  const TO = 1893542400n;
  const INSIDE = new Date('2030-01-01T12:00:00Z');

  function keygenSign(caAlg: KeyAlgorithm, name: string, args: string[]): Certificate {
    const caPath = writePrivateKeyFile(dir.path, `ca-${caAlg}`, keyPair(caAlg).privateKey, 'ca');
    const pubPath = writePublicKeyFile(dir.path, `${name}.pub`, keyPair(subjectFor(caAlg)).publicKey, name);
    sshKeygenOk(['-q', '-s', caPath, ...args, pubPath]);
    return parseCertificate(readFileSync(join(dir.path, `${name}-cert.pub`), 'utf8'));
  }

  test.each(ALGORITHMS)(
    'GIVEN a %s CA in our key format WHEN ssh-keygen -s signs a user cert with -I -n -V -z -O THEN every field parses as passed and verify accepts it when the options are allowed',
    (caAlg) => {
      // GIVEN
      const caBlob = publicKeyBlob(keyPair(caAlg).publicKey);

      // WHEN
      const cert = keygenSign(caAlg, `kg-user-${caAlg}`, [
        '-I', 'bob@example.com',
        '-n', 'bob,deploy',
        '-V', VALIDITY,
        '-z', '4242',
        '-O', 'no-pty',
        '-O', 'force-command=/usr/bin/uptime',
        '-O', 'source-address=10.0.0.0/8',
      ]);

      // THEN
      expect(cert.type).toBe(`${sshKeyType(keyPair(subjectFor(caAlg)).publicKey)}-cert-v01@openssh.com`);
      expect(cert.certType).toBe('user');
      expect(cert.keyId).toBe('bob@example.com');
      expect(cert.principals).toEqual(['bob', 'deploy']);
      expect(cert.serial).toBe(4242n);
      expect(cert.validAfter).toBe(FROM);
      expect(cert.validBefore).toBe(TO);
      expect(cert.criticalOptions).toEqual({ 'force-command': '/usr/bin/uptime', 'source-address': '10.0.0.0/8' });
      expect(cert.extensions).toEqual({
        'permit-X11-forwarding': '',
        'permit-agent-forwarding': '',
        'permit-port-forwarding': '',
        'permit-user-rc': '',
      });
      expect(cert.publicKey.equals(publicKeyBlob(keyPair(subjectFor(caAlg)).publicKey))).toBe(true);
      expect(cert.signatureKey.equals(caBlob)).toBe(true);
      expect(signatureAlgorithm(cert.signature)).toBe(CA_SIG_ALG[caAlg]);
      expect(cert.nonce.length).toBe(32);
      expect(() =>
        verifyCertificate(cert, {
          trustedCAs: [caBlob],
          certType: 'user',
          principal: 'deploy',
          now: INSIDE,
          allowedCriticalOptions: ['force-command', 'source-address'],
        }),
      ).not.toThrow();
    },
  );

  test('GIVEN an ssh-keygen user cert with force-command WHEN verified without allowing it THEN refused naming the option', () => {
    // GIVEN
    const cert = keygenSign('ed25519', 'kg-force', ['-I', 'carol', '-n', 'carol', '-V', VALIDITY, '-O', 'force-command=/bin/true']);

    // WHEN / THEN
    expect(() =>
      verifyCertificate(cert, {
        trustedCAs: [publicKeyBlob(keyPair('ed25519').publicKey)],
        certType: 'user',
        principal: 'carol',
        now: INSIDE,
      }),
    ).toThrow(new AccessDeniedError('certificate "carol": unsupported critical option "force-command"'));
  });

  test.each(ALGORITHMS)('GIVEN a %s CA WHEN ssh-keygen -s -h signs a host cert THEN it parses and verifies as a host cert for its names', (caAlg) => {
    // GIVEN
    const caBlob = publicKeyBlob(keyPair(caAlg).publicKey);

    // WHEN
    const cert = keygenSign(caAlg, `kg-host-${caAlg}`, ['-h', '-I', 'node-7', '-n', 'node-7.example.com,10.0.0.7', '-V', VALIDITY]);

    // THEN
    expect(cert.certType).toBe('host');
    expect(cert.keyId).toBe('node-7');
    expect(cert.principals).toEqual(['node-7.example.com', '10.0.0.7']);
    expect(cert.criticalOptions).toEqual({});
    expect(cert.extensions).toEqual({});
    expect(cert.serial).toBe(0n);
    const opts = { trustedCAs: [caBlob], certType: 'host' as const, now: INSIDE };
    expect(() => verifyCertificate(cert, { ...opts, principal: '10.0.0.7' })).not.toThrow();
    expect(() => verifyCertificate(cert, { ...opts, certType: 'user', principal: '10.0.0.7' })).toThrow(
      /is a host certificate, expected a user certificate/,
    );
  });

  test('GIVEN an RSA CA WHEN ssh-keygen signs with -t rsa-sha2-256 THEN verify accepts; with -t ssh-rsa THEN verify refuses SHA-1', () => {
    // GIVEN
    const caBlob = publicKeyBlob(keyPair('rsa').publicKey);
    const opts = { trustedCAs: [caBlob], certType: 'user' as const, principal: 'dave', now: INSIDE };

    // WHEN
    const sha256 = keygenSign('rsa', 'kg-rsa256', ['-t', 'rsa-sha2-256', '-I', 'dave', '-n', 'dave', '-V', VALIDITY]);
    const sha1 = keygenSign('rsa', 'kg-rsa1', ['-t', 'ssh-rsa', '-I', 'dave', '-n', 'dave', '-V', VALIDITY]);

    // THEN
    expect(signatureAlgorithm(sha256.signature)).toBe('rsa-sha2-256');
    expect(() => verifyCertificate(sha256, opts)).not.toThrow();
    expect(signatureAlgorithm(sha1.signature)).toBe('ssh-rsa');
    expect(() => verifyCertificate(sha1, opts)).toThrow(/CA signature uses ssh-rsa \(SHA-1\), which is refused/);
  });
});
