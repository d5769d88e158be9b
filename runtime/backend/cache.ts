/**
 * A read cache in front of a backend for the auth service's hot resources
 * (CAs, users, roles, nodes, tokens): the items under the cached prefixes are
 * loaded once and kept fresh from a watch, so reads of them never reach the
 * store (with DynamoDB: no query per request). Everything else, and every
 * write, goes to the backend, which alone decides conditional writes.
 *
 * Consistency. A key this process wrote is read from the backend until the
 * watch has delivered the write (so a caller reads its own writes, with their
 * ids); other servers' writes show up when the watch delivers them (about a
 * second on DynamoDB Streams). While the watch is down or re-reading, every
 * read goes to the backend: the cache never serves what it cannot vouch for.
 */
import { rangeEnd } from '../contract/keys';
import { Logger, logger } from '../utils/logger';
import { Clock, systemClock } from './clock';
import { SortedKeys } from './sortedkeys';
import { Backend, Event, Item, Lease, OpType, Watcher, WatchOptions } from './types';

export interface CacheOptions {
  /** Key prefixes whose items are kept in memory. */
  prefixes: string[];
  clock?: Clock;
  log?: Logger;
  /** Wait between attempts to re-open the watch after a failure. @default 1000 */
  retryMs?: number;
}

export class CachedBackend implements Backend {
  private items = new Map<string, Item>();
  /** The keys of `items` in order: range reads walk only their range. */
  private index = new SortedKeys();
  /** Keys with writes of ours whose events have not come back yet. */
  private readonly pending = new Map<string, number>();
  private ready = false;
  private closed = false;
  private watcher?: Watcher;
  private readonly loop: Promise<void>;
  private firstLoad!: () => void;
  private readonly loaded: Promise<void>;
  private readonly clock: Clock;
  private readonly log: Logger;

  private constructor(
    private readonly backend: Backend,
    private readonly opts: CacheOptions,
  ) {
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log ?? logger('backend').child('cache');
    this.loaded = new Promise<void>((resolve) => (this.firstLoad = resolve));
    this.loop = this.run();
  }

  /**
   * Wraps `backend`; resolves once the cached prefixes are loaded, or after
   * `waitMs` if the watch cannot start (reads then go to the backend until it does).
   */
  static async open(backend: Backend, opts: CacheOptions, waitMs = 10_000): Promise<CachedBackend> {
    const cache = new CachedBackend(backend, opts);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([cache.loaded, new Promise((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
    return cache;
  }

  /** Whether reads are being served from memory (for tests and status). */
  get isReady(): boolean {
    return this.ready;
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      try {
        const w = await this.backend.newWatcher({ prefixes: this.opts.prefixes, name: 'cache', queueSize: 16_384 });
        this.watcher = w;
        if (this.closed) return w.close();
        const init = await w.next();
        if (!init) continue;
        const fresh = new Map<string, Item>();
        for (const p of this.opts.prefixes) for (const item of await this.backend.getRange(p, rangeEnd(p))) fresh.set(item.key, item);
        this.items = fresh;
        this.index = new SortedKeys(fresh.keys());
        this.pending.clear();
        this.ready = true;
        this.firstLoad();
        for (let e = await w.next(); e; e = await w.next()) this.apply(e);
      } catch (err) {
        if (this.closed) return;
        this.log.warn('cache watch failed, reading from the backend until it is back', { error: err });
      }
      this.ready = false;
      if (!this.closed) await new Promise((resolve) => setTimeout(resolve, this.opts.retryMs ?? 1000));
    }
  }

  private apply(e: Event): void {
    if (e.type === OpType.Put) {
      if (!this.items.has(e.item.key)) this.index.add(e.item.key);
      this.items.set(e.item.key, e.item);
    } else if (e.type === OpType.Delete) {
      this.items.delete(e.item.key);
      this.index.delete(e.item.key);
    }
    this.release(e.item.key);
  }

  /** One pending write of `key` is accounted for: its event arrived. */
  private release(key: string): void {
    const n = this.pending.get(key);
    if (n === undefined) return;
    if (n > 1) this.pending.set(key, n - 1);
    else this.pending.delete(key);
  }

  private covers(start: string, end: string): boolean {
    return this.opts.prefixes.some((p) => start.startsWith(p) && end <= rangeEnd(p));
  }

  private live(item: Item | undefined): item is Item {
    return !!item && (!item.expires || item.expires.getTime() > this.clock.now().getTime());
  }

  private pendingIn(start: string, end: string): boolean {
    for (const k of this.pending.keys()) if (k >= start && k < end) return true;
    return false;
  }

  async get(key: string): Promise<Item> {
    if (!this.ready || !this.covers(key, key) || this.pending.has(key)) return this.backend.get(key);
    const item = this.items.get(key);
    // A miss may be another server's write still on its way: the backend has the last word on absence.
    if (!this.live(item)) return this.backend.get(key);
    return item;
  }

  async getRange(start: string, end: string, limit?: number): Promise<Item[]> {
    if (!this.ready || !this.covers(start, end) || this.pendingIn(start, end)) return this.backend.getRange(start, end, limit);
    const out: Item[] = [];
    for (const key of this.index.range(start, end)) {
      const item = this.items.get(key);
      if (!this.live(item)) continue;
      out.push(item);
      if (limit && out.length >= limit) break;
    }
    return out;
  }

  /**
   * Runs one write of `keys`, which stay read-through until their events
   * arrive. A write that fails stays counted: a refused conditional write
   * means the cache may be behind on that key (and a failed call may still
   * have been applied), so it is read from the backend until its next event.
   */
  private async write<T>(keys: string[], op: () => Promise<T>): Promise<T> {
    for (const k of keys.filter((k) => this.opts.prefixes.some((p) => k.startsWith(p)))) this.pending.set(k, (this.pending.get(k) ?? 0) + 1);
    return op();
  }

  create(item: Item): Promise<Lease> {
    return this.write([item.key], () => this.backend.create(item));
  }
  put(item: Item): Promise<Lease> {
    return this.write([item.key], () => this.backend.put(item));
  }
  update(item: Item): Promise<Lease> {
    return this.write([item.key], () => this.backend.update(item));
  }
  compareAndSwap(expected: Item, replaceWith: Item): Promise<Lease> {
    return this.write([replaceWith.key], () => this.backend.compareAndSwap(expected, replaceWith));
  }
  delete(key: string): Promise<void> {
    return this.write([key], () => this.backend.delete(key));
  }
  keepAlive(lease: Lease, expires: Date): Promise<void> {
    return this.write([lease.key], () => this.backend.keepAlive(lease, expires));
  }
  deleteRange(start: string, end: string): Promise<void> {
    const known = this.index.range(start, end);
    return this.write(known, () => this.backend.deleteRange(start, end));
  }

  newWatcher(opts: WatchOptions): Promise<Watcher> {
    return this.backend.newWatcher(opts);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ready = false;
    this.watcher?.close();
    await this.backend.close();
    await this.loop;
  }
}
