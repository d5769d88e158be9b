/**
 * The cluster's two certificate authorities (user and host), each an SSH CA
 * key plus an X.509 CA for mutual TLS. They are created on the first start,
 * exactly once even when several auth servers start together on one storage:
 * every server generates candidates and the backend's create-if-absent picks
 * one winner; the others read the winner back.
 */
import { createPrivateKey, KeyObject } from 'node:crypto';
import { Backend } from '../backend';
import { Keys, rangeEnd } from '../contract/keys';
import { formatAuthorizedKey, generateKeyPair, KeyAlgorithm, parseAuthorizedKey, publicKeyBlob } from '../sshcert';
import { generateCA, TlsKeyPair } from '../tlsca';
import { isReason, NotFoundError } from '../utils/errors';
import { CertAuthority } from './resources';

export type CAType = 'user' | 'host';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64').toString();

async function newAuthority(type: CAType, clusterName: string, alg: KeyAlgorithm): Promise<CertAuthority> {
  const pair = generateKeyPair(alg);
  const tls = await generateCA(clusterName);
  return {
    kind: 'cert_authority',
    version: 'v2',
    sub_kind: type,
    metadata: { name: clusterName, namespace: 'default' },
    spec: {
      type,
      cluster_name: clusterName,
      checking_keys: [b64(formatAuthorizedKey(publicKeyBlob(pair.publicKey)))],
      signing_keys: [b64(pair.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string)],
      tls_key_pairs: [{ cert: b64(tls.cert), key: b64(tls.key) }],
      signing_alg: alg,
      roles: [],
      rotation: { state: 'standby' },
    },
  };
}

/** A loaded CA with its keys decoded, ready to sign. */
export class Authority {
  private signer?: KeyObject;
  private checking?: Buffer[];

  constructor(readonly resource: CertAuthority) {}

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
  /** The first SSH signing key (formats.md §1.1: signing always uses the first). */
  signingKey(): KeyObject {
    const pem = this.resource.spec.signing_keys[0];
    if (!pem) throw new NotFoundError(`the ${this.type} CA of ${this.clusterName} has no signing key here`);
    this.signer ??= createPrivateKey(unb64(pem));
    return this.signer;
  }
  tls(): TlsKeyPair {
    const pair = this.resource.spec.tls_key_pairs[0];
    return { cert: unb64(pair.cert), key: unb64(pair.key) };
  }
  tlsCert(): string {
    return unb64(this.resource.spec.tls_key_pairs[0].cert);
  }
  /** The resource without private keys, safe to send to any cluster member. */
  withoutSecrets(): CertAuthority {
    const r = this.resource;
    return {
      ...r,
      spec: { ...r.spec, signing_keys: [], tls_key_pairs: r.spec.tls_key_pairs.map((p) => ({ cert: p.cert, key: '' })) },
    };
  }
}

export class Authorities {
  private readonly cache = new Map<string, Authority>();

  constructor(private readonly backend: Backend) {}

  /** Creates the user and host CAs of `clusterName` unless they exist, and returns them. */
  async init(clusterName: string, alg: KeyAlgorithm): Promise<{ user: Authority; host: Authority }> {
    const out: Partial<Record<CAType, Authority>> = {};
    for (const type of ['user', 'host'] as const) {
      const key = Keys.certAuthority(type, clusterName);
      try {
        out[type] = await this.get(type, clusterName);
        continue;
      } catch (err) {
        if (!isReason(err, 'not_found')) throw err;
      }
      const candidate = await newAuthority(type, clusterName, alg);
      try {
        await this.backend.create({ key, value: Buffer.from(JSON.stringify(candidate)) });
      } catch (err) {
        if (!isReason(err, 'already_exists')) throw err;
      }
      this.cache.delete(key);
      out[type] = await this.get(type, clusterName);
    }
    return { user: out.user!, host: out.host! };
  }

  async get(type: CAType, clusterName: string): Promise<Authority> {
    const key = Keys.certAuthority(type, clusterName);
    const cached = this.cache.get(key);
    if (cached) return cached;
    let item;
    try {
      item = await this.backend.get(key);
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError(`${type} certificate authority for cluster "${clusterName}" not found`);
      throw err;
    }
    const ca = new Authority(JSON.parse(item.value.toString()) as CertAuthority);
    this.cache.set(key, ca);
    return ca;
  }

  async list(type: CAType): Promise<Authority[]> {
    const prefix = Keys.certAuthorities(type);
    const items = await this.backend.getRange(prefix, rangeEnd(prefix));
    return items.map((i) => new Authority(JSON.parse(i.value.toString()) as CertAuthority));
  }
}
