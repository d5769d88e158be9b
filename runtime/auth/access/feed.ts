/**
 * The auth service's side of access data: the cluster's users, roles and
 * user CA keys, kept in memory from a watch on the store, with a version that
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
import { AccessView } from './decision';

/** What proxies and nodes load: every user (name, roles, traits), every role, the user CA's public keys. */
export interface AccessSnapshot {
  version: string;
  /** authorized_keys lines. */
  user_ca_keys: string[];
  /** As stored (durations as Go strings); parse with `roleSchema`. */
  roles: unknown[];
  users: { name: string; roles: string[]; traits: Record<string, string[]> }[];
}

const USER_SUFFIX = '/params';

/** Whether a key of the store is part of the access data (not a password, TOTP secret, session or login attempt). */
function relevant(key: string): boolean {
  if (key.startsWith(Keys.users())) return key.endsWith(USER_SUFFIX) && key.split('/').length === 5;
  return key.startsWith(Keys.roles()) || key.startsWith(Keys.certAuthorities('user'));
}

export class AccessFeed implements AccessView {
  private readonly items = new Map<string, Buffer>();
  private users = new Map<string, User>();
  private roles = new Map<string, Role>();
  private snapshotCache?: AccessSnapshot;
  private readonly epoch = randomBytes(6).toString('hex');
  private counter = 0;
  private waiters = new Set<() => void>();
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
    const w = await this.store.newWatcher({ prefixes: [Keys.users(), Keys.roles(), Keys.certAuthorities('user')], name: 'access-feed', queueSize: 16_384 });
    try {
      if (!(await w.next())) throw new Error('the watch closed before it started');
      this.items.clear();
      for (const prefix of [Keys.users(), Keys.roles(), Keys.certAuthorities('user')]) {
        for (const item of await this.store.getRange(prefix, rangeEnd(prefix))) if (relevant(item.key)) this.items.set(item.key, item.value);
      }
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
        if (e.type === OpType.Put) this.items.set(e.item.key, e.item.value);
        else if (e.type === OpType.Delete) this.items.delete(e.item.key);
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

  /** Rebuilds the parsed view, moves the version on and wakes the long polls. */
  private changed(): void {
    const users = new Map<string, User>();
    const roles = new Map<string, Role>();
    for (const [key, value] of this.items) {
      try {
        if (key.startsWith(Keys.users())) {
          const u = userSchema.parse(JSON.parse(value.toString()));
          users.set(u.metadata.name, u);
        } else if (key.startsWith(Keys.roles())) {
          const r = roleSchema.parse(JSON.parse(value.toString()));
          roles.set(r.metadata.name, r);
        }
      } catch (err) {
        this.log.warn('access feed: skipping a record that does not parse', { key, error: err });
      }
    }
    this.users = users;
    this.roles = roles;
    this.snapshotCache = undefined;
    this.counter++;
    const waiters = this.waiters;
    this.waiters = new Set();
    waiters.forEach((wake) => wake());
  }

  user(name: string): User | undefined {
    return this.users.get(name);
  }

  role(name: string): Role | undefined {
    return this.roles.get(name);
  }

  snapshot(): AccessSnapshot {
    if (this.snapshotCache) return this.snapshotCache;
    const caKeys: string[] = [];
    const roles: unknown[] = [];
    for (const [key, value] of this.items) {
      if (key.startsWith(Keys.certAuthorities('user'))) {
        const ca = JSON.parse(value.toString()) as CertAuthority;
        caKeys.push(...ca.spec.checking_keys.map((k) => Buffer.from(k, 'base64').toString()));
      } else if (key.startsWith(Keys.roles()) && this.roles.has(key.split('/')[2])) {
        roles.push(JSON.parse(value.toString()));
      }
    }
    const users = [...this.users.values()].map((u) => ({ name: u.metadata.name, roles: u.spec.roles, traits: u.spec.traits }));
    this.snapshotCache = { version: this.version, user_ca_keys: caKeys, roles, users };
    return this.snapshotCache;
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
