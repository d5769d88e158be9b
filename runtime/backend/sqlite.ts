/**
 * The embedded default backend: one SQLite file (Teleport's "lite" backend), safe to share
 * between processes. Every write is one BEGIN IMMEDIATE transaction that changes `kv` and appends
 * to `events`; a poller tails `events` by id into the watcher fan-out, so a write made by another
 * process reaches this one's watchers, and a local write is tailed at once so local watchers see
 * it before the write returns. The poller also deletes expired rows (appending their Delete
 * events in the same transaction, so with several processes exactly one emits each delete) and
 * prunes events older than ten minutes.
 *
 * The change log `events` holds keys only, never values: a Put event is delivered with the row
 * `kv` holds while it is still the one that event wrote (`kv.modified` = the event's id). A Put
 * whose row has been overwritten or deleted since is skipped, since the later event that did so
 * follows; so another process's watchers may see several quick writes to a key as the last one.
 * Secrets (CA keys, TOTP secrets) thus live only in `kv`, for as long as they exist, and
 * `secure_delete` zeroes what is deleted or overwritten in the file (older page images may
 * remain in the `-wal` file until SQLite reuses it).
 *
 * Other processes' writes are noticed at once: a file watch on the database's directory (inotify)
 * sees the write-ahead log change, and, in case a notice is lost, a timer looks every
 * CHANGE_CHECK_MS. (The log is written before its commit is synced and marked in the shared-memory
 * index, which no file notice reports: a notice that finds no commit yet looks again after 1, 2,
 * 4, … ms, up to CHANGE_CHECK_MS.) Either asks SQLite's `PRAGMA data_version` (a read of the WAL index in shared
 * memory, no disk I/O), which changes when another connection commits, and tails `events` only then. The slower poller
 * (`pollPeriodMs`) still runs the expiry, the pruning and a tail of its own.
 *
 * Group commit: the `put`s made in one turn of the event loop (many heartbeats that arrive
 * together) are written in one transaction at the end of that turn, each resolved only once that
 * transaction is committed (with `synchronous = FULL`, on disk), so a burst pays one commit and
 * one tail instead of one each. Any other operation first commits the puts still waiting, so the
 * backend's operations take effect in the order they were called.
 *
 * `kv.modified` holds the id of the event that last wrote the row, a revision that grows across
 * every process sharing the file; it is reported as `Item.id`. Times are Unix milliseconds.
 * Keys use the BINARY collation (UTF-8 byte order), which equals JS string order for the keys
 * validate.ts accepts.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import {
  AlreadyExistsError,
  BadParameterError,
  CompareFailedError,
  ConnectionProblemError,
  NotFoundError,
  TeleportError,
} from '../utils/errors';
import { logger } from '../utils/logger';
import { limitRepeats } from '../utils/logrepeats';
import { Clock, systemClock } from './clock';
import { Fanout } from './fanout';
import { Backend, Item, Lease, OpType, Watcher, WatchOptions } from './types';
import { checkBound, checkExpires, checkItem, checkKey, checkLimit, checkSwap } from './validate';

export const DEFAULT_POLL_PERIOD_MS = 500;
export const DEFAULT_BUSY_TIMEOUT_MS = 10_000;
export const EVENTS_TTL_MS = 10 * 60 * 1000;
/** How often another process's commits are looked for (`PRAGMA data_version`, no disk I/O). */
export const CHANGE_CHECK_MS = 50;
const TAIL_BATCH = 1000;
/** 2: `events` without values (version 1 databases are migrated when opened). */
const SCHEMA_VERSION = 2;

export interface SqliteBackendOptions {
  /** The database file (not a directory). Missing parent directories are created with mode 0700. */
  readonly path: string;
  /** How often other processes' writes, expiries and event pruning are picked up. @default 500 */
  readonly pollPeriodMs?: number;
  /** How long a write waits for another process's transaction. @default 10000 */
  readonly busyTimeoutMs?: number;
  /** SQLite `synchronous` pragma. @default 'FULL' (every commit is on disk before it returns) */
  readonly synchronous?: 'OFF' | 'NORMAL' | 'FULL';
  /** @default the system clock */
  readonly clock?: Clock;
}

