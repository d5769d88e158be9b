/**
 * The node's connection workers: processes that run the SSH transport (key
 * exchange, packet crypto, writes) and the sessions of the connections the
 * node's primary process hands them, so that a busy node's session setup uses
 * more than one core (`ssh_service.workers`; `auto`: one per core, up to 8).
 *
 * The primary process accepts every TCP connection and decides there what is
 * one per node: `max_connections` and the startups limits (at accept, before
 * a worker sees anything), the login grace time (the primary tells the worker
 * to close a connection that did not authenticate in time), `max_users` (a
 * worker asks before it lets a user in), proxy hellos (verified and their
 * replay record kept here), the audit spool (a worker's events are written
 * here, and a session that must be audited first starts only once the primary
 * said the event is on disk), the active sessions published to the auth
 * server, and joins (a party that joins a session of another process is
 * relayed, joinrelay.ts). A worker decides access from the copy of the access
 * data the primary polled and pushes to it on every change, with the node's
 * labels and host key pushed the same way; it writes its sessions' recordings
 * itself and the primary uploads them.
 *
 * Workers start when the node is busy (WORKER_START_PENDING connections are
 * setting up at once), not before: an idle node costs what it did; one that
 * has had no connection for WORKER_IDLE_MS exits. While no
 * worker is ready, and for connections through a reverse tunnel (not sockets),
 * the primary serves as it always did. A connection goes to the ready worker
 * with the fewest open connections. The primary keeps its copy of each socket it
 * handed on (unread) until the worker says the connection closed: the
 * listener's connection count, `max_connections` and a drain (USR2, QUIT) count
 * it as before (and a timer keeps the primary alive while workers hold
 * connections: unread sockets do not). A worker's recordings are held from the
 * primary's uploader until the worker says they are complete. A node that stops
 * asks its workers to end their sessions and waits for their last events. A worker that dies takes its connections with it (their
 * sessions end, as when a connection drops); the primary releases what they
 * held and starts another when the node is busy again. When the primary
 * exits, even by SIGKILL, each worker sees its channel close and ends its
 * connections.
 */
import { type ChildProcess, fork } from 'node:child_process';
import * as fs from 'node:fs';
import type * as net from 'node:net';
import * as path from 'node:path';
import type { AccessSnapshot } from '../auth/access/feed';
import type { EventFields } from '../events/filelog';
import type { SessionSink } from '../events/sessionsink';
import { nodeSessionsActive, nodeSessionsStarted } from '../service/metrics';
import { type Level, type Logger, logLevel } from '../utils/logger';
import { AuditUnavailableError } from './auditgate';
import { checkSessionId } from '../recordings/limits';
import { holdRecording } from '../recordings/recorder';
import { asJoinMessage, JOINER_READS, JoinRelay, type JoinMessage } from './joinrelay';
import { packageRoot } from './native';
import type { NodeServer, NodeServerOptions, SessionRecordingMode } from './server';
import type { ActiveSession, SessionDirectory } from './shared';

/** Connections setting up at once that make a node busy enough to start its workers. */
export const WORKER_START_PENDING = 3;
/** A worker without a connection for this long exits (about 100 MiB each comes back); the next busy moment starts another. */
export const WORKER_IDLE_MS = 5 * 60_000;
/** How long a stopping node waits for its workers to end their sessions and report them. */
const WORKER_STOP_MS = 10_000;
/** Workers that die before they are ready, in a row, after which none is started for START_BACKOFF_MS. */
const START_FAILURES = 3;
const START_BACKOFF_MS = 60_000;

/** What a worker is told once, at its start: the settings of the node's SSH server. */
export interface WorkerInit {
  t: 'init';
  id: number;
  server: Pick<
    NodeServerOptions,
    'hostKey' | 'hostCert' | 'algorithms' | 'serverId' | 'hostname' | 'clusterName' | 'permitUserEnv' | 'pam' | 'idleTimeoutMs' | 'keepAliveIntervalMs' | 'keepAliveCountMax' | 'disconnectExpiredCert' | 'preAuth' | 'listen'
  >;
  access: AccessSnapshot;
  labels: Record<string, string>;
  logLevel: Level;
  auditFailure: 'refuse' | 'continue';
  spoolDir: string;
  sessionsDir: string;
}

