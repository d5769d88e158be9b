/**
 * The DynamoDB backend (`storage.type: dynamodb`, Teleport's `lib/backend/dynamo`), for several
 * auth servers sharing one cluster state.
 *
 * Table layout (Teleport's, so either can read the other's table): hash key `HashKey` (S, always
 * "teleport", so every item is in one partition and one stream order), range key `FullPath` (S,
 * "teleport" + key), `Value` (B), `Expires` (N, Unix seconds, DynamoDB's TTL attribute, absent
 * without a TTL), `Timestamp` (N, Unix seconds of the write) and `ID` (N, Unix nanoseconds).
 *
 * - Expiry: a TTL is stored rounded *up* to the second (an item never disappears before the time
 *   it was given). An item is expired once `Expires * 1000 <= now in ms`; every read filters
 *   expired items out and every conditional write treats them as absent, long before DynamoDB's
 *   TTL removes them. dynamodb-expiry.ts deletes them promptly so watchers see a Delete.
 * - IDs: `Item.id` is the write's Unix time in microseconds, made strictly increasing within the
 *   process (max(now, last + 1)); across instances it follows the clocks, like Teleport's. It is
 *   stored as nanoseconds (microseconds x 1000) to keep Teleport's format; Teleport's own
 *   nanosecond IDs read back truncated to microseconds (they exceed JS's safe integers).
 * - Watches: every write reaches watchers through the table's stream (dynamodb-streams.ts), so a
 *   write made by another instance is seen exactly like a local one. `newWatcher` waits for one
 *   complete pass over the stream first, so a watcher sees no write that finished before it was
 *   created and every write after. If the poller loses its position, every watcher is closed (its
 *   consumer opens a new one and re-reads) and the poller starts over.
 * - Opening: DescribeTable first, so an existing table needs no CreateTable/UpdateTimeToLive
 *   permission; the table is created (stream NEW_IMAGE, TTL on Expires) only when missing.
 * - Retries: the SDK's standard retry strategy (`maxAttempts`, default 5) covers throttling and
 *   network errors. A conditional write whose response was lost and that is retried can report
 *   its own success as a condition failure, as in any DynamoDB client.
 */

import { StateTableSchema, stateFullPath } from '../contract/dynamodb';
import {
  AttributeValue,
  BatchWriteItemCommand,
  CreateTableCommand,
  DeleteItemCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  QueryCommandInput,
  TableDescription,
  UpdateContinuousBackupsCommand,
  UpdateItemCommand,
  UpdateTableCommand,
  UpdateTimeToLiveCommand,
  WriteRequest,
} from '@aws-sdk/client-dynamodb';
import { DynamoDBStreamsClient, _Record } from '@aws-sdk/client-dynamodb-streams';
import { z } from 'zod';
import {
  AccessDeniedError,
  AlreadyExistsError,
  BadParameterError,
  CompareFailedError,
  ConnectionProblemError,
  LimitExceededError,
  NotFoundError,
  TeleportError,
} from '../utils/errors';
import { logger } from '../utils/logger';
import { limitRepeats } from '../utils/logrepeats';
import { Clock, systemClock } from './clock';
import { ExpirySweeper } from './dynamodb-expiry';
import { errorName, StreamPoller } from './dynamodb-streams';
import { Fanout } from './fanout';
import { Backend, Event, Item, Lease, OpType, Watcher, WatchOptions } from './types';
import { checkBound, checkExpires, checkItem, checkKey, checkLimit, checkSwap } from './validate';

/** The constant hash key, and the prefix of every FullPath. */
export const HASH_KEY = StateTableSchema.hashKeyValue;
export const DEFAULT_STREAM_POLL_PERIOD_MS = 1_000;
export const DEFAULT_FULL_SCAN_PERIOD_MS = 5 * 60_000;
export const DEFAULT_WATCH_SYNC_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_ATTEMPTS = 5;
/** Teleport's default provisioned throughput. */
const DEFAULT_CAPACITY_UNITS = 10;
/** BatchWriteItem takes at most 25 requests. */
const BATCH_SIZE = 25;
const MAX_BATCH_RETRIES = 8;
const TABLE_ACTIVE_TIMEOUT_MS = 5 * 60_000;

