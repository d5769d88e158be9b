/**
 * The recording proxy's host certificates for targets (hostcerts.ts): reused while valid and from
 * the host CA's signing key; a host CA rotation that moves the signing key gets a new one.
 */
import { ForwardingHostKeys } from '../../../runtime/proxy/hostcerts';
import { formatAuthorizedKey, generateKeyPair, parseAuthorizedKey, parseCertificate, publicKeyBlob, signHostCert } from '../../../runtime/sshcert';

describe('recording proxy host certificates', () => {
  it('GIVEN a certificate cached from the old signing key WHEN the host CA signs with a new one THEN a new certificate is asked for, and reused after that', async () => {
    // GIVEN an auth server whose host CA signs with `signing`
    const oldCA = generateKeyPair('ed25519');
    const newCA = generateKeyPair('ed25519');
    let signing = oldCA;
    const issued: Buffer[] = [];
    const client = {
      post: async <T>(_path: string, body: unknown): Promise<T> => {
        const { public_key } = body as { public_key: string };
        const blob = signHostCert({
          caPrivateKey: signing.privateKey,
          publicKey: parseAuthorizedKey(Buffer.from(public_key, 'base64').toString()).blob,
          hostUUID: 'db-1',
          clusterName: 'example.com',
          role: 'Node',
          ttlMs: 3600_000,
        });
        issued.push(blob);
        return { cert: Buffer.from(formatAuthorizedKey(blob)).toString('base64') } as T;
      },
    };
    const keys = new ForwardingHostKeys(client, () => publicKeyBlob(signing.publicKey));
    const caOf = (i: number) => parseCertificate(issued[i]).signatureKey;
    // WHEN the same names are asked for twice THEN one certificate, from the old key
    await keys.forNames(['db-1']);
    await keys.forNames(['db-1']);
    expect(issued).toHaveLength(1);
    expect(caOf(0).equals(publicKeyBlob(oldCA.publicKey))).toBe(true);
    // WHEN the signing key moves (update_clients) THEN a new certificate, from the new key, then reused
    signing = newCA;
    await keys.forNames(['db-1']);
    await keys.forNames(['db-1']);
    expect(issued).toHaveLength(2);
    expect(caOf(1).equals(publicKeyBlob(newCA.publicKey))).toBe(true);
  });
});