/** A worker's request, answered with `reply` {rid, value} or {rid, error}. */
export type WorkerRequest =
  | { t: 'req'; rid: number; op: 'addUser'; user: string }
  | { t: 'req'; rid: number; op: 'hello'; json: Uint8Array; local: { ip: string; port: number } }
  | { t: 'req'; rid: number; op: 'recording' }
  | { t: 'req'; rid: number; op: 'audit.durable'; fields: EventFields }
  | { t: 'req'; rid: number; op: 'audit.ready'; what: string }
  | { t: 'req'; rid: number; op: 'find'; sid: string }
  | { t: 'req'; rid: number; op: 'recording.open'; sid: string };

export interface WorkerPoolOptions {
  /** How many workers to run when busy (0: none; the primary serves everything). */
  count: number;
  /** The primary's own server: its listener admits connections, and it holds what is one per node. */
  server: () => NodeServer;
  /** What each new worker starts with (read when it starts, so current then). */
  init: () => Omit<WorkerInit, 't' | 'id' | 'logLevel'>;
  /** The primary's sessions (published to the auth server) and where workers' records go. */
  sessions: SessionDirectory;
  publish: { put(path: string, body: unknown): Promise<unknown>; delete(path: string): Promise<unknown> };
  sink: Pick<SessionSink, 'audit' | 'recorded' | 'sessionsDir'>;
  sessionRecording(): Promise<SessionRecordingMode>;
  serverId: string;
  /** Where workers' own log lines go, as the primary's services' (a worker's `ssh` lines as the node's `ssh`). */
  serviceLog: Logger;
  log: Logger;
  /** @default dist/runtime/node/connworker.js */
  script?: string;
  /** @default WORKER_IDLE_MS */
  idleMs?: number;
}

interface Worker {
  id: number;
  proc: ChildProcess;
  ready: boolean;
  conns: Set<number>;
  /** Users this worker counted against `max_users`, with how many connections each. */
  users: Map<string, number>;
  sids: Set<string>;
  /** Recordings it is writing, each held from this process's uploader until released. */
  recordings: Map<string, () => void>;
  /** Its sessions counted in `server_interactive_sessions_total`. */
  active: number;
  /** Set while it has no connection: it retires when this fires. */
  idle?: NodeJS.Timeout;
  retiring: boolean;
}

interface Handed {
  sock: net.Socket;
  worker: Worker;
  /** Closes the primary's copy (the socket's own destroy). */
  release: () => void;
}

const ACTIVE_PATH = /^\/v1\/namespaces\/default\/sessions\/([0-9a-f-]{36})\/active$/;

/** A worker's request has the fields its operation needs, of their types (the channel is private, but what crosses it is checked). */
function wellFormed(req: WorkerRequest): boolean {
  const r = req as unknown as Record<string, unknown>;
  if (typeof r.rid !== 'number') return false;
  switch (req.op) {
    case 'addUser':
      return typeof r.user === 'string';
    case 'hello': {
      const local = r.local as Record<string, unknown> | undefined;
      return r.json instanceof Uint8Array && typeof local?.ip === 'string' && typeof local?.port === 'number';
    }
    case 'recording':
      return true;
    case 'audit.durable':
      return typeof r.fields === 'object' && r.fields !== null && typeof (r.fields as EventFields).event === 'string';
    case 'audit.ready':
      return typeof r.what === 'string';
    case 'find':
      return typeof r.sid === 'string';
    case 'recording.open':
      return typeof r.sid === 'string';
    default:
      return false;
  }
}

function workerScript(): string {
  const here = path.join(__dirname, 'connworker.js');
  return fs.existsSync(here) ? here : path.join(packageRoot(), 'dist', 'runtime', 'node', 'connworker.js');
}

/** An error as it crosses the channel: its message and errno code (storageProblem reads the code). */
export const wireError = (err: unknown) => ({
  message: err instanceof Error ? err.message : String(err),
  ...((err as NodeJS.ErrnoException)?.code ? { code: (err as NodeJS.ErrnoException).code } : {}),
  ...(err instanceof AuditUnavailableError ? { unavailable: err.problem } : {}),
});

