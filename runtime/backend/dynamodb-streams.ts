/**
 * Tails a DynamoDB table's stream (Teleport's `lib/backend/dynamo/shards.go`): every poll it
 * reads each shard up to its tip and hands the records, in order, to `onRecords`.
 *
 * - Shards are listed with DescribeStream (paged with ExclusiveStartShardId). The shards open at
 *   the first listing are read from LATEST (history before the backend started is not replayed);
 *   shards that appear later (rollover every few hours, splits) are read from TRIM_HORIZON, and a
 *   child shard only once its parent is drained, so records of one item stay in order.
 * - A closed shard is drained when GetRecords returns no NextShardIterator; the listing is then
 *   refreshed at once (else every `refreshShardsMs`). Shards gone from the listing are forgotten.
 * - ExpiredIteratorException: a new iterator AFTER_SEQUENCE_NUMBER of the last record read.
 * - Any other failure (network down after the SDK's retries, stream or shard gone, trimmed data,
 *   an expired iterator with no known position) means records may have been missed: the poller
 *   calls `onReset` (the backend closes its watchers, whose consumers re-open and re-read), drops
 *   its position, backs off, and starts over from LATEST on the table's current stream.
 *
 * `sync()` is the barrier newWatcher uses: it resolves after a complete successful pass that
 * started after the call, so a watcher registered then sees no write that finished before it was
 * created and every write after.
 */

import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
  _Record,
  Shard,
  ShardIteratorType,
} from '@aws-sdk/client-dynamodb-streams';
import { ConnectionProblemError } from '../utils/errors';
import type { Logger } from '../utils/logger';

/** The most records one GetRecords call returns. */
const RECORDS_PER_CALL = 1000;
/** Longest pause between attempts while the stream cannot be read. */
const MAX_BACKOFF_MS = 5_000;

export interface StreamPollerOptions {
  streams: DynamoDBStreamsClient;
  /** The table's current stream ARN (DescribeTable.LatestStreamArn). */
  streamArn: (signal: AbortSignal) => Promise<string>;
  pollPeriodMs: number;
  /** How often the shard list is refreshed when no shard closed. */
  refreshShardsMs: number;
  /** Called with each GetRecords page, in stream order. Must not throw. */
  onRecords: (records: _Record[]) => void;
  /** Called when the position was lost and records may have been missed. Must not throw. */
  onReset: (reason: unknown) => void;
  log: Logger;
}

interface ShardState {
  readonly id: string;
  readonly parentId?: string;
  /** The shard was open when the poller (re)started: read from LATEST. */
  readonly fromLatest: boolean;
  iterator?: string;
  lastSequence?: string;
  started: boolean;
  drained: boolean;
}

interface SyncWaiter {
  /** Resolve after a successful pass numbered at least this. */
  pass: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

class PositionLostError extends Error {}

export class StreamPoller {
  private readonly abort = new AbortController();
  private streamArn?: string;
  private readonly shards = new Map<string, ShardState>();
  private lastRefresh = 0;
  private refreshWanted = true;
  private passesStarted = 0;
  private failures = 0;
  private waiters: SyncWaiter[] = [];
  private wake?: () => void;
  private closed = false;
  private readonly loopDone: Promise<void>;

  constructor(private readonly opts: StreamPollerOptions) {
    this.loopDone = this.loop();
  }

