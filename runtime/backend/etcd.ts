/**
 * The etcd backend (Teleport's `lib/backend/etcdbk`), for highly available clusters: every auth
 * server talks to the same etcd cluster. Keys are `<prefix><key>` (default prefix `/teleport`),
 * values are stored as they are, and `Item.id` is the etcd mod revision of the last write.
 *
 * Expiry. An item with an expiry is attached to an etcd lease, so etcd itself deletes it (and
 * emits the Delete watch event) once the lease runs out. Leases are bucketed by expiry instant:
 * the lease ID *is* the expiry in Unix milliseconds, granted on first use with a TTL rounded up
 * to whole seconds, and shared by every item (from any auth server) that expires at that instant.
 * So a read or a watch event gives an item's exact expiry from `kv.lease` with no extra call,
 * and heartbeats that expire together cost one lease. etcd fires leases at second granularity
 * (and raises very short TTLs to its minimum), so reads also hide an item whose expiry has passed
 * while its lease has not fired yet, and writes treat such an item as missing.
 *
 * Conditional writes are single etcd transactions. "The key holds a live item" cannot be one
 * etcd comparison (it is "exists without a lease" OR "its lease ID, i.e. expiry, is in the
 * future"), so each conditional write is a transaction whose failure branch is a nested
 * transaction for the second case: exactly one of them can apply, atomically.
 *
 * Watches. One etcd watch on the whole prefix, started at the revision current when the backend
 * opened, feeds the shared Fanout (prefix filtering, slow-consumer closing). The etcd3 client
 * resumes that watch from its last revision after a disconnect, so no event is lost. If etcd
 * cancels it (the revision was compacted away while we were disconnected, or any other watch
 * error), every watcher is closed, so consumers re-create theirs and re-read the state, and the
 * etcd watch restarts from the current revision. A new watcher only reports writes with a
 * revision above the one current when it was created.
 *
 * TLS. `https://` peers use TLS with the optional CA file and client key pair; `insecure`
 * (skip certificate verification) is refused, since the etcd3 client cannot express it.
 */

import * as fs from 'node:fs';
import {
  Etcd3,
  EtcdLeaseInvalidError,
  GRPCFailedPreconditionError,
  GRPCInvalidArgumentError,
  Watcher as EtcdWatcher,
} from 'etcd3';
import type { ICompare, IKeyValue, IOptions, IRequestOp, ITxnResponse, IWatchResponse } from 'etcd3';
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
import { Backend, Event, Item, Lease, OpType, Watcher, WatchOptions } from './types';
import { checkBound, checkExpires, checkItem, checkKey, checkLimit, checkSwap } from './validate';

export const DEFAULT_ETCD_PREFIX = '/teleport';
export const DEFAULT_ETCD_REQUEST_TIMEOUT_MS = 15_000;
/** How long to wait between attempts to re-establish a cancelled watch. */
const WATCH_RETRY_MS = 1_000;
/** The etcd3 client's reconnect delay for the watch stream doubles from 100 ms up to this. */
const WATCH_BACKOFF_MAX_MS = 2_000;
/** The largest millisecond value a Date can hold; larger lease IDs are not ours. */
const MAX_DATE_MS = 8.64e15;
/** etcd's longest lease TTL in seconds (about 285 years); longer expiries are clamped to it. */
const MAX_LEASE_TTL_S = 9_000_000_000;

export interface EtcdBackendOptions {
  /** Client URLs of the etcd members, `http://host:port` or `https://host:port`. */
  readonly peers: readonly string[];
  /** Prepended to every key. @default '/teleport' */
  readonly prefix?: string;
  /** Client certificate and key (PEM) for etcd's client certificate authentication; both or neither. */
  readonly tlsCertFile?: string;
  readonly tlsKeyFile?: string;
  /** CA (PEM) that signed the etcd servers' certificates; default: the system's trusted CAs. */
  readonly tlsCaFile?: string;
  /** Skip server certificate verification: not supported, only `false` is accepted. */
  readonly insecure?: boolean;
  /** Deadline of each etcd call (not of the watch stream). @default 15000 */
  readonly requestTimeoutMs?: number;
  /** @default the system clock */
  readonly clock?: Clock;
}

