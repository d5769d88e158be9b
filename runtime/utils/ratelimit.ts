/**
 * Token-bucket rate limiting per key (a remote IP, a user name). Used on the
 * join and login endpoints so that guessing tokens or passwords is slow.
 */
import { LimitExceededError } from './errors';

export interface RateLimitOptions {
  /** Requests allowed at once. */
  burst: number;
  /** Tokens added back per second. */
  perSecond: number;
  /** How many keys to remember before the oldest are forgotten. */
  maxKeys?: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly opts: RateLimitOptions) {}

  /** Takes one token for `key` or throws LimitExceededError. */
  take(key: string, now = Date.now()): void {
    const b = this.buckets.get(key) ?? { tokens: this.opts.burst, at: now };
    b.tokens = Math.min(this.opts.burst, b.tokens + ((now - b.at) / 1000) * this.opts.perSecond);
    b.at = now;
    this.buckets.delete(key);
    this.buckets.set(key, b);
    if (this.buckets.size > (this.opts.maxKeys ?? 10_000)) {
      this.buckets.delete(this.buckets.keys().next().value as string);
    }
    if (b.tokens < 1) throw new LimitExceededError('too many requests, try again later');
    b.tokens -= 1;
  }
}
