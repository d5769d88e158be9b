/**
 * A child process of bench/tunnel-agents.ts, forked with an IPC channel: runs
 * one real reverse-tunnel agent (runtime/node/tunnel.ts TunnelAgent) per host
 * identity it is sent, all to one proxy, and reports how many of its tunnels
 * are up whenever that number changes. These agents stand for idle nodes: a
 * channel the proxy opens through one is closed at once. The process stops
 * its agents and exits when its parent goes away (the IPC channel closes).
 *
 * Protocol: the child sends `{ up: 0 }` once loaded; the parent sends one
 * AgentHostInit; the child then sends `{ up: n }` on every change.
 */
import { TunnelAgent } from '../runtime/node/tunnel';
import type { HostPort } from '../runtime/proxy/resolve';
import { logger, setLogLevel } from '../runtime/utils/logger';

/** What an agent needs of a node's identity: its host key (PEM) and host certificate for `<uuid>.<cluster>`. */
export interface AgentIdentity {
  username: string;
  clusterName: string;
  sshKey: string;
  sshCert: string;
}

export interface AgentHostInit {
  proxy: HostPort;
  /** The cluster's host CA public key blobs, base64: the proxy's certificate must be signed by one. */
  hostCAs: string[];
  identities: AgentIdentity[];
}

export interface AgentHostReport {
  up: number;
}

/** How often the agents' state is looked at. */
const POLL_MS = 100;

function main(): void {
  // The agents' reconnect warnings while the proxy drops connections over its max_startups are expected here.
  setLogLevel('error');
  const send = (r: AgentHostReport) => process.send?.(r);
  const agents: TunnelAgent[] = [];
  let timer: NodeJS.Timeout | undefined;
  process.on('disconnect', () => {
    clearInterval(timer);
    for (const a of agents) a.stop();
    process.exit(0);
  });
  process.once('message', (init: AgentHostInit) => {
    const hostCAs = init.hostCAs.map((k) => Buffer.from(k, 'base64'));
    const log = logger('bench:agent');
    for (const identity of init.identities) {
      const agent = new TunnelAgent({
        proxy: init.proxy,
        identity,
        hostCAKeys: async () => hostCAs,
        serve: (stream) => stream.destroy(),
        log,
      });
      agents.push(agent);
      agent.start();
    }
    let last = 0;
    timer = setInterval(() => {
      const up = agents.reduce((n, a) => n + (a.connected ? 1 : 0), 0);
      if (up !== last) send({ up: (last = up) });
    }, POLL_MS);
  });
  send({ up: 0 });
}

main();
