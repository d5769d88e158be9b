/**
 * Which node a `proxy:host:port` request means (formats.md §4.2): a node UUID,
 * a node's hostname, its address IP, or an IP the host name resolves to, with
 * the port checked when one was given. One more form than Teleport: a name
 * `<nodename>.<cluster>` or `<uuid>.<cluster>` (principals of the node's host
 * certificate) means that node, so an ssh_config `Host *.<cluster>` block
 * works without DNS records. A node behind NAT (`use_tunnel`) has no address:
 * only its UUID or name match it, on any port. No match dials the host directly.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { Server } from '../auth/resources';
import { Ports } from '../contract/ports';
import { BadParameterError, NotFoundError } from '../utils/errors';
import { Logger } from '../utils/logger';

export interface HostPort {
  host: string;
  port: number;
}

/** `addr` is undefined for a node reached only through its reverse tunnel. */
export type Resolution = { kind: 'node'; node: Server; addr?: HostPort } | { kind: 'direct'; addr: HostPort };

export interface ResolveOptions {
  clusterName: string;
  /** The addresses `host` resolves to in DNS (empty when it does not, or is an IP). */
  resolvedIPs: string[];
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUUID(s: string): boolean {
  return UUID_RE.test(s);
}

/** `ip:port` or `[ip6]:port` of a node record; undefined when it does not parse. */
export function splitAddr(addr: string): HostPort | undefined {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(addr) ?? /^([^:]+):(\d{1,5})$/.exec(addr);
  if (!m || Number(m[2]) > 65535) return undefined;
  return { host: m[1], port: Number(m[2]) };
}

function describe(n: Server): string {
  return `${n.metadata.name} (${n.spec.hostname} at ${n.spec.use_tunnel ? 'a reverse tunnel' : n.spec.addr})`;
}

/** Picks the node `host`/`port` names, or says to dial it directly; throws NotFound/BadParameter. */
export function resolveTarget(target: HostPort, nodes: Server[], opts: ResolveOptions): Resolution {
  const host = target.host.toLowerCase();
  const suffix = `.${opts.clusterName.toLowerCase()}`;
  const bare = host.endsWith(suffix) ? host.slice(0, -suffix.length) : undefined;
  const parsed = nodes
    .map((node) => ({ node, addr: node.spec.use_tunnel ? undefined : splitAddr(node.spec.addr) }))
    .filter((n) => n.node.spec.use_tunnel || n.addr);

  const uuid = isUUID(host) ? host : bare !== undefined && isUUID(bare) ? bare : undefined;
  if (uuid) {
    const hit = parsed.find((n) => n.node.metadata.name.toLowerCase() === uuid);
    if (!hit) throw new NotFoundError(`no node with UUID ${uuid} in cluster ${opts.clusterName}`);
    return { kind: 'node', node: hit.node, addr: hit.addr };
  }

  const matches = parsed.filter(({ node, addr }) => {
    const name = node.spec.hostname.toLowerCase();
    if (!addr) return host === name || bare === name;
    const named = host === name || bare === name || host === addr.host || opts.resolvedIPs.includes(addr.host);
    return named && (target.port === 0 || target.port === addr.port);
  });
  if (matches.length > 1) {
    throw new BadParameterError(
      `ambiguous host "${target.host}": it matches ${matches.length} nodes in cluster ${opts.clusterName}: ${matches.map((m) => describe(m.node)).join(', ')}; name the node by its UUID or by IP:port`,
    );
  }
  if (matches.length === 1) return { kind: 'node', node: matches[0].node, addr: matches[0].addr };
  return { kind: 'direct', addr: { host: target.host, port: target.port || Ports.node } };
}

/** The IPs `host` resolves to; none when it is an IP itself, does not resolve, or DNS is slower than `timeoutMs`. */
export async function lookupIPs(host: string, timeoutMs: number): Promise<string[]> {
  if (isIP(host)) return [];
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string[]>((resolve) => (timer = setTimeout(() => resolve([]), timeoutMs)));
  const found = lookup(host, { all: true }).then(
    (r) => r.map((a) => a.address),
    () => [] as string[],
  );
  try {
    return await Promise.race([found, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const MAX_NAMESPACES = 64;

/** The node list of each namespace, fetched at most once per `ttlMs`; a failed fetch falls back to the last list. */
export class NodeCache {
  private readonly entries = new Map<string, { at: number; nodes: Server[] }>();
  private readonly inflight = new Map<string, Promise<Server[]>>();

  constructor(
    private readonly fetch: (namespace: string) => Promise<Server[]>,
    private readonly ttlMs: number,
    private readonly log: Logger,
  ) {}

  /** The namespace's nodes, from a list at most `maxAgeMs` old (default: the cache's TTL). */
  async list(namespace: string, maxAgeMs = this.ttlMs): Promise<Server[]> {
    const cached = this.entries.get(namespace);
    if (cached && Date.now() - cached.at < maxAgeMs) return cached.nodes;
    let pending = this.inflight.get(namespace);
    if (!pending) {
      pending = this.fetch(namespace)
        .then((nodes) => {
          if (this.entries.size >= MAX_NAMESPACES) this.entries.clear();
          this.entries.set(namespace, { at: Date.now(), nodes });
          return nodes;
        })
        .catch((err: Error) => {
          if (!cached) throw err;
          this.log.warn('cannot refresh the node list, using the last one', { namespace, error: err });
          return cached.nodes;
        })
        .finally(() => this.inflight.delete(namespace));
      this.inflight.set(namespace, pending);
    }
    return pending;
  }
}