interface Checked {
  hosts: string[];
  prefix: Buffer;
  credentials?: IOptions['credentials'];
  requestTimeoutMs: number;
}

const LIVE_NO_LEASE = (key: Buffer): ICompare[] => [
  { key, target: 'Create', result: 'Greater', create_revision: 0 },
  { key, target: 'Lease', result: 'Equal', lease: 0 },
];
const LIVE_LEASE = (key: Buffer, now: number): ICompare[] => [{ key, target: 'Lease', result: 'Greater', lease: now }];
const EXPIRED_LEASE = (key: Buffer, now: number): ICompare[] => [
  { key, target: 'Lease', result: 'Greater', lease: 0 },
  { key, target: 'Lease', result: 'Less', lease: now + 1 },
];

export class EtcdBackend implements Backend {
  /** Watch restarts repeat while etcd is away: once per interval with a count. */
  private readonly log = limitRepeats(logger('backend').child('etcd'));
  private readonly fanout = new Fanout();
  private readonly clock: Clock;
  private readonly prefix: Buffer;
  private readonly prefixEnd: Buffer;
  /** Lease IDs (= expiry ms) this instance has granted or found granted, not yet past. */
  private readonly leases = new Set<number>();
  private watch?: EtcdWatcher;
  /** Settles when the etcd watch is (re-)established; newWatcher waits on it. */
  private watchReady: Promise<void> = Promise.resolve();
  private closed = false;