/** A put waiting for the group commit. */
interface PendingPut {
  readonly item: Item;
  resolve(): void;
  reject(err: Error): void;
}

interface KvRow {
  key: string;
  modified: number;
  expires: number | null;
  value: Buffer;
}

/** An event with the row it wrote, when that row is still current (`modified` then equals `id`). */
interface EventRow {
  id: number;
  type: number;
  kv_key: string;
  modified: number | null;
  expires: number | null;
  value: Buffer | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS kv (
  key TEXT COLLATE BINARY PRIMARY KEY,
  modified INTEGER NOT NULL,
  expires INTEGER,
  value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  type INTEGER NOT NULL,
  created INTEGER NOT NULL,
  kv_key TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_created ON events (created);
CREATE TABLE IF NOT EXISTS meta (version INTEGER NOT NULL);
`;

const LIVE = '(expires IS NULL OR expires > @now)';

export class SqliteBackend implements Backend {
  /** Poll failures repeat every tick: once per interval with a count. */
  private readonly log = limitRepeats(logger('backend').child('sqlite'));
  private readonly fanout = new Fanout();
  private readonly clock: Clock;
  private readonly timer: NodeJS.Timeout;
  private readonly changeTimer: NodeJS.Timeout;
  private readonly fileWatch?: fs.FSWatcher;
  /** A look for other processes' commits is queued after a file notice (a follow-up one while it is not yet visible). */
  private changeCheckQueued = false;
  private lastEventId: number;
  private lastDataVersion: number;
  /** Puts waiting for the group commit at the end of this turn of the event loop. */
  private pending: PendingPut[] = [];
  private closed = false;
  private readonly stmt: ReturnType<typeof prepare>;

  /** Opens (creating if needed) the database file and starts the poller. */
  static async open(opts: SqliteBackendOptions): Promise<SqliteBackend> {
    const file = checkOptions(opts);
    const db = openFile(file, opts);
    try {
      return new SqliteBackend(db, file, opts);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  private constructor(
    private readonly db: Database.Database,
    readonly path: string,
    opts: SqliteBackendOptions,
  ) {
    this.clock = opts.clock ?? systemClock;
    this.stmt = prepare(db);
    this.lastEventId = this.stmt.maxEventId.get()!.id ?? 0;
    this.lastDataVersion = this.stmt.dataVersion.get()!;
    this.timer = setInterval(() => this.pollSafely(), opts.pollPeriodMs ?? DEFAULT_POLL_PERIOD_MS);
    this.changeTimer = setInterval(() => this.checkForChanges(), CHANGE_CHECK_MS);
    this.fileWatch = this.watchFile();
  }

  async get(key: string): Promise<Item> {
    checkKey(key, 'get');
    const row = this.read('get', () => this.stmt.get.get({ key, now: this.now() }));
    if (!row) throw new NotFoundError(`key ${JSON.stringify(key)} is not found`);
    return toItem(row);
  }

  async getRange(start: string, end: string, limit?: number): Promise<Item[]> {
    checkBound(start, 'start', 'getRange');
    checkBound(end, 'end', 'getRange');
    const max = checkLimit(limit, 'getRange');
    const rows = this.read('getRange', () =>
      this.stmt.range.all({ start, end, now: this.now(), limit: max > 0 ? max : -1 }),
    );
    return rows.map(toItem);
  }

  async create(item: Item): Promise<Lease> {
    const it = checkItem(item, 'create');
    this.write('create', (now) => {
      const modified = this.appendEvent(OpType.Put, now, it.key);
      const { changes } = this.stmt.create.run({ ...kvParams(it, modified), now });
      if (changes === 0) throw new AlreadyExistsError(`key ${JSON.stringify(it.key)} already exists`);
    });
    return { key: it.key };
  }

  async put(item: Item): Promise<Lease> {
    const it = checkItem(item, 'put');
    this.checkOpen();
    return new Promise<Lease>((resolve, reject) => {
      if (this.pending.length === 0) setImmediate(() => this.commitPending());
      this.pending.push({ item: it, resolve: () => resolve({ key: it.key }), reject });
    });
  }

  async update(item: Item): Promise<Lease> {
    const it = checkItem(item, 'update');
    this.write('update', (now) => {
      const modified = this.appendEvent(OpType.Put, now, it.key);
      const { changes } = this.stmt.update.run({ ...kvParams(it, modified), now });
      if (changes === 0) throw new NotFoundError(`key ${JSON.stringify(it.key)} is not found`);
    });
    return { key: it.key };
  }

  async compareAndSwap(expected: Item, replaceWith: Item): Promise<Lease> {
    const { want, next } = checkSwap(expected, replaceWith);
    this.write('compareAndSwap', (now) => {
      const modified = this.appendEvent(OpType.Put, now, next.key);
      const { changes } = this.stmt.cas.run({ ...kvParams(next, modified), now, expected: want.value });
      if (changes === 0) {
        throw new CompareFailedError(`compareAndSwap: value of ${JSON.stringify(want.key)} has changed or it is not found`);
      }
    });
    return { key: next.key };
  }

  async delete(key: string): Promise<void> {
    checkKey(key, 'delete');
    this.write('delete', (now) => {
      const { changes } = this.stmt.delete.run({ key, now });
      if (changes === 0) throw new NotFoundError(`key ${JSON.stringify(key)} is not found`);
      this.appendEvent(OpType.Delete, now, key);
    });
  }

  async deleteRange(start: string, end: string): Promise<void> {
    checkBound(start, 'start', 'deleteRange');
    checkBound(end, 'end', 'deleteRange');
    this.write('deleteRange', (now) => {
      const keys = this.stmt.deleteRange.all({ start, end }).map((r) => r.key);
      for (const key of keys.sort()) {
        this.appendEvent(OpType.Delete, now, key);
      }
    });
  }

  async keepAlive(lease: Lease, expires: Date): Promise<void> {
    const key = checkKey(lease?.key, 'keepAlive');
    const when = checkExpires(expires, 'keepAlive');
    if (!when) throw new BadParameterError('keepAlive: expires is required');
    this.write('keepAlive', (now) => {
      const row = this.stmt.get.get({ key, now });
      if (!row) throw new NotFoundError(`keepAlive: key ${JSON.stringify(key)} is not found`);
      const modified = this.appendEvent(OpType.Put, now, key);
      this.stmt.keepAlive.run({ key, modified, expires: when.getTime() });
    });
  }

  async newWatcher(opts: WatchOptions): Promise<Watcher> {
    this.checkOpen();
    this.commitPending();
    this.tail();
    return this.fanout.newWatcher(opts);
  }

  /**
   * One poller pass, run every `pollPeriodMs`: delete expired rows (with their Delete events),
   * prune old events, and hand new events to the watchers.
   */
  poll(): void {
    this.checkOpen();
    this.commitPending();
    const now = this.now();
    try {
      if (this.stmt.anyExpired.get({ now })) {
        this.db
          .transaction(() => {
            for (const { key } of this.stmt.deleteExpired.all({ now })) {
              this.appendEvent(OpType.Delete, now, key);
            }
          })
          .immediate();
      }
      const cutoff = now - EVENTS_TTL_MS;
      if (this.stmt.anyOldEvent.get({ cutoff })) this.stmt.pruneEvents.run({ cutoff });
      this.tail();
    } catch (err) {
      throw this.wrap('poll', err);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.commitPending();
    this.closed = true;
    clearInterval(this.timer);
    clearInterval(this.changeTimer);
    this.fileWatch?.close();
    this.fanout.closeAll();
    this.db.close();
  }

  private pollSafely(): void {
    if (this.closed) return;
    try {
      this.poll();
    } catch (err) {
      this.log.warn('poll failed; retrying on the next tick', { path: this.path, error: err });
    }
  }

  /**
   * Commits the puts waiting for the group commit in one transaction, then resolves each (or
   * rejects each with the transaction's error: then none of them was written).
   */
  private commitPending(): void {
    if (this.pending.length === 0 || this.closed) return;
    const batch = this.pending;
    this.pending = [];
    try {
      this.write('put', (now) => {
        for (const p of batch) {
          const modified = this.appendEvent(OpType.Put, now, p.item.key);
          this.stmt.upsert.run(kvParams(p.item, modified));
        }
      });
    } catch (err) {
      for (const p of batch) p.reject(err as Error);
      return;
    }
    for (const p of batch) p.resolve();
  }

  /** Watches the database's directory for writes to the file or its write-ahead log; undefined where the platform cannot (the timer still looks). */
  private watchFile(): fs.FSWatcher | undefined {
    const names = new Set([path.basename(this.path), `${path.basename(this.path)}-wal`]);
    try {
      const watcher = fs.watch(path.dirname(this.path), { persistent: false }, (_event, name) => {
        if (name !== null && !names.has(String(name))) return;
        if (this.changeCheckQueued) return;
        this.changeCheckQueued = true;
        const look = (nextDelayMs: number) => {
          if (this.checkForChanges() || nextDelayMs > CHANGE_CHECK_MS || this.closed) {
            this.changeCheckQueued = false;
            return;
          }
          setTimeout(() => look(nextDelayMs * 2), nextDelayMs);
        };
        setImmediate(() => look(1));
      });
      watcher.on('error', (err) => {
        this.log.warn('the file watch on the database failed; other processes\' writes are looked for every ' + CHANGE_CHECK_MS + ' ms', { path: this.path, error: err });
        watcher.close();
      });
      return watcher;
    } catch (err) {
      this.log.warn('cannot watch the database file; other processes\' writes are looked for every ' + CHANGE_CHECK_MS + ' ms', { path: this.path, error: err });
      return undefined;
    }
  }

  /** Tails `events` when another connection has committed since the last look (`PRAGMA data_version`). */
  private checkForChanges(): boolean {
    if (this.closed) return false;
    try {
      const version = this.stmt.dataVersion.get()!;
      if (version === this.lastDataVersion) return false;
      this.lastDataVersion = version;
      this.tail();
      return true;
    } catch (err) {
      this.log.warn('looking for other processes\' writes failed; the poller will retry', { path: this.path, error: err });
      return false;
    }
  }

  /**
   * Hands every event after `lastEventId` to the fan-out, in id order: Deletes, and Puts whose
   * row is still the one they wrote (a later event covers the others).
   */
  private tail(): void {
    for (;;) {
      const rows = this.stmt.tail.all({ after: this.lastEventId, limit: TAIL_BATCH });
      for (const row of rows) {
        this.lastEventId = row.id;
        if (row.type === OpType.Delete) {
          this.fanout.emit({ type: OpType.Delete, item: { key: row.kv_key, value: Buffer.alloc(0), id: row.id } });
        } else if (row.modified !== null) {
          this.fanout.emit({ type: OpType.Put, item: toItem({ key: row.kv_key, modified: row.modified, expires: row.expires, value: row.value! }) });
        }
      }
      if (rows.length < TAIL_BATCH) return;
    }
  }

  /** Appends an event (its type and key, never the value) inside the current transaction; returns its id, the new revision. */
  private appendEvent(type: OpType, now: number, key: string): number {
    const { lastInsertRowid } = this.stmt.insertEvent.run({ type, created: now, key });
    return Number(lastInsertRowid);
  }

  private write(op: string, fn: (now: number) => void): void {
    this.checkOpen();
    if (op !== 'put') this.commitPending();
    try {
      this.db.transaction(fn).immediate(this.now());
    } catch (err) {
      throw this.wrap(op, err);
    }
    try {
      this.tail();
    } catch (err) {
      this.log.warn('tailing events after a write failed; the poller will retry', { path: this.path, op, error: err });
    }
  }

  private read<T>(op: string, fn: () => T): T {
    this.checkOpen();
    this.commitPending();
    try {
      return fn();
    } catch (err) {
      throw this.wrap(op, err);
    }
  }

  private wrap(op: string, err: unknown): Error {
    if (err instanceof TeleportError) return err;
    const message = err instanceof Error ? err.message : String(err);
    return new ConnectionProblemError(`sqlite backend ${this.path}: ${op} failed: ${message}`, { cause: err });
  }

  private checkOpen(): void {
    if (this.closed) throw new ConnectionProblemError(`sqlite backend ${this.path} is closed`);
  }

  private now(): number {
    return this.clock.now().getTime();
  }
}

function checkOptions(opts: SqliteBackendOptions): string {
  if (!opts || typeof opts.path !== 'string' || opts.path.trim() === '') {
    throw new BadParameterError('sqlite backend: path (the database file) is required');
  }
  if (opts.path === ':memory:') {
    throw new BadParameterError('sqlite backend: path must be a file; use the memory backend for an in-memory store');
  }
  const period = opts.pollPeriodMs ?? DEFAULT_POLL_PERIOD_MS;
  if (!Number.isFinite(period) || period <= 0) {
    throw new BadParameterError(`sqlite backend: pollPeriodMs must be > 0, got ${String(period)}`);
  }
  const busy = opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  if (!Number.isSafeInteger(busy) || busy < 0) {
    throw new BadParameterError(`sqlite backend: busyTimeoutMs must be a non-negative integer, got ${String(busy)}`);
  }
  const sync = opts.synchronous ?? 'FULL';
  if (!['OFF', 'NORMAL', 'FULL'].includes(sync)) {
    throw new BadParameterError(`sqlite backend: synchronous must be OFF, NORMAL or FULL, got ${String(sync)}`);
  }
  return path.resolve(opts.path);
}

function openFile(file: string, opts: SqliteBackendOptions): Database.Database {
  let db: Database.Database | undefined;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.closeSync(fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600));
    fs.chmodSync(file, 0o600);
    db = new Database(file);
    db.pragma(`busy_timeout = ${opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS}`);
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (String(mode).toLowerCase() !== 'wal') throw new Error(`could not switch to WAL mode (got ${String(mode)})`);
    db.pragma(`synchronous = ${opts.synchronous ?? 'FULL'}`);
    db.pragma('secure_delete = ON');
    db.transaction(() => {
      db!.exec(SCHEMA);
      const meta = db!.prepare('SELECT version FROM meta').get() as { version: number } | undefined;
      if (!meta) db!.prepare('INSERT INTO meta (version) VALUES (?)').run(SCHEMA_VERSION);
      else if (meta.version === 1) migrateFromV1(db!);
      else if (meta.version !== SCHEMA_VERSION) {
        throw new BadParameterError(`sqlite backend ${file}: schema version ${meta.version} is not supported (want ${SCHEMA_VERSION})`);
      }
    }).immediate();
    return db;
  } catch (err) {
    db?.close();
    if (err instanceof TeleportError) throw err;
    const message = err instanceof Error ? err.message : String(err);
    throw new ConnectionProblemError(`sqlite backend: cannot open ${file}: ${message}`, { cause: err });
  }
}

/**
 * Reads one live item of a database file another process may hold open, read-only and without
 * the backend (no schema set-up, no poller, nothing written): how a separate program (e.g.
 * `teleport signal-ready`) looks at what `teleport start` stored. Undefined when the file, its
 * table or the key does not exist (yet). The reader may still create the `-shm` index next to
 * the file, as every WAL reader does.
 */
export function peekSqliteItem(file: string, key: string, now = Date.now()): Buffer | undefined {
  let db: Database.Database | undefined;
  try {
    // Only a file that is not there is "not yet": a directory this user may not search is an error.
    try {
      fs.statSync(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    db = new Database(file, { readonly: true, fileMustExist: true, timeout: 2000 });
    const table = db.prepare("SELECT 1 AS one FROM sqlite_master WHERE type = 'table' AND name = 'kv'").get();
    if (!table) return undefined;
    const row = db.prepare<{ key: string; now: number }, { value: Buffer }>(`SELECT value FROM kv WHERE key = @key AND ${LIVE}`).get({ key, now });
    return row?.value;
  } catch (err) {
    throw new ConnectionProblemError(`sqlite backend: cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  } finally {
    db?.close();
  }
}

