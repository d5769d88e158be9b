/**
 * A root cluster's proxy keeps the root trusting each leaf's current CAs, so
 * that a leaf's CA rotation reaches the root: without it the root keeps the
 * keys it got at the CA exchange (runtime/auth/trust.ts), and refuses the
 * leaf's tunnels once its proxies present certificates of a new host key.
 *
 * For each leaf whose tunnel this proxy holds, it long-polls the leaf's auth
 * server (`GET /v1/trust/authorities`) over the tunnel's `auth` channel, as
 * mutual TLS: this proxy's host identity, the leaf auth's certificate checked
 * against the leaf's host TLS CA kept here (leafca.ts `dialLeafAuth`). The
 * leaf answers as soon as its CAs change, so a rotation's new key is kept here
 * in the leaf's `init`, before anything of the leaf is signed or served with
 * it. A changed CA goes to this cluster's auth server (`POST
 * /v1/remoteclusters/<leaf>/authorities`), which replaces the one it keeps.
 * A failed poll or update is retried after a delay that doubles up to
 * LEAF_CA_RETRY_MS.max; the loop ends when the leaf's last tunnel does.
 */
import type { CertAuthority } from '../auth/resources';
import { Logger } from '../utils/logger';
import { LEAF_CA_RETRY_MS, leafAuthClient, type SendCAOptions } from './leafca';

/** How long the leaf holds a poll when nothing changes. */
export const LEAF_CA_POLL_MS = 60_000;

/** A leaf's answer to a poll: its CAs' fingerprint, and the CAs (public parts) when it is not the one known. */
export interface LeafCAs {
  fingerprint: string;
  certificate_authorities?: CertAuthority[];
}

export interface LeafCAFollowOptions {
  /** Whether this proxy holds a tunnel from leaf `name` now. */
  connected(name: string): boolean;
  /** One long poll of leaf `name`'s auth server (pollLeafCAs); given up when `signal` aborts. */
  poll(name: string, known: string, signal: AbortSignal): Promise<LeafCAs>;
  /** Passes a leaf's CA to this cluster's auth server; resolves whether it changed anything. */
  update(name: string, ca: CertAuthority): Promise<boolean>;
  log: Logger;
  /** @default LEAF_CA_RETRY_MS */
  retryMs?: { min: number; max: number };
}

/** Polls leaf `name`'s auth server for its CAs (`known`: the fingerprint of those this cluster has). */
export async function pollLeafCAs(opts: SendCAOptions, name: string, known: string, signal: AbortSignal, waitMs = LEAF_CA_POLL_MS): Promise<LeafCAs> {
  const client = leafAuthClient(opts, name);
  const close = () => client.close();
  signal.addEventListener('abort', close);
  try {
    return await client.get<LeafCAs>(`/v1/trust/authorities?known=${encodeURIComponent(known)}&wait=${waitMs}`);
  } finally {
    signal.removeEventListener('abort', close);
    client.close();
  }
}

export class LeafCAFollow {
  /** The running loop of each leaf, by name. */
  private readonly leaves = new Map<string, AbortController>();
  private readonly retry: { min: number; max: number };

  constructor(private readonly opts: LeafCAFollowOptions) {
    this.retry = opts.retryMs ?? LEAF_CA_RETRY_MS;
  }

  /** A leaf's first tunnel to this proxy came up (up) or its last one went down. */
  leafChanged(name: string, up: boolean): void {
    if (!up) {
      this.leaves.get(name)?.abort();
      this.leaves.delete(name);
      return;
    }
    if (this.leaves.has(name)) return;
    const run = new AbortController();
    this.leaves.set(name, run);
    void this.follow(name, run.signal).finally(() => {
      if (this.leaves.get(name) === run) this.leaves.delete(name);
    });
  }

  /** Polls the leaf and passes on what changed, until it is gone or this stops. */
  private async follow(name: string, signal: AbortSignal): Promise<void> {
    let known = '';
    let delayMs = this.retry.min;
    while (!signal.aborted && this.opts.connected(name)) {
      try {
        const got = await this.opts.poll(name, known, signal);
        if (got.fingerprint !== known && got.certificate_authorities) {
          for (const ca of got.certificate_authorities) {
            const updated = await this.opts.update(name, ca);
            if (updated) this.opts.log.info(`took the ${ca.spec.type} CA of a leaf cluster`, { cluster: name, keys: ca.spec.checking_keys.length });
          }
          known = got.fingerprint;
        }
        delayMs = this.retry.min;
      } catch (err) {
        if (signal.aborted) return;
        this.opts.log.warn("cannot follow a leaf cluster's CAs; retrying", { cluster: name, error: err, retry_in_ms: delayMs });
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delayMs);
          signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
        });
        delayMs = Math.min(delayMs * 2, this.retry.max);
      }
    }
  }

  stop(): void {
    for (const run of this.leaves.values()) run.abort();
    this.leaves.clear();
  }
}
