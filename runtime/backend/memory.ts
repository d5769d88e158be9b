/**
 * An in-process backend for unit tests and throwaway clusters: a sorted key array plus a map,
 * TTLs measured against an injectable clock, watch events emitted synchronously after each write.
 * Expired items are invisible at once; they are removed (with a Delete event) when a read or
 * write touches them or when the periodic sweep finds them.
 */

import { AlreadyExistsError, BadParameterError, CompareFailedError, ConnectionProblemError, NotFoundError } from '../utils/errors';
import { Clock, systemClock } from './clock';
import { Fanout } from './fanout';
import { Backend, Event, Item, Lease, OpType, Watcher, WatchOptions } from './types';
import { checkBound, checkExpires, checkItem, checkKey, checkLimit, checkSwap } from './validate';

export interface MemoryBackendOptions {
  /** @default the system clock */
  readonly clock?: Clock;
  /** How often expired items are removed and their Delete events emitted; 0 turns the timer off. @default 500 */
  readonly sweepPeriodMs?: number;
}

interface Stored {
  value: Buffer;
  expires?: Date;
  id: number;
}

export class MemoryBackend implements Backend {
  private readonly clock: Clock;
  private readonly items = new Map<string, Stored>();
  private readonly keys: string[] = [];
  private readonly fanout = new Fanout();
  private readonly timer?: NodeJS.Timeout;
  private revision = 0;
  private closed = false;

  constructor(opts: MemoryBackendOptions = {}) {
    this.clock = opts.clock ?? systemClock;
    const period = opts.sweepPeriodMs ?? 500;
    if (!Number.isFinite(period) || period < 0) {
      throw new BadParameterError(`memory backend: sweepPeriodMs must be >= 0, got ${String(period)}`);
    }
    if (period > 0) this.timer = setInterval(() => this.sweep(), period);
  }

  async get(key: string): Promise<Item> {
    this.checkOpen();
    checkKey(key, 'get');
    const stored = this.live(key);
    if (!stored) throw new NotFoundError(`key ${JSON.stringify(key)} is not found`);
    return toItem(key, stored);
  }

  async getRange(start: string, end: string, limit?: number): Promise<Item[]> {
    this.checkOpen();
    checkBound(start, 'start', 'getRange');
    checkBound(end, 'end', 'getRange');
    const max = checkLimit(limit, 'getRange');
    const out: Item[] = [];
    const expired: string[] = [];
    const now = this.clock.now().getTime();
    for (let i = lowerBound(this.keys, start); i < this.keys.length && this.keys[i] < end; i++) {
      const key = this.keys[i];
      const stored = this.items.get(key)!;
      if (isExpired(stored, now)) {
        expired.push(key);
        continue;
      }
      out.push(toItem(key, stored));
      if (max > 0 && out.length >= max) break;
    }
    for (const key of expired) this.remove(key);
    return out;
  }

  async create(item: Item): Promise<Lease> {
    this.checkOpen();
    const checked = checkItem(item, 'create');
    if (this.live(checked.key)) throw new AlreadyExistsError(`key ${JSON.stringify(checked.key)} already exists`);
    return this.write(checked);
  }

  async put(item: Item): Promise<Lease> {
    this.checkOpen();
    return this.write(checkItem(item, 'put'));
  }

  async update(item: Item): Promise<Lease> {
    this.checkOpen();
    const checked = checkItem(item, 'update');
    if (!this.live(checked.key)) throw new NotFoundError(`key ${JSON.stringify(checked.key)} is not found`);
    return this.write(checked);
  }

  async compareAndSwap(expected: Item, replaceWith: Item): Promise<Lease> {
    this.checkOpen();
    const { want, next } = checkSwap(expected, replaceWith);
    const current = this.live(want.key);
    if (!current) throw new CompareFailedError(`compareAndSwap: key ${JSON.stringify(want.key)} is not found`);
    if (!current.value.equals(want.value)) {
      throw new CompareFailedError(`compareAndSwap: value of ${JSON.stringify(want.key)} has changed`);
    }
    return this.write(next);
  }

  async delete(key: string): Promise<void> {
    this.checkOpen();
    checkKey(key, 'delete');
    if (!this.live(key)) throw new NotFoundError(`key ${JSON.stringify(key)} is not found`);
    this.remove(key);
  }

  async deleteRange(start: string, end: string): Promise<void> {
    this.checkOpen();
    checkBound(start, 'start', 'deleteRange');
    checkBound(end, 'end', 'deleteRange');
    const from = lowerBound(this.keys, start);
    const doomed: string[] = [];
    for (let i = from; i < this.keys.length && this.keys[i] < end; i++) doomed.push(this.keys[i]);
    for (const key of doomed) this.remove(key);
  }

  async keepAlive(lease: Lease, expires: Date): Promise<void> {
    this.checkOpen();
    const key = checkKey(lease?.key, 'keepAlive');
    const when = checkExpires(expires, 'keepAlive');
    if (!when) throw new BadParameterError('keepAlive: expires is required');
    const stored = this.live(key);
    if (!stored) throw new NotFoundError(`keepAlive: key ${JSON.stringify(key)} is not found`);
    stored.expires = when;
    stored.id = ++this.revision;
    this.emit({ type: OpType.Put, item: toItem(key, stored) });
  }

  async newWatcher(opts: WatchOptions): Promise<Watcher> {
    this.checkOpen();
    return this.fanout.newWatcher(opts);
  }

  /** Removes every expired item, emitting a Delete event for each; returns how many. */
  sweep(): number {
    if (this.closed) return 0;
    const now = this.clock.now().getTime();
    const doomed = this.keys.filter((key) => isExpired(this.items.get(key)!, now));
    for (const key of doomed) this.remove(key);
    return doomed.length;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.fanout.closeAll();
  }

  private checkOpen(): void {
    if (this.closed) throw new ConnectionProblemError('memory backend is closed');
  }

  /** The stored item if it is live; an expired one is removed on the way. */
  private live(key: string): Stored | undefined {
    const stored = this.items.get(key);
    if (!stored) return undefined;
    if (isExpired(stored, this.clock.now().getTime())) {
      this.remove(key);
      return undefined;
    }
    return stored;
  }

  private write(item: Item): Lease {
    const stored: Stored = { value: item.value, id: ++this.revision };
    if (item.expires) stored.expires = item.expires;
    if (!this.items.has(item.key)) this.keys.splice(lowerBound(this.keys, item.key), 0, item.key);
    this.items.set(item.key, stored);
    this.emit({ type: OpType.Put, item: toItem(item.key, stored) });
    return { key: item.key };
  }

  private remove(key: string): void {
    if (!this.items.delete(key)) return;
    this.keys.splice(lowerBound(this.keys, key), 1);
    this.emit({ type: OpType.Delete, item: { key, value: Buffer.alloc(0), id: ++this.revision } });
  }

  private emit(event: Event): void {
    this.fanout.emit(event);
  }
}

function isExpired(stored: Stored, now: number): boolean {
  return stored.expires !== undefined && stored.expires.getTime() <= now;
}

function toItem(key: string, stored: Stored): Item {
  const item: Item = { key, value: Buffer.from(stored.value), id: stored.id };
  if (stored.expires) item.expires = new Date(stored.expires.getTime());
  return item;
}

/** Index of the first key >= `key` (JS code-unit order). */
function lowerBound(keys: readonly string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid] < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
