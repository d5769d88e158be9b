/**
 * The template's event source mappings on DynamoDB streams (`AWS::Lambda::EventSourceMapping`),
 * polled as Lambda polls them: through the DynamoDB Streams API at `endpoint` (the gateway) with
 * credentials of the function's execution role, so the role must allow DescribeStream,
 * GetShardIterator and GetRecords on the stream. Each shard is read in order, four times a second
 * when idle, from `StartingPosition` (TRIM_HORIZON, or LATEST for the shards open at start; shards
 * that appear later are read from their start), and a child shard only once its parent is
 * finished. Records go to the function in Lambda's event format (`{ Records: [...] }`, DynamoDB
 * JSON, binary in base64), at most `BatchSize` at a time, after `FilterCriteria` (`pattern.ts`;
 * records no filter matches are dropped). A failed batch blocks its shard and is retried with
 * backoff until it succeeds, `MaximumRetryAttempts` is spent or its records are older than
 * `MaximumRecordAgeInSeconds`; with `BisectBatchOnFunctionError` it is split in halves first.
 */
import { DescribeStreamCommand, DynamoDBStreamsClient, GetRecordsCommand, GetShardIteratorCommand, type Shard, type ShardIteratorType, type _Record } from '@aws-sdk/client-dynamodb-streams';
import * as https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CredentialRegistry } from '../aws/credentials';
import { type CfnResources, type Log, REGION, type Resolve } from '../types';
import { ResourceError } from './errors';
import type { FunctionDefinition, Functions } from './functions';
import { compilePattern, type EventMatcher } from './pattern';

export interface StreamMappingsOptions {
  readonly resources: CfnResources;
  readonly resolve: Resolve;
  readonly functions: Functions;
  readonly credentials: CredentialRegistry;
  /** The DynamoDB Streams endpoint (the gateway's URL). */
  readonly endpoint: string;
  /** The CA certificate (PEM) the endpoint's certificate is trusted through, when it is HTTPS with a local CA. */
  readonly ca?: string;
  readonly log: Log;
  /** How long an idle shard waits between polls. @default 250 (Lambda polls DynamoDB shards four times a second) */
  readonly pollMs?: number;
  /** How often the stream's shards are listed, besides when a shard ends. @default 5000 */
  readonly discoverMs?: number;
}

/** One invocation (or drop) of a batch, kept for the report. */
export interface BatchRecord {
  readonly mapping: string;
  readonly shardId: string;
  readonly records: number;
  readonly outcome: 'delivered' | 'failed' | 'dropped';
  readonly attempt: number;
  readonly reason?: string;
}

/** A mapping of the template, resolved. */
interface MappingDefinition {
  readonly logicalId: string;
  readonly streamArn: string;
  readonly function: FunctionDefinition;
  readonly startingPosition: 'TRIM_HORIZON' | 'LATEST';
  readonly batchSize: number;
  readonly filters: readonly EventMatcher[];
  /** -1: until the records expire. */
  readonly maxRetries: number;
  /** -1: never too old. */
  readonly maxRecordAgeSeconds: number;
  readonly bisect: boolean;
}

type LambdaRecord = Record<string, any>;

function parseMapping(logicalId: string, props: Record<string, any>, resolve: Resolve, functions: Functions, log: Log): MappingDefinition | undefined {
  const p = resolve(props);
  const fail = (reason: string) => new ResourceError(logicalId, reason);
  if (p.Enabled === false || p.Enabled === 'false') return undefined;
  if (typeof p.EventSourceArn !== 'string' || !/^arn:[^:]+:dynamodb:[^:]*:\d+:table\/[^/]+\/stream\//.test(p.EventSourceArn)) {
    throw fail(`event source ${p.EventSourceArn} is not a DynamoDB stream: only DynamoDB stream mappings are supported`);
  }
  for (const unsupported of ['DestinationConfig', 'FunctionResponseTypes', 'TumblingWindowInSeconds']) if (p[unsupported] !== undefined) throw fail(`${unsupported} is not supported`);
  if (!['TRIM_HORIZON', 'LATEST'].includes(p.StartingPosition)) throw fail(`StartingPosition ${p.StartingPosition} is not TRIM_HORIZON or LATEST`);
  if (Number(p.ParallelizationFactor ?? 1) > 1) log(`streams: ${logicalId}: ParallelizationFactor ${p.ParallelizationFactor} is run as 1 (one batch per shard at a time)`);
  let filters: EventMatcher[];
  try {
    filters = ((p.FilterCriteria?.Filters ?? []) as { Pattern: string }[]).map((f) => compilePattern(f.Pattern));
  } catch (err) {
    throw fail((err as Error).message);
  }
  return {
    logicalId,
    streamArn: p.EventSourceArn,
    function: functions.definition(p.FunctionName),
    startingPosition: p.StartingPosition,
    batchSize: Number(p.BatchSize ?? 100),
    filters,
    maxRetries: Number(p.MaximumRetryAttempts ?? -1),
    maxRecordAgeSeconds: Number(p.MaximumRecordAgeInSeconds ?? -1),
    bisect: p.BisectBatchOnFunctionError === true || p.BisectBatchOnFunctionError === 'true',
  };
}