const optionsSchema = z
  .object({
    tableName: z
      .string()
      .min(3)
      .max(255)
      .regex(/^[A-Za-z0-9_.-]+$/, 'a table name has 3-255 characters among a-z, A-Z, 0-9, "_", "-" and "."'),
    region: z.string().min(1).optional(),
    endpoint: z.string().url().optional(),
    accessKey: z.string().min(1).optional(),
    secretKey: z.string().min(1).optional(),
    billingMode: z.enum(['pay_per_request', 'provisioned']).optional(),
    readCapacityUnits: z.number().int().positive().optional(),
    writeCapacityUnits: z.number().int().positive().optional(),
    continuousBackups: z.boolean().optional(),
    pollPeriodMs: z.number().int().positive().optional(),
    expiryCheckPeriodMs: z.number().int().positive().optional(),
    fullScanPeriodMs: z.number().int().positive().optional(),
    watchSyncTimeoutMs: z.number().int().positive().optional(),
    maxAttempts: z.number().int().min(1).max(20).optional(),
    background: z.boolean().optional(),
    clock: z.custom<Clock>((c) => !!c && typeof (c as Clock).now === 'function').optional(),
  })
  .strict()
  .refine((o) => !!o.accessKey === !!o.secretKey, 'access_key and secret_key go together');

export interface DynamoBackendOptions {
  readonly tableName: string;
  /** AWS region; with only an `endpoint` (DynamoDB Local) "us-east-1" is used. Else the SDK's default chain. */
  readonly region?: string;
  /** Endpoint override for DynamoDB and its stream, e.g. `http://127.0.0.1:8000`. */
  readonly endpoint?: string;
  /** Static credentials; without them the SDK's default credential chain is used. */
  readonly accessKey?: string;
  readonly secretKey?: string;
  /** For a table this backend creates. @default 'pay_per_request' */
  readonly billingMode?: 'pay_per_request' | 'provisioned';
  /** For a provisioned table this backend creates. @default 10 */
  readonly readCapacityUnits?: number;
  readonly writeCapacityUnits?: number;
  /** Turns on point-in-time recovery (a warning if not permitted). */
  readonly continuousBackups?: boolean;
  /** How often the stream is read. @default 1000 */
  readonly pollPeriodMs?: number;
  /** How often items whose expiry passed are looked for and deleted. @default pollPeriodMs */
  readonly expiryCheckPeriodMs?: number;
  /** How often the whole table is scanned for expiries the stream did not show. @default 300000 */
  readonly fullScanPeriodMs?: number;
  /** How long `newWatcher` waits for the stream to be readable. @default 30000 */
  readonly watchSyncTimeoutMs?: number;
  /** SDK attempts per request (standard retry strategy with backoff). @default 5 */
  readonly maxAttempts?: number;
  /**
   * Tail the stream (for watches) and sweep expired items. Off for short-lived
   * clients such as the control plane Lambdas: they need no stream permissions,
   * and `newWatcher` is refused. @default true
   */
  readonly background?: boolean;
  /** @default the system clock */
  readonly clock?: Clock;
}

const N = (n: number | bigint | string) => ({ N: String(n) });
const S = (s: string) => ({ S: s });
const fullPath = stateFullPath;
/** Unix seconds of an expiry, rounded up, so an item never expires before the time it was given. */
const expiresSeconds = (d: Date) => Math.ceil(d.getTime() / 1000);

/** Names of the attributes in expressions (`Value` and `Timestamp` are DynamoDB reserved words). */
const NAMES = {
  '#fp': 'FullPath',
  '#v': 'Value',
  '#e': 'Expires',
  '#id': 'ID',
  '#ts': 'Timestamp',
};
const LIVE = '(attribute_not_exists(#e) OR #e > :now)';

export class DynamoBackend implements Backend {
  /** Stream failures repeat while DynamoDB is away: once per interval with a count. */
  private readonly log = limitRepeats(logger('backend').child('dynamodb'));
  private readonly fanout = new Fanout();
  private readonly clock: Clock;
  private poller?: StreamPoller;
  private sweeper?: ExpirySweeper;
  private lastId = 0;
  private closed = false;

