/**
 * Trust between clusters (Teleport 4.x trusted clusters, formats.md §4.6).
 *
 * A leaf trusts a root: the leaf's admin creates a `trusted_cluster`
 * resource naming the root's web and tunnel addresses and a join token of the
 * root (type `trusted_cluster`). The leaf's auth server sends its own CAs
 * (public parts only) and the token to the root's proxy
 * (`POST /webapi/trustedclusters/validate`, trustexchange.ts); the root
 * checks the token, keeps the leaf's CAs as a remote cluster and answers with
 * its own CAs, which the leaf keeps. From then on:
 * - the leaf's proxies hold reverse tunnels to the root's proxies (the root
 *   checks them against the leaf's host CA it kept);
 * - the leaf's nodes, proxies and auth server accept the root's user
 *   certificates, with the root's roles mapped to leaf roles by `role_map`:
 *   access is decided in the leaf, by the leaf's roles.
 * `enabled: false` keeps the record but trusts nothing and holds no tunnel;
 * deleting it removes the trust. On the root, deleting the remote cluster
 * refuses its tunnels.
 *
 * One record per other cluster (`Keys.clusterTrust`), never under the
 * cluster's own `authorities/`, so nothing that reads the cluster's own CAs
 * can pick up another cluster's.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { Backend } from '../backend';
import { Keys, rangeEnd } from '../contract/keys';
import { EventFields } from '../events/filelog';
import { parseAuthorizedKey, parsePublicKeyBlob } from '../sshcert';
import { matchesPin, validatePin } from '../tlsca';
import { AccessDeniedError, AlreadyExistsError, BadParameterError, isReason, NotFoundError } from '../utils/errors';
import { RateLimiter } from '../utils/ratelimit';
import { Authority } from './authorities';
import { CertAuthority, RoleMapping, TrustedClusterResource } from './resources';
import { Tokens } from './tokens';

/** What the other cluster is to this one. */
export type Relation = 'trusted' | 'remote';

export interface ClusterTrustRecord {
  kind: 'cluster_trust';
  version: 'v1';
  metadata: { name: string };
  spec: {
    /** `trusted`: a root whose users reach this cluster's nodes; `remote`: a leaf that trusts this cluster. */
    relation: Relation;
    enabled: boolean;
    /** For a trusted (root) cluster: how its roles map to this cluster's. */
    role_map: RoleMapping[];
    web_proxy_addr?: string;
    tunnel_addr?: string;
    /** The other cluster's CAs, public parts only. */
    user_ca: CertAuthority;
    host_ca: CertAuthority;
    created: string;
  };
}

/** The CAs as the exchange carries them (Teleport's `certificate_authorities`). */
export interface ExchangedCAs {
  certificate_authorities: CertAuthority[];
}

/** Asks the root's proxy to validate the token and exchange CAs (trustexchange.ts). */
export type TrustExchange = (tc: TrustedClusterResource, ours: CertAuthority[]) => Promise<ExchangedCAs>;

/** The remote cluster as `tsh clusters` and `tctl get rc` show it. */
export interface RemoteClusterStatus {
  kind: 'remote_cluster';
  version: 'v3';
  metadata: { name: string };
  status: { connection: 'online' | 'offline'; last_heartbeat?: string };
}

/** How long a proxy's report of a live tunnel counts; proxies renew it well within. */
export const TUNNEL_CONNECTION_TTL_MS = 90_000;

const CLUSTER_NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252}[A-Za-z0-9])?$/;

/**
 * One CA of another cluster, public parts only: of type `user` or `host`, a cluster name, 1–8 public keys
 * that parse, 1–4 TLS certificates that parse and are CA certificates, and no private key (a private key
 * sent is refused: whoever sent it has mishandled it, and it is not ours to keep).
 */
