/**
 * A root cluster's proxy keeps its leaf clusters trusting the root's current
 * user and host CAs (Teleport's RotateExternalCertAuthority), so that a CA
 * rotation of the root reaches them: without it a leaf trusts only the keys it
 * got at the CA exchange (runtime/auth/trust.ts): root users' new certificates
 * would be refused in the leaf, and the leaf's tunnels would refuse the root
 * proxies' new host certificates.
 *
 * The proxy sends each CA's public parts (SSH checking keys, TLS CA
 * certificates) to each leaf's auth server (`POST
 * /v1/authorities/<user|host>/rotate/external`) over the leaf tunnel's `auth` channel
 * (clusterchannel.ts), as mutual TLS inside that pipe: the proxy
 * authenticates with its own host identity (this cluster's host CA, role
 * Proxy) and checks the leaf auth's certificate against the leaf's host TLS
 * CA kept at the exchange. The leaf takes it only from a proxy of the cluster
 * whose CA it is, and changes nothing when the keys are the same.
 *
 * When: once a leaf's tunnel comes up, and whenever this cluster's user or
 * host CA keys change in the access data (the CAs are then read again from the
 * auth server): a rotation's new key reaches the leaves in `init`, before
 * anything is signed or served with it. One push per leaf at a time; a failed
 * one is retried after a delay that doubles up to LEAF_CA_RETRY_MS.max.
 */
import type { Duplex } from 'node:stream';
import type { AccessCache } from '../auth/access/cache';
import { AuthClient } from '../auth/client';
import type { Identity } from '../auth/identity';
import type { CertAuthority } from '../auth/resources';
import { Logger } from '../utils/logger';

export const LEAF_CA_RETRY_MS = { min: 2_000, max: 60_000 } as const;
/** Where a leaf's auth server takes a root's CA of `type`. */
export const externalCAPath = (type: 'user' | 'host') => `/v1/authorities/${type}/rotate/external`;

export interface LeafCAPushOptions {
  clusterName: string;
  access: Pick<AccessCache, 'onChange' | 'userCAKeys' | 'hostCAKeys'>;
  /** This cluster's CAs of `type`, public parts (`GET /v1/authorities/<type>` of its auth server). */
  fetchCAs(type: 'user' | 'host'): Promise<CertAuthority[]>;
  /** Whether this proxy holds a tunnel from leaf `name` now. */
  connected(name: string): boolean;
  /** Sends a CA to leaf `name`'s auth server (sendCA); resolves whether the leaf changed anything. */
  send(name: string, ca: CertAuthority): Promise<boolean>;
  log: Logger;
  /** @default LEAF_CA_RETRY_MS */
  retryMs?: { min: number; max: number };
}

export interface SendCAOptions {
  /** This proxy's identity: its host certificate is what the leaf checks. */
  identity: Identity;
  access: Pick<AccessCache, 'clusters'>;
  /** A byte stream to leaf `name`'s auth server (its tunnel's `auth` channel). */
  dialAuth(name: string): Promise<Duplex>;
}

/** A client of leaf `name`'s auth server: mutual TLS over `dialAuth`, its certificate checked against the leaf's host TLS CA kept now. */
export function leafAuthClient(opts: SendCAOptions, name: string): AuthClient {
  const leaf = opts.access.clusters('remote').find((c) => c.name === name);
  if (!leaf?.hostTlsCAs.length) throw new Error(`no host TLS CA is known for leaf cluster ${name}`);
  return new AuthClient({
    servers: [{ host: name, port: 0 }],
    credentials: { key: opts.identity.tlsKey, cert: opts.identity.tlsCert, ca: leaf.hostTlsCAs },
    connect: () => opts.dialAuth(name),
  });
}

/** Sends `ca` to leaf `name`'s auth server (leafAuthClient). */
export async function sendCA(opts: SendCAOptions, name: string, ca: CertAuthority): Promise<boolean> {
  const client = leafAuthClient(opts, name);
  try {
    return (await client.post<{ updated: boolean }>(externalCAPath(ca.spec.type as 'user' | 'host'), { certificate_authority: ca })).updated;
  } finally {
    client.close();
  }
}

interface LeafState {
  /** The fingerprint of the CA the leaf confirmed. */
  pushed?: string;
  busy: boolean;
  timer?: NodeJS.Timeout;
  delayMs: number;
}

/** What is compared: the keys and certificates, nothing else. */
const fingerprint = (cas: CertAuthority[]) => JSON.stringify(cas.map((ca) => [ca.spec.checking_keys, ca.spec.tls_key_pairs.map((p) => p.cert)]));

