import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { localSigner, Signer } from '../../../runtime/keystore/signer';
import { generateKeyPair, KeyAlgorithm, parseCertificate, publicKeyBlob, signCertificateWith, userCertFields, verifyCertificate } from '../../../runtime/sshcert';
import { createCACert, generateTlsKey, issueCert, publicKeyPem, verifyIssuedBy } from '../../../runtime/tlsca';

const ALGORITHMS: KeyAlgorithm[] = ['ed25519', 'ecdsa-p256', 'ecdsa-p384', 'rsa'];

/** A signer that only exposes Signer (no KeyObject to sign with directly) and records what it was asked. */
function recordingSigner(inner: Signer): Signer & { calls: { hash: string | null }[] } {
  const calls: { hash: string | null }[] = [];
  return { publicKey: inner.publicKey, calls, sign: async (data, hash) => (calls.push({ hash }), inner.sign(data, hash)) };
}

const userCert = (subjectAlg: KeyAlgorithm = 'ed25519') =>
  userCertFields({
    publicKey: publicKeyBlob(generateKeyPair(subjectAlg).publicKey),
    username: 'alice',
    logins: ['alice'],
    permit: { pty: true, portForwarding: false, agentForwarding: false, x11Forwarding: false },
    roles: ['admin'],
  });

describe('SSH certificates signed through a Signer', () => {
  test.each(ALGORITHMS)('GIVEN a %s CA behind a Signer WHEN a user certificate is signed THEN it verifies against the CA public key', async (alg) => {
    // GIVEN
    const signer = recordingSigner(localSigner(generateKeyPair(alg).privateKey));
    // WHEN
    const blob = await signCertificateWith(userCert(), signer);
    // THEN
    expect(() => verifyCertificate(parseCertificate(blob), { trustedCAs: [publicKeyBlob(signer.publicKey)], certType: 'user', principal: 'alice' })).not.toThrow();
    expect(signer.calls).toEqual([{ hash: alg === 'ed25519' ? null : alg === 'rsa' ? 'sha512' : alg === 'ecdsa-p384' ? 'sha384' : 'sha256' }]);
  });

  test('GIVEN a Signer whose signature is not by its public key WHEN a certificate is signed THEN verification refuses it', async () => {
    // GIVEN: the public key of one key, signatures by another
    const other = localSigner(generateKeyPair('ecdsa-p256').privateKey);
    const liar: Signer = { publicKey: generateKeyPair('ecdsa-p256').publicKey, sign: (d, h) => other.sign(d, h) };
    // WHEN
    const blob = await signCertificateWith(userCert(), liar);
    // THEN
    expect(() => verifyCertificate(parseCertificate(blob), { trustedCAs: [publicKeyBlob(liar.publicKey)], certType: 'user' })).toThrow(/signature is invalid/);
  });

  test('GIVEN a Signer returning a short ECDSA signature WHEN signing THEN a clear error, no certificate', async () => {
    // GIVEN
    const broken: Signer = { publicKey: generateKeyPair('ecdsa-p256').publicKey, sign: async () => Buffer.alloc(10) };
    // WHEN / THEN
    await expect(signCertificateWith(userCert(), broken)).rejects.toThrow(/ECDSA signature is 10 bytes, expected 64/);
  });
});

describe('X.509 certificates signed through a Signer', () => {
  test.each(['P-256', 'P-384', 'rsa'])('GIVEN a %s TLS CA key behind a Signer WHEN the CA certificate and a leaf are made THEN the leaf verifies against the CA', async (kind) => {
    // GIVEN
    const key = kind === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey : generateKeyPairSync('ec', { namedCurve: kind }).privateKey;
    const signer = recordingSigner(localSigner(key));
    const caCert = await createCACert('acme', signer);
    // WHEN
    const leaf = await issueCert({
      ca: { cert: caCert, signer },
      publicKey: publicKeyPem(generateTlsKey()),
      identity: { username: 'alice', groups: ['admin'], principals: ['alice'] },
      ttlMs: 3600_000,
    });
    // THEN
    expect(() => verifyIssuedBy(leaf, caCert)).not.toThrow();
    expect(signer.calls.length).toBe(2);
    expect(signer.calls[0].hash).toBe(kind === 'P-384' ? 'sha384' : 'sha256');
  });

  test('GIVEN a TLS Signer that signs with another key WHEN a leaf is issued THEN it does not verify against the CA', async () => {
    // GIVEN
    const real = localSigner(createPrivateKey(generateTlsKey()));
    const caCert = await createCACert('acme', real);
    const other = localSigner(createPrivateKey(generateTlsKey()));
    // WHEN
    const leaf = await issueCert({
      ca: { cert: caCert, signer: { publicKey: real.publicKey, sign: (d, h) => other.sign(d, h) } },
      publicKey: publicKeyPem(generateTlsKey()),
      identity: { username: 'alice', groups: [], principals: [] },
      ttlMs: 3600_000,
    });
    // THEN
    expect(() => verifyIssuedBy(leaf, caCert)).toThrow(/not signed by the cluster CA/);
  });
});
