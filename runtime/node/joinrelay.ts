/**
 * Joining an interactive session that runs in another process of the same
 * node (`tsh join` when the node has connection workers, node/workerpool.ts):
 * the joining channel is in one process (the joiner), the session's terminal in
 * another (the owner). The joiner's channel becomes a party of the session
 * through a relay of messages over the processes' IPC channels, routed by the
 * node's primary process: the owner sees a RelayStream where a local party has
 * its SSH channel, and the joiner a RemoteSession where a local join has the
 * NodeSession. What the party sees and may do is exactly what a local party
 * sees and may do: the same output, input, resize, session.join / session.leave
 * events (the joiner audits the join durably before it opens, as locally), and
 * the session's exit status when it ends.
 *
 * Messages (`jid` names one party's join, made by the joiner):
 *   joiner → owner: open {sid, login, user, remote}, in {data}, resize {cols, rows}, close
 *   owner → joiner: out {data, stderr}, exit {code | signal}, gone {why}
 * `gone` ends the joiner's channel with `why` on its stderr and exit status 1: the
 * session is not there (any more), or the process that ran it stopped.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { ServerChannel } from 'ssh2';
import type { EventFields } from '../events/filelog';
import { type Joinable, joinEventOf, type JoiningParty, type SessionDirectory } from './shared';

export type JoinMessage =
  | { t: 'join.open'; jid: string; sid: string; login: string; user: string; remote: string }
  | { t: 'join.in'; jid: string; data: Uint8Array }
  | { t: 'join.resize'; jid: string; cols: number; rows: number }
  | { t: 'join.close'; jid: string }
  | { t: 'join.out'; jid: string; data: Uint8Array; stderr?: boolean }
  | { t: 'join.exit'; jid: string; code?: number; signal?: string }
  | { t: 'join.gone'; jid: string; why: string };

/** Who reads a message: the process that runs the session, or the one whose channel joined it. */
export const JOINER_READS = new Set(['join.out', 'join.exit', 'join.gone']);

const isJid = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 64;

/** A relay message, checked (the channel is private, but what crosses it is still checked). */
export function asJoinMessage(m: unknown): JoinMessage | undefined {
  if (typeof m !== 'object' || m === null) return undefined;
  const x = m as Record<string, unknown>;
  if (typeof x.t !== 'string' || !x.t.startsWith('join.') || !isJid(x.jid)) return undefined;
  const str = (k: string) => typeof x[k] === 'string';
  const bytes = (k: string) => x[k] instanceof Uint8Array;
  switch (x.t) {
    case 'join.open':
      return str('sid') && str('login') && str('user') && str('remote') ? (x as JoinMessage) : undefined;
    case 'join.in':
      return bytes('data') ? (x as JoinMessage) : undefined;
    case 'join.out':
      return bytes('data') ? (x as JoinMessage) : undefined;
    case 'join.resize':
      return Number.isSafeInteger(x.cols) && Number.isSafeInteger(x.rows) ? (x as JoinMessage) : undefined;
    case 'join.exit':
      return (x.code === undefined || Number.isSafeInteger(x.code)) && (x.signal === undefined || str('signal')) ? (x as JoinMessage) : undefined;
    case 'join.gone':
      return str('why') ? (x as JoinMessage) : undefined;
    case 'join.close':
      return x as JoinMessage;
    default:
      return undefined;
  }
}

/**
 * The owner's side of a remote party: what NodeSession uses of a party's channel (write, stderr,
 * 'data', 'close', exit, end), carried to the joiner.
 */
class RelayStream extends EventEmitter {
  private ended = false;
  private status: { code?: number; signal?: string } = {};
  readonly stderr = { write: (d: Buffer | string) => this.out(d, true) };

  constructor(
    private readonly jid: string,
    private readonly send: (m: JoinMessage) => void,
  ) {
    super();
  }

  get writable(): boolean {
    return !this.ended;
  }

  write(d: Buffer | string): boolean {
    return this.out(d, false);
  }

  private out(d: Buffer | string, stderr: boolean): boolean {
    if (this.ended) return false;
    this.send({ t: 'join.out', jid: this.jid, data: typeof d === 'string' ? Buffer.from(d) : d, ...(stderr ? { stderr } : {}) });
    return true;
  }

