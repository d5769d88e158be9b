/**
 * Where the CA private keys live. A CA resource stores, per key, a reference
 * its key store understands: a PEM private key for the in-process store
 * (today's default: the key is in the backend), `pkcs11:{...}` for a key
 * inside a PKCS#11 token. Signing goes through the Signer the reference
 * loads. A CA may hold several references (rotation); the first is active.
 */
import { createPrivateKey } from 'node:crypto';
import { generateKeyPair, KeyAlgorithm } from '../sshcert/keys';
import { BadParameterError } from '../utils/errors';
import { localSigner, Signer } from './signer';

/** What a CA key is used for: the TLS CA keys are always ECDSA P-256 (or the HSM's kind). */
export type KeyUse = { kind: 'ssh'; algorithm: KeyAlgorithm } | { kind: 'tls' };

export interface KeyStore {
  /** For messages: "in-process", "PKCS#11 token \"hsm1\"". */
  readonly description: string;
  /** A new key; returns the reference the CA resource stores and the key's signer. `label` names it in the token. */
  generate(use: KeyUse, label: string): Promise<{ ref: string; signer: Signer }>;
  /** Whether a stored reference is one of this store's. */
  owns(ref: string): boolean;
  /** The signer of a stored reference; a clear error when the key is not reachable. */
  load(ref: string): Promise<Signer>;
  /** Removes a key this store generated (a candidate CA that lost the race to another auth server). */
  delete(ref: string): Promise<void>;
  close(): Promise<void>;
}

/** Keys in this process, stored in the backend as PEM (PKCS#8). */
export class LocalKeyStore implements KeyStore {
  readonly description = 'in-process (keys stored in the backend)';

  async generate(use: KeyUse): Promise<{ ref: string; signer: Signer }> {
    const { privateKey } = generateKeyPair(use.kind === 'ssh' ? use.algorithm : 'ecdsa-p256');
    return { ref: privateKey.export({ format: 'pem', type: 'pkcs8' }) as string, signer: localSigner(privateKey) };
  }
  owns(ref: string): boolean {
    return ref.startsWith('-----BEGIN ');
  }
  async load(ref: string): Promise<Signer> {
    return localSigner(createPrivateKey(ref));
  }
  async delete(): Promise<void> {}
  async close(): Promise<void> {}
}

/**
 * The key stores of an auth server: new CA keys go to `generateIn` (the HSM
 * when one is configured), stored references load from whichever store owns them.
 */
export class CAKeyStores {
  constructor(
    readonly generateIn: KeyStore,
    private readonly all: KeyStore[] = [generateIn],
  ) {}

  async load(ref: string): Promise<Signer> {
    const store = this.all.find((s) => s.owns(ref));
    if (!store) {
      const kind = /^([a-z0-9]+):/.exec(ref)?.[1] ?? 'unknown';
      throw new BadParameterError(
        `a CA key is a ${kind} key reference, but this auth server has no such key store configured (auth_service.ca_key_params); configure the same key store as the other auth servers of this cluster`,
      );
    }
    return store.load(ref);
  }

  async delete(ref: string): Promise<void> {
    await this.all.find((s) => s.owns(ref))?.delete(ref);
  }

  async close(): Promise<void> {
    for (const s of this.all) await s.close();
  }
}