export function checkForeignCA(raw: CertAuthority, what: string): CertAuthority {
  const type = raw?.spec?.type;
  if (type !== 'user' && type !== 'host') throw new BadParameterError(`${what}: ${JSON.stringify(type)} is not a certificate authority type (user or host)`);
  const cluster = raw.spec.cluster_name;
  if (typeof cluster !== 'string' || !CLUSTER_NAME_RE.test(cluster)) throw new BadParameterError(`${what}: ${JSON.stringify(cluster)} is not a cluster name`);
  if ((raw.spec.signing_keys ?? []).length || (raw.spec.tls_key_pairs ?? []).some((p) => p?.key)) {
    throw new BadParameterError(`${what}: a certificate authority was sent with its private key; refusing it`);
  }
  if (!Array.isArray(raw.spec.checking_keys) || raw.spec.checking_keys.length === 0 || raw.spec.checking_keys.length > 8) {
    throw new BadParameterError(`${what}: the ${type} CA needs 1 to 8 public keys`);
  }
  for (const k of raw.spec.checking_keys) {
    try {
      if (typeof k !== 'string') throw new Error('not a string');
      parsePublicKeyBlob(parseAuthorizedKey(Buffer.from(k, 'base64').toString()).blob);
    } catch (err) {
      throw new BadParameterError(`${what}: a public key of the ${type} CA does not parse: ${(err as Error).message}`);
    }
  }
  const tls = raw.spec.tls_key_pairs;
  if (!Array.isArray(tls) || tls.length === 0 || tls.length > 4) throw new BadParameterError(`${what}: the ${type} CA needs 1 to 4 TLS certificates`);
  for (const p of tls) {
    let x: X509Certificate;
    try {
      x = new X509Certificate(Buffer.from(String(p?.cert), 'base64'));
    } catch (err) {
      throw new BadParameterError(`${what}: a TLS certificate of the ${type} CA does not parse: ${(err as Error).message}`);
    }
    if (!x.ca) throw new BadParameterError(`${what}: the ${type} CA's TLS certificate is not a CA certificate`);
  }
  return {
    kind: 'cert_authority',
    version: 'v2',
    sub_kind: type,
    metadata: { name: cluster, namespace: 'default' },
    spec: {
      type,
      cluster_name: cluster,
      checking_keys: [...raw.spec.checking_keys],
      signing_keys: [],
      tls_key_pairs: tls.map((p) => ({ cert: p.cert, key: '' })),
      signing_alg: String(raw.spec.signing_alg ?? ''),
      roles: [],
      rotation: { state: 'standby' },
    },
  };
}

/** The other cluster's user and host CAs from an exchange: exactly one of each (checkForeignCA), both of cluster `name`. */
export function checkForeignCAs(cas: unknown, name: string | undefined, what: string): { user: CertAuthority; host: CertAuthority; name: string } {
  if (!Array.isArray(cas) || cas.length !== 2) throw new BadParameterError(`${what}: expected exactly two certificate authorities (user and host)`);
  const out: Partial<Record<'user' | 'host', CertAuthority>> = {};
  for (const raw of cas as CertAuthority[]) {
    const ca = checkForeignCA(raw, what);
    if (out[ca.spec.type as 'user' | 'host']) throw new BadParameterError(`${what}: expected one user and one host certificate authority`);
    out[ca.spec.type as 'user' | 'host'] = ca;
  }
  const { user, host } = out as Record<'user' | 'host', CertAuthority>;
  if (user.spec.cluster_name !== host.spec.cluster_name) throw new BadParameterError(`${what}: the user and host CAs are of different clusters`);
  if (name !== undefined && host.spec.cluster_name !== name) {
    throw new BadParameterError(
      `${what}: the cluster is named "${host.spec.cluster_name}", not "${name}" (the trusted cluster resource must be named after the root's cluster_name)`,
    );
  }
  return { user, host, name: host.spec.cluster_name };
}

/**
 * What names a cluster's CAs as another cluster keeps them: a digest of each CA's type, keys and TLS
 * certificates, in a fixed order (the signing key moving first during a rotation changes nothing).
 */
export function caFingerprint(cas: CertAuthority[]): string {
  const parts = cas.map((ca) => [ca.spec.type, [...ca.spec.checking_keys].sort(), ca.spec.tls_key_pairs.map((p) => p.cert).sort()]).sort((a, b) => String(a[0]).localeCompare(String(b[0])));
  return createHash('sha256').update(JSON.stringify(parts)).digest('base64url');
}

