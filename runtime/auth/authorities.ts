/**
 * The cluster's two certificate authorities (user and host), each an SSH CA
 * key plus an X.509 CA for mutual TLS. They are created on the first start,
 * exactly once even when several auth servers start together on one storage:
 * every server generates candidates and the backend's create-if-absent picks
 * one winner; the others delete their candidate keys and read the winner back.
 * The keys live in a key store (runtime/keystore: in process, a PKCS#11 token,
 * AWS KMS); the resource holds their references and public keys.
 */
import { Backend, Item } from '../backend';
import { Keys, rangeEnd } from '../contract/keys';
import { CAKeyStores, KeyStore, LocalKeyStore } from '../keystore/keystore';
import type { Signer } from '../keystore/signer';
import { formatAuthorizedKey, KeyAlgorithm, keyAlgorithmOf, parseAuthorizedKey, parsePublicKeyBlob, publicKeyBlob } from '../sshcert';
import { createCACert, TlsCA } from '../tlsca';
import { isReason, NotFoundError } from '../utils/errors';
import { CertAuthority } from './resources';
import type { NewCAKeys } from './rotation';

export type CAType = 'user' | 'host';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64').toString();

/** The key references of a new CA's keys, and their signers. */
export interface NewKeys {
  ssh: { ref: string; signer: Signer };
  tls: { ref: string; signer: Signer };
}

/** New SSH and TLS keys for a CA of `type` in `store` (a CA's first keys, or a rotation's). */
export async function generateCAKeys(store: KeyStore, type: CAType, clusterName: string, alg: KeyAlgorithm): Promise<NewKeys> {
  const label = `teleport-${type}-ca-${clusterName}`;
  return { ssh: await store.generate({ kind: 'ssh', algorithm: alg }, label), tls: await store.generate({ kind: 'tls' }, `${label}-tls`) };
}

/** The keys as a CA resource lists them. */
export async function caKeyEntries(clusterName: string, keys: NewKeys): Promise<NewCAKeys> {
  return {
    checkingKey: b64(formatAuthorizedKey(publicKeyBlob(keys.ssh.signer.publicKey))),
    signingKey: b64(keys.ssh.ref),
    tlsKeyPair: { cert: b64(await createCACert(clusterName, keys.tls.signer)), key: b64(keys.tls.ref) },
  };
}

/** The signing algorithm of a CA's first (active) key. */
export function signingAlgorithm(ca: CertAuthority): string {
  return keyAlgorithmOf(parsePublicKeyBlob(parseAuthorizedKey(unb64(ca.spec.checking_keys[0])).blob).publicKey);
}

async function newAuthority(type: CAType, clusterName: string, keys: NewKeys): Promise<CertAuthority> {
  const entries = await caKeyEntries(clusterName, keys);
  return {
    kind: 'cert_authority',
    version: 'v2',
    sub_kind: type,
    metadata: { name: clusterName, namespace: 'default' },
    spec: {
      type,
      cluster_name: clusterName,
      checking_keys: [entries.checkingKey],
      signing_keys: [entries.signingKey],
      tls_key_pairs: [entries.tlsKeyPair],
      signing_alg: keyAlgorithmOf(keys.ssh.signer.publicKey),
      roles: [],
      rotation: { state: 'standby' },
    },
  };
}

/** A CA's keys at one position of its lists: the signers and the TLS CA certificate. */
export interface CAKeysAt {
  ssh: Signer;
  tls: TlsCA;
}

/** The keys at `index` of a CA of this cluster (during a rotation: 0 the signing keys, 1 the others). */
export async function keysAt(resource: CertAuthority, index: number, keys: CAKeyStores): Promise<CAKeysAt> {
  const ssh = resource.spec.signing_keys[index];
  const tls = resource.spec.tls_key_pairs[index];
  if (!ssh || !tls?.key) throw new NotFoundError(`the ${resource.spec.type} CA of ${resource.spec.cluster_name} has no key ${index + 1} here`);
  return { ssh: await keys.load(unb64(ssh)), tls: { cert: unb64(tls.cert), signer: await keys.load(unb64(tls.key)) } };
}

/** The signers of a CA's active keys. */
export interface CASigners {
  ssh: Signer;
  tls: Signer;
}

/**
 * A CA resource; the CAs of this auth server's own cluster also carry the
 * signers of their active keys (the first SSH signing key and TLS key pair,
 * formats.md §1.1), loaded once at start from their key references.
 */
export class Authority {
  private checking?: Buffer[];

  constructor(
    readonly resource: CertAuthority,
    private readonly signers?: CASigners,
  ) {}

