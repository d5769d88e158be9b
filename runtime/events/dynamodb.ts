/**
 * The DynamoDB audit log (`audit_events_uri: dynamodb://<table>`, Teleport's
 * `lib/events/dynamoevents`, formats.md §6.4), so that every auth server of an HA cluster writes
 * to and searches the same log.
 *
 * Table: hash key `SessionID` (S), range key `EventIndex` (N); attributes `EventType` (S),
 * `CreatedAt` (N, Unix seconds of the event's `time`), `EventNamespace` (S, "default"), `Fields`
 * (S, the whole event as JSON) and `Expires` (N, TTL, `retentionDays` after the write). The global
 * secondary index `timesearch` (hash `EventNamespace`, range `CreatedAt`, projection ALL) serves
 * searches by time. A session event (with `sid` and a numeric `ei`) is stored under its session
 * and index; any other event under its identity (`uid`, scoped by `server_id`: eventIdentity)
 * and index 0. Every put is conditional on the key being free, so a retried event is stored once.
 *
 * The table is created when missing (on-demand, TTL on Expires); an existing one is used as it is.
 */

import { EventsTableSchema } from '../contract/dynamodb';
import {
  AttributeValue,
  CreateTableCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  TableDescription,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import { z } from 'zod';
import { BadParameterError, ConnectionProblemError, TeleportError } from '../utils/errors';
import { logger } from '../utils/logger';
import { AuditLog, completeEvent, EventFields, eventIdentity, matchesQuery, SearchQuery } from './filelog';

export const TIME_SEARCH_INDEX = EventsTableSchema.timeSearchIndex;
const E = EventsTableSchema;
export const EVENT_NAMESPACE = 'default';
export const DEFAULT_RETENTION_DAYS = 365;
const DAY_S = 86_400;
const TABLE_ACTIVE_TIMEOUT_MS = 5 * 60_000;

const optionsSchema = z
  .object({
    tableName: z.string().regex(/^[A-Za-z0-9_.-]{3,255}$/, 'a table name has 3-255 characters among a-z, A-Z, 0-9, "_", "-" and "."'),
    region: z.string().min(1).optional(),
    endpoint: z.string().url().optional(),
    accessKey: z.string().min(1).optional(),
    secretKey: z.string().min(1).optional(),
    retentionDays: z.number().int().positive().optional(),
    maxAttempts: z.number().int().min(1).max(20).optional(),
  })
  .strict()
  .refine((o) => !!o.accessKey === !!o.secretKey, 'access_key and secret_key go together');

export interface DynamoAuditLogOptions {
  readonly tableName: string;
  /** With only an `endpoint`, "us-east-1"; else the SDK's default chain. */
  readonly region?: string;
  readonly endpoint?: string;
  /** Static credentials; without them the SDK's default credential chain is used. */
  readonly accessKey?: string;
  readonly secretKey?: string;
  /** How long events are kept (DynamoDB TTL). @default 365 */
  readonly retentionDays?: number;
  /** SDK attempts per request. @default 5 */
  readonly maxAttempts?: number;
}

/**
 * Options from an `audit_events_uri` of the form `dynamodb://<table>[?region=..&endpoint=..]`,
 * with defaults (e.g. the storage section's region and keys) for what the URI does not say.
 */
export function auditLogOptionsFromUri(uri: string, defaults: Omit<DynamoAuditLogOptions, 'tableName'> = {}): DynamoAuditLogOptions {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw new BadParameterError(`audit_events_uri ${JSON.stringify(uri)} is not a URI`);
  }
  if (u.protocol !== 'dynamodb:') throw new BadParameterError(`audit_events_uri ${JSON.stringify(uri)} is not a dynamodb:// URI`);
  const tableName = decodeURIComponent(u.hostname || u.pathname.replace(/^\/+/, ''));
  if (!tableName) throw new BadParameterError(`audit_events_uri ${JSON.stringify(uri)} names no table`);
  const region = u.searchParams.get('region') ?? defaults.region;
  const endpoint = u.searchParams.get('endpoint') ?? defaults.endpoint;
  return {
    ...defaults,
    tableName,
    ...(region ? { region } : {}),
    ...(endpoint ? { endpoint } : {}),
  };
}

export class DynamoAuditLog implements AuditLog {
  private readonly log = logger('events').child('dynamodb');
  private closed = false;