/** A value as Lambda puts it in the event's JSON: binary as base64, times as epoch seconds. */
export function lambdaJson(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (v instanceof Date) return v.getTime() / 1000;
  if (Array.isArray(v)) return v.map(lambdaJson);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => [k, lambdaJson(x)]));
  return v;
}

/** A stream record as Lambda delivers it. */
function lambdaRecord(r: _Record, streamArn: string): LambdaRecord {
  return {
    eventID: r.eventID,
    eventName: r.eventName,
    eventVersion: '1.1',
    eventSource: 'aws:dynamodb',
    awsRegion: REGION,
    dynamodb: lambdaJson(r.dynamodb),
    ...(r.userIdentity ? { userIdentity: lambdaJson(r.userIdentity) } : {}),
    eventSourceARN: streamArn,
  };
}

/** One mapping's poller: the stream's shards, each read by a loop of its own. */
class Poller {
  private readonly client: DynamoDBStreamsClient;
  /** Shards being read or done. */
  private readonly started = new Set<string>();
  private readonly finished = new Set<string>();
  private readonly loops: Promise<void>[] = [];
  /** Whether the starting position was taken (a first listing succeeded). */
  private positioned = false;
  private lastProblem = '';
  private discovering?: Promise<void>;

  constructor(
    private readonly def: MappingDefinition,
    private readonly opts: StreamMappingsOptions,
    private readonly signal: AbortSignal,
    private readonly kept: BatchRecord[],
  ) {
    const creds = opts.credentials.issue(def.function.role);
    this.client = new DynamoDBStreamsClient({
      endpoint: opts.endpoint,
      region: REGION,
      credentials: { accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey, sessionToken: creds.sessionToken },
      maxAttempts: 2,
      ...(opts.ca ? { requestHandler: { httpsAgent: new https.Agent({ ca: opts.ca, keepAlive: true }) } } : {}),
    });
  }

