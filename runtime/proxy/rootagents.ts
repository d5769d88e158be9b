/**
 * A leaf cluster's proxy keeps reverse tunnels to the proxies of each root
 * cluster it trusts (trusted clusters, runtime/auth/trust.ts): one agent pool
 * per enabled trusted cluster, dialling its `tunnel_addr` with this proxy's
 * host certificate and checking the root proxy's against the root's host CA
 * kept for it (from the exchange, then as the root's proxies send it during
 * its rotations: leafca.ts). The pools follow the access data: a trusted
 * cluster disabled or removed has its tunnels closed at once, one added or
 * enabled gets them. A root host CA key added (a rotation's `init`) is
 * trusted from the next dial on, open tunnels going on; one removed (its
 * `standby`) closes the tunnels, which were checked with it, and dials again. The root tells each tunnel how many proxies it
 * has (clusterchannel.ts `discovery`), and the pool holds one to each.
 */
import type { Duplex } from 'node:stream';
import type { AccessCache, LoadedCluster } from '../auth/access/cache';
import type { Identity } from '../auth/identity';
import { parseAddr } from '../config/address';
import { Ports } from '../contract/ports';
import { AgentPool } from '../node/agentpool';
import { Logger } from '../utils/logger';
import { ClusterDial, ClusterRequest, clusterRequestSchema, readFrame } from './clusterchannel';

export interface RootAgentsOptions {
  access: AccessCache;
  identity: Identity;
  /** Serves a root cluster's request on a channel (discovery frames are taken here). */
  serve(stream: Duplex, root: string, req: ClusterDial): Promise<void>;
  log: Logger;
}

interface Running {
  pool: AgentPool;
  /** The tunnel address the pool was started for: a change restarts it. */
  tunnelAddr: string;
  /** The root's host CA keys the pool dials with now. */
  hostCAKeys: Buffer[];
  proxies: number;
}

export class RootAgents {
  private readonly running = new Map<string, Running>();
  private stopped = false;

  constructor(private readonly opts: RootAgentsOptions) {
    opts.access.onChange(() => this.sync());
  }

  start(): void {
    this.sync();
  }

  private sync(): void {
    if (this.stopped) return;
    const wanted = new Map(this.opts.access.clusters('trusted').filter((c) => c.tunnelAddr).map((c) => [c.name, c]));
    for (const [name, r] of this.running) {
      const c = wanted.get(name);
      const removed = c && r.hostCAKeys.some((k) => !c.hostCAKeys.some((w) => w.equals(k)));
      if (!c || c.tunnelAddr !== r.tunnelAddr || removed) {
        r.pool.stop();
        this.running.delete(name);
        const reason = !c ? 'it is no longer trusted or is disabled' : removed ? 'a host CA key they were checked with is no longer trusted' : 'its tunnel address changed';
        this.opts.log.info('closed the reverse tunnels to a trusted cluster', { cluster: name, reason });
      } else {
        r.hostCAKeys = c.hostCAKeys;
      }
    }
    for (const [name, c] of wanted) if (!this.running.has(name)) this.run(c);
  }

  private run(c: LoadedCluster): void {
    const { opts } = this;
    const entry: Running = { tunnelAddr: c.tunnelAddr!, hostCAKeys: c.hostCAKeys, proxies: 1, pool: undefined as unknown as AgentPool };
    entry.pool = new AgentPool({
      agent: {
        proxy: parseAddr(c.tunnelAddr!, Ports.proxyTunnel),
        identity: opts.identity,
        peerCluster: c.name,
        hostCAKeys: async () => entry.hostCAKeys,
        serve: (stream) => void this.serve(stream, c.name, entry),
        log: opts.log.child(`root:${c.name}`),
      },
      countProxies: async () => entry.proxies,
      log: opts.log,
    });
    this.running.set(c.name, entry);
    entry.pool.start();
    opts.log.info('opening reverse tunnels to a trusted cluster', { cluster: c.name, tunnel_addr: c.tunnelAddr });
  }

  private async serve(stream: Duplex, root: string, entry: Running): Promise<void> {
    let req: ClusterRequest;
    try {
      ({ value: req } = await readFrame(stream, clusterRequestSchema, `a channel from cluster ${root}`));
    } catch (err) {
      this.opts.log.info('dropped a channel from the root cluster', { cluster: root, error: (err as Error).message });
      return void stream.destroy();
    }
    if (req.type !== 'discovery') return this.opts.serve(stream, root, req);
    stream.end();
    if (entry.proxies === req.proxies) return;
    entry.proxies = req.proxies;
    entry.pool.refreshNow();
  }

  stop(): void {
    this.stopped = true;
    for (const r of this.running.values()) r.pool.stop();
    this.running.clear();
  }
}