  /** Connects, makes sure the table is usable (creating it if missing) and starts tailing its stream. */
  static async open(options: DynamoBackendOptions): Promise<DynamoBackend> {
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) {
      throw new BadParameterError(
        `storage dynamodb: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'options'}: ${i.message}`).join('; ')}`,
      );
    }
    const opts = parsed.data as DynamoBackendOptions;
    const region = opts.region ?? (opts.endpoint ? 'us-east-1' : undefined);
    const common = {
      ...(region ? { region } : {}),
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
      ...(opts.accessKey && opts.secretKey
        ? { credentials: { accessKeyId: opts.accessKey, secretAccessKey: opts.secretKey } }
        : {}),
      maxAttempts: opts.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
      retryMode: 'standard',
      requestHandler: { connectionTimeout: 5_000, requestTimeout: 30_000 },
    };
    const db = new DynamoDBClient(common);
    const streams = new DynamoDBStreamsClient(common);
    const backend = new DynamoBackend(db, streams, opts);
    try {
      await backend.ensureTable();
      if (opts.background !== false) await backend.start();
      return backend;
    } catch (err) {
      await backend.close();
      throw backend.wrap(err, 'open');
    }
  }

  private constructor(
    private readonly db: DynamoDBClient,
    private readonly streams: DynamoDBStreamsClient,
    private readonly opts: DynamoBackendOptions,
  ) {
    this.clock = opts.clock ?? systemClock;
  }

  get tableName(): string {
    return this.opts.tableName;
  }

  async get(key: string): Promise<Item> {
    checkKey(key, 'get');
    this.checkOpen();
    const out = await this.call('get', () =>
      this.db.send(
        new GetItemCommand({ TableName: this.tableName, Key: this.keyOf(key), ConsistentRead: true }),
      ),
    );
    if (!out.Item) throw notFound(key);
    const item = decodeItem(out.Item);
    if (!item || !isLive(out.Item, this.nowMs())) {
      // DynamoDB's TTL is lazy; remove it now (as Teleport does), so watchers learn of it.
      const sec = numberOf(out.Item.Expires);
      if (item && sec !== undefined) await this.removeExpired(key, sec).catch(() => undefined);
      throw notFound(key);
    }
    return item;
  }

  async getRange(start: string, end: string, limit?: number): Promise<Item[]> {
    checkBound(start, 'start', 'getRange');
    checkBound(end, 'end', 'getRange');
    const max = checkLimit(limit, 'getRange');
    this.checkOpen();
    if (start >= end) return [];
    const items: Item[] = [];
    await this.query(
      'getRange',
      {
        KeyConditionExpression: 'HashKey = :h AND #fp BETWEEN :start AND :end',
        FilterExpression: LIVE,
        ExpressionAttributeNames: { '#fp': NAMES['#fp'], '#e': NAMES['#e'] },
        ExpressionAttributeValues: {
          ':h': S(HASH_KEY),
          ':start': S(fullPath(start)),
          ':end': S(fullPath(end)),
          ':now': this.nowValue(),
        },
        ConsistentRead: true,
        // BETWEEN includes the end, which the half-open range leaves out: one more than asked.
        ...(max > 0 ? { Limit: max + 1 } : {}),
      },
      (page) => {
        for (const raw of page) {
          const item = decodeItem(raw);
          if (!item || item.key === end) continue;
          items.push(item);
          if (max > 0 && items.length >= max) return false;
        }
        return true;
      },
    );
    return items;
  }

  async create(item: Item): Promise<Lease> {
    const it = checkItem(item, 'create');
    this.checkOpen();
    const written = await this.putItem('create', it, {
      ConditionExpression: 'attribute_not_exists(#fp) OR #e <= :now',
      ExpressionAttributeNames: { '#fp': NAMES['#fp'], '#e': NAMES['#e'] },
      ExpressionAttributeValues: { ':now': this.nowValue() },
    });
    if (!written) throw new AlreadyExistsError(`key ${JSON.stringify(it.key)} already exists`);
    return { key: it.key };
  }

  async put(item: Item): Promise<Lease> {
    const it = checkItem(item, 'put');
    this.checkOpen();
    await this.putItem('put', it, {});
    return { key: it.key };
  }

  async update(item: Item): Promise<Lease> {
    const it = checkItem(item, 'update');
    this.checkOpen();
    const written = await this.putItem('update', it, {
      ConditionExpression: `attribute_exists(#fp) AND ${LIVE}`,
      ExpressionAttributeNames: { '#fp': NAMES['#fp'], '#e': NAMES['#e'] },
      ExpressionAttributeValues: { ':now': this.nowValue() },
    });
    if (!written) throw notFound(it.key);
    return { key: it.key };
  }

  async compareAndSwap(expected: Item, replaceWith: Item): Promise<Lease> {
    const { want: exp, next } = checkSwap(expected, replaceWith);
    this.checkOpen();
    const written = await this.putItem('compareAndSwap', next, {
      ConditionExpression: `#v = :prev AND ${LIVE}`,
      ExpressionAttributeNames: { '#v': NAMES['#v'], '#e': NAMES['#e'] },
      ExpressionAttributeValues: { ':prev': { B: exp.value }, ':now': this.nowValue() },
    });
    if (!written) throw new CompareFailedError(`key ${JSON.stringify(exp.key)}: the value is not the expected one`);
    return { key: next.key };
  }

  async delete(key: string): Promise<void> {
    checkKey(key, 'delete');
    this.checkOpen();
    const deleted = await this.conditional('delete', () =>
      this.db.send(
        new DeleteItemCommand({
          TableName: this.tableName,
          Key: this.keyOf(key),
          ConditionExpression: `attribute_exists(#fp) AND ${LIVE}`,
          ExpressionAttributeNames: { '#fp': NAMES['#fp'], '#e': NAMES['#e'] },
          ExpressionAttributeValues: { ':now': this.nowValue() },
        }),
      ),
    );
    if (!deleted) throw notFound(key);
  }

  async deleteRange(start: string, end: string): Promise<void> {
    checkBound(start, 'start', 'deleteRange');
    checkBound(end, 'end', 'deleteRange');
    this.checkOpen();
    if (start >= end) return;
    // Page by page, so memory stays bounded however large the range is.
    const pages: Array<Record<string, AttributeValue>[]> = [];
    await this.query(
      'deleteRange',
      {
        KeyConditionExpression: 'HashKey = :h AND #fp BETWEEN :start AND :end',
        ProjectionExpression: 'HashKey, #fp',
        ExpressionAttributeNames: { '#fp': NAMES['#fp'] },
        ExpressionAttributeValues: { ':h': S(HASH_KEY), ':start': S(fullPath(start)), ':end': S(fullPath(end)) },
        ConsistentRead: true,
      },
      (page) => {
        pages.push(page.filter((raw) => raw.FullPath?.S !== fullPath(end)));
        return true;
      },
      async () => {
        for (const page of pages.splice(0)) await this.batchDelete(page);
      },
    );
  }

  async keepAlive(lease: Lease, expires: Date): Promise<void> {
    const key = checkKey(lease?.key, 'keepAlive');
    const at = checkExpires(expires, 'keepAlive');
    if (!at) throw new BadParameterError('backend keepAlive: expires is required');
    this.checkOpen();
    const now = this.nowMs();
    const updated = await this.conditional('keepAlive', () =>
      this.db.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: this.keyOf(key),
          UpdateExpression: 'SET #e = :expires, #id = :id, #ts = :ts',
          ConditionExpression: `attribute_exists(#fp) AND ${LIVE}`,
          ExpressionAttributeNames: NAMES_WITHOUT_VALUE,
          ExpressionAttributeValues: {
            ':expires': N(expiresSeconds(at)),
            ':id': N(BigInt(this.nextId()) * 1000n),
            ':ts': N(Math.floor(now / 1000)),
            ':now': this.nowValue(now),
          },
        }),
      ),
    );
    if (!updated) throw notFound(key);
  }

  async newWatcher(opts: WatchOptions): Promise<Watcher> {
    this.checkOpen();
    const poller = this.poller;
    if (!poller) throw new BadParameterError(`DynamoDB table ${this.tableName} was opened without watches (background: false)`);
    await poller.sync(this.opts.watchSyncTimeoutMs ?? DEFAULT_WATCH_SYNC_TIMEOUT_MS);
    this.checkOpen();
    return this.fanout.newWatcher(opts);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.fanout.closeAll();
    await Promise.all([this.poller?.close(), this.sweeper?.close()]);
    this.db.destroy();
    this.streams.destroy();
  }

  // --- table setup ---

  private async ensureTable(): Promise<void> {
    let table = await this.describeTable();
    if (!table) {
      await this.createTable();
      table = await this.waitActive();
    }
    checkSchema(this.tableName, table);
    const view = table.StreamSpecification?.StreamEnabled ? table.StreamSpecification.StreamViewType : undefined;
    if (view === 'KEYS_ONLY' || view === 'OLD_IMAGE') {
      throw new BadParameterError(
        `DynamoDB table ${this.tableName} has a ${view} stream; watches need NEW_IMAGE (or NEW_AND_OLD_IMAGES)`,
      );
    }
    if (!view) {
      this.log.info('enabling the stream (NEW_IMAGE) of the DynamoDB table', { table: this.tableName });
      await this.call('open', () =>
        this.db.send(
          new UpdateTableCommand({
            TableName: this.tableName,
            StreamSpecification: { StreamEnabled: true, StreamViewType: 'NEW_IMAGE' },
          }),
        ),
      ).catch((err: unknown) => {
        throw new BadParameterError(
          `DynamoDB table ${this.tableName} has no stream and it could not be enabled (${String(err)}); enable a NEW_IMAGE stream on it`,
        );
      });
      table = await this.waitActive();
    } else if (table.TableStatus !== 'ACTIVE') {
      table = await this.waitActive();
    }
    if (!table.LatestStreamArn) {
      // The stream of a table whose stream was just enabled may need a moment to show up.
      table = await this.waitActive(true);
    }
    await this.ensureTtl();
    if (this.opts.continuousBackups) await this.ensureContinuousBackups();
  }

  private async describeTable(): Promise<TableDescription | undefined> {
    try {
      const out = await this.db.send(new DescribeTableCommand({ TableName: this.tableName }));
      return out.Table;
    } catch (err) {
      if (errorName(err) === 'ResourceNotFoundException') return undefined;
      throw this.wrap(err, 'open');
    }
  }

  private async createTable(): Promise<void> {
    const provisioned = this.opts.billingMode === 'provisioned';
    this.log.info('creating the DynamoDB table', { table: this.tableName, billing: provisioned ? 'provisioned' : 'pay_per_request' });
    try {
      await this.db.send(
        new CreateTableCommand({
          TableName: this.tableName,
          AttributeDefinitions: [
            { AttributeName: StateTableSchema.partitionKey, AttributeType: 'S' },
            { AttributeName: StateTableSchema.sortKey, AttributeType: 'S' },
          ],
          KeySchema: [
            { AttributeName: StateTableSchema.partitionKey, KeyType: 'HASH' },
            { AttributeName: StateTableSchema.sortKey, KeyType: 'RANGE' },
          ],
          ...(provisioned
            ? {
                BillingMode: 'PROVISIONED',
                ProvisionedThroughput: {
                  ReadCapacityUnits: this.opts.readCapacityUnits ?? DEFAULT_CAPACITY_UNITS,
                  WriteCapacityUnits: this.opts.writeCapacityUnits ?? DEFAULT_CAPACITY_UNITS,
                },
              }
            : { BillingMode: 'PAY_PER_REQUEST' }),
          StreamSpecification: { StreamEnabled: true, StreamViewType: 'NEW_IMAGE' },
        }),
      );
    } catch (err) {
      // Another auth server created it at the same moment.
      if (errorName(err) !== 'ResourceInUseException') throw this.wrap(err, 'open');
    }
  }

  private async waitActive(needStream = false): Promise<TableDescription> {
    const deadline = Date.now() + TABLE_ACTIVE_TIMEOUT_MS;
    for (let delay = 100; ; delay = Math.min(delay * 2, 2_000)) {
      const table = await this.describeTable();
      if (table?.TableStatus === 'ACTIVE' && (!needStream || table.LatestStreamArn)) return table;
      if (Date.now() > deadline) {
        throw new ConnectionProblemError(`DynamoDB table ${this.tableName} did not become active in time`);
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  private async ensureTtl(): Promise<void> {
    try {
      const out = await this.db.send(new DescribeTimeToLiveCommand({ TableName: this.tableName }));
      const ttl = out.TimeToLiveDescription;
      const on = ttl?.TimeToLiveStatus === 'ENABLED' || ttl?.TimeToLiveStatus === 'ENABLING';
      if (on && ttl?.AttributeName === 'Expires') return;
      if (on) {
        this.log.warn('the DynamoDB table has TTL on another attribute; expired items are only removed by this backend', {
          table: this.tableName,
          attribute: ttl?.AttributeName,
        });
        return;
      }
      await this.db.send(
        new UpdateTimeToLiveCommand({
          TableName: this.tableName,
          TimeToLiveSpecification: { Enabled: true, AttributeName: 'Expires' },
        }),
      );
    } catch (err) {
      this.log.warn('could not turn on TTL on Expires; expired items are only removed by this backend', {
        table: this.tableName,
        error: String(err),
      });
    }
  }

  private async ensureContinuousBackups(): Promise<void> {
    try {
      await this.db.send(
        new UpdateContinuousBackupsCommand({
          TableName: this.tableName,
          PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        }),
      );
    } catch (err) {
      this.log.warn('could not turn on point-in-time recovery', { table: this.tableName, error: String(err) });
    }
  }

  private async start(): Promise<void> {
    const pollPeriodMs = this.opts.pollPeriodMs ?? DEFAULT_STREAM_POLL_PERIOD_MS;
    this.sweeper = new ExpirySweeper({
      remove: (key, sec) => this.removeExpired(key, sec),
      scan: (visit) => this.scanExpiries(visit),
      tickMs: this.opts.expiryCheckPeriodMs ?? pollPeriodMs,
      fullScanPeriodMs: this.opts.fullScanPeriodMs ?? DEFAULT_FULL_SCAN_PERIOD_MS,
      nowMs: () => this.nowMs(),
      log: this.log,
    });
    this.poller = new StreamPoller({
      streams: this.streams,
      streamArn: async (signal) => {
        const out = await this.db.send(new DescribeTableCommand({ TableName: this.tableName }), { abortSignal: signal });
        const arn = out.Table?.StreamSpecification?.StreamEnabled ? out.Table.LatestStreamArn : undefined;
        if (!arn) throw new ConnectionProblemError(`DynamoDB table ${this.tableName} has no enabled stream`);
        return arn;
      },
      pollPeriodMs,
      refreshShardsMs: Math.max(10 * pollPeriodMs, 10_000),
      onRecords: (records) => this.onRecords(records),
      onReset: () => {
        if (this.fanout.size > 0) {
          this.log.warn('closing every watcher: the stream position was lost; consumers re-open and re-read', {
            watchers: this.fanout.size,
          });
        }
        this.fanout.closeAll();
        this.sweeper?.rescan();
      },
      log: this.log,
    });
    // Expired items left from before this start are removed before it serves.
    await this.sweeper.firstSweep;
  }

  // --- stream ---

  private onRecords(records: _Record[]): void {
    for (const record of records) {
      const event = decodeRecord(record);
      if (!event) continue;
      if (event.type === OpType.Put) {
        this.sweeper?.track(event.item.key, event.item.expires ? event.item.expires.getTime() / 1000 : undefined);
      } else {
        this.sweeper?.forget(event.item.key);
      }
      this.fanout.emit(event);
    }
  }

  // --- expiry ---

  /** Deletes an item whose expiry `sec` has passed, unless it was rewritten since. */
  private async removeExpired(key: string, sec: number): Promise<void> {
    if (this.closed) return;
    await this.conditional('expire', () =>
      this.db.send(
        new DeleteItemCommand({
          TableName: this.tableName,
          Key: this.keyOf(key),
          ConditionExpression: '#e = :sec AND #e <= :now',
          ExpressionAttributeNames: { '#e': NAMES['#e'] },
          ExpressionAttributeValues: { ':sec': N(sec), ':now': this.nowValue() },
        }),
      ),
    );
  }

  private async scanExpiries(visit: (key: string, sec: number) => void): Promise<void> {
    await this.query(
      'scan expiries',
      {
        KeyConditionExpression: 'HashKey = :h',
        FilterExpression: 'attribute_exists(#e)',
        ProjectionExpression: '#fp, #e',
        ExpressionAttributeNames: { '#fp': NAMES['#fp'], '#e': NAMES['#e'] },
        ExpressionAttributeValues: { ':h': S(HASH_KEY) },
      },
      (page) => {
        for (const raw of page) {
          const path = raw.FullPath?.S;
          const sec = numberOf(raw.Expires);
          if (path?.startsWith(HASH_KEY) && sec !== undefined) visit(path.slice(HASH_KEY.length), sec);
        }
        return true;
      },
    );
  }

  // --- helpers ---

  private nowMs(): number {
    return this.clock.now().getTime();
  }

  /** Now in Unix seconds with milliseconds, for `Expires` comparisons. */
  private nowValue(ms = this.nowMs()): AttributeValue {
    return N(ms / 1000);
  }

  /** Strictly increasing within the process, near the wall clock in microseconds. */
  private nextId(): number {
    const now = Math.floor((performance.timeOrigin + performance.now()) * 1000);
    this.lastId = Math.max(now, this.lastId + 1);
    return this.lastId;
  }

  private keyOf(key: string): Record<string, AttributeValue> {
    return { HashKey: S(HASH_KEY), FullPath: S(fullPath(key)) };
  }

  private attributes(item: Item): Record<string, AttributeValue> {
    const now = this.nowMs();
    return {
      ...this.keyOf(item.key),
      Value: { B: item.value },
      Timestamp: N(Math.floor(now / 1000)),
      ID: N(BigInt(this.nextId()) * 1000n),
      ...(item.expires ? { Expires: N(expiresSeconds(item.expires)) } : {}),
    };
  }

  /** PutItem; false when the condition failed. */
  private putItem(
    op: string,
    item: Item,
    cond: Pick<
      ConstructorParameters<typeof PutItemCommand>[0],
      'ConditionExpression' | 'ExpressionAttributeNames' | 'ExpressionAttributeValues'
    >,
  ): Promise<boolean> {
    return this.conditional(op, () =>
      this.db.send(new PutItemCommand({ TableName: this.tableName, Item: this.attributes(item), ...cond })),
    );
  }

  /** Runs a conditional write; false when its condition failed. */
  private async conditional(op: string, send: () => Promise<unknown>): Promise<boolean> {
    try {
      await send();
      return true;
    } catch (err) {
      if (errorName(err) === 'ConditionalCheckFailedException') return false;
      throw this.wrap(err, op);
    }
  }

  /**
   * Pages through a Query on the table. `onPage` returns false to stop; `afterPage` runs after each
   * page (deleteRange deletes there, before asking for the next page).
   */
  private async query(
    op: string,
    input: Omit<QueryCommandInput, 'TableName'>,
    onPage: (items: Record<string, AttributeValue>[]) => boolean,
    afterPage?: () => Promise<void>,
  ): Promise<void> {
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      const out = await this.call(op, () =>
        this.db.send(new QueryCommand({ TableName: this.tableName, ...input, ExclusiveStartKey: startKey })),
      );
      const more = onPage(out.Items ?? []);
      if (afterPage) await afterPage();
      if (!more) return;
      startKey = out.LastEvaluatedKey;
    } while (startKey);
  }

  private async batchDelete(keys: Record<string, AttributeValue>[]): Promise<void> {
    for (let i = 0; i < keys.length; i += BATCH_SIZE) {
      let requests: WriteRequest[] = keys.slice(i, i + BATCH_SIZE).map((Key) => ({ DeleteRequest: { Key } }));
      for (let attempt = 0; requests.length > 0; attempt++) {
        if (attempt > MAX_BATCH_RETRIES) {
          throw new LimitExceededError(`backend deleteRange: ${requests.length} deletes stayed unprocessed (throttled)`);
        }
        if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, Math.min(50 * 2 ** attempt, 5_000)));
        const out = await this.call('deleteRange', () =>
          this.db.send(new BatchWriteItemCommand({ RequestItems: { [this.tableName]: requests } })),
        );
        requests = out.UnprocessedItems?.[this.tableName] ?? [];
      }
    }
  }

  private async call<T>(op: string, send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (err) {
      throw this.wrap(err, op);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new ConnectionProblemError('the DynamoDB backend is closed');
  }

  /** Turns an SDK error into the project's typed errors. */
  private wrap(err: unknown, op: string): Error {
    if (err instanceof TeleportError) return err;
    const name = errorName(err) ?? 'Error';
    const message = err instanceof Error ? err.message : String(err);
    const what = `backend ${op} on DynamoDB table ${this.tableName}: ${name}: ${message}`;
    switch (name) {
      case 'ValidationException':
      case 'ItemCollectionSizeLimitExceededException':
        return new BadParameterError(what);
      case 'AccessDeniedException':
      case 'UnrecognizedClientException':
      case 'InvalidSignatureException':
      case 'MissingAuthenticationTokenException':
        return new AccessDeniedError(what);
      case 'ProvisionedThroughputExceededException':
      case 'ThrottlingException':
      case 'RequestLimitExceeded':
        return new LimitExceededError(what);
      default:
        return new ConnectionProblemError(what, { cause: err });
    }
  }
}

