/**
 * Presence: the heartbeat records of nodes, proxies and auth servers. Each
 * record expires (600 s by default) unless its server announces itself again,
 * so a stopped server disappears from `tctl nodes ls` on its own; a node an
 * administrator registers (an OpenSSH server) stays until it is removed.
 */
import { Backend } from '../backend';
import { DEFAULT_NAMESPACE, Keys, rangeEnd } from '../contract/keys';
import { Server } from './resources';

export const SERVER_ANNOUNCE_TTL_MS = 600_000;

/** formats.md §3.4: ServerAnnounceTTL. `TELEPORT_ANNOUNCE_TTL` (seconds, 1–600) shortens it for tests. */
export function announceTtlMs(env: NodeJS.ProcessEnv = process.env): number {
  const s = Number(env.TELEPORT_ANNOUNCE_TTL);
  return Number.isFinite(s) && s >= 1 && s <= 600 ? s * 1000 : SERVER_ANNOUNCE_TTL_MS;
}

type Kind = Server['kind'];

function keyOf(kind: Kind, name: string, namespace = DEFAULT_NAMESPACE): string {
  if (kind === 'node') return Keys.node(namespace, name);
  if (kind === 'proxy') return Keys.proxy(name);
  return Keys.authServer(name);
}

function prefixOf(kind: Kind, namespace = DEFAULT_NAMESPACE): string {
  if (kind === 'node') return Keys.nodes(namespace);
  if (kind === 'proxy') return Keys.proxies();
  return Keys.authServers();
}

export class Presence {
  constructor(private readonly backend: Backend) {}

  /**
   * Writes a heartbeat. It expires when the record asks (`metadata.expires`, at most the announce TTL
   * from now), else after the announce TTL.
   */
  async upsert(server: Server): Promise<void> {
    const now = Date.now();
    const asked = server.metadata.expires ? Date.parse(server.metadata.expires) : NaN;
    const expires = new Date(asked > now && asked <= now + SERVER_ANNOUNCE_TTL_MS ? asked : now + SERVER_ANNOUNCE_TTL_MS);
    const record: Server = { ...server, metadata: { ...server.metadata, expires: expires.toISOString() } };
    await this.backend.put({
      key: keyOf(server.kind, server.metadata.name, server.metadata.namespace),
      value: Buffer.from(JSON.stringify(record)),
      expires,
    });
  }

  /**
   * Registers a node an administrator describes (`tctl create`, e.g. an OpenSSH server): kept until
   * `metadata.expires`, or until removed (`tctl rm node/<name>`) when it names none.
   */
  async register(server: Server): Promise<void> {
    const expires = server.metadata.expires ? new Date(server.metadata.expires) : undefined;
    await this.backend.put({ key: keyOf(server.kind, server.metadata.name, server.metadata.namespace), value: Buffer.from(JSON.stringify(server)), ...(expires ? { expires } : {}) });
  }

  async list(kind: Kind, namespace = DEFAULT_NAMESPACE): Promise<Server[]> {
    const prefix = prefixOf(kind, namespace);
    const items = await this.backend.getRange(prefix, rangeEnd(prefix));
    return items.map((i) => JSON.parse(i.value.toString()) as Server);
  }

  async delete(kind: Kind, name: string, namespace = DEFAULT_NAMESPACE): Promise<void> {
    await this.backend.delete(keyOf(kind, name, namespace));
  }
}