const sameKeys = (a: CertAuthority, b: CertAuthority) =>
  JSON.stringify([a.spec.checking_keys, a.spec.tls_key_pairs.map((p) => p.cert)]) === JSON.stringify([b.spec.checking_keys, b.spec.tls_key_pairs.map((p) => p.cert)]);

export interface ClusterTrustOptions {
  backend: Backend;
  clusterName: string;
  tokens: Tokens;
  /** This cluster's CAs (public parts are sent). */
  ownCAs: () => Authority[];
  exchange: TrustExchange;
  emit(fields: EventFields): Promise<unknown>;
}

export class ClusterTrust {
  private readonly validateLimiter = new RateLimiter({ burst: 10, perSecond: 0.2 });

  constructor(private readonly opts: ClusterTrustOptions) {}

  async get(name: string): Promise<ClusterTrustRecord | undefined> {
    try {
      return JSON.parse((await this.opts.backend.get(Keys.clusterTrust(name))).value.toString()) as ClusterTrustRecord;
    } catch (err) {
      if (isReason(err, 'not_found')) return undefined;
      throw err;
    }
  }

  async list(relation?: Relation): Promise<ClusterTrustRecord[]> {
    const prefix = Keys.clusterTrusts();
    const items = await this.opts.backend.getRange(prefix, rangeEnd(prefix));
    return items.map((i) => JSON.parse(i.value.toString()) as ClusterTrustRecord).filter((r) => !relation || r.spec.relation === relation);
  }

  private async put(record: ClusterTrustRecord): Promise<void> {
    await this.opts.backend.put({ key: Keys.clusterTrust(record.metadata.name), value: Buffer.from(JSON.stringify(record)) });
  }

  private refuseOwnName(name: string): void {
    if (name.toLowerCase() === this.opts.clusterName.toLowerCase()) throw new BadParameterError(`"${name}" is this cluster's own name`);
  }

  /**
   * The leaf's side (`tctl create` of a trusted_cluster): a new one exchanges CAs with the root first,
   * an existing one (with `force`) changes only `enabled`, `role_map` and the addresses.
   */
  async upsertTrustedCluster(tc: TrustedClusterResource, opts: { force: boolean; user: string }): Promise<void> {
    const name = tc.metadata.name;
    this.refuseOwnName(name);
    const pins = tc.spec.ca_pin === undefined ? [] : [tc.spec.ca_pin].flat();
    pins.forEach(validatePin);
    const existing = await this.get(name);
    if (existing && existing.spec.relation !== 'trusted') throw new AlreadyExistsError(`"${name}" is a leaf of this cluster (remote cluster); a cluster cannot be both`);
    if (existing && !opts.force) throw new AlreadyExistsError(`trusted cluster "${name}" already exists; use tctl create -f to update it`);
    const fields = { enabled: tc.spec.enabled, role_map: tc.spec.role_map, web_proxy_addr: tc.spec.web_proxy_addr, tunnel_addr: tc.spec.tunnel_addr };
    if (existing) {
      await this.put({ ...existing, spec: { ...existing.spec, ...fields } });
      await this.opts.emit({ event: 'trusted_cluster.create', user: opts.user, name, enabled: tc.spec.enabled });
      return;
    }
    if (!tc.spec.token) throw new BadParameterError(`trusted cluster "${name}": spec.token is needed to establish trust`);
    const answer = await this.opts.exchange(tc, this.opts.ownCAs().map((ca) => ca.withoutSecrets()));
    const root = checkForeignCAs(answer?.certificate_authorities, name, `the answer of ${tc.spec.web_proxy_addr}`);
    if (pins.length && !matchesPin(Buffer.from(root.host.spec.tls_key_pairs[0].cert, 'base64'), pins)) {
      throw new AccessDeniedError(`trusted cluster "${name}": its CA does not match spec.ca_pin; trust was not established`);
    }
    await this.put({
      kind: 'cluster_trust',
      version: 'v1',
      metadata: { name },
      spec: { relation: 'trusted', ...fields, user_ca: root.user, host_ca: root.host, created: new Date().toISOString() },
    });
    await this.opts.emit({ event: 'trusted_cluster.create', user: opts.user, name, enabled: tc.spec.enabled });
  }

