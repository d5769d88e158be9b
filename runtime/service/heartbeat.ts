/**
 * A service's presence (node or proxy): it announces itself (name, address,
 * labels) with a TTL, again about every half TTL, and at once when something
 * changes. A server that stops announcing disappears when its record expires.
 * Whether the last announce got through is its readiness check (`/readyz`).
 *
 * A failed announce is retried well before the next period, after a backoff
 * that doubles from `retryMinMs` up to `retryMaxMs`, so one lost heartbeat
 * (an auth restart, a busy auth server shedding load) does not leave the
 * record to expire. The period and each backoff are jittered (each wait is
 * 75–100% of its nominal value), so a fleet that started together, or that
 * failed together, does not come back to the auth server in one burst.
 */
import type { AuthClient, Lane } from '../auth/client';
import { Server } from '../auth/resources';
import type { ReadinessCheck } from '../instance/readiness';
import { jittered } from '../utils/jitter';
import { Logger } from '../utils/logger';

export interface HeartbeatOptions {
  /** First wait before retrying a failed announce. @default 1000 */
  retryMinMs?: number;
  /** Longest wait between retries; never more than the period. @default 60_000 */
  retryMaxMs?: number;
  /** Uniform in [0, 1): the jitter source. @default Math.random */
  random?: () => number;
}

/**
 * The nominal wait before the next announce after `failures` failed ones in a row: the period (half
 * the TTL) after a success, else a backoff that doubles from `retryMinMs`, capped at `retryMaxMs` and the period.
 */
export function heartbeatWaitMs(failures: number, ttlMs: number, opts: Pick<HeartbeatOptions, 'retryMinMs' | 'retryMaxMs'> = {}): number {
  const period = ttlMs / 2;
  if (failures === 0) return period;
  const min = opts.retryMinMs ?? 1000;
  const max = Math.min(opts.retryMaxMs ?? 60_000, period);
  return Math.min(max, min * 2 ** Math.min(failures - 1, 30));
}

/**
 * The shortest TTL whose periodic heartbeats go in the background lane: one that can wait out a held access
 * poll (auth/access/cache.ts ACCESS_POLL_WAIT_MS, 60 s; not imported, to keep this module light) and still
 * leave its record three quarters of the TTL. The default 600 s TTL does; the short TTLs tests set announce
 * on a connection of their own, as before.
 */
export const BACKGROUND_HEARTBEAT_MIN_TTL_MS = 240_000;

export class Heartbeat {
  private timer?: NodeJS.Timeout;
  private inFlight?: Promise<boolean>;
  private again = false;
  private stopped = false;
  /** Why the last announce failed; undefined once one got through. */
  private failure = 'no heartbeat has reached the auth server yet';
  /** Failed announces in a row. */
  private failures = 0;

  constructor(
    private readonly client: Pick<AuthClient, 'post'>,
    private readonly record: () => Server,
    private readonly ttlMs: number,
    private readonly log: Logger,
    private readonly opts: HeartbeatOptions = {},
  ) {}

  /**
   * Announces now; an announce asked for while one is in flight is sent right after it. Resolves whether
   * the last one got through. The periodic ones go in the client's background lane (auth/client.ts:
   * over the access poll's connection, after the poll held on it) when the TTL leaves room for that
   * wait (BACKGROUND_HEARTBEAT_MIN_TTL_MS); the first and those asked for, at once.
   */
  announce(lane: Lane = 'foreground'): Promise<boolean> {
    if (this.inFlight) {
      this.again = true;
      return this.inFlight;
    }
    this.inFlight = (async () => {
      let ok = false;
      do {
        this.again = false;
        const r = this.record();
        const expires = new Date(Date.now() + this.ttlMs).toISOString();
        try {
          const path = r.kind === 'proxy' ? '/v1/proxies' : `/v1/namespaces/${r.metadata.namespace}/nodes`;
          await this.client.post(path, { ...r, metadata: { ...r.metadata, expires } }, { lane });
          this.failure = '';
          this.failures = 0;
          ok = true;
        } catch (err) {
          this.failure = `the last heartbeat failed: ${(err as Error).message}`;
          this.failures++;
          ok = false;
          this.log.warn('heartbeat failed', { error: err, retry_in_ms: Math.round(this.nextWaitMs()) });
        }
      } while (this.again && !this.stopped);
      this.inFlight = undefined;
      return ok;
    })();
    return this.inFlight;
  }

  /** Holds while the last announce reached the auth server (checked again every half TTL). */
  readiness(name: string): ReadinessCheck {
    return { name, probe: async () => this.failure || undefined };
  }

  private nextWaitMs(): number {
    return heartbeatWaitMs(this.failures, this.ttlMs, this.opts);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      if (this.stopped) return;
      void this.announce(this.ttlMs >= BACKGROUND_HEARTBEAT_MIN_TTL_MS ? 'background' : 'foreground').finally(() => this.schedule());
    }, jittered(this.nextWaitMs(), this.opts.random));
  }

  async start(): Promise<void> {
    await this.announce();
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
