/**
 * The interactive sessions running on this node that others may join
 * (`tsh join <session id>`, Teleport's shared sessions), and their records in
 * the auth server's list of active sessions (which `tsh join` and the web UI
 * read): published when a session starts, when a party joins or leaves, and
 * every ACTIVE_SESSION_REFRESH_MS while it runs (the record expires if the
 * node stops), removed when it ends. A session that runs in another process
 * of this node (a connection worker, node/workerpool.ts) is found through
 * `remote` and joined through a relay (node/joinrelay.ts).
 */
import type { AuthClient } from '../auth/client';
import { Logger } from '../utils/logger';

/** How often a running session's record is renewed; it expires after ACTIVE_SESSION_TTL_MS without. */
export const ACTIVE_SESSION_REFRESH_MS = 30_000;
export const ACTIVE_SESSION_TTL_MS = 90_000;

/** A session as the auth server lists it (Teleport's session.Session, trimmed). */
export interface ActiveSession {
  id: string;
  namespace: string;
  server_id: string;
  server_hostname: string;
  login: string;
  parties: { id: string; user: string; remote_addr: string; joined: string }[];
  terminal_params: { w: number; h: number };
  created: string;
}

/** A running interactive session another channel can join. */
export interface Joinable {
  readonly login: string;
  /** The `session.join` audit event of `party`, sent (durably) before it joins. */
  joinEvent(party: Pick<JoiningParty, 'user' | 'remote'>): import('../events/filelog').EventFields;
  /** Adds a party; the session writes its output to `stream` and takes its input. */
  join(party: JoiningParty): void;
  /** A party resized its terminal: the shared terminal takes the size (the last resize wins). */
  resize(cols: number, rows: number): void;
}

/** The `session.join` event of `party` joining session `sid`, which runs as `login` on node `serverId`. */
export function joinEventOf(sid: string, login: string, serverId: string, party: Pick<JoiningParty, 'user' | 'remote'>): import('../events/filelog').EventFields {
  return { event: 'session.join', sid, user: party.user, login, server_id: serverId, namespace: 'default', 'addr.remote': party.remote };
}

export interface JoiningParty {
  user: string;
  /** The login the joining connection logged in with (a session is joined with its own login only). */
  login: string;
  remote: string;
  stream: import('ssh2').ServerChannel;
  /** Called when the party's channel is gone. */
  onLeave(): void;
}

export class SessionDirectory {
  private readonly sessions = new Map<string, { session: Joinable; record: () => ActiveSession; timer: NodeJS.Timeout }>();

  constructor(
    private readonly client: Pick<AuthClient, 'put' | 'delete'> | undefined,
    private readonly log: Logger,
  ) {}

  /** Finds a joinable session running in another process of this node (set when the node has connection workers). */
  remote?: (sid: string) => Promise<Joinable | undefined>;

  /** A session running in this process. */
  get(sid: string): Joinable | undefined {
    return this.sessions.get(sid)?.session;
  }

  /** A session running on this node: in this process, or in another through `remote`. */
  async find(sid: string): Promise<Joinable | undefined> {
    return this.get(sid) ?? (await this.remote?.(sid));
  }

  /** Lists `session` for joining, and keeps its record published while it runs. */
  add(sid: string, session: Joinable, record: () => ActiveSession): void {
    const timer = setInterval(() => this.publish(sid), ACTIVE_SESSION_REFRESH_MS);
    timer.unref();
    this.sessions.set(sid, { session, record, timer });
    this.publish(sid);
  }

  /** The parties changed: the record is published again. */
  changed(sid: string): void {
    this.publish(sid);
  }

  remove(sid: string): void {
    const entry = this.sessions.get(sid);
    if (!entry) return;
    clearInterval(entry.timer);
    this.sessions.delete(sid);
    this.client?.delete(`/v1/namespaces/default/sessions/${sid}/active`).catch((err: Error) => this.log.debug('cannot remove an active session record', { sid, error: err.message }));
  }

  private publish(sid: string): void {
    const entry = this.sessions.get(sid);
    if (!entry || !this.client) return;
    this.client.put(`/v1/namespaces/default/sessions/${sid}/active`, entry.record()).catch((err: Error) => this.log.warn('cannot publish an active session', { sid, error: err.message }));
  }

  close(): void {
    for (const sid of [...this.sessions.keys()]) this.remove(sid);
  }
}