  /** Connects, checks that etcd answers, and starts watching the prefix. */
  static async open(opts: EtcdBackendOptions): Promise<EtcdBackend> {
    const checked = checkOptions(opts);
    const client = new Etcd3({
      hosts: checked.hosts,
      ...(checked.credentials ? { credentials: checked.credentials } : {}),
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + checked.requestTimeoutMs }),
      faultHandling: { watchBackoff: watchBackoff(100) },
    });
    const backend = new EtcdBackend(client, checked, opts.clock ?? systemClock);
    try {
      await backend.startWatch();
    } catch (err) {
      await backend.close();
      throw backend.wrap('open', err);
    }
    return backend;
  }

  private constructor(
    private readonly client: Etcd3,
    private readonly opts: Checked,
    clock: Clock,
  ) {
    this.clock = clock;
    this.prefix = opts.prefix;
    this.prefixEnd = prefixRangeEnd(opts.prefix);
  }

  async get(key: string): Promise<Item> {
    checkKey(key, 'get');
    const res = await this.call('get', () => this.client.kv.range({ key: this.k(key) }));
    const kv = res.kvs[0];
    if (!kv || !this.isLive(kv)) throw new NotFoundError(`key ${JSON.stringify(key)} is not found`);
    return this.toItem(kv);
  }

  async getRange(start: string, end: string, limit?: number): Promise<Item[]> {
    checkBound(start, 'start', 'getRange');
    checkBound(end, 'end', 'getRange');
    const max = checkLimit(limit, 'getRange');
    this.checkOpen();
    if (!(start < end)) return [];
    const out: Item[] = [];
    const rangeEnd = this.k(end);
    let from = this.k(start);
    let revision: string | undefined;
    // Expired items the leases have not removed yet are skipped, so a limited read may need
    // more than one page; later pages read at the first page's revision, for a consistent view.
    for (;;) {
      const res = await this.call('getRange', () =>
        this.client.kv.range({
          key: from,
          range_end: rangeEnd,
          limit: max > 0 ? max - out.length : 0,
          ...(revision ? { revision } : {}),
        }),
      );
      revision ??= res.header.revision;
      for (const kv of res.kvs) {
        if (this.isLive(kv)) out.push(this.toItem(kv));
      }
      if (!res.more || res.kvs.length === 0 || (max > 0 && out.length >= max)) return out;
      from = Buffer.concat([res.kvs[res.kvs.length - 1].key, Buffer.from([0])]);
    }
  }

  async create(item: Item): Promise<Lease> {
    const it = checkItem(item, 'create');
    const key = this.k(it.key);
    const ok = await this.withLease('create', it.expires, (lease, now) => {
      const put: IRequestOp[] = [{ request_put: { key, value: it.value, lease } }];
      // Absent, or present but expired (its lease has not fired yet): either way it is free.
      return this.client.kv.txn({
        compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
        success: put,
        failure: [{ request_txn: { compare: EXPIRED_LEASE(key, now), success: put } }],
      });
    });
    if (!ok) throw new AlreadyExistsError(`key ${JSON.stringify(it.key)} already exists`);
    return { key: it.key };
  }

  async put(item: Item): Promise<Lease> {
    const it = checkItem(item, 'put');
    const key = this.k(it.key);
    await this.withLease('put', it.expires, async (lease) => {
      await this.client.kv.put({ key, value: it.value, lease });
      return true;
    });
    return { key: it.key };
  }

  async update(item: Item): Promise<Lease> {
    const it = checkItem(item, 'update');
    const key = this.k(it.key);
    const ok = await this.withLease('update', it.expires, (lease, now) =>
      this.ifLive(key, [], [{ request_put: { key, value: it.value, lease } }], now),
    );
    if (!ok) throw new NotFoundError(`key ${JSON.stringify(it.key)} is not found`);
    return { key: it.key };
  }

  async compareAndSwap(expected: Item, replaceWith: Item): Promise<Lease> {
    const { want, next } = checkSwap(expected, replaceWith);
    const key = this.k(next.key);
    const sameValue: ICompare = { key, target: 'Value', result: 'Equal', value: want.value };
    const ok = await this.withLease('compareAndSwap', next.expires, (lease, now) =>
      this.ifLive(key, [sameValue], [{ request_put: { key, value: next.value, lease } }], now),
    );
    if (!ok) {
      throw new CompareFailedError(`compareAndSwap: value of ${JSON.stringify(want.key)} has changed or it is not found`);
    }
    return { key: next.key };
  }

  async delete(key: string): Promise<void> {
    checkKey(key, 'delete');
    const k = this.k(key);
    const ok = await this.call('delete', () => this.ifLive(k, [], [{ request_delete_range: { key: k } }], this.now()));
    if (!ok) throw new NotFoundError(`key ${JSON.stringify(key)} is not found`);
  }

  async deleteRange(start: string, end: string): Promise<void> {
    checkBound(start, 'start', 'deleteRange');
    checkBound(end, 'end', 'deleteRange');
    this.checkOpen();
    if (!(start < end)) return;
    await this.call('deleteRange', () => this.client.kv.deleteRange({ key: this.k(start), range_end: this.k(end) }));
  }

  async keepAlive(lease: Lease, expires: Date): Promise<void> {
    const key = checkKey(lease?.key, 'keepAlive');
    const when = checkExpires(expires, 'keepAlive');
    if (!when) throw new BadParameterError('keepAlive: expires is required');
    const k = this.k(key);
    // Re-attach the key to the lease of the new expiry, keeping its value (ignore_value).
    const ok = await this.withLease('keepAlive', when, (leaseId, now) =>
      this.ifLive(k, [], [{ request_put: { key: k, ignore_value: true, lease: leaseId } }], now),
    );
    if (!ok) throw new NotFoundError(`keepAlive: key ${JSON.stringify(key)} is not found`);
  }

  async newWatcher(opts: WatchOptions): Promise<Watcher> {
    this.checkOpen();
    await this.watchReady;
    // Events up to the current revision may still be on their way from the etcd watch; the
    // new watcher skips them, so it reports exactly the writes made after it was created.
    const after = await this.currentRevision();
    this.checkOpen();
    return new SinceRevision(this.fanout.newWatcher(opts), after);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.fanout.closeAll();
    const watch = this.watch;
    this.watch = undefined;
    if (watch) {
      // Cancel the watch before closing the client, or the client keeps trying to re-open it.
      await Promise.race([watch.cancel().catch(() => undefined), delay(2_000)]);
    }
    this.client.close();
  }

  /**
   * Runs `success` if `key` holds a live item and every one of `extra` holds; true if it ran.
   * One transaction: "exists without a lease", else (nested) "its lease/expiry is after now".
   */
  private async ifLive(key: Buffer, extra: ICompare[], success: IRequestOp[], now: number): Promise<boolean> {
    const res = await this.client.kv.txn({
      compare: [...extra, ...LIVE_NO_LEASE(key)],
      success,
      failure: [{ request_txn: { compare: [...extra, ...LIVE_LEASE(key, now)], success } }],
    });
    return txnApplied(res);
  }

  /**
   * Gets the lease for `expires` (0 for none) and runs `write` with it; if etcd says the lease
   * is gone (revoked behind our back), grants it again and retries once.
   */
  private async withLease(
    op: string,
    expires: Date | undefined,
    write: (lease: number, now: number) => Promise<ITxnResponse | boolean>,
  ): Promise<boolean> {
    this.checkOpen();
    for (let attempt = 0; ; attempt++) {
      try {
        const lease = expires ? await this.grant(expires) : 0;
        const res = await write(lease, this.now());
        return typeof res === 'boolean' ? res : txnApplied(res);
      } catch (err) {
        if (err instanceof EtcdLeaseInvalidError && expires && attempt === 0) {
          this.leases.delete(leaseIdOf(expires));
          continue;
        }
        throw this.wrap(op, err);
      }
    }
  }

  /** Returns the ID of the lease for `expires`, granting it unless it already exists. */
  private async grant(expires: Date): Promise<number> {
    const id = leaseIdOf(expires);
    const now = this.now();
    if (this.leases.has(id) && id > now) return id;
    const ttl = Math.min(MAX_LEASE_TTL_S, Math.max(1, Math.ceil((id - now) / 1000)));
    try {
      await this.client.leaseClient.leaseGrant({ ID: id, TTL: ttl });
    } catch (err) {
      if (!(err instanceof GRPCFailedPreconditionError && /lease already exists/.test(err.message))) throw err;
    }
    for (const known of this.leases) if (known <= now) this.leases.delete(known);
    if (id > now) this.leases.add(id);
    return id;
  }

  /** Opens the etcd watch on the prefix at the current revision and wires it to the fan-out. */
  private async startWatch(): Promise<void> {
    const revision = await this.currentRevision();
    this.checkOpen();
    const watch = this.client
      .watch()
      .inRange({ start: this.prefix, end: this.prefixEnd })
      .startRevision(String(revision + 1))
      .watcher();
    this.watch = watch;
    let established = false;
    const ready = new Promise<void>((resolve, reject) => {
      watch.once('connected', () => {
        established = true;
        resolve();
      });
      watch.on('error', (err: Error) => (established ? this.onWatchError(watch, err) : reject(err)));
    });
    watch.on('data', (res: IWatchResponse) => this.onWatchData(watch, res));
    // The client reconnects with backoff and replays from its last revision; one warning per outage.
    let disconnected = false;
    watch.on('disconnected', (err: Error) => {
      if (this.watch !== watch || this.closed) return;
      if (!disconnected) this.log.warn('etcd watch disconnected; will resume from the last revision seen', { error: err.message });
      disconnected = true;
    });
    watch.on('connected', () => {
      if (disconnected && this.watch === watch && !this.closed) this.log.info('etcd watch resumed');
      disconnected = false;
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new ConnectionProblemError(`etcd watch on ${this.prefix.toString()} was not established in time`)),
        this.opts.requestTimeoutMs,
      );
    });
    try {
      await Promise.race([ready, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private onWatchData(watch: EtcdWatcher, res: IWatchResponse): void {
    if (this.closed || this.watch !== watch) return;
    try {
      for (const ev of res.events ?? []) {
        const key = this.unprefix(ev.kv.key);
        if (key === undefined) continue;
        const id = Number(ev.kv.mod_revision);
        const event: Event =
          ev.type === 'Put'
            ? { type: OpType.Put, item: this.toItem(ev.kv) }
            : { type: OpType.Delete, item: { key, value: Buffer.alloc(0), id } };
        this.fanout.emit(event);
      }
    } catch (err) {
      this.log.error('could not hand an etcd watch event to the watchers', { error: err });
    }
  }

  /** The etcd watch was cancelled: close every watcher (consumers re-read) and start over. */
  private onWatchError(watch: EtcdWatcher, err: Error): void {
    if (this.closed || this.watch !== watch) return;
    this.log.warn(
      'etcd watch was cancelled (e.g. the revisions it missed were compacted); closing watchers so that they re-initialize, and restarting it',
      { error: err.message },
    );
    this.watch = undefined; // etcd cancelled it and the client has already dropped it
    this.fanout.closeAll();
    this.watchReady = this.restartWatch();
  }

  private async restartWatch(): Promise<void> {
    while (!this.closed) {
      try {
        await this.startWatch();
        return;
      } catch (err) {
        this.log.warn('could not restart the etcd watch; retrying', { error: err instanceof Error ? err.message : err });
        const failed = this.watch;
        this.watch = undefined;
        if (failed) void failed.cancel().catch(() => undefined);
        await delay(WATCH_RETRY_MS);
      }
    }
  }

  private async currentRevision(): Promise<number> {
    const res = await this.call('read revision', () =>
      this.client.kv.range({ key: this.prefix, limit: 1, keys_only: true }),
    );
    return Number(res.header.revision);
  }

  private async call<T>(op: string, fn: () => Promise<T>): Promise<T> {
    this.checkOpen();
    try {
      return await fn();
    } catch (err) {
      throw this.wrap(op, err);
    }
  }

  private wrap(op: string, err: unknown): Error {
    if (err instanceof TeleportError) return err;
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof GRPCInvalidArgumentError) {
      return new BadParameterError(`etcd backend: ${op}: ${message}`);
    }
    return new ConnectionProblemError(`etcd backend ${this.opts.hosts.join(',')}: ${op} failed: ${message}`, { cause: err });
  }

  private checkOpen(): void {
    if (this.closed) throw new ConnectionProblemError('etcd backend is closed');
  }

  private isLive(kv: IKeyValue): boolean {
    const lease = Number(kv.lease);
    return lease === 0 || lease > MAX_DATE_MS || lease > this.now();
  }

  private toItem(kv: IKeyValue): Item {
    const item: Item = { key: this.unprefix(kv.key)!, value: Buffer.from(kv.value), id: Number(kv.mod_revision) };
    const lease = Number(kv.lease);
    if (lease > 0 && lease <= MAX_DATE_MS) item.expires = new Date(lease);
    return item;
  }

  private k(key: string): Buffer {
    return Buffer.concat([this.prefix, Buffer.from(key, 'utf8')]);
  }

  private unprefix(raw: Buffer): string | undefined {
    if (raw.length < this.prefix.length || !raw.subarray(0, this.prefix.length).equals(this.prefix)) return undefined;
    return raw.subarray(this.prefix.length).toString('utf8');
  }

  private now(): number {
    return this.clock.now().getTime();
  }
}

/** Wraps a fan-out watcher, dropping events at or below the revision it was created at. */
class SinceRevision implements Watcher {
  constructor(
    private readonly inner: Watcher,
    private readonly after: number,
  ) {}

  get done(): Promise<void> {
    return this.inner.done;
  }

  close(): void {
    this.inner.close();
  }

  async next(): Promise<Event | undefined> {
    for (;;) {
      const event = await this.inner.next();
      if (!event || event.type === OpType.Init || (event.item.id ?? Infinity) > this.after) return event;
    }
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

function txnApplied(res: ITxnResponse): boolean {
  return res.succeeded || res.responses?.[0]?.response_txn?.succeeded === true;
}

/** The lease for an expiry instant is named by it: ID = Unix milliseconds (at least 1). */
function leaseIdOf(expires: Date): number {
  return Math.max(1, expires.getTime());
}

/** The smallest key greater than every key starting with `prefix` (etcd's range_end for a prefix). */
function prefixRangeEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // every key
}

type WatchBackoff = NonNullable<NonNullable<IOptions['faultHandling']>['watchBackoff']>;

/** Capped exponential backoff (the etcd3 client's default waits up to 30 s between attempts). */
function watchBackoff(ms: number): WatchBackoff {
  return { duration: ms, next: () => watchBackoff(Math.min(ms * 2, WATCH_BACKOFF_MAX_MS)) };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function checkOptions(opts: EtcdBackendOptions): Checked {
  if (!opts || !Array.isArray(opts.peers) || opts.peers.length === 0) {
    throw new BadParameterError('etcd backend: peers (a list of etcd client URLs) is required');
  }
  const urls = opts.peers.map((peer) => {
    let url: URL;
    try {
      url = new URL(String(peer));
    } catch {
      throw new BadParameterError(`etcd backend: peer ${JSON.stringify(peer)} is not a URL (want http(s)://host:port)`);
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname || !url.port) {
      throw new BadParameterError(`etcd backend: peer ${JSON.stringify(peer)} must be http(s)://host:port`);
    }
    return url;
  });
  const secure = urls.filter((u) => u.protocol === 'https:').length;
  if (secure !== 0 && secure !== urls.length) {
    throw new BadParameterError('etcd backend: peers must all use https or all use http');
  }
  const prefix = opts.prefix ?? DEFAULT_ETCD_PREFIX;
  if (typeof prefix !== 'string' || prefix === '') {
    throw new BadParameterError('etcd backend: prefix must be a non-empty string');
  }
  if (opts.insecure) {
    throw new BadParameterError(
      'etcd backend: insecure (skipping certificate verification) is not supported; give tls_ca_file with the CA of the etcd servers instead',
    );
  }
  const timeout = opts.requestTimeoutMs ?? DEFAULT_ETCD_REQUEST_TIMEOUT_MS;
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new BadParameterError(`etcd backend: requestTimeoutMs must be > 0, got ${String(timeout)}`);
  }
  const checked: Checked = {
    hosts: urls.map((u) => `${u.protocol}//${u.host}`),
    prefix: Buffer.from(prefix, 'utf8'),
    requestTimeoutMs: timeout,
  };
  const tlsFiles = opts.tlsCertFile ?? opts.tlsKeyFile ?? opts.tlsCaFile;
  if (tlsFiles !== undefined && secure === 0) {
    throw new BadParameterError('etcd backend: TLS files are configured but the peers use http://; use https:// peer URLs');
  }
  if (!opts.tlsCertFile !== !opts.tlsKeyFile) {
    throw new BadParameterError('etcd backend: tls_cert_file and tls_key_file must be given together');
  }
  if (secure > 0 && tlsFiles !== undefined) {
    const read = (file: string | undefined, what: string) => {
      if (file === undefined) return undefined;
      try {
        return fs.readFileSync(file);
      } catch (err) {
        throw new BadParameterError(`etcd backend: cannot read the ${what} ${file}: ${(err as Error).message}`);
      }
    };
    // A missing CA means the system's trusted CAs (grpc's default for a null root certificate).
    checked.credentials = {
      rootCertificate: read(opts.tlsCaFile, 'CA file (tls_ca_file)') as Buffer,
      privateKey: read(opts.tlsKeyFile, 'client key (tls_key_file)'),
      certChain: read(opts.tlsCertFile, 'client certificate (tls_cert_file)'),
    };
  }
  return checked;
}