const NAMES_WITHOUT_VALUE = { '#fp': NAMES['#fp'], '#e': NAMES['#e'], '#id': NAMES['#id'], '#ts': NAMES['#ts'] };

function notFound(key: string): NotFoundError {
  return new NotFoundError(`key ${JSON.stringify(key)} is not found`);
}

function checkSchema(tableName: string, table: TableDescription): void {
  const attrs = (table.AttributeDefinitions ?? []).map((a) => a.AttributeName);
  if (attrs.includes('Key')) {
    throw new BadParameterError(`DynamoDB table ${tableName} has the old schema (an attribute named Key); migrate it first`);
  }
  const hash = table.KeySchema?.find((k) => k.KeyType === 'HASH')?.AttributeName;
  const range = table.KeySchema?.find((k) => k.KeyType === 'RANGE')?.AttributeName;
  if (hash !== StateTableSchema.partitionKey || range !== StateTableSchema.sortKey) {
    throw new BadParameterError(
      `DynamoDB table ${tableName} has keys ${hash}/${range}; the backend needs hash key HashKey and range key FullPath`,
    );
  }
}

function numberOf(v: AttributeValue | undefined): number | undefined {
  if (!v || !('N' in v) || v.N === undefined) return undefined;
  const n = Number(v.N);
  return Number.isFinite(n) ? n : undefined;
}