export class WorkerPool {
  private readonly workers = new Map<number, Worker>();
  private readonly handed = new Map<number, Handed>();
  /** Sessions running in workers: who runs each and as which login. */
  private readonly owners = new Map<string, { worker: Worker; login: string }>();
  /** Joins relayed between processes: the joiner's and the owner's process (0: the primary). */
  private readonly routes = new Map<string, { joiner: number; owner: number }>();
  private readonly relay: JoinRelay;
  private nextWorker = 1;
  private nextConn = 1;
  private closed = false;
  /** Workers that died before they were ready, in a row; and when starting may be tried again. */
  private failedStarts = 0;
  private startAfter = 0;
  /** Keeps this process alive while workers hold connections (the primary's copies are not read, so they do not). */
  private holdOpen?: NodeJS.Timeout;

  constructor(private readonly opts: WorkerPoolOptions) {
    this.relay = new JoinRelay((m) => this.route(0, m), opts.sessions, opts.serverId);
    opts.sessions.remote = async (sid) => {
      const o = this.owners.get(sid);
      return o ? this.relay.remoteSession(sid, o.login) : undefined;
    };
  }

  /** Worker processes running now (ready or starting). */
  get pids(): number[] {
    return [...this.workers.values()].map((w) => w.proc.pid).filter((p): p is number => p !== undefined);
  }

  /**
   * Hands an admitted connection to a worker (true), or leaves it to the primary (false) when none
   * is ready; starts the workers when the node is busy.
   */
  handOff(sock: net.Socket): boolean {
    if (this.closed || this.opts.count === 0) return false;
    if (this.workers.size < this.opts.count && this.opts.server().pendingConnections >= WORKER_START_PENDING && Date.now() >= this.startAfter) this.startAll();
    let best: Worker | undefined;
    for (const w of this.workers.values()) if (w.ready && w.proc.connected && (!best || w.conns.size < best.conns.size)) best = w;
    if (!best) return false;
    const w = best;
    const id = this.nextConn++;
    const release = sock.destroy.bind(sock);
    this.handed.set(id, { sock, worker: w, release });
    w.conns.add(id);
    clearTimeout(w.idle);
    w.idle = undefined;
    this.holdOpen ??= setInterval(() => undefined, 1 << 30);
    sock.once('close', () => {
      this.handed.delete(id);
      w.conns.delete(id);
      this.whenIdle(w);
      if (this.handed.size === 0) {
        clearInterval(this.holdOpen);
        this.holdOpen = undefined;
      }
    });
    // The primary closing its copy (login grace time, shutdown) closes the connection in the worker too.
    sock.destroy = (err?: Error) => {
      if (this.handed.has(id) && w.proc.connected) w.proc.send({ t: 'destroy', id });
      return release(err);
    };
    // Not the listener's business any more as Node.js's cluster model sees it (which would ask the workers for
    // counts and, at close, count the primary's own connections as gone once the workers' are): the primary's
    // copy (`keepOpen`) is what the listener counts, and it stays open until the worker's is closed.
    (sock as unknown as { server: net.Server | null }).server = null;
    w.proc.send({ t: 'conn', id }, sock, { keepOpen: true }, (err) => {
      if (err) {
        this.opts.log.warn('cannot hand a connection to a worker; closing it', { worker: w.id, error: err.message });
        sock.destroy();
      }
    });
    return true;
  }

  /** The access data changed: workers decide from the new copy. */
  pushAccess(snapshot: AccessSnapshot | undefined): void {
    if (snapshot) this.broadcast({ t: 'access', snapshot });
  }

  pushLabels(labels: Record<string, string>): void {
    this.broadcast({ t: 'labels', labels });
  }

  /** A host CA rotation: new connections in workers are served with this key and certificate. */
  setHostKey(key: string, cert: string): void {
    this.broadcast({ t: 'hostkey', key, cert });
  }

