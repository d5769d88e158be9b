/**
 * A backend that reports every request to the process's metrics (runtime/service/metrics.ts):
 * the latency of reads and writes, their count, and the ones that failed. A missing key, an
 * existing key on create, and a lost compare-and-swap are answers, not failures. Wraps any
 * backend once, so no implementation has to know about metrics.
 */
import {
  backendReadFailed,
  backendReadRequests,
  backendReadSeconds,
  backendWriteFailed,
  backendWriteRequests,
  backendWriteSeconds,
} from '../service/metrics';
import { AlreadyExistsError, CompareFailedError, NotFoundError } from '../utils/errors';
import type { Backend, Item, Lease, WatchOptions, Watcher } from './types';

type Kind = 'read' | 'write';

const METRICS = {
  read: { seconds: backendReadSeconds, requests: backendReadRequests, failed: backendReadFailed },
  write: { seconds: backendWriteSeconds, requests: backendWriteRequests, failed: backendWriteFailed },
};

function isAnswer(err: unknown): boolean {
  return err instanceof NotFoundError || err instanceof AlreadyExistsError || err instanceof CompareFailedError;
}

export class InstrumentedBackend implements Backend {
  private readonly labels: { component: string };

  /** `component` labels the metrics (`backend`, as Teleport labels its cluster state store). */
  constructor(
    private readonly inner: Backend,
    component = 'backend',
  ) {
    this.labels = { component };
  }

  private async track<T>(kind: Kind, call: () => Promise<T>): Promise<T> {
    const m = METRICS[kind];
    const labels = this.labels;
    m.requests.inc(labels);
    const end = m.seconds.startTimer(labels);
    try {
      return await call();
    } catch (err) {
      if (!isAnswer(err)) m.failed.inc(labels);
      throw err;
    } finally {
      end();
    }
  }

  get(key: string): Promise<Item> {
    return this.track('read', () => this.inner.get(key));
  }
  getRange(start: string, end: string, limit?: number): Promise<Item[]> {
    return this.track('read', () => this.inner.getRange(start, end, limit));
  }
  create(item: Item): Promise<Lease> {
    return this.track('write', () => this.inner.create(item));
  }
  put(item: Item): Promise<Lease> {
    return this.track('write', () => this.inner.put(item));
  }
  update(item: Item): Promise<Lease> {
    return this.track('write', () => this.inner.update(item));
  }
  compareAndSwap(expected: Item, replaceWith: Item): Promise<Lease> {
    return this.track('write', () => this.inner.compareAndSwap(expected, replaceWith));
  }
  delete(key: string): Promise<void> {
    return this.track('write', () => this.inner.delete(key));
  }
  deleteRange(start: string, end: string): Promise<void> {
    return this.track('write', () => this.inner.deleteRange(start, end));
  }
  keepAlive(lease: Lease, expires: Date): Promise<void> {
    return this.track('write', () => this.inner.keepAlive(lease, expires));
  }
  newWatcher(opts: WatchOptions): Promise<Watcher> {
    return this.inner.newWatcher(opts);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