function isLive(raw: Record<string, AttributeValue>, nowMs: number): boolean {
  const sec = numberOf(raw.Expires);
  return sec === undefined || sec * 1000 > nowMs;
}

/** An item from its attributes (a table item or a stream image); undefined if it is not one of ours. */
function decodeItem(raw: Record<string, AttributeValue>): Item | undefined {
  const path = raw.FullPath?.S;
  if (raw.HashKey?.S !== HASH_KEY || !path?.startsWith(HASH_KEY) || path.length === HASH_KEY.length) return undefined;
  const value = raw.Value?.B;
  const item: Item = { key: path.slice(HASH_KEY.length), value: value ? Buffer.from(value) : Buffer.alloc(0) };
  const expires = numberOf(raw.Expires);
  if (expires !== undefined) item.expires = new Date(expires * 1000);
  const id = raw.ID?.N;
  if (id !== undefined && /^\d+$/.test(id)) item.id = Number(BigInt(id) / 1000n);
  return item;
}

/** A watch event from a stream record: INSERT/MODIFY are Puts (from NewImage), REMOVE (TTL included) Deletes. */
export function decodeRecord(record: _Record): Event | undefined {
  const d = record.dynamodb;
  if (!d) return undefined;
  switch (record.eventName) {
    case 'INSERT':
    case 'MODIFY': {
      const item = d.NewImage ? decodeItem(d.NewImage as Record<string, AttributeValue>) : undefined;
      return item ? { type: OpType.Put, item } : undefined;
    }
    case 'REMOVE': {
      const keys = d.Keys as Record<string, AttributeValue> | undefined;
      const path = keys?.FullPath?.S;
      if (keys?.HashKey?.S !== HASH_KEY || !path?.startsWith(HASH_KEY) || path.length === HASH_KEY.length) return undefined;
      return { type: OpType.Delete, item: { key: path.slice(HASH_KEY.length), value: Buffer.alloc(0) } };
    }
    default:
      return undefined;
  }
}