/** The CA keys of the access data, which say when to read the CAs again. */
const keysIn = (access: LeafCAPushOptions['access']) => JSON.stringify([access.userCAKeys(), access.hostCAKeys()].map((keys) => keys.map((k) => k.toString('base64')).sort()));

export class LeafCAPush {
  /** This cluster's user and host CAs, public parts, as last read. */
  private current?: { cas: CertAuthority[]; fp: string };
  /** The CA keys of the access data the current CAs were read for. */
  private readFor?: string;
  private reading = false;
  private readTimer?: NodeJS.Timeout;
  private readonly retry: { min: number; max: number };
  private readDelayMs: number;
  private readonly leaves = new Map<string, LeafState>();
  private stopped = false;

  constructor(private readonly opts: LeafCAPushOptions) {
    this.retry = opts.retryMs ?? LEAF_CA_RETRY_MS;
    this.readDelayMs = this.retry.min;
    opts.access.onChange(() => void this.read());
  }

  start(): void {
    void this.read();
  }

  /** A leaf's first tunnel to this proxy came up (up) or its last one went down. */
  leafChanged(name: string, up: boolean): void {
    if (up) return this.push(name);
    clearTimeout(this.leaves.get(name)?.timer);
    this.leaves.delete(name);
  }

  /** Reads this cluster's CAs again when their keys in the access data changed, then pushes them where they are not yet. */
  private async read(): Promise<void> {
    const keys = keysIn(this.opts.access);
    if (this.stopped || this.reading || keys === this.readFor) return;
    this.reading = true;
    clearTimeout(this.readTimer);
    try {
      const cas: CertAuthority[] = [];
      for (const type of ['user', 'host'] as const) {
        const ca = (await this.opts.fetchCAs(type)).find((c) => c.spec.cluster_name === this.opts.clusterName);
        if (!ca) throw new Error(`the auth server has no ${type} CA of cluster ${this.opts.clusterName}`);
        cas.push({ ...ca, spec: { ...ca.spec, signing_keys: [], tls_key_pairs: ca.spec.tls_key_pairs.map((p) => ({ cert: p.cert, key: '' })) } });
      }
      this.current = { cas, fp: fingerprint(cas) };
      this.readFor = keys;
      this.readDelayMs = this.retry.min;
    } catch (err) {
      this.opts.log.warn('cannot read the CAs to send to leaf clusters; retrying', { error: err, retry_in_ms: this.readDelayMs });
      this.readTimer = setTimeout(() => void this.read(), this.readDelayMs).unref();
      this.readDelayMs = Math.min(this.readDelayMs * 2, this.retry.max);
      return;
    } finally {
      this.reading = false;
    }
    for (const name of this.leaves.keys()) this.push(name);
    // The keys may have changed again while reading.
    void this.read();
  }

  private push(name: string): void {
    if (this.stopped) return;
    let s = this.leaves.get(name);
    if (!s) this.leaves.set(name, (s = { busy: false, delayMs: this.retry.min }));
    if (s.busy) return;
    clearTimeout(s.timer);
    void this.run(name, s);
  }

  /** Sends until the leaf has the current CAs (they may change during a send), or the leaf is gone. */
  private async run(name: string, s: LeafState): Promise<void> {
    s.busy = true;
    try {
      while (!this.stopped && this.current && s.pushed !== this.current.fp && this.leaves.get(name) === s && this.opts.connected(name)) {
        const { cas, fp } = this.current;
        for (const ca of cas) {
          const updated = await this.opts.send(name, ca);
          this.opts.log.info(updated ? `sent the ${ca.spec.type} CA to a leaf cluster` : `a leaf cluster has the current ${ca.spec.type} CA`, { cluster: name, keys: ca.spec.checking_keys.length });
        }
        s.pushed = fp;
        s.delayMs = this.retry.min;
      }
    } catch (err) {
      if (this.stopped || this.leaves.get(name) !== s) return;
      this.opts.log.warn('cannot send the CAs to a leaf cluster; retrying', { cluster: name, error: err, retry_in_ms: s.delayMs });
      s.timer = setTimeout(() => this.push(name), s.delayMs).unref();
      s.delayMs = Math.min(s.delayMs * 2, this.retry.max);
    } finally {
      s.busy = false;
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.readTimer);
    for (const s of this.leaves.values()) clearTimeout(s.timer);
    this.leaves.clear();
  }
}
