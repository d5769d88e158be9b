/**
 * Watcher fan-out shared by every backend implementation (Teleport's circular buffer). The
 * implementation turns its own change feed into `emit(event)` calls; the fan-out hands each event
 * to every watcher with a matching prefix. Each watcher has a bounded queue: a consumer that falls
 * behind gets its watcher closed (it must open a new one and re-read), so a slow watcher never
 * blocks writers or other watchers.
 */

import { logger } from '../utils/logger';
import { BadParameterError } from '../utils/errors';
import { watcherQueued } from '../service/metrics';
import { Event, OpType, Watcher, WatchOptions } from './types';

export const DEFAULT_QUEUE_SIZE = 1024;

const log = logger('backend').child('fanout');

class QueueWatcher implements Watcher {
  readonly done: Promise<void>;
  private readonly queue: Event[] = [];
  private readonly waiters: Array<(event: Event | undefined) => void> = [];
  private closed = false;
  private resolveDone!: () => void;

  constructor(
    readonly name: string,
    readonly prefixes: readonly string[],
    readonly capacity: number,
    private readonly onClose: (w: QueueWatcher) => void,
  ) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  matches(key: string): boolean {
    return this.prefixes.length === 0 || this.prefixes.some((p) => key.startsWith(p));
  }

  /** Returns false when the queue is full (the caller closes the watcher). */
  push(event: Event): boolean {
    if (this.closed) return true;
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter(event);
      return true;
    }
    if (this.queue.length >= this.capacity) return false;
    this.queue.push(event);
    watcherQueued.inc();
    return true;
  }

  next(): Promise<Event | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    const queued = this.queue.shift();
    if (queued) {
      watcherQueued.dec();
      return Promise.resolve(queued);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    watcherQueued.dec(this.queue.length);
    this.queue.length = 0;
    for (const waiter of this.waiters.splice(0)) waiter(undefined);
    this.onClose(this);
    this.resolveDone();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Event> {
    try {
      for (;;) {
        const event = await this.next();
        if (!event) return;
        yield event;
      }
    } finally {
      this.close();
    }
  }
}

export class Fanout {
  private readonly watchers = new Set<QueueWatcher>();
  private counter = 0;

  /** Registers a watcher whose first event is Init. */
  newWatcher(opts: WatchOptions): Watcher {
    const prefixes = opts.prefixes ?? [];
    if (!Array.isArray(prefixes) || prefixes.some((p) => typeof p !== 'string')) {
      throw new BadParameterError('backend newWatcher: prefixes must be an array of strings');
    }
    const queueSize = opts.queueSize ?? DEFAULT_QUEUE_SIZE;
    if (!Number.isSafeInteger(queueSize) || queueSize < 1) {
      throw new BadParameterError(`backend newWatcher: queueSize must be a positive integer, got ${String(queueSize)}`);
    }
    const name = opts.name ?? `watcher-${++this.counter}`;
    const watcher = new QueueWatcher(name, [...prefixes], queueSize, (w) => this.watchers.delete(w));
    this.watchers.add(watcher);
    watcher.push({ type: OpType.Init, item: { key: '', value: Buffer.alloc(0) } });
    return watcher;
  }

  /** Delivers a Put or Delete event to every watcher whose prefixes match its key. */
  emit(event: Event): void {
    for (const watcher of [...this.watchers]) {
      if (!watcher.matches(event.item.key)) continue;
      if (!watcher.push(event)) {
        log.warn('watcher fell behind and was closed; its consumer must re-create it and re-read', {
          watcher: watcher.name,
          queueSize: watcher.capacity,
        });
        watcher.close();
      }
    }
  }

  get size(): number {
    return this.watchers.size;
  }

  closeAll(): void {
    for (const watcher of [...this.watchers]) watcher.close();
  }
}