  /**
   * Resolves after a successful pass over every shard that started after this call.
   * ConnectionProblemError if none succeeds within `timeoutMs`, or the poller closes.
   */
  sync(timeoutMs: number): Promise<void> {
    if (this.closed) return Promise.reject(new ConnectionProblemError('the DynamoDB stream poller is closed'));
    return new Promise<void>((resolve, reject) => {
      const waiter: SyncWaiter = {
        pass: this.passesStarted + 1,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        waiter.reject(new ConnectionProblemError(`the DynamoDB stream could not be read for ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
      // A healthy poller starts the pass now instead of at the next tick; a failing one keeps its backoff.
      if (this.failures === 0) this.wake?.();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return this.loopDone;
    this.closed = true;
    this.abort.abort();
    this.wake?.();
    await this.loopDone;
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      const pass = ++this.passesStarted;
      let delay: number;
      try {
        await this.pass();
        this.failures = 0;
        const ready = this.waiters.filter((w) => w.pass <= pass);
        this.waiters = this.waiters.filter((w) => w.pass > pass);
        for (const w of ready) w.resolve();
        delay = this.waiters.length > 0 ? 0 : this.opts.pollPeriodMs;
      } catch (err) {
        if (this.closed) break;
        this.failures++;
        const hadPosition = this.streamArn !== undefined;
        this.streamArn = undefined;
        this.shards.clear();
        this.refreshWanted = true;
        if (hadPosition || this.failures === 1) {
          this.opts.log.warn('lost the position on the DynamoDB stream; closing watchers and starting over', {
            error: describe(err),
          });
        }
        this.opts.onReset(err);
        delay = Math.min(this.opts.pollPeriodMs * 2 ** this.failures, Math.max(this.opts.pollPeriodMs, MAX_BACKOFF_MS));
      }
      await this.sleep(delay);
    }
    for (const w of this.waiters.splice(0)) w.reject(new ConnectionProblemError('the DynamoDB stream poller is closed'));
  }

  private sleep(ms: number): Promise<void> {
    if (this.closed || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }

  /** One pass: (re)discover the stream and shards if needed, then read every readable shard to its tip. */
  private async pass(): Promise<void> {
    const signal = this.abort.signal;
    let initial = false;
    if (this.streamArn === undefined) {
      this.streamArn = await this.opts.streamArn(signal);
      initial = true;
    }
    if (initial || this.refreshWanted || Date.now() - this.lastRefresh >= this.opts.refreshShardsMs) {
      await this.refreshShards(this.streamArn, initial, signal);
    }
    for (const shard of this.shards.values()) {
      if (this.closed) return;
      if (shard.drained) continue;
      if (!shard.started) {
        const parent = shard.parentId ? this.shards.get(shard.parentId) : undefined;
        if (parent && !parent.drained) continue;
        shard.started = true;
      }
      await this.readShard(this.streamArn, shard, signal);
    }
  }

  private async refreshShards(streamArn: string, initial: boolean, signal: AbortSignal): Promise<void> {
    const listed: Shard[] = [];
    let start: string | undefined;
    do {
      const out = await this.opts.streams.send(
        new DescribeStreamCommand({ StreamArn: streamArn, ExclusiveStartShardId: start }),
        { abortSignal: signal },
      );
      const desc = out.StreamDescription;
      if (!desc) throw new PositionLostError(`DescribeStream returned no description for ${streamArn}`);
      if (desc.StreamStatus === 'DISABLED') throw new PositionLostError(`the stream ${streamArn} is disabled`);
      listed.push(...(desc.Shards ?? []));
      start = desc.LastEvaluatedShardId;
    } while (start);
    const ids = new Set<string>();
    for (const s of listed) {
      if (!s.ShardId) continue;
      ids.add(s.ShardId);
      if (this.shards.has(s.ShardId)) continue;
      const open = s.SequenceNumberRange?.EndingSequenceNumber === undefined;
      this.shards.set(s.ShardId, {
        id: s.ShardId,
        parentId: s.ParentShardId,
        fromLatest: initial,
        started: false,
        // At (re)start the history before now is not replayed: closed shards are skipped.
        drained: initial && !open,
      });
    }
    for (const [id, shard] of this.shards) {
      if (!ids.has(id) && (shard.drained || !shard.started)) this.shards.delete(id);
    }
    this.lastRefresh = Date.now();
    this.refreshWanted = false;
  }

  private async readShard(streamArn: string, shard: ShardState, signal: AbortSignal): Promise<void> {
    for (;;) {
      if (!shard.iterator) {
        shard.iterator = await this.newIterator(streamArn, shard, signal);
        if (!shard.iterator) {
          // A closed shard with nothing left to read.
          shard.drained = true;
          this.refreshWanted = true;
          return;
        }
      }
      let out;
      try {
        out = await this.opts.streams.send(new GetRecordsCommand({ ShardIterator: shard.iterator, Limit: RECORDS_PER_CALL }), {
          abortSignal: signal,
        });
      } catch (err) {
        if (errorName(err) !== 'ExpiredIteratorException') throw err;
        if (!shard.lastSequence && shard.fromLatest) {
          // An iterator taken at LATEST expired before any record came: what came since is unknown.
          throw new PositionLostError(`the iterator of shard ${shard.id} expired before it returned a record`);
        }
        // Resume after the last record read (or from the start of a shard read from TRIM_HORIZON).
        shard.iterator = undefined;
        continue;
      }
      const records = out.Records ?? [];
      if (records.length > 0) {
        shard.lastSequence = records[records.length - 1].dynamodb?.SequenceNumber ?? shard.lastSequence;
        this.opts.onRecords(records);
      }
      if (!out.NextShardIterator) {
        shard.iterator = undefined;
        shard.drained = true;
        this.refreshWanted = true;
        return;
      }
      shard.iterator = out.NextShardIterator;
      if (records.length === 0) return;
    }
  }

  private async newIterator(streamArn: string, shard: ShardState, signal: AbortSignal): Promise<string | undefined> {
    const type: ShardIteratorType = shard.lastSequence ? 'AFTER_SEQUENCE_NUMBER' : shard.fromLatest ? 'LATEST' : 'TRIM_HORIZON';
    const out = await this.opts.streams.send(
      new GetShardIteratorCommand({
        StreamArn: streamArn,
        ShardId: shard.id,
        ShardIteratorType: type,
        SequenceNumber: type === 'AFTER_SEQUENCE_NUMBER' ? shard.lastSequence : undefined,
      }),
      { abortSignal: signal },
    );
    return out.ShardIterator;
  }
}

export function errorName(err: unknown): string | undefined {
  return err && typeof err === 'object' && 'name' in err ? String((err as { name: unknown }).name) : undefined;
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
