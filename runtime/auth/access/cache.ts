/**
 * A proxy's or node's copy of the cluster's access data (users, roles, user CA
 * keys), loaded from the auth service and kept current by long polls of
 * `GET /v1/access` (access/feed.ts): a change reaches it as soon as the auth
 * service sees it. When the auth service cannot be reached the last copy
 * keeps deciding; before the first copy arrives every decision is a refusal.
 */
import { z } from 'zod';
import { Certificate, certRoles, parseAuthorizedKey } from '../../sshcert';
import { Logger } from '../../utils/logger';
import type { AuthClient } from '../client';
import { Role, roleSchema, User } from '../resources';
import { AccessDecision, AccessRequest, AccessView, checkAccess, TrustedClusterRule } from './decision';
import type { AccessSnapshot, AccessUnchanged, SnapshotCluster } from './feed';
import type { RotationPhase } from '../rotation';
import { jittered } from '../../utils/jitter';

/** Another cluster as loaded: its keys parsed. */
export interface LoadedCluster {
  name: string;
  relation: SnapshotCluster['relation'];
  enabled: boolean;
  roleMap: SnapshotCluster['role_map'];
  userCAKeys: Buffer[];
  hostCAKeys: Buffer[];
  /** The host CA's TLS certificates, PEM. */
  hostTlsCAs: string[];
  tunnelAddr?: string;
}

/**
 * How long the auth service holds a poll when nothing changes (a change is answered at once). Each
 * poll that ends unchanged is one request per node: at 20 s they were most of the auth server's
 * work per node (bench/README.md); a minute stays well inside load balancers' idle timeouts.
 */
export const ACCESS_POLL_WAIT_MS = 60_000;
/** How long a poll's connection may stay silent: the hold and time to answer. */
export const ACCESS_POLL_TIMEOUT_MS = ACCESS_POLL_WAIT_MS + 30_000;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 10_000;

export interface Loaded {
  version: string;
  users: Map<string, User>;
  roles: Map<string, Role>;
  userCAKeys: Buffer[];
  hostCAKeys: Buffer[];
  /** The host CA's TLS certificates, PEM. */
  hostTlsCAs: string[];
  hostRotation?: { phase: RotationPhase; id: string };
  clusters: Map<string, LoadedCluster>;
}

const keysOf = (lines: string[]) => lines.map((line) => parseAuthorizedKey(line).blob);

/** A user as the snapshot carries it: only what decisions read (the full `userSchema` costs ten times as much per user). */
const snapshotUser = z.object({ name: z.string(), roles: z.array(z.string()), traits: z.record(z.string(), z.array(z.string())) });

/** Parses a snapshot; a record that does not parse is dropped (a user or role that cannot be read grants nothing). */
export function parseSnapshot(s: AccessSnapshot, log: Logger): Loaded {
  const users = new Map<string, User>();
  for (const u of s.users) {
    const parsed = snapshotUser.safeParse(u);
    if (!parsed.success) {
      log.warn('ignoring a user record that does not parse', { error: parsed.error.message });
      continue;
    }
    const { name, roles, traits } = parsed.data;
    users.set(name, { kind: 'user', version: 'v2', metadata: { name }, spec: { roles, traits } });
  }
  const roles = new Map<string, Role>();
  for (const r of s.roles) {
    const parsed = roleSchema.safeParse(r);
    if (parsed.success) roles.set(parsed.data.metadata.name, parsed.data);
    else log.warn('ignoring a role that does not parse', { error: parsed.error.message });
  }
  const clusters = new Map<string, LoadedCluster>();
  for (const c of s.clusters ?? []) {
    try {
      clusters.set(c.name, {
        name: c.name,
        relation: c.relation,
        enabled: c.enabled,
        roleMap: c.role_map,
        userCAKeys: keysOf(c.user_ca_keys),
        hostCAKeys: keysOf(c.host_ca_keys),
        hostTlsCAs: c.host_tls_cas ?? [],
        ...(c.tunnel_addr ? { tunnelAddr: c.tunnel_addr } : {}),
      });
    } catch (err) {
      log.warn('ignoring a trusted cluster record that does not parse', { cluster: c.name, error: (err as Error).message });
    }
  }
  return {
    version: s.version,
    users,
    roles,
    userCAKeys: keysOf(s.user_ca_keys),
    hostCAKeys: keysOf(s.host_ca_keys ?? []),
    hostTlsCAs: s.host_tls_cas ?? [],
    ...(s.host_ca_rotation ? { hostRotation: s.host_ca_rotation } : {}),
    clusters,
  };
}

