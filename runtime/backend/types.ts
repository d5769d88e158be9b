/**
 * The backend contract: the cluster's key/value store with TTLs, compare-and-swap and
 * prefix watches (Teleport's `lib/backend.Backend`). Every implementation (memory, sqlite,
 * and later dynamodb and etcd) passes the same behavioural suite in test/runtime/backend/suite.ts.
 *
 * Keys are strings of the Basic Multilingual Plane without U+FFFF (see validate.ts). For such
 * strings JS code-unit order, code-point order and UTF-8 byte order (SQLite BINARY collation,
 * DynamoDB string sort keys) are the same order, so every implementation sorts keys alike.
 *
 * Ranges are half-open: `start <= key < end`. A prefix scan is
 * `getRange(prefix, rangeEnd(prefix))` with `rangeEnd` from runtime/contract/keys.ts.
 */

export interface Item {
  key: string;
  value: Buffer;
  /** When the item stops being visible. Absent: never. */
  expires?: Date;
  /** Revision of the write that last touched the item; later writes have larger ids. Set on reads. */
  id?: number;
}

/** A handle on a written item, used to extend its TTL with `keepAlive`. */
export interface Lease {
  key: string;
}

export enum OpType {
  Init = 0,
  Put = 1,
  Delete = 2,
}

/** A change seen by a watcher. Delete events carry only `item.key` (value is an empty Buffer). */
export interface Event {
  type: OpType;
  item: Item;
}

export interface WatchOptions {
  /** Key prefixes to watch. An empty list watches every key. */
  prefixes: string[];
  /** Shown in logs, e.g. when the watcher falls behind and is closed. */
  name?: string;
  /**
   * How many undelivered events the watcher may hold. When a slow consumer lets more pile up
   * the watcher is closed; its consumer must open a new one and re-read the state.
   * @default 1024
   */
  queueSize?: number;
}

/**
 * A stream of events. The first one is always `Init`. `next()` resolves `undefined` once the
 * watcher is closed (by `close()`, by falling behind, or by the backend closing); events still
 * queued at that moment are dropped. Leaving a `for await` loop early closes the watcher.
 */
export interface Watcher extends AsyncIterable<Event> {
  /** Resolves when the watcher is closed. */
  readonly done: Promise<void>;
  close(): void;
  next(): Promise<Event | undefined>;
}

export interface Backend {
  /** NotFoundError if the key is missing or expired. */
  get(key: string): Promise<Item>;
  /**
   * Live items with `start <= key < end`, sorted by key, at most `limit` of them
   * (absent or 0: no limit).
   */
  getRange(start: string, end: string, limit?: number): Promise<Item[]>;
  /** AlreadyExistsError if a live item has the key (an expired one counts as absent). */
  create(item: Item): Promise<Lease>;
  /** Creates or replaces. */
  put(item: Item): Promise<Lease>;
  /** NotFoundError if the key is missing or expired. */
  update(item: Item): Promise<Lease>;
  /**
   * Replaces the item if its current value bytes equal `expected.value`. The keys must match
   * (BadParameterError); CompareFailedError if the value differs or the item is missing.
   */
  compareAndSwap(expected: Item, replaceWith: Item): Promise<Lease>;
  /** NotFoundError if the key is missing or expired. */
  delete(key: string): Promise<void>;
  /** Deletes every item with `start <= key < end`; emits a Delete event for each. */
  deleteRange(start: string, end: string): Promise<void>;
  /** Moves the expiry without rewriting the value and emits a Put event. NotFoundError if gone. */
  keepAlive(lease: Lease, expires: Date): Promise<void>;
  /** First event is Init; then Put/Delete events for keys under any of the prefixes, in write order. */
  newWatcher(opts: WatchOptions): Promise<Watcher>;
  /** Stops background work and closes every watcher. Calling it twice is harmless. */
  close(): Promise<void>;
}
