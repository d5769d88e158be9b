/**
 * The auth service's side of access data: the cluster's users, roles, user
 * CA keys and host CA keys, kept in memory from a watch on the store, with a version that
 * changes whenever any of them does. Proxies and nodes long-poll it
 * (`GET /v1/access?version=…`, see access/cache.ts), so an edited role, a
 * deleted user or a rotated user CA reaches them within the store's watch
 * delay, and nobody polls on a timer.
 *
 * The feed keeps its own copy from its own watcher (not the request cache),
 * so that a version it hands out always describes the data sent with it.
 */
import { randomBytes } from 'node:crypto';
import { Backend, OpType, Watcher } from '../../backend';
import { Keys, rangeEnd } from '../../contract/keys';
import { Logger } from '../../utils/logger';
import { CertAuthority, Role, roleSchema, User, userSchema } from '../resources';
import type { ClusterTrustRecord, Relation } from '../trust';
import { phaseOf, rotationOf, type RotationPhase } from '../rotation';
import { AccessView, TrustedClusterRule } from './decision';

/** Another cluster as proxies and nodes need it: the trust, the role map, its CA keys and its tunnel address. */
export interface SnapshotCluster {
  name: string;
  relation: Relation;
  enabled: boolean;
  role_map: ClusterTrustRecord['spec']['role_map'];
  /** authorized_keys lines. */
  user_ca_keys: string[];
  host_ca_keys: string[];
  /** The host CA's TLS certificates (PEM): a root's proxy checks its leaves' auth servers with them. */
  host_tls_cas: string[];
  tunnel_addr?: string;
}

/** What proxies and nodes load: every user (name, roles, traits), every role, the user and host CAs' public keys, the other clusters. */
export interface AccessSnapshot {
  version: string;
  /** authorized_keys lines. */
  user_ca_keys: string[];
  /** authorized_keys lines (nodes check the proxies' `Teleport-Proxy` hellos with them). */
  host_ca_keys: string[];
  /** The host CA's TLS certificates (PEM): members trust the auth servers' certificates from these (two during a rotation). */
  host_tls_cas?: string[];
  /** The host CA's rotation: members move to new host certificates by its phase (runtime/service/hostrotation.ts). */
  host_ca_rotation?: { phase: RotationPhase; id: string };
  /** As stored (durations as Go strings); parse with `roleSchema`. */
  roles: unknown[];
  users: { name: string; roles: string[]; traits: Record<string, string[]> }[];
  /** Trusted (root) and remote (leaf) clusters (runtime/auth/trust.ts). */
  clusters: SnapshotCluster[];
}

/**
 * The answer to a poll that waited and saw no change: the caller's version, without the data it
 * already has (sending every node the same snapshot again at each poll was most of the poll's cost).
 */
export interface AccessUnchanged {
  version: string;
  unchanged: true;
}

const keyLines = (ca: CertAuthority) => ca.spec.checking_keys.map((k) => Buffer.from(k, 'base64').toString());
const tlsPems = (ca: CertAuthority) => (ca.spec.tls_key_pairs ?? []).map((p) => Buffer.from(p.cert, 'base64').toString());

function snapshotCluster(r: ClusterTrustRecord): SnapshotCluster {
  return {
    name: r.metadata.name,
    relation: r.spec.relation,
    enabled: r.spec.enabled,
    role_map: r.spec.role_map,
    user_ca_keys: keyLines(r.spec.user_ca),
    host_ca_keys: keyLines(r.spec.host_ca),
    host_tls_cas: tlsPems(r.spec.host_ca),
    ...(r.spec.tunnel_addr ? { tunnel_addr: r.spec.tunnel_addr } : {}),
  };
}

const USER_SUFFIX = '/params';

/** Whether a key of the store is part of the access data (not a password, TOTP secret, session or login attempt). */
function relevant(key: string): boolean {
  if (key.startsWith(Keys.users())) return key.endsWith(USER_SUFFIX) && key.split('/').length === 5;
  return key.startsWith(Keys.roles()) || key.startsWith(Keys.certAuthorities('user')) || key.startsWith(Keys.certAuthorities('host')) || key.startsWith(Keys.clusterTrusts());
}

const PREFIXES = [Keys.users(), Keys.roles(), Keys.certAuthorities('user'), Keys.certAuthorities('host'), Keys.clusterTrusts()];

