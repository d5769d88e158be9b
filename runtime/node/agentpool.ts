/**
 * A reverse tunnel to every proxy of the cluster (Teleport's agent pool). The
 * proxies usually sit behind one address (a load balancer), so the pool runs
 * as many agents as the cluster has proxies (its `/v1/proxies` heartbeats,
 * re-read every POOL_REFRESH_MS) and each agent keeps only a proxy no other
 * agent of the pool holds (told apart by the proxy's host certificate): one
 * that lands on a taken proxy drops that connection and dials again.
 */
import { Logger } from '../utils/logger';
import { TunnelAgent, TunnelAgentOptions } from './tunnel';

export const POOL_REFRESH_MS = 30_000;

export interface AgentPoolOptions {
  /** Everything an agent needs but its claim on a proxy. */
  agent: Omit<TunnelAgentOptions, 'claim' | 'release'>;
  /** How many proxies the cluster has now. */
  countProxies: () => Promise<number>;
  log: Logger;
  /** @default POOL_REFRESH_MS */
  refreshMs?: number;
}

export class AgentPool {
  private readonly agents: TunnelAgent[] = [];
  /** Proxy host certificate key id → the agent holding a tunnel to it. */
  private readonly held = new Map<string, TunnelAgent>();
  private timer?: NodeJS.Timeout;
  private stopped = false;

  constructor(private readonly opts: AgentPoolOptions) {}

  /** Whether a tunnel to some proxy is up. */
  get connected(): boolean {
    return this.agents.some((a) => a.connected);
  }

  /** The proxies (their host certificate key ids) with a tunnel up now. */
  proxies(): string[] {
    return [...this.held.keys()];
  }

  start(): void {
    this.resize(1);
    void this.refresh();
  }

  /** Counts the proxies again now (the count changed), instead of at the next refresh. */
  refreshNow(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    void this.refresh();
  }

  private async refresh(): Promise<void> {
    try {
      this.resize(Math.max(1, await this.opts.countProxies()));
    } catch (err) {
      this.opts.log.debug('cannot count the proxies; keeping the agents as they are', { error: (err as Error).message });
    }
    if (!this.stopped) this.timer = setTimeout(() => void this.refresh(), this.opts.refreshMs ?? POOL_REFRESH_MS);
  }

  /** Runs `n` agents: adds the missing ones, stops extra ones (those without a tunnel first). */
  private resize(n: number): void {
    if (this.stopped) return;
    while (this.agents.length < n) {
      const agent: TunnelAgent = new TunnelAgent({
        ...this.opts.agent,
        claim: (id) => {
          const holder = this.held.get(id);
          if (holder && holder !== agent) return false;
          this.held.set(id, agent);
          return true;
        },
        release: (id) => {
          if (this.held.get(id) === agent) this.held.delete(id);
        },
      });
      this.agents.push(agent);
      agent.start();
    }
    while (this.agents.length > n) {
      const idle = this.agents.findIndex((a) => !a.connected);
      const [extra] = this.agents.splice(idle >= 0 ? idle : this.agents.length - 1, 1);
      extra.stop();
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const a of this.agents.splice(0)) a.stop();
  }
}