  static async open(options: DynamoAuditLogOptions): Promise<DynamoAuditLog> {
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) {
      throw new BadParameterError(
        `audit log dynamodb: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'options'}: ${i.message}`).join('; ')}`,
      );
    }
    const opts = parsed.data;
    const region = opts.region ?? (opts.endpoint ? 'us-east-1' : undefined);
    const db = new DynamoDBClient({
      ...(region ? { region } : {}),
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
      ...(opts.accessKey && opts.secretKey
        ? { credentials: { accessKeyId: opts.accessKey, secretAccessKey: opts.secretKey } }
        : {}),
      maxAttempts: opts.maxAttempts ?? 5,
      requestHandler: { connectionTimeout: 5_000, requestTimeout: 30_000 },
    });
    const audit = new DynamoAuditLog(db, opts.tableName, opts.retentionDays ?? DEFAULT_RETENTION_DAYS);
    try {
      await audit.ensureTable();
      return audit;
    } catch (err) {
      db.destroy();
      throw audit.wrap(err, 'open');
    }
  }

  private constructor(
    private readonly db: DynamoDBClient,
    readonly tableName: string,
    private readonly retentionDays: number,
  ) {}

  async emit(fields: EventFields): Promise<EventFields> {
    this.checkOpen();
    const event = completeEvent(fields);
    const createdMs = Date.parse(String(event.time));
    if (Number.isNaN(createdMs)) throw new BadParameterError(`audit event time ${JSON.stringify(event.time)} is not a date`);
    const createdAt = Math.floor(createdMs / 1000);
    const sid = typeof event.sid === 'string' && event.sid ? event.sid : undefined;
    const ei = typeof event.ei === 'number' && Number.isSafeInteger(event.ei) ? event.ei : undefined;
    const attrs: Record<string, AttributeValue> = {
      EventType: { S: event.event },
      EventNamespace: { S: EVENT_NAMESPACE },
      CreatedAt: { N: String(createdAt) },
      Fields: { S: JSON.stringify(event) },
      Expires: { N: String(Math.floor(Date.now() / 1000) + this.retentionDays * DAY_S) },
    };
    const id = eventIdentity(event);
    if (sid !== undefined && ei !== undefined) {
      if (await this.putOnce({ SessionID: { S: sid }, EventIndex: { N: String(ei) } }, attrs)) return event;
      // The session's slot is taken: by this very event (a retry), or by another one, which must not be lost.
      const held = await this.fieldsAt({ SessionID: { S: sid }, EventIndex: { N: String(ei) } });
      if (held && eventIdentity(held) === id) return event;
      this.log.warn('another event holds this session index; storing the event under its own id', { sid, ei, uid: event.uid });
    }
    await this.putOnce({ SessionID: { S: id }, EventIndex: { N: '0' } }, attrs);
    return event;
  }

  /** Writes the item unless its key exists; false when it does (the write is then a no-op). */
  private async putOnce(key: Record<string, AttributeValue>, attrs: Record<string, AttributeValue>): Promise<boolean> {
    try {
      await this.db.send(
        new PutItemCommand({ TableName: this.tableName, Item: { ...key, ...attrs }, ConditionExpression: `attribute_not_exists(${E.partitionKey})` }),
      );
      return true;
    } catch (err) {
      if ((err as { name?: string }).name === 'ConditionalCheckFailedException') return false;
      throw this.wrap(err, 'emit');
    }
  }

  private async fieldsAt(key: Record<string, AttributeValue>): Promise<EventFields | undefined> {
    try {
      const got = await this.db.send(new GetItemCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }));
      return parseFields(got.Item?.Fields?.S);
    } catch (err) {
      throw this.wrap(err, 'emit');
    }
  }

  /**
   * Events with `from <= time <= to`, oldest first, of the given types and user, at most `limit`.
   * Types are filtered by DynamoDB (EventType); the user, which only the event's JSON holds, here.
   */
  async search(q: SearchQuery): Promise<EventFields[]> {
    this.checkOpen();
    const fromS = Math.ceil(q.from.getTime() / 1000);
    const toS = Math.floor(q.to.getTime() / 1000);
    if (Number.isNaN(fromS) || Number.isNaN(toS)) throw new BadParameterError('audit search: from and to must be dates');
    if (fromS > toS) return [];
    const types = [...new Set(q.eventTypes ?? [])];
    const limit = q.limit && q.limit > 0 ? q.limit : 0;
    const out: EventFields[] = [];
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      let page;
      try {
        page = await this.db.send(
          new QueryCommand({
            TableName: this.tableName,
            IndexName: TIME_SEARCH_INDEX,
            KeyConditionExpression: 'EventNamespace = :ns AND CreatedAt BETWEEN :from AND :to',
            ...(types.length > 0 && types.length <= 100
              ? {
                  FilterExpression: `EventType IN (${types.map((_, i) => `:t${i}`).join(', ')})`,
                }
              : {}),
            ExpressionAttributeValues: {
              ':ns': { S: EVENT_NAMESPACE },
              ':from': { N: String(fromS) },
              ':to': { N: String(toS) },
              ...(types.length > 0 && types.length <= 100
                ? Object.fromEntries(types.map((t, i) => [`:t${i}`, { S: t }]))
                : {}),
            },
            ExclusiveStartKey: startKey,
          }),
        );
      } catch (err) {
        throw this.wrap(err, 'search');
      }
      for (const raw of page.Items ?? []) {
        const event = parseFields(raw.Fields?.S);
        if (!event || !matchesQuery(event, q)) continue;
        out.push(event);
        if (limit && out.length >= limit) return out;
      }
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.db.destroy();
  }

  private async ensureTable(): Promise<void> {
    let table = await this.describe();
    if (!table) {
      this.log.info('creating the DynamoDB audit events table', { table: this.tableName });
      try {
        await this.db.send(
          new CreateTableCommand({
            TableName: this.tableName,
            BillingMode: 'PAY_PER_REQUEST',
            AttributeDefinitions: [
              { AttributeName: E.partitionKey, AttributeType: 'S' },
              { AttributeName: E.sortKey, AttributeType: 'N' },
              { AttributeName: E.indexPartitionKey, AttributeType: 'S' },
              { AttributeName: E.indexSortKey, AttributeType: 'N' },
            ],
            KeySchema: [
              { AttributeName: E.partitionKey, KeyType: 'HASH' },
              { AttributeName: E.sortKey, KeyType: 'RANGE' },
            ],
            GlobalSecondaryIndexes: [
              {
                IndexName: TIME_SEARCH_INDEX,
                KeySchema: [
                  { AttributeName: E.indexPartitionKey, KeyType: 'HASH' },
                  { AttributeName: E.indexSortKey, KeyType: 'RANGE' },
                ],
                Projection: { ProjectionType: 'ALL' },
              },
            ],
          }),
        );
      } catch (err) {
        if ((err as { name?: string }).name !== 'ResourceInUseException') throw err;
      }
      table = await this.waitActive();
    } else if (table.TableStatus !== 'ACTIVE') {
      table = await this.waitActive();
    }
    const keys = table.KeySchema?.map((k) => `${k.AttributeName}:${k.KeyType}`).join(',');
    if (keys !== 'SessionID:HASH,EventIndex:RANGE') {
      throw new BadParameterError(`DynamoDB table ${this.tableName} has keys ${keys}; audit events need SessionID/EventIndex`);
    }
    if (!table.GlobalSecondaryIndexes?.some((i) => i.IndexName === TIME_SEARCH_INDEX)) {
      throw new BadParameterError(`DynamoDB table ${this.tableName} has no ${TIME_SEARCH_INDEX} index (EventNamespace, CreatedAt)`);
    }
    try {
      const ttl = (await this.db.send(new DescribeTimeToLiveCommand({ TableName: this.tableName }))).TimeToLiveDescription;
      if (ttl?.TimeToLiveStatus !== 'ENABLED' && ttl?.TimeToLiveStatus !== 'ENABLING') {
        await this.db.send(
          new UpdateTimeToLiveCommand({
            TableName: this.tableName,
            TimeToLiveSpecification: { Enabled: true, AttributeName: 'Expires' },
          }),
        );
      }
    } catch (err) {
      this.log.warn('could not turn on TTL on Expires; old audit events are kept', { table: this.tableName, error: String(err) });
    }
  }

  private async describe(): Promise<TableDescription | undefined> {
    try {
      return (await this.db.send(new DescribeTableCommand({ TableName: this.tableName }))).Table;
    } catch (err) {
      if ((err as { name?: string }).name === 'ResourceNotFoundException') return undefined;
      throw err;
    }
  }

  private async waitActive(): Promise<TableDescription> {
    const deadline = Date.now() + TABLE_ACTIVE_TIMEOUT_MS;
    for (let delay = 100; ; delay = Math.min(delay * 2, 2_000)) {
      const table = await this.describe();
      const indexesReady = (table?.GlobalSecondaryIndexes ?? []).every((i) => !i.IndexStatus || i.IndexStatus === 'ACTIVE');
      if (table?.TableStatus === 'ACTIVE' && indexesReady) return table;
      if (Date.now() > deadline) throw new ConnectionProblemError(`DynamoDB table ${this.tableName} did not become active in time`);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new ConnectionProblemError('the DynamoDB audit log is closed');
  }

  private wrap(err: unknown, op: string): Error {
    if (err instanceof TeleportError) return err;
    const name = (err as { name?: string })?.name ?? 'Error';
    const message = err instanceof Error ? err.message : String(err);
    const what = `audit log ${op} on DynamoDB table ${this.tableName}: ${name}: ${message}`;
    return name === 'ValidationException' ? new BadParameterError(what) : new ConnectionProblemError(what, { cause: err });
  }
}

function parseFields(json: string | undefined): EventFields | undefined {
  if (!json) return undefined;
  try {
    const v = JSON.parse(json) as unknown;
    return v && typeof v === 'object' && typeof (v as EventFields).event === 'string' ? (v as EventFields) : undefined;
  } catch {
    return undefined;
  }
}