export class AccessCache implements AccessView {
  private data?: Loaded;
  /** The snapshot `data` was parsed from, as the auth service sent it. */
  private raw?: AccessSnapshot;
  private stopped = false;
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly client: Pick<AuthClient, 'get'>,
    private readonly log: Logger,
  ) {}

  /** Whether a copy has been loaded (decisions before that are refusals). */
  get loaded(): boolean {
    return this.data !== undefined;
  }

  /** Loads the first copy (throws if the auth service cannot give one), then keeps it current in the background. */
  async start(): Promise<void> {
    this.apply(await this.fetch('', 0));
    void this.run();
  }

  private fetch(version: string, waitMs: number): Promise<AccessSnapshot | AccessUnchanged> {
    return this.client.get<AccessSnapshot | AccessUnchanged>(`/v1/access?version=${encodeURIComponent(version)}&wait=${waitMs}`, { timeoutMs: ACCESS_POLL_TIMEOUT_MS, lane: 'poll' });
  }

  private apply(s: AccessSnapshot | AccessUnchanged): void {
    if (this.data && s.version === this.data.version) return;
    // "Unchanged" from a version other than ours (none loaded, or another auth server's): nothing to
    // decide from; the poll is retried and the next answer carries the data.
    if ('unchanged' in s) throw new Error(`the auth server answered "unchanged" for version ${s.version}, which is not ours`);
    this.load(s);
  }

  /**
   * Decides from snapshot `s` from now on: what a poll does, and how a node's connection workers
   * (node/workerpool.ts) take the copy their primary process polled, without polling themselves.
   */
  load(s: AccessSnapshot): void {
    this.data = parseSnapshot(s, this.log);
    this.raw = s;
    for (const l of this.listeners) l();
  }

  /** The snapshot deciding now (undefined before the first load). */
  snapshot(): AccessSnapshot | undefined {
    return this.raw;
  }

  /** Calls `listener` after each new copy is loaded. */
  onChange(listener: () => void): void {
    this.listeners.add(listener);
  }

  private async run(): Promise<void> {
    let backoff = RETRY_MIN_MS;
    while (!this.stopped) {
      try {
        this.apply(await this.fetch(this.data?.version ?? '', ACCESS_POLL_WAIT_MS));
        backoff = RETRY_MIN_MS;
      } catch (err) {
        if (this.stopped) return;
        this.log.warn('cannot refresh the roles and users from the auth service; deciding from the last copy', { error: err, loaded: this.loaded });
        await new Promise((resolve) => setTimeout(resolve, jittered(backoff)).unref());
        backoff = Math.min(backoff * 2, RETRY_MAX_MS);
      }
    }
  }

  user(name: string): User | undefined {
    return this.data?.users.get(name);
  }

  role(name: string): Role | undefined {
    return this.data?.roles.get(name);
  }

  /** This cluster's user CA keys (none before the first load: nobody can log in). */
  userCAKeys(): Buffer[] {
    return this.data?.userCAKeys ?? [];
  }

  /** This cluster's host CA keys (none before the first load, or from an auth server that does not send them). */
  hostCAKeys(): Buffer[] {
    return this.data?.hostCAKeys ?? [];
  }

  /** This cluster's host CA as members follow it: its TLS certificates and its rotation (undefined before the first load). */
  hostCA(): { tlsCAs: string[]; checkingKeys: Buffer[]; rotation: { phase: RotationPhase; id: string } } | undefined {
    const d = this.data;
    return d?.hostRotation ? { tlsCAs: d.hostTlsCAs, checkingKeys: d.hostCAKeys, rotation: d.hostRotation } : undefined;
  }

  /** The other clusters with the given relation that are enabled now. */
  clusters(relation: LoadedCluster['relation']): LoadedCluster[] {
    return [...(this.data?.clusters.values() ?? [])].filter((c) => c.relation === relation && c.enabled);
  }

  trustedCluster(name: string): TrustedClusterRule | undefined {
    const c = this.data?.clusters.get(name);
    return c && c.relation === 'trusted' && c.enabled ? { roleMap: c.roleMap } : undefined;
  }

  /**
   * The user CA keys to accept: this cluster's, then each enabled trusted cluster's, each with the
   * cluster it stands for (undefined: this one).
   */
  userCAs(): { cluster?: string; keys: Buffer[] }[] {
    return [{ keys: this.userCAKeys() }, ...this.clusters('trusted').map((c) => ({ cluster: c.name, keys: c.userCAKeys }))];
  }

  /** Which cluster's user CA `caKey` is (undefined: this cluster's), or null when no trusted CA is. */
  clusterOfUserCA(caKey: Buffer): string | undefined | null {
    for (const ca of this.userCAs()) if (ca.keys.some((k) => k.equals(caKey))) return ca.cluster;
    return null;
  }

  /** The access decision from the current copy; a refusal when none is loaded yet (fail closed). */
  check(req: AccessRequest): AccessDecision {
    if (!this.data) return { allowed: false, reason: 'access denied: the roles and users of the cluster are not loaded yet; try again shortly' };
    return checkAccess(this, req);
  }

  /**
   * The decision for a verified user certificate: from this cluster's user CA, the user's; from a
   * trusted cluster's, that cluster's user with roles mapped by its role_map; from neither, a refusal.
   */
  checkCert(cert: Certificate, login: string | undefined, node: AccessRequest['node']): AccessDecision {
    const cluster = this.clusterOfUserCA(cert.signatureKey);
    if (cluster === null) return { allowed: false, reason: `access denied: certificate "${cert.keyId}" is not from a trusted user CA` };
    return this.check({
      user: cert.keyId,
      certRoles: certRoles(cert.extensions),
      ...(login !== undefined ? { login } : {}),
      node,
      ...(cluster !== undefined ? { remote: { cluster, logins: cert.principals } } : {}),
    });
  }

  /** Stops polling; the poll in flight ends when its client is closed. */
  stop(): void {
    this.stopped = true;
  }
}