  /**
   * Stops the workers (the node is stopping): each ends its connections, waits for its sessions'
   * last audit events and recordings to reach this process, and exits; one that does not within
   * WORKER_STOP_MS is killed. This process's spool and uploader are still open meanwhile.
   */
  async close(): Promise<void> {
    this.closed = true;
    const exits = [...this.workers.values()].map((w) => {
      if (w.proc.exitCode !== null || w.proc.signalCode !== null) return Promise.resolve();
      const exited = new Promise<void>((resolve) => w.proc.once('exit', () => resolve()));
      if (w.proc.connected) w.proc.send({ t: 'stop' });
      const timer = setTimeout(() => w.proc.kill('SIGKILL'), WORKER_STOP_MS);
      return exited.finally(() => clearTimeout(timer));
    });
    await Promise.all(exits);
    for (const h of this.handed.values()) h.release();
    this.handed.clear();
    clearInterval(this.holdOpen);
  }

  /** To every worker, also one still starting: it reads this after its `init`, so it misses no change. */
  private broadcast(m: object): void {
    for (const w of this.workers.values()) if (w.proc.connected) w.proc.send(m);
  }

  private startAll(): void {
    while (this.workers.size < this.opts.count) this.start();
  }

  private start(): void {
    const id = this.nextWorker++;
    const proc = fork(this.opts.script ?? workerScript(), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced', execArgv: [] });
    const w: Worker = { id, proc, ready: false, conns: new Set(), users: new Map(), sids: new Set(), recordings: new Map(), active: 0, retiring: false };
    this.workers.set(id, w);
    // The primary's connections keep it alive, not its workers: a drained node exits, and its workers with it.
    proc.unref();
    (proc.channel as { unref?(): void } | undefined)?.unref?.();
    proc.on('error', (err) => this.opts.log.warn('connection worker error', { worker: id, error: err.message }));
    proc.on('message', (m: unknown) => this.onMessage(w, m));
    proc.once('exit', (code, signal) => this.lost(w, code, signal));
    proc.send({ t: 'init', id, logLevel: logLevel(), ...this.opts.init() } satisfies WorkerInit);
    this.opts.log.info('starting a connection worker', { worker: id, pid: proc.pid });
  }

  /** Retires `w` once it has had no connection for `idleMs`. */
  private whenIdle(w: Worker): void {
    if (w.conns.size > 0 || w.idle || this.closed) return;
    w.idle = setTimeout(() => {
      if (w.conns.size > 0 || !w.proc.connected) return;
      w.retiring = true;
      w.proc.disconnect();
    }, this.opts.idleMs ?? WORKER_IDLE_MS);
    w.idle.unref();
  }

  /** A worker ended: what it held is released, and the parties of relayed joins are told. */
  private lost(w: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    this.workers.delete(w.id);
    clearTimeout(w.idle);
    if (!w.ready && !this.closed) {
      // It never served: do not fork again for each connection while something keeps it from starting.
      if (++this.failedStarts >= START_FAILURES) {
        this.startAfter = Date.now() + START_BACKOFF_MS;
        this.failedStarts = 0;
        this.opts.log.error('connection workers do not start; the node serves every connection itself for a while', { retry_in_s: START_BACKOFF_MS / 1000, code, signal });
      }
    }
    if (w.retiring) this.opts.log.info('a connection worker had no connection for a while and stopped', { worker: w.id });
    else if (!this.closed) this.opts.log.warn('a connection worker stopped; its connections are closed', { worker: w.id, code, signal, connections: w.conns.size });
    for (const id of [...w.conns]) {
      const h = this.handed.get(id);
      this.handed.delete(id);
      h?.release();
    }
    for (const [user, n] of w.users) for (let i = 0; i < n; i++) this.opts.server().removeUser(user);
    w.users.clear();
    for (const sid of w.sids) this.unpublish(sid);
    w.sids.clear();
    // Its recordings are uploaded now as interrupted ones, as after a crash.
    for (const release of w.recordings.values()) release();
    if (w.recordings.size) this.opts.sink.recorded();
    w.recordings.clear();
    if (w.active) nodeSessionsActive.dec(w.active);
    w.active = 0;
    for (const [jid, r] of this.routes) {
      if (r.owner === w.id) this.deliver(r.joiner, { t: 'join.gone', jid, why: 'the session ended: the node process that ran it stopped' });
      else if (r.joiner === w.id) this.deliver(r.owner, { t: 'join.close', jid });
      else continue;
      this.routes.delete(jid);
    }
  }

  private onMessage(w: Worker, m: unknown): void {
    // What a worker sent before it ended and is read after: what it held is released already.
    if (this.workers.get(w.id) !== w) return;
    if (typeof m !== 'object' || m === null) return;
    const msg = m as Record<string, unknown>;
    const join = asJoinMessage(m);
    if (join) return this.route(w.id, join);
    switch (msg.t) {
      case 'stopped':
        return;
      case 'ready':
        w.ready = true;
        this.failedStarts = 0;
        this.opts.log.info('connection worker ready', { worker: w.id, pid: w.proc.pid });
        return this.whenIdle(w);
      case 'closed': {
        const h = typeof msg.id === 'number' ? this.handed.get(msg.id) : undefined;
        if (h?.worker !== w) return;
        this.handed.delete(msg.id as number);
        w.conns.delete(msg.id as number);
        h.release();
        return this.whenIdle(w);
      }
      case 'authed':
        if (typeof msg.ip === 'string' && typeof msg.port === 'number') this.opts.server().authenticated({ ip: msg.ip, port: msg.port });
        return;
      case 'removeUser': {
        const n = typeof msg.user === 'string' ? w.users.get(msg.user) : undefined;
        if (n === undefined) return;
        if (n > 1) w.users.set(msg.user as string, n - 1);
        else w.users.delete(msg.user as string);
        this.opts.server().removeUser(msg.user as string);
        return;
      }
      case 'recorded': {
        const release = typeof msg.sid === 'string' ? w.recordings.get(msg.sid) : undefined;
        if (!release) return;
        w.recordings.delete(msg.sid as string);
        release();
        return this.opts.sink.recorded();
      }
      // The node's one audit gate writes, and logs an outage once for the node, whichever process asked.
      case 'audit.emit':
        if (typeof msg.fields === 'object' && msg.fields !== null && typeof (msg.fields as EventFields).event === 'string') this.opts.sink.audit.emit(msg.fields as EventFields);
        return;
      case 'audit.refuse':
        try {
          this.opts.sink.audit.refuse(Object.assign(new Error(String(msg.message)), typeof msg.code === 'string' ? { code: msg.code } : {}), String(msg.what));
        } catch {
          /* the worker throws its own */
        }
        return;
      case 'session.put':
      case 'session.delete':
        return this.onSessionRecord(w, msg);
      case 'log':
        return this.onLog(w, msg);
      case 'metric':
        if (msg.name === 'started' && msg.delta === 1) nodeSessionsStarted.inc();
        else if (msg.name === 'active' && (msg.delta === 1 || (msg.delta === -1 && w.active > 0))) {
          w.active += msg.delta;
          nodeSessionsActive.inc(msg.delta);
        }
        return;
      case 'req':
        return this.onRequest(w, msg as unknown as WorkerRequest);
      default:
        this.opts.log.warn('a connection worker sent a message out of protocol', { worker: w.id, t: String(msg.t) });
    }
  }

  private onRequest(w: Worker, req: WorkerRequest): void {
    const reply = (value: unknown) => w.proc.connected && w.proc.send({ t: 'reply', rid: req.rid, value });
    const fail = (err: unknown) => w.proc.connected && w.proc.send({ t: 'reply', rid: req.rid, error: wireError(err) });
    const server = this.opts.server();
    let answer: Promise<unknown>;
    try {
      if (!wellFormed(req)) throw new Error('a request out of protocol');
      switch (req.op) {
        case 'addUser':
          answer = server.addUser(req.user).then((counted) => {
            if (counted) w.users.set(req.user, (w.users.get(req.user) ?? 0) + 1);
            if (counted && !w.proc.connected) {
              // The worker died with the request in flight: nothing will release it.
              w.users.delete(req.user);
              server.removeUser(req.user);
            }
            return counted;
          });
          break;
        case 'hello':
          answer = Promise.resolve(server.believeHello(Buffer.from(req.json), req.local));
          break;
        case 'recording':
          answer = this.opts.sessionRecording();
          break;
        case 'audit.durable':
          answer = this.opts.sink.audit.emitDurable(req.fields).then(() => true);
          break;
        case 'audit.ready':
          answer = this.opts.sink.audit.ready(req.what).then(() => true);
          break;
        case 'recording.open': {
          const sid = checkSessionId(req.sid);
          if (w.recordings.has(sid)) throw new Error(`session ${sid} is already being recorded`);
          w.recordings.set(sid, holdRecording(this.opts.sink.sessionsDir, sid));
          answer = Promise.resolve(true);
          break;
        }
        case 'find': {
          const login = (this.opts.sessions.get(req.sid) ?? this.owners.get(req.sid))?.login;
          answer = Promise.resolve(login !== undefined ? { login } : null);
          break;
        }
        default:
          throw new Error(`unknown request ${String((req as { op?: unknown }).op)}`);
      }
    } catch (err) {
      return void fail(err);
    }
    answer.then(reply, fail);
  }

  /** A worker publishes or removes an active session's record: kept here for joins, sent to the auth server. */
  private onSessionRecord(w: Worker, msg: Record<string, unknown>): void {
    const m = typeof msg.path === 'string' ? ACTIVE_PATH.exec(msg.path) : null;
    if (!m) return this.opts.log.warn('a connection worker published a record out of protocol', { worker: w.id });
    const sid = m[1];
    if (msg.t === 'session.put') {
      const login = (msg.body as Partial<ActiveSession> | undefined)?.login;
      if (typeof login !== 'string') return;
      this.owners.set(sid, { worker: w, login });
      w.sids.add(sid);
      this.opts.publish.put(msg.path as string, msg.body).catch((err: Error) => this.opts.log.warn('cannot publish an active session', { sid, error: err.message }));
    } else if (this.owners.get(sid)?.worker === w) {
      w.sids.delete(sid);
      this.unpublish(sid);
    }
  }

  private unpublish(sid: string): void {
    this.owners.delete(sid);
    this.opts.publish.delete(`/v1/namespaces/default/sessions/${sid}/active`).catch((err: Error) => this.opts.log.debug('cannot remove an active session record', { sid, error: err.message }));
  }

  private onLog(w: Worker, msg: Record<string, unknown>): void {
    const level = msg.level as Level;
    if (!['debug', 'info', 'warn', 'error'].includes(level) || typeof msg.msg !== 'string') return;
    const where = Array.isArray(msg.path) ? (msg.path as unknown[]).filter((p): p is string => typeof p === 'string') : [];
    const log = where.reduce<Logger>((l, p) => l.child(p), this.opts.serviceLog);
    log[level](msg.msg, { ...(typeof msg.fields === 'object' && msg.fields ? (msg.fields as Record<string, unknown>) : {}), worker: w.id });
  }

  /** Routes a relay message from process `from` (0: the primary) to the other end of its join. */
  private route(from: number, m: JoinMessage): void {
    if (m.t === 'join.open') {
      if (this.routes.has(m.jid)) return;
      const owner = this.opts.sessions.get(m.sid) ? 0 : this.owners.get(m.sid)?.worker.id;
      if (owner === undefined) return this.deliver(from, { t: 'join.gone', jid: m.jid, why: `session ${m.sid} is not running on this node` });
      this.routes.set(m.jid, { joiner: from, owner });
      return this.deliver(owner, m);
    }
    const r = this.routes.get(m.jid);
    if (!r) return;
    const toJoiner = JOINER_READS.has(m.t);
    // Only the two ends of a join speak in it.
    if (from !== (toJoiner ? r.owner : r.joiner)) return;
    if (m.t === 'join.close') this.routes.delete(m.jid);
    this.deliver(toJoiner ? r.joiner : r.owner, m);
  }

  private deliver(to: number, m: JoinMessage): void {
    if (to === 0) return queueMicrotask(() => this.relay.receive(m));
    const w = this.workers.get(to);
    if (w?.proc.connected) return void w.proc.send(m);
    // That end is gone (its worker ended): the other end is told, once.
    const r = this.routes.get(m.jid);
    if (!r) return;
    this.routes.delete(m.jid);
    if (to === r.owner) this.deliver(r.joiner, { t: 'join.gone', jid: m.jid, why: 'the session ended: the node process that ran it stopped' });
    else this.deliver(r.owner, { t: 'join.close', jid: m.jid });
  }
}
