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

/** An attempt that holds a token of a failures-only limit until it is decided (RateLimiter.reserve). */
export interface Reservation {
  /** It succeeded: the token goes back. */
  succeed(): void;
  /** It failed: the token stays spent. */
  fail(): void;
}

export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  /** Per key, the reservations not yet decided and who waits for one to be. */
  private readonly pending = new Map<string, { count: number; waiters: (() => void)[] }>();

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

  /**
   * For limits that count only failures: takes a token for `key` for an attempt whose outcome is
   * not known yet; the attempt gives it back if it succeeds. When none is left but attempts of
   * `key` are still undecided, waits for them (a success frees a token) instead of refusing, so
   * concurrent good attempts never crowd each other out, while failures alone, however concurrent,
   * never get more than the limit. Throws LimitExceededError when none is left and none is pending.
   */
  async reserve(key: string): Promise<Reservation> {
    for (;;) {
      try {
        this.take(key);
        break;
      } catch (err) {
        const p = this.pending.get(key);
        if (!p) throw err;
        await new Promise<void>((resolve) => p.waiters.push(resolve));
      }
    }
    const p = this.pending.get(key) ?? { count: 0, waiters: [] };
    p.count++;
    this.pending.set(key, p);
    let decided = false;
    const decide = (success: boolean) => {
      if (decided) return;
      decided = true;
      if (success) this.giveBack(key);
      p.count--;
      if (p.count === 0) this.pending.delete(key);
      for (const wake of p.waiters.splice(0)) wake();
    };
    return { succeed: () => decide(true), fail: () => decide(false) };
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