/** A record of the access data as parsed once, when it was written. */
type Entry =
  | { kind: 'user'; user: User }
  | { kind: 'role'; role: Role; stored: unknown }
  | { kind: 'ca'; type: 'user' | 'host'; keys: string[]; tls: string[]; rotation: { phase: RotationPhase; id: string } }
  | { kind: 'cluster'; cluster: SnapshotCluster; userTlsCAs: string[] };
/** A trusted cluster's TLS CA certificates (PEM), for the auth API's callers. */
export interface ForeignTlsCAs {
  cluster: string;
  certs: string[];
}

export class AccessFeed implements AccessView {
  /** By store key. */
  private readonly entries = new Map<string, Entry>();
  private readonly users = new Map<string, User>();
  private readonly roles = new Map<string, { role: Role; stored: unknown }>();
  /** Other clusters by name (a decision for a trusted cluster's user looks one up per node listed). */
  private readonly others = new Map<string, { cluster: SnapshotCluster; userTlsCAs: string[] }>();
  private snapshotCache?: AccessSnapshot;
  private readonly epoch = randomBytes(6).toString('hex');
  private counter = 0;
  private waiters = new Set<() => void>();
  private readonly listeners = new Set<() => void>();
  private watcher?: Watcher;
  private closed = false;
  private loop?: Promise<void>;

  constructor(
    private readonly store: Backend,
    private readonly log: Logger,
    private readonly retryMs = 1000,
  ) {}

  get version(): string {
    return `${this.epoch}.${this.counter}`;
  }

  /** Starts the watch; resolves once the data is loaded (or rejects if the first load fails). */
  async start(): Promise<void> {
    const first = await this.open();
    this.loop = this.run(first);
  }

  private async open(): Promise<Watcher> {
    const w = await this.store.newWatcher({ prefixes: PREFIXES, name: 'access-feed', queueSize: 16_384 });
    try {
      if (!(await w.next())) throw new Error('the watch closed before it started');
      const items = [];
      for (const prefix of PREFIXES) items.push(...(await this.store.getRange(prefix, rangeEnd(prefix))));
      for (const key of [...this.entries.keys()]) this.remove(key);
      for (const item of items) if (relevant(item.key)) this.set(item.key, item.value);
    } catch (err) {
      w.close();
      throw err;
    }
    this.watcher = w;
    this.changed();
    return w;
  }

  private async run(first: Watcher): Promise<void> {
    for (let w: Watcher | undefined = first; w; w = await this.reopen()) {
      for (let e = await w.next(); e; e = await w.next()) {
        if (!relevant(e.item.key)) continue;
        if (e.type === OpType.Put) this.set(e.item.key, e.item.value);
        else if (e.type === OpType.Delete) this.remove(e.item.key);
        this.changed();
      }
    }
  }

  /** A new watch after the last one closed (the store restarted, or we fell behind); undefined once the feed is closed. */
  private async reopen(): Promise<Watcher | undefined> {
    while (!this.closed) {
      try {
        const w = await this.open();
        if (!this.closed) return w;
        w.close();
      } catch (err) {
        this.log.warn('access feed: cannot watch the store, retrying', { error: err });
        await new Promise((resolve) => setTimeout(resolve, this.retryMs).unref());
      }
    }
    return undefined;
  }

  /** Parses one written record (only that one: a change costs the same however many users there are). */
  private set(key: string, value: Buffer): void {
    this.remove(key);
    let entry: Entry;
    try {
      const json = JSON.parse(value.toString()) as unknown;
      if (key.startsWith(Keys.users())) entry = { kind: 'user', user: userSchema.parse(json) };
      else if (key.startsWith(Keys.roles())) entry = { kind: 'role', role: roleSchema.parse(json), stored: json };
      else if (key.startsWith(Keys.clusterTrusts())) {
        const r = json as ClusterTrustRecord;
        entry = { kind: 'cluster', cluster: snapshotCluster(r), userTlsCAs: tlsPems(r.spec.user_ca) };
      }
      else {
        const ca = json as CertAuthority;
        const type = key.startsWith(Keys.certAuthorities('host')) ? 'host' : 'user';
        entry = { kind: 'ca', type, keys: keyLines(ca), tls: tlsPems(ca), rotation: { phase: phaseOf(ca), id: rotationOf(ca).current_id ?? '' } };
      }
    } catch (err) {
      this.log.warn('access feed: skipping a record that does not parse', { key, error: err });
      return;
    }
    this.entries.set(key, entry);
    if (entry.kind === 'user') this.users.set(entry.user.metadata.name, entry.user);
    else if (entry.kind === 'role') this.roles.set(entry.role.metadata.name, entry);
    else if (entry.kind === 'cluster') this.others.set(entry.cluster.name, entry);
  }

