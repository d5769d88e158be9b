/**
 * A root cluster's proxy keeps its leaf clusters trusting the root's current
 * user CA (Teleport's RotateExternalCertAuthority), so that a user CA
 * rotation of the root reaches them: without it a leaf trusts only the key it
 * got at the CA exchange (runtime/auth/trust.ts).
 *
 * The proxy sends the CA's public parts (SSH checking keys, TLS CA
 * certificates) to each leaf's auth server (`POST
 * /v1/authorities/user/rotate/external`) over the leaf tunnel's `auth` channel
 * (clusterchannel.ts), as mutual TLS inside that pipe: the proxy
 * authenticates with its own host identity (this cluster's host CA, role
 * Proxy) and checks the leaf auth's certificate against the leaf's host TLS
 * CA kept at the exchange. The leaf takes it only from a proxy of the cluster
 * whose CA it is, and changes nothing when the keys are the same.
 *
 * When: once a leaf's tunnel comes up, and whenever this cluster's user CA
 * keys change in the access data (the CA is then read again from the auth
 * server). One push per leaf at a time; a failed one is retried after a
 * delay that doubles up to LEAF_CA_RETRY_MS.max.
 */
import type { Duplex } from 'node:stream';
import type { AccessCache } from '../auth/access/cache';
import { AuthClient } from '../auth/client';
import type { Identity } from '../auth/identity';
import type { CertAuthority } from '../auth/resources';
import { Logger } from '../utils/logger';

export const LEAF_CA_RETRY_MS = { min: 2_000, max: 60_000 } as const;
export const EXTERNAL_CA_PATH = '/v1/authorities/user/rotate/external';

export interface LeafCAPushOptions {
  clusterName: string;
  access: Pick<AccessCache, 'onChange' | 'userCAKeys'>;
  /** This cluster's user CAs, public parts (`GET /v1/authorities/user` of its auth server). */
  fetchUserCAs(): Promise<CertAuthority[]>;
  /** Whether this proxy holds a tunnel from leaf `name` now. */
  connected(name: string): boolean;
  /** Sends the CA to leaf `name`'s auth server (sendUserCA); resolves whether the leaf changed anything. */
  send(name: string, ca: CertAuthority): Promise<boolean>;
  log: Logger;
  /** @default LEAF_CA_RETRY_MS */
  retryMs?: { min: number; max: number };
}

export interface SendUserCAOptions {
  /** This proxy's identity: its host certificate is what the leaf checks. */
  identity: Identity;
  access: Pick<AccessCache, 'clusters'>;
  /** A byte stream to leaf `name`'s auth server (its tunnel's `auth` channel). */
  dialAuth(name: string): Promise<Duplex>;
}

/** Sends `ca` to leaf `name`'s auth server as mutual TLS over `dialAuth`, its certificate checked against the leaf's host TLS CA. */
export async function sendUserCA(opts: SendUserCAOptions, name: string, ca: CertAuthority): Promise<boolean> {
  const leaf = opts.access.clusters('remote').find((c) => c.name === name);
  if (!leaf?.hostTlsCAs.length) throw new Error(`no host TLS CA is known for leaf cluster ${name}`);
  const client = new AuthClient({
    servers: [{ host: name, port: 0 }],
    credentials: { key: opts.identity.tlsKey, cert: opts.identity.tlsCert, ca: leaf.hostTlsCAs },
    connect: () => opts.dialAuth(name),
  });
  try {
    return (await client.post<{ updated: boolean }>(EXTERNAL_CA_PATH, { certificate_authority: ca })).updated;
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
const fingerprint = (ca: CertAuthority) => JSON.stringify([ca.spec.checking_keys, ca.spec.tls_key_pairs.map((p) => p.cert)]);

export class LeafCAPush {
  private current?: { ca: CertAuthority; fp: string };
  /** The user CA keys of the access data the current CA was read for. */
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

  /** Reads this cluster's user CA again when its keys in the access data changed, then pushes it where it is not yet. */
  private async read(): Promise<void> {
    const keys = this.opts.access
      .userCAKeys()
      .map((k) => k.toString('base64'))
      .sort()
      .join(',');
    if (this.stopped || this.reading || keys === this.readFor) return;
    this.reading = true;
    clearTimeout(this.readTimer);
    try {
      const ca = (await this.opts.fetchUserCAs()).find((c) => c.spec.cluster_name === this.opts.clusterName);
      if (!ca) throw new Error(`the auth server has no user CA of cluster ${this.opts.clusterName}`);
      const pub: CertAuthority = { ...ca, spec: { ...ca.spec, signing_keys: [], tls_key_pairs: ca.spec.tls_key_pairs.map((p) => ({ cert: p.cert, key: '' })) } };
      this.current = { ca: pub, fp: fingerprint(pub) };
      this.readFor = keys;
      this.readDelayMs = this.retry.min;
    } catch (err) {
      this.opts.log.warn('cannot read the user CA to send to leaf clusters; retrying', { error: err, retry_in_ms: this.readDelayMs });
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

  /** Sends until the leaf has the current CA (it may change during a send), or the leaf is gone. */
  private async run(name: string, s: LeafState): Promise<void> {
    s.busy = true;
    try {
      while (!this.stopped && this.current && s.pushed !== this.current.fp && this.leaves.get(name) === s && this.opts.connected(name)) {
        const { ca, fp } = this.current;
        const updated = await this.opts.send(name, ca);
        s.pushed = fp;
        s.delayMs = this.retry.min;
        this.opts.log.info(updated ? 'sent the user CA to a leaf cluster' : 'a leaf cluster has the current user CA', { cluster: name, keys: ca.spec.checking_keys.length });
      }
    } catch (err) {
      if (this.stopped || this.leaves.get(name) !== s) return;
      this.opts.log.warn('cannot send the user CA to a leaf cluster; retrying', { cluster: name, error: err, retry_in_ms: s.delayMs });
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
