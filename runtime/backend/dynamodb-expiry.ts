/**
 * Prompt removal of expired DynamoDB items. DynamoDB's own TTL deletes an expired item only
 * eventually (up to days later on AWS, ~10 s after expiry in DynamoDB Local), and watchers expect
 * a Delete event when an item expires. So every backend instance keeps the expiry of each item
 * that has one (learned from the stream's Put events, and from a full scan at start, after the
 * stream position was lost, and every `fullScanPeriodMs`), and once it has passed deletes the item
 * with a condition that its `Expires` is still the one it knew and is past. With several instances
 * exactly one delete succeeds, so the stream carries exactly one REMOVE (one Delete event); an
 * item rewritten meanwhile with another expiry is left alone.
 *
 * Memory is bounded: at most `MAX_TRACKED` expiries are kept; beyond that, items are left to
 * DynamoDB's TTL and to the lazy delete of `get`, and a warning is logged.
 */

import type { Logger } from '../utils/logger';

export const MAX_TRACKED = 100_000;
/** Deletes attempted per tick, so one tick never floods the table. */
const MAX_DELETES_PER_TICK = 500;
/** The longest backoff after failed sweeps, in ticks. */
const MAX_SKIPPED_TICKS = 30;

export interface ExpirySweeperOptions {
  /** Deletes `key` if its Expires still equals `expiresSec` and has passed; resolves also when the condition fails. */
  remove(key: string, expiresSec: number): Promise<void>;
  /** Visits the key and Expires of every item that has one. */
  scan(visit: (key: string, expiresSec: number) => void): Promise<void>;
  /** How often passed expiries are looked for. */
  tickMs: number;
  /** How often the whole table is scanned for expiries. */
  fullScanPeriodMs: number;
  nowMs(): number;
  log: Logger;
}

export class ExpirySweeper {
  private readonly expiries = new Map<string, number>();
  private scanWanted = true;
  private lastScan = 0;
  private warnedFull = false;
  /** Failed sweeps in a row; ticks are skipped after them (backoff), and only the first is logged. */
  private failures = 0;
  private skipTicks = 0;
  private closed = false;
  private running?: Promise<void>;
  private readonly timer: NodeJS.Timeout;
  /** The first sweep (full scan included) has ended, well or not. */
  readonly firstSweep: Promise<void>;

  constructor(private readonly opts: ExpirySweeperOptions) {
    this.timer = setInterval(() => this.tick(), opts.tickMs);
    this.timer.unref();
    this.tick();
    this.firstSweep = this.running ?? Promise.resolve();
  }

  /** Records the expiry an item was written with (undefined: it has none). */
  track(key: string, expiresSec: number | undefined): void {
    if (expiresSec === undefined) {
      this.expiries.delete(key);
      return;
    }
    if (!this.expiries.has(key) && this.expiries.size >= MAX_TRACKED) {
      if (!this.warnedFull) {
        this.warnedFull = true;
        this.opts.log.warn('too many items with a TTL to track; the rest expire through DynamoDB TTL only', {
          tracked: MAX_TRACKED,
        });
      }
      return;
    }
    this.expiries.set(key, expiresSec);
  }

  forget(key: string): void {
    this.expiries.delete(key);
  }

  /** Asks for a full scan at the next tick (after the stream position was lost). */
  rescan(): void {
    this.scanWanted = true;
  }

  get size(): number {
    return this.expiries.size;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.running;
  }

  private tick(): void {
    if (this.closed || this.running) return;
    if (this.skipTicks > 0) {
      this.skipTicks--;
      return;
    }
    this.running = this.sweep()
      .then(() => {
        if (this.failures > 0) this.opts.log.info('removing expired items works again');
        this.failures = 0;
      })
      .catch((err: unknown) => {
        if (this.closed) return;
        if (++this.failures === 1) this.opts.log.warn('removing expired items failed; retrying', { error: String(err) });
        this.skipTicks = Math.min(2 ** this.failures, MAX_SKIPPED_TICKS);
      })
      .finally(() => (this.running = undefined));
  }

  private async sweep(): Promise<void> {
    if (this.scanWanted || this.opts.nowMs() - this.lastScan >= this.opts.fullScanPeriodMs) {
      this.scanWanted = false;
      try {
        await this.opts.scan((key, expiresSec) => this.track(key, expiresSec));
        this.lastScan = this.opts.nowMs();
      } catch (err) {
        this.scanWanted = true;
        throw err;
      }
    }
    const now = this.opts.nowMs();
    const due: Array<[string, number]> = [];
    for (const [key, sec] of this.expiries) {
      if (sec * 1000 <= now) due.push([key, sec]);
      if (due.length >= MAX_DELETES_PER_TICK) break;
    }
    for (const [key, sec] of due) {
      if (this.closed) return;
      // Forget first: the stream reports the outcome (a Delete, or the rewrite that beat us).
      if (this.expiries.get(key) === sec) this.expiries.delete(key);
      try {
        await this.opts.remove(key, sec);
      } catch (err) {
        if (!this.expiries.has(key)) this.expiries.set(key, sec);
        throw err;
      }
    }
  }
}
