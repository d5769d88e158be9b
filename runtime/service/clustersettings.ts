/**
 * The cluster configuration (`auth_service.session_recording`, …) as the auth
 * server has it now, for nodes and proxies to read where a connection
 * arrives: a change made on the auth server applies to the next connection
 * without restarting them. Reads that overlap share one request; when the
 * auth server does not answer in time the last value read is used (logged).
 */
import type { ClusterConfig } from '../auth/server';
import { Logger } from '../utils/logger';

/** How long a connection waits for the auth server's answer before the last known value is used. */
export const CLUSTER_SETTINGS_TIMEOUT_MS = 3000;

export class ClusterSettings {
  private pending?: Promise<ClusterConfig>;

  constructor(
    private readonly fetch: () => Promise<ClusterConfig>,
    private last: ClusterConfig,
    private readonly log: Logger,
    private readonly timeoutMs = CLUSTER_SETTINGS_TIMEOUT_MS,
  ) {}

  /** The value last read. */
  get latest(): ClusterConfig {
    return this.last;
  }

  /** The auth server's value now, or the last known one when it does not answer within the timeout. */
  current(): Promise<ClusterConfig> {
    if (this.pending) return this.pending;
    let timer: NodeJS.Timeout | undefined;
    const fallback = (why: string) => {
      this.log.warn('cannot read the cluster configuration; using the last known', { error: why, session_recording: this.last.session_recording });
      return this.last;
    };
    const read = this.fetch().then(
      (c) => (this.last = c),
      (err: Error) => fallback(err.message),
    );
    const late = new Promise<ClusterConfig>((resolve) => {
      timer = setTimeout(() => resolve(fallback(`no answer in ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    const p = Promise.race([read, late]).finally(() => {
      clearTimeout(timer);
      if (this.pending === p) this.pending = undefined;
    });
    this.pending = p;
    return p;
  }
}