  /** Takes the starting position (when the stream can be read), then keeps listing shards until closed. */
  async start(): Promise<void> {
    await this.discover();
    this.loops.push(
      (async () => {
        while (await this.pause(this.opts.discoverMs ?? 5000)) await this.discover();
      })(),
    );
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.loops);
    this.client.destroy();
  }

  /** Lists the shards and starts reading those whose parents are done; one listing at a time. */
  private discover(): Promise<void> {
    this.discovering ??= this.listAndStart().finally(() => (this.discovering = undefined));
    return this.discovering;
  }

  private async listAndStart(): Promise<void> {
    try {
      const shards: Shard[] = [];
      let from: string | undefined;
      do {
        const page = await this.client.send(new DescribeStreamCommand({ StreamArn: this.def.streamArn, ...(from ? { ExclusiveStartShardId: from } : {}) }));
        shards.push(...(page.StreamDescription?.Shards ?? []));
        from = page.StreamDescription?.LastEvaluatedShardId;
      } while (from);
      const latest = !this.positioned && this.def.startingPosition === 'LATEST';
      // LATEST: closed shards have nothing new to give.
      if (latest) for (const s of shards) if (s.SequenceNumberRange?.EndingSequenceNumber) this.markDone(s.ShardId!);
      const ids = new Set(shards.map((s) => s.ShardId));
      for (const s of shards) {
        const id = s.ShardId!;
        if (this.started.has(id) || (s.ParentShardId && ids.has(s.ParentShardId) && !this.finished.has(s.ParentShardId))) continue;
        const from = latest ? 'LATEST' : 'TRIM_HORIZON';
        const iterator = await this.iterator(id, from);
        this.started.add(id);
        this.loops.push(this.readShard(id, from, iterator));
      }
      this.positioned = true;
    } catch (err) {
      if (!this.signal.aborted) this.problem(`listing the shards of ${this.def.streamArn}: ${(err as Error).name}: ${(err as Error).message}`);
    }
  }

  private markDone(shardId: string): void {
    this.started.add(shardId);
    this.finished.add(shardId);
  }

  private async iterator(shardId: string, type: ShardIteratorType, after?: string): Promise<string | undefined> {
    const out = await this.client.send(new GetShardIteratorCommand({ StreamArn: this.def.streamArn, ShardId: shardId, ShardIteratorType: after ? 'AFTER_SEQUENCE_NUMBER' : type, ...(after ? { SequenceNumber: after } : {}) }));
    return out.ShardIterator;
  }

  /** Reads one shard to its end, a batch at a time, each delivered before the next is read. */
  private async readShard(shardId: string, from: ShardIteratorType, first: string | undefined): Promise<void> {
    let iterator = first;
    let last: string | undefined;
    while (iterator && !this.signal.aborted) {
      try {
        const page = await this.client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: Math.min(this.def.batchSize, 1000) }));
        const records = page.Records ?? [];
        if (records.length > 0) {
          await this.deliver(shardId, records.map((r) => lambdaRecord(r, this.def.streamArn)));
          last = records[records.length - 1].dynamodb?.SequenceNumber;
        }
        iterator = page.NextShardIterator;
        if (records.length === 0 && iterator && !(await this.pause(this.opts.pollMs ?? 250))) return;
      } catch (err) {
        if (this.signal.aborted) return;
        const name = (err as Error).name;
        this.problem(`reading shard ${shardId} of ${this.def.streamArn}: ${name}: ${(err as Error).message}`);
        if (!(await this.pause(1000))) return;
        // An expired iterator is taken again where reading stopped; trimmed records are gone: read what is left.
        if (name === 'ExpiredIteratorException') iterator = await this.iterator(shardId, from, last).catch(() => iterator);
        if (name === 'TrimmedDataAccessException') iterator = await this.iterator(shardId, 'TRIM_HORIZON').catch(() => iterator);
      }
    }
    if (this.signal.aborted) return;
    this.finished.add(shardId);
    this.opts.log(`streams: ${this.def.logicalId}: shard ${shardId} is finished`);
    void this.discover();
  }

  /** Filters a batch and invokes the function with what passes, retrying until it succeeds or may be dropped. */
  private async deliver(shardId: string, records: LambdaRecord[]): Promise<void> {
    const passing = this.def.filters.length === 0 ? records : records.filter((r) => this.def.filters.some((matches) => matches(r)));
    if (passing.length > 0) await this.invoke(shardId, passing);
  }

  private async invoke(shardId: string, batch: LambdaRecord[]): Promise<void> {
    const keep = (outcome: BatchRecord['outcome'], records: number, attempt: number, reason?: string) => {
      this.kept.push({ mapping: this.def.logicalId, shardId, records, outcome, attempt, ...(reason ? { reason } : {}) });
      if (outcome !== 'delivered') this.opts.log(`streams: ${this.def.logicalId} → ${this.def.function.name}: batch of ${records} ${outcome} (attempt ${attempt + 1})${reason ? `: ${reason}` : ''}`);
    };
    let records = batch;
    for (let attempt = 0; ; attempt++) {
      const maxAge = this.def.maxRecordAgeSeconds;
      const fresh = maxAge < 0 ? records : records.filter((r) => Date.now() / 1000 - Number(r.dynamodb?.ApproximateCreationDateTime ?? 0) <= maxAge);
      if (fresh.length < records.length) keep('dropped', records.length - fresh.length, attempt, `older than MaximumRecordAgeInSeconds ${maxAge}`);
      records = fresh;
      if (records.length === 0) return;
      const result = await this.opts.functions.invoke(this.def.function.arn, { Records: records });
      if (!result.functionError) return keep('delivered', records.length, attempt);
      keep('failed', records.length, attempt, result.payload.slice(0, 300));
      if (this.def.bisect && records.length > 1) {
        const half = Math.ceil(records.length / 2);
        await this.invoke(shardId, records.slice(0, half));
        return this.invoke(shardId, records.slice(half));
      }
      if (this.def.maxRetries >= 0 && attempt >= this.def.maxRetries) return keep('dropped', records.length, attempt, `MaximumRetryAttempts ${this.def.maxRetries} spent`);
      if (!(await this.pause(Math.min(500 * 2 ** attempt, 30_000)))) return;
    }
  }

  /** Waits; false when the mappings are closed meanwhile. */
  private async pause(ms: number): Promise<boolean> {
    try {
      await sleep(ms, undefined, { signal: this.signal });
      return true;
    } catch {
      return false;
    }
  }

  /** Logs a polling problem once, until it changes. */
  private problem(text: string): void {
    if (text === this.lastProblem) return;
    this.lastProblem = text;
    this.opts.log(`streams: ${this.def.logicalId}: PROBLEM: ${text}`);
  }
}

export class StreamMappings {
  private readonly kept: BatchRecord[] = [];
  private readonly stopping = new AbortController();
  private readonly pollers: Poller[];

  private constructor(definitions: MappingDefinition[], opts: StreamMappingsOptions) {
    this.pollers = definitions.map((d) => new Poller(d, opts, this.stopping.signal, this.kept));
  }

  /** Reads the mappings of the template and starts them; resolves once each has taken its starting position (or logged why it cannot yet). */
  static async create(opts: StreamMappingsOptions): Promise<StreamMappings> {
    const definitions = Object.entries(opts.resources)
      .filter(([, r]) => r.Type === 'AWS::Lambda::EventSourceMapping')
      .map(([id, r]) => parseMapping(id, r.Properties ?? {}, opts.resolve, opts.functions, opts.log))
      .filter((d): d is MappingDefinition => d !== undefined);
    const mappings = new StreamMappings(definitions, opts);
    for (const d of definitions) opts.log(`streams: ${d.logicalId}: ${d.streamArn} → ${d.function.name} from ${d.startingPosition}, batches of ${d.batchSize}`);
    await Promise.all(mappings.pollers.map((p) => p.start()));
    return mappings;
  }

  /** Every batch outcome so far, oldest first. */
  get batches(): readonly BatchRecord[] {
    return this.kept;
  }

  /** Stops polling; a batch being delivered finishes first (at most the function's timeout). */
  async close(): Promise<void> {
    this.stopping.abort();
    await Promise.all(this.pollers.map((p) => p.close()));
  }
}
