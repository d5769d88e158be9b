/** The CAs' keys through a key store: made there, referenced in the backend, and not left behind by a losing candidate. */
import { MemoryBackend } from '../../../runtime/backend/memory';
import { Authorities } from '../../../runtime/auth/authorities';
import { CAKeyStores, LocalKeyStore, type KeyStore, type KeyUse } from '../../../runtime/keystore';
import type { Signer } from '../../../runtime/keystore/signer';
import { parseCertificate, publicKeyBlob, signCertificateWith, userCertFields, verifyCertificate, generateKeyPair } from '../../../runtime/sshcert';

/** A key store that keeps in-process keys under `test:<n>` references and records what it is asked. */
class RecordingStore implements KeyStore {
  readonly description = 'test store';
  readonly generated: string[] = [];
  readonly deleted: string[] = [];
  private readonly keys = new Map<string, string>();
  private readonly local = new LocalKeyStore();
  /** Runs after each key is made (to let another auth server win the race meanwhile). */
  afterGenerate?: () => Promise<void>;

  async generate(use: KeyUse): Promise<{ ref: string; signer: Signer }> {
    const made = await this.local.generate(use);
    const ref = `test:${this.keys.size + this.deleted.length}:${Math.random()}`;
    this.keys.set(ref, made.ref);
    this.generated.push(ref);
    await this.afterGenerate?.();
    return { ref, signer: made.signer };
  }
  owns(ref: string): boolean {
    return ref.startsWith('test:');
  }
  async load(ref: string): Promise<Signer> {
    const pem = this.keys.get(ref);
    if (!pem) throw new Error(`no key ${ref}`);
    return this.local.load(pem);
  }
  async delete(ref: string): Promise<void> {
    this.keys.delete(ref);
    this.deleted.push(ref);
  }
  async close(): Promise<void> {}
}

const unb64 = (s: string) => Buffer.from(s, 'base64').toString();

const backends: MemoryBackend[] = [];
function memory(): MemoryBackend {
  const b = new MemoryBackend();
  backends.push(b);
  return b;
}
afterEach(async () => {
  for (const b of backends.splice(0)) await b.close();
});

describe('Authorities.init with a key store', () => {
  test('GIVEN a key store WHEN the CAs are created THEN the backend holds its references, not keys, and the CAs sign through it', async () => {
    // GIVEN
    const backend = memory();
    const store = new RecordingStore();
    // WHEN
    const { user } = await new Authorities(backend).init('acme', 'ecdsa-p256', new CAKeyStores(store));
    // THEN
    const stored = (await new Authorities(backend).get('user', 'acme')).resource.spec;
    expect(unb64(stored.signing_keys[0])).toMatch(/^test:/);
    expect(unb64(stored.tls_key_pairs[0].key)).toMatch(/^test:/);
    const blob = await signCertificateWith(
      userCertFields({ publicKey: publicKeyBlob(generateKeyPair('ed25519').publicKey), username: 'alice', logins: ['alice'], permit: { pty: true, portForwarding: false, agentForwarding: false, x11Forwarding: false }, roles: [] }),
      user.sshSigner(),
    );
    expect(() => verifyCertificate(parseCertificate(blob), { trustedCAs: user.checkingKeys(), certType: 'user' })).not.toThrow();
  });

  test('GIVEN another auth server creates the CA while this one makes its keys WHEN init finishes THEN this one deletes its candidate keys and signs with the winner\'s', async () => {
    // GIVEN: the winner (another auth server on the same storage and store) writes its CAs during our generate
    const backend = memory();
    const store = new RecordingStore();
    let raced = false;
    store.afterGenerate = async () => {
      if (raced) return;
      raced = true;
      await new Authorities(backend).init('acme', 'ecdsa-p256', new CAKeyStores(store));
    };
    // WHEN
    const { user, host } = await new Authorities(backend).init('acme', 'ecdsa-p256', new CAKeyStores(store));
    // THEN: our two candidate keys for the user CA (made first, before the winner's four) were deleted
    expect(store.deleted).toEqual([store.generated[0], store.generated[5]]);
    const stored = await new Authorities(backend).get('user', 'acme');
    expect(user.checkingKeys()).toEqual(stored.checkingKeys());
    expect(store.deleted).not.toContain(unb64(stored.resource.spec.signing_keys[0]));
    expect(host.checkingKeys()).toEqual((await new Authorities(backend).get('host', 'acme')).checkingKeys());
  });

  test('GIVEN a CA whose key reference no configured store owns WHEN init loads it THEN a clear error names ca_key_params', async () => {
    const backend = memory();
    await new Authorities(backend).init('acme', 'ecdsa-p256', new CAKeyStores(new RecordingStore()));
    await expect(new Authorities(backend).init('acme', 'ecdsa-p256', new CAKeyStores(new LocalKeyStore()))).rejects.toThrow(
      /a CA key is a test key reference, but this auth server has no such key store configured \(auth_service\.ca_key_params\)/,
    );
  });
});