  /** The root's side of the exchange: the token must allow `trusted_cluster`; the leaf's CAs are kept, ours returned. */
  async validate(req: { token: string; certificate_authorities: unknown }, remoteAddr: string): Promise<ExchangedCAs> {
    this.validateLimiter.take(remoteAddr);
    let leaf: ReturnType<typeof checkForeignCAs> | undefined;
    try {
      await this.opts.tokens.validate(req.token, 'TrustedCluster');
      leaf = checkForeignCAs(req.certificate_authorities, undefined, 'the leaf cluster');
      this.refuseOwnName(leaf.name);
      const existing = await this.get(leaf.name);
      if (existing && (existing.spec.relation !== 'remote' || !sameKeys(existing.spec.host_ca, leaf.host) || !sameKeys(existing.spec.user_ca, leaf.user))) {
        throw new AlreadyExistsError(`a cluster named "${leaf.name}" is already known here with other keys; remove it first (tctl rm rc/${leaf.name})`);
      }
      if (!existing) {
        await this.put({
          kind: 'cluster_trust',
          version: 'v1',
          metadata: { name: leaf.name },
          spec: { relation: 'remote', enabled: true, role_map: [], user_ca: leaf.user, host_ca: leaf.host, created: new Date().toISOString() },
        });
      }
    } catch (err) {
      await this.opts.emit({ event: 'trusted_cluster.create', success: false, name: leaf?.name ?? '', 'addr.remote': remoteAddr, error: (err as Error).message });
      throw err;
    }
    await this.opts.emit({ event: 'trusted_cluster.create', success: true, remote_cluster: true, name: leaf.name, 'addr.remote': remoteAddr });
    return { certificate_authorities: this.opts.ownCAs().map((ca) => ca.withoutSecrets()) };
  }

  /**
   * The leaf's side of a root's CA rotation (Teleport's RotateExternalCertAuthority): a proxy of
   * trusted cluster `from` (the caller, authenticated by that cluster's host CA) sends its cluster's
   * current user or host CA, public parts only; it replaces the one of that type kept for `from`.
   * Only `from`'s own CAs, only while `from` is trusted and enabled. Returns whether anything changed
   * (nothing is written or audited when the keys are the same).
   */
  rotateExternalCA(from: string, raw: unknown, by: { user: string; remoteAddr: string }): Promise<boolean> {
    return this.replaceCA('trusted', from, raw, `the CA sent by cluster ${from}`, by);
  }

  /**
   * The root's side of a leaf's CA rotation: one of this cluster's proxies read leaf `leaf`'s current
   * user or host CA from the leaf's auth server, over mutual TLS checked against the leaf's host CA
   * kept here (runtime/proxy/leafcafollow.ts); it replaces the one of that type kept for the leaf.
   * Returns whether anything changed, as rotateExternalCA.
   */
  updateRemoteCA(leaf: string, raw: unknown, by: { user: string; remoteAddr: string }): Promise<boolean> {
    return this.replaceCA('remote', leaf, raw, `the CA of leaf cluster ${leaf}`, by);
  }

