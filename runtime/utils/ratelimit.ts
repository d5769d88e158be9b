/**
 * Token-bucket rate limiting per key (a remote IP, a user name). Used on the
 * join and login endpoints so that guessing tokens or passwords is slow.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { LimitExceededError } from './errors';
import { unmapIPv4 } from './ip';

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

  /** Returns a token taken for `key` (for limits that count only failures: take first, give back on success). */
  giveBack(key: string): void {
    const b = this.buckets.get(key);
    if (b) b.tokens = Math.min(this.opts.burst, b.tokens + 1);
  }
}

/**
 * The rate limit key of a client address: an IPv4 address as it is (also
 * when IPv4-mapped, `::ffff:a.b.c.d`), an IPv6 address by its /64, the
 * smallest block an ISP hands out, so one host cannot get fresh buckets by
 * changing its interface ID.
 */
export function addressKey(addr: string): string {
  const a = unmapIPv4(addr.trim().toLowerCase());
  if (isIPv4(a) || !isIPv6(a)) return a;
  const [head, tail = ''] = a.split('::');
  const groups = (s: string) => (s ? s.split(':') : []);
  const h = groups(head);
  const t = groups(tail);
  if (t.length > 0 && t[t.length - 1].includes('.')) t.splice(t.length - 1, 1, '0', '0'); // embedded IPv4 in the low 32 bits
  const full = a.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return full.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':') + '::/64';
}