  get type(): CAType {
    return this.resource.spec.type;
  }
  get clusterName(): string {
    return this.resource.spec.cluster_name;
  }
  /** SSH public keys (wire blobs) that certificates from this CA are checked against. */
  checkingKeys(): Buffer[] {
    this.checking ??= this.resource.spec.checking_keys.map((k) => parseAuthorizedKey(unb64(k)).blob);
    return this.checking;
  }
  /** The signer of the active SSH key. */
  sshSigner(): Signer {
    return this.loaded().ssh;
  }
  /** The TLS CA certificate and the signer of its key. */
  tls(): TlsCA {
    return { cert: this.tlsCert(), signer: this.loaded().tls };
  }
  tlsCert(): string {
    return unb64(this.resource.spec.tls_key_pairs[0].cert);
  }
  /** Every TLS CA certificate of the CA (PEM), the active one first: all are trusted (two during a rotation). */
  tlsCerts(): string[] {
    return this.resource.spec.tls_key_pairs.map((p) => unb64(p.cert));
  }
  /** The references of the active keys (PEM for in-process keys: secret). */
  keyRefs(): { ssh: string; tls: string } {
    const ssh = this.resource.spec.signing_keys[0];
    const tls = this.resource.spec.tls_key_pairs[0]?.key;
    if (!ssh || !tls) throw new NotFoundError(`the ${this.type} CA of ${this.clusterName} has no signing key here`);
    return { ssh: unb64(ssh), tls: unb64(tls) };
  }
  private loaded(): CASigners {
    if (!this.signers) throw new NotFoundError(`the ${this.type} CA of ${this.clusterName} has no signing key here`);
    return this.signers;
  }
  /** The resource without private keys or key references, safe to send to any cluster member. */
  withoutSecrets(): CertAuthority {
    const r = this.resource;
    return {
      ...r,
      spec: { ...r.spec, signing_keys: [], tls_key_pairs: r.spec.tls_key_pairs.map((p) => ({ cert: p.cert, key: '' })) },
    };
  }
}

export class Authorities {
  constructor(private readonly backend: Backend) {}

  /**
   * Creates the user and host CAs of `clusterName` unless they exist (new keys
   * in `keys.generateIn`), and returns them with the signers of their keys.
   */
  async init(clusterName: string, alg: KeyAlgorithm, keys: CAKeyStores = new CAKeyStores(new LocalKeyStore())): Promise<{ user: Authority; host: Authority }> {
    const out: Partial<Record<CAType, Authority>> = {};
    for (const type of ['user', 'host'] as const) {
      const key = Keys.certAuthority(type, clusterName);
      let stored = await this.get(type, clusterName).catch((err: unknown) => {
        if (isReason(err, 'not_found')) return undefined;
        throw err;
      });
      if (!stored) {
        const fresh = await generateCAKeys(keys.generateIn, type, clusterName, alg);
        try {
          await this.backend.create({ key, value: Buffer.from(JSON.stringify(await newAuthority(type, clusterName, fresh))) });
        } catch (err) {
          // Another auth server won: its keys are the CA's, ours must not linger in a token.
          for (const k of [fresh.ssh, fresh.tls]) await keys.delete(k.ref);
          if (!isReason(err, 'already_exists')) throw err;
        }
        stored = await this.get(type, clusterName);
      }
      out[type] = await this.withSigners(stored.resource, keys);
    }
    return { user: out.user!, host: out.host! };
  }

  /** A CA of this cluster with the signers of its active keys loaded. */
  async withSigners(resource: CertAuthority, keys: CAKeyStores): Promise<Authority> {
    const refs = new Authority(resource).keyRefs();
    return new Authority(resource, { ssh: await keys.load(refs.ssh), tls: await keys.load(refs.tls) });
  }

  /** The stored item of a CA (for compare-and-swap), not cached. */
  async item(type: CAType, clusterName: string): Promise<{ item: Item; ca: CertAuthority }> {
    try {
      const item = await this.backend.get(Keys.certAuthority(type, clusterName));
      return { item, ca: JSON.parse(item.value.toString()) as CertAuthority };
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError(`${type} certificate authority for cluster "${clusterName}" not found`);
      throw err;
    }
  }

  /** Replaces a CA if it is still `expected` (CompareFailedError otherwise). */
  async swap(expected: Item, next: CertAuthority): Promise<void> {
    await this.backend.compareAndSwap(expected, { key: expected.key, value: Buffer.from(JSON.stringify(next)) });
  }

  async get(type: CAType, clusterName: string): Promise<Authority> {
    return new Authority((await this.item(type, clusterName)).ca);
  }

  async list(type: CAType): Promise<Authority[]> {
    const prefix = Keys.certAuthorities(type);
    const items = await this.backend.getRange(prefix, rangeEnd(prefix));
    return items.map((i) => new Authority(JSON.parse(i.value.toString()) as CertAuthority));
  }
}