  /** Replaces the CA of its type kept for cluster `name` of `relation` with `raw` (public parts, of that cluster); audited. */
  private async replaceCA(relation: Relation, name: string, raw: unknown, what: string, by: { user: string; remoteAddr: string }): Promise<boolean> {
    const ca = checkForeignCA(raw as CertAuthority, what);
    const type = ca.spec.type as 'user' | 'host';
    if (ca.spec.cluster_name !== name) throw new AccessDeniedError(`${what}: only cluster ${name}'s own CAs are taken for it, not those of "${ca.spec.cluster_name}"`);
    const item = await this.opts.backend.get(Keys.clusterTrust(name)).catch((err) => (isReason(err, 'not_found') ? undefined : Promise.reject(err)));
    const existing = item && (JSON.parse(item.value.toString()) as ClusterTrustRecord);
    if (!item || !existing || existing.spec.relation !== relation || !existing.spec.enabled) {
      throw new AccessDeniedError(`cluster ${name} is not a ${relation === 'trusted' ? 'trusted' : 'leaf'} cluster here`);
    }
    const field = type === 'user' ? 'user_ca' : 'host_ca';
    const kept = existing.spec[field];
    // The same keys in another order (the signing key moves first during a rotation) are no change here.
    if (caFingerprint([kept]) === caFingerprint([ca])) return false;
    const keys = (c: CertAuthority) => new Set(c.spec.checking_keys);
    const before = keys(kept);
    // Compare-and-swap: an edit of the trust meanwhile (disabled, removed) is not undone; the proxy tries again.
    await this.opts.backend.compareAndSwap(item, { key: item.key, value: Buffer.from(JSON.stringify({ ...existing, spec: { ...existing.spec, [field]: ca } })) });
    await this.opts.emit({
      event: 'trusted_cluster.ca_update',
      user: by.user,
      name,
      ca_type: type,
      ...(relation === 'remote' ? { remote_cluster: true } : {}),
      keys_added: ca.spec.checking_keys.filter((k) => !before.has(k)).length,
      keys_removed: [...before].filter((k) => !keys(ca).has(k)).length,
      'addr.remote': by.remoteAddr,
    });
    return true;
  }

  /** Removes a trusted cluster (leaf side, `tctl rm tc/<root>`) or a remote cluster (root side, `tctl rm rc/<leaf>`). */
  async delete(relation: Relation, name: string, user: string): Promise<void> {
    const existing = await this.get(name);
    if (!existing || existing.spec.relation !== relation) throw new NotFoundError(`${relation === 'trusted' ? 'trusted' : 'remote'} cluster "${name}" not found`);
    await this.opts.backend.delete(Keys.clusterTrust(name));
    if (relation === 'remote') await this.opts.backend.deleteRange(Keys.tunnelConnections(name), rangeEnd(Keys.tunnelConnections(name)));
    await this.opts.emit({ event: 'trusted_cluster.delete', user, name, ...(relation === 'remote' ? { remote_cluster: true } : {}) });
  }

  /** A proxy reports that it holds (or no longer holds) a tunnel from leaf cluster `name`. */
  async reportTunnel(name: string, proxy: string, up: boolean): Promise<void> {
    const key = Keys.tunnelConnection(name, proxy);
    if (!up) return void (await this.opts.backend.delete(key).catch((err) => (isReason(err, 'not_found') ? undefined : Promise.reject(err))));
    const existing = await this.get(name);
    if (!existing || existing.spec.relation !== 'remote') throw new NotFoundError(`remote cluster "${name}" not found`);
    const now = new Date();
    await this.opts.backend.put({ key, value: Buffer.from(JSON.stringify({ last_heartbeat: now.toISOString() })), expires: new Date(now.getTime() + TUNNEL_CONNECTION_TTL_MS) });
  }

  /** The leaf clusters and whether some proxy holds a tunnel from each. */
  async remoteClusters(): Promise<RemoteClusterStatus[]> {
    const out: RemoteClusterStatus[] = [];
    for (const r of await this.list('remote')) {
      const prefix = Keys.tunnelConnections(r.metadata.name);
      const now = Date.now();
      const live = (await this.opts.backend.getRange(prefix, rangeEnd(prefix))).filter((i) => !i.expires || i.expires.getTime() > now);
      const last = live.map((i) => (JSON.parse(i.value.toString()) as { last_heartbeat: string }).last_heartbeat).sort().pop();
      out.push({ kind: 'remote_cluster', version: 'v3', metadata: { name: r.metadata.name }, status: { connection: live.length ? 'online' : 'offline', ...(last ? { last_heartbeat: last } : {}) } });
    }
    return out;
  }
}

/** A trusted cluster as `tctl get tc` shows it: the token is not kept, so it is never shown. */
export function trustedClusterView(r: ClusterTrustRecord): TrustedClusterResource {
  return {
    kind: 'trusted_cluster',
    version: 'v2',
    metadata: { name: r.metadata.name },
    spec: { enabled: r.spec.enabled, token: '', web_proxy_addr: r.spec.web_proxy_addr ?? '', tunnel_addr: r.spec.tunnel_addr ?? '', role_map: r.spec.role_map },
  };
}