  private remove(key: string): void {
    const entry = this.entries.get(key);
    this.entries.delete(key);
    if (entry?.kind === 'user') this.users.delete(entry.user.metadata.name);
    else if (entry?.kind === 'role') this.roles.delete(entry.role.metadata.name);
    else if (entry?.kind === 'cluster') this.others.delete(entry.cluster.name);
  }

  /** Moves the version on and wakes the long polls. */
  private changed(): void {
    this.snapshotCache = undefined;
    this.counter++;
    const waiters = this.waiters;
    this.waiters = new Set();
    waiters.forEach((wake) => wake());
    this.listeners.forEach((listener) => listener());
  }

  /** Calls `listener` after every change the watch brings (and after each (re)load). */
  onChange(listener: () => void): void {
    this.listeners.add(listener);
  }

  user(name: string): User | undefined {
    return this.users.get(name);
  }

  role(name: string): Role | undefined {
    return this.roles.get(name)?.role;
  }

  private clusters(): SnapshotCluster[] {
    return [...this.others.values()].map((o) => o.cluster);
  }

  /** The user TLS CA certificates (PEM) of each enabled trusted cluster, for the auth API's callers. */
  trustedUserTlsCAs(): ForeignTlsCAs[] {
    return [...this.others.values()].flatMap((o) => (o.cluster.relation === 'trusted' && o.cluster.enabled ? [{ cluster: o.cluster.name, certs: o.userTlsCAs }] : []));
  }

  /** The host TLS CA certificates (PEM) of each enabled trusted cluster: its proxies push its user CA here. */
  trustedHostTlsCAs(): ForeignTlsCAs[] {
    return [...this.others.values()].flatMap((o) => (o.cluster.relation === 'trusted' && o.cluster.enabled ? [{ cluster: o.cluster.name, certs: o.cluster.host_tls_cas }] : []));
  }

  trustedCluster(name: string): TrustedClusterRule | undefined {
    const c = this.others.get(name)?.cluster;
    return c && c.relation === 'trusted' && c.enabled ? { roleMap: c.role_map } : undefined;
  }

  private cas(type: 'user' | 'host') {
    return [...this.entries.values()].flatMap((e) => (e.kind === 'ca' && e.type === type ? [e] : []));
  }

  snapshot(): AccessSnapshot {
    this.snapshotCache ??= {
      version: this.version,
      user_ca_keys: this.cas('user').flatMap((e) => e.keys),
      host_ca_keys: this.cas('host').flatMap((e) => e.keys),
      host_tls_cas: this.cas('host').flatMap((e) => e.tls),
      ...(this.cas('host')[0] ? { host_ca_rotation: this.cas('host')[0].rotation } : {}),
      roles: [...this.roles.values()].map((r) => r.stored),
      users: [...this.users.values()].map((u) => ({ name: u.metadata.name, roles: u.spec.roles, traits: u.spec.traits })),
      clusters: this.clusters(),
    };
    return this.snapshotCache;
  }

  /**
   * The long poll (`GET /v1/access`): waits up to `waitMs` for the version to move from the caller's
   * `version`; then the snapshot, or, if it is still the caller's, only the version (AccessUnchanged).
   */
  async poll(version: string, waitMs: number): Promise<AccessSnapshot | AccessUnchanged> {
    await this.waitForChange(version, waitMs);
    const snapshot = this.snapshot();
    return version && version === snapshot.version ? { version, unchanged: true } : snapshot;
  }

  /** Resolves when the version is no longer `version`, or after `waitMs`. */
  async waitForChange(version: string, waitMs: number): Promise<void> {
    if (version !== this.version || this.closed) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(done);
        resolve();
      }, waitMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.waiters.add(done);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watcher?.close();
    const waiters = this.waiters;
    this.waiters = new Set();
    waiters.forEach((wake) => wake());
    await this.loop;
  }
}
