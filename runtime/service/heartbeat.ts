/**
 * A service's presence (node or proxy): it announces itself (name, address,
 * labels) with a TTL, again at half the TTL, and at once when something
 * changes. A server that stops announcing disappears when its record expires.
 * Whether the last announce got through is its readiness check (`/readyz`).
 */
import { AuthClient } from '../auth/client';
import { Server } from '../auth/resources';
import type { ReadinessCheck } from '../instance/readiness';
import { Logger } from '../utils/logger';


export class Heartbeat {
  private timer?: NodeJS.Timeout;
  private inFlight?: Promise<void>;
  private again = false;
  private stopped = false;
  /** Why the last announce failed; undefined once one got through. */
  private failure = 'no heartbeat has reached the auth server yet';

  constructor(
    private readonly client: AuthClient,
    private readonly record: () => Server,
    private readonly ttlMs: number,
    private readonly log: Logger,
  ) {}

  /** Announces now; an announce asked for while one is in flight is sent right after it. */
  announce(): Promise<void> {
    if (this.inFlight) {
      this.again = true;
      return this.inFlight;
    }
    this.inFlight = (async () => {
      do {
        this.again = false;
        const r = this.record();
        const expires = new Date(Date.now() + this.ttlMs).toISOString();
        try {
          const path = r.kind === 'proxy' ? '/v1/proxies' : `/v1/namespaces/${r.metadata.namespace}/nodes`;
          await this.client.post(path, { ...r, metadata: { ...r.metadata, expires } });
          this.failure = '';
        } catch (err) {
          this.failure = `the last heartbeat failed: ${(err as Error).message}`;
          this.log.warn('heartbeat failed', { error: err });
        }
      } while (this.again && !this.stopped);
      this.inFlight = undefined;
    })();
    return this.inFlight;
  }

  /** Holds while the last announce reached the auth server (checked again every half TTL). */
  readiness(name: string): ReadinessCheck {
    return { name, probe: async () => this.failure || undefined };
  }

  async start(): Promise<void> {
    await this.announce();
    const tick = () => {
      if (this.stopped) return;
      void this.announce().finally(() => {
        if (!this.stopped) this.timer = setTimeout(tick, this.ttlMs / 2);
      });
    };
    this.timer = setTimeout(tick, this.ttlMs / 2);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