/** Version 1 kept every written value in the change log: drop those columns (their pages are zeroed). */
function migrateFromV1(db: Database.Database): void {
  db.exec('ALTER TABLE events DROP COLUMN kv_value; ALTER TABLE events DROP COLUMN kv_expires;');
  db.prepare('UPDATE meta SET version = ?').run(SCHEMA_VERSION);
}

function kvParams(item: Item, modified: number) {
  return { key: item.key, modified, expires: item.expires ? item.expires.getTime() : null, value: item.value };
}

function toItem(row: KvRow): Item {
  const item: Item = { key: row.key, value: row.value, id: row.modified };
  if (row.expires !== null) item.expires = new Date(row.expires);
  return item;
}

function prepare(db: Database.Database) {
  const kvCols = 'key, modified, expires, value';
  const insertKv = `INSERT INTO kv (${kvCols}) VALUES (@key, @modified, @expires, @value)`;
  const setKv = 'modified = excluded.modified, expires = excluded.expires, value = excluded.value';
  return {
    get: db.prepare<{ key: string; now: number }, KvRow>(`SELECT ${kvCols} FROM kv WHERE key = @key AND ${LIVE}`),
    range: db.prepare<{ start: string; end: string; now: number; limit: number }, KvRow>(
      `SELECT ${kvCols} FROM kv WHERE key >= @start AND key < @end AND ${LIVE} ORDER BY key LIMIT @limit`,
    ),
    upsert: db.prepare(`${insertKv} ON CONFLICT (key) DO UPDATE SET ${setKv}`),
    create: db.prepare(
      `${insertKv} ON CONFLICT (key) DO UPDATE SET ${setKv} WHERE kv.expires IS NOT NULL AND kv.expires <= @now`,
    ),
    update: db.prepare(
      `UPDATE kv SET modified = @modified, expires = @expires, value = @value WHERE key = @key AND ${LIVE}`,
    ),
    cas: db.prepare(
      `UPDATE kv SET modified = @modified, expires = @expires, value = @value WHERE key = @key AND value = @expected AND ${LIVE}`,
    ),
    keepAlive: db.prepare('UPDATE kv SET modified = @modified, expires = @expires WHERE key = @key'),
    delete: db.prepare(`DELETE FROM kv WHERE key = @key AND ${LIVE}`),
    deleteRange: db.prepare<{ start: string; end: string }, { key: string }>(
      'DELETE FROM kv WHERE key >= @start AND key < @end RETURNING key',
    ),
    anyExpired: db.prepare<{ now: number }, { one: number }>('SELECT 1 AS one FROM kv WHERE expires <= @now LIMIT 1'),
    deleteExpired: db.prepare<{ now: number }, { key: string }>('DELETE FROM kv WHERE expires <= @now RETURNING key'),
    insertEvent: db.prepare('INSERT INTO events (type, created, kv_key) VALUES (@type, @created, @key)'),
    maxEventId: db.prepare<[], { id: number | null }>('SELECT MAX(id) AS id FROM events'),
    tail: db.prepare<{ after: number; limit: number }, EventRow>(
      `SELECT e.id, e.type, e.kv_key, kv.modified, kv.expires, kv.value FROM events e
       LEFT JOIN kv ON kv.key = e.kv_key AND kv.modified = e.id
       WHERE e.id > @after ORDER BY e.id LIMIT @limit`,
    ),
    anyOldEvent: db.prepare<{ cutoff: number }, { one: number }>('SELECT 1 AS one FROM events WHERE created < @cutoff LIMIT 1'),
    pruneEvents: db.prepare('DELETE FROM events WHERE created < @cutoff'),
    /** Changes when another connection commits to the file. */
    dataVersion: db.prepare<[], number>('PRAGMA data_version').pluck(),
  };
}