  exit(codeOrSignal: number | string): void {
    this.status = typeof codeOrSignal === 'number' ? { code: codeOrSignal } : { signal: codeOrSignal };
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.send({ t: 'join.exit', jid: this.jid, ...this.status });
  }
}

/** The joiner's side: a session of another process, as `SessionDirectory.find` returns it. */
class RemoteSession implements Joinable {
  private readonly jid = randomUUID();

  constructor(
    private readonly relay: JoinRelay,
    private readonly sid: string,
    readonly login: string,
  ) {}

  joinEvent(party: Pick<JoiningParty, 'user' | 'remote'>): EventFields {
    return joinEventOf(this.sid, this.login, this.relay.serverId, party);
  }

  join(party: JoiningParty): void {
    this.relay.open(this.jid, this.sid, party);
  }

  resize(cols: number, rows: number): void {
    this.relay.send({ t: 'join.resize', jid: this.jid, cols, rows });
  }
}

/** One process's end of the relay: the parties that joined from here, and the relayed parties of the sessions that run here. */
export class JoinRelay {
  /** Channels of this process that joined a session elsewhere. */
  private readonly joined = new Map<string, JoiningParty>();
  /** Parties elsewhere of sessions that run here. */
  private readonly relayed = new Map<string, { stream: RelayStream; session: Joinable }>();

  constructor(
    /** Sends a message to the primary process's router (in the primary: routes it). */
    readonly send: (m: JoinMessage) => void,
    private readonly sessions: SessionDirectory,
    readonly serverId: string,
  ) {}

  /** The session `sid` of another process that runs as `login`, to join from here. */
  remoteSession(sid: string, login: string): Joinable {
    return new RemoteSession(this, sid, login);
  }

  /** @internal (RemoteSession) */
  open(jid: string, sid: string, party: JoiningParty): void {
    this.joined.set(jid, party);
    this.send({ t: 'join.open', jid, sid, login: party.login, user: party.user, remote: party.remote });
    party.stream.on('data', (d: Buffer) => this.send({ t: 'join.in', jid, data: d }));
    party.stream.once('close', () => {
      if (this.joined.delete(jid)) this.send({ t: 'join.close', jid });
      party.onLeave();
    });
  }

  /** Handles a relay message for this process. */
  receive(m: JoinMessage): void {
    if (JOINER_READS.has(m.t)) return this.toJoiner(m);
    const r = this.relayed.get(m.jid);
    switch (m.t) {
      case 'join.open':
        return this.accept(m);
      case 'join.in':
        r?.stream.emit('data', Buffer.from(m.data));
        return;
      case 'join.resize':
        r?.session.resize(m.cols, m.rows);
        return;
      case 'join.close':
        if (!r) return;
        this.relayed.delete(m.jid);
        r.stream.end();
        r.stream.emit('close');
        return;
    }
  }

  private accept(m: Extract<JoinMessage, { t: 'join.open' }>): void {
    const session = this.sessions.get(m.sid);
    if (!session) return this.send({ t: 'join.gone', jid: m.jid, why: `session ${m.sid} is not running on this node` });
    if (session.login !== m.login) return this.send({ t: 'join.gone', jid: m.jid, why: `session ${m.sid} runs as login "${session.login}": join it with that login` });
    const stream = new RelayStream(m.jid, this.send);
    this.relayed.set(m.jid, { stream, session });
    session.join({ user: m.user, login: m.login, remote: m.remote, stream: stream as unknown as ServerChannel, onLeave: () => this.relayed.delete(m.jid) });
  }

  private toJoiner(m: JoinMessage): void {
    const party = this.joined.get(m.jid);
    if (!party) return;
    const ch = party.stream;
    if (m.t === 'join.out') {
      if (ch.writable) (m.stderr ? ch.stderr : ch).write(Buffer.from(m.data));
      return;
    }
    // Still joined until the channel closes: its 'close' tells the owner, which audits the leave then.
    if (m.t === 'join.gone') {
      ch.stderr.write(`${m.why}\r\n`);
      ch.exit(1);
    } else if (m.t === 'join.exit') {
      if (m.signal) ch.exit(m.signal, false, '');
      else ch.exit(m.code ?? 0);
    }
    ch.end();
  }
}
