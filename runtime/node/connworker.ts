/**
 * A node connection worker, as a process (started by workerpool.ts with
 * `child_process.fork`, reached only over that private IPC channel): it serves
 * the SSH connections its node's primary process hands it, with the same
 * NodeServer as the primary (authentication, authorization, sessions,
 * forwarding, recording), deciding access from the copy of the access data the
 * primary pushes, and asking the primary for what is one per node (NodeWide:
 * `max_users`, pre-authentication accounting, proxy hellos; the audit spool;
 * `session_recording`; sessions to join). Its log lines and session metrics
 * go to the primary. When the channel closes (the primary stopped or died),
 * it ends its connections and exits.
 *
 * Protocol: see workerpool.ts (in: init, conn + socket handle, destroy, access,
 * labels, hostkey, reply, join.*; out: ready, closed, authed, removeUser,
 * recorded, session.put / session.delete, log, metric, req, join.*).
 */
import type * as net from 'node:net';
import { AccessCache } from '../auth/access/cache';
import { recordIn, NO_RECORDING } from '../events/sessionsink';
import { nodeSessionsActive, nodeSessionsStarted } from '../service/metrics';
import { type Level, levelEnabled, logFieldReplacer, type Logger } from '../utils/logger';
import { AuditGate, AuditUnavailableError } from './auditgate';
import { type EventFields, storageProblem } from '../events/filelog';
import { asJoinMessage, JoinRelay } from './joinrelay';
import type { Address } from '../proxy/hello';
import { NodeServer, type SessionRecordingMode } from './server';
import { SessionDirectory } from './shared';
import { spawnServer } from './spawnserver';
import { type WorkerInit, type WorkerRequest, wireError } from './workerpool';

function send(m: object): void {
  if (process.connected) process.send!(m);
}

/** Log lines, written by the primary (its format, its destination): only those at or above its level cross. */
function primaryLogger(level: Level, where: string[] = []): Logger {
  const emit = (l: Level) => (msg: string, fields?: Record<string, unknown>) => {
    if (!levelEnabled(l, level)) return;
    const plain = fields && JSON.parse(JSON.stringify(fields, logFieldReplacer));
    send({ t: 'log', path: where, level: l, msg, ...(plain ? { fields: plain } : {}) });
  };
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error'), child: (sub) => primaryLogger(level, [...where, sub]) };
}

/** Requests to the primary, answered by `reply` messages. */
const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
let nextRid = 1;

type RequestBody = WorkerRequest extends infer R ? (R extends unknown ? Omit<R, 't' | 'rid'> : never) : never;

function ask<T>(body: RequestBody): Promise<T> {
  const rid = nextRid++;
  return new Promise<T>((resolve, reject) => {
    pending.set(rid, { resolve: resolve as (v: unknown) => void, reject });
    send({ t: 'req', rid, ...body });
  });
}

function answered(m: { rid?: unknown; value?: unknown; error?: { message?: unknown; code?: unknown; unavailable?: unknown } }): void {
  const p = typeof m.rid === 'number' ? pending.get(m.rid) : undefined;
  if (!p) return;
  pending.delete(m.rid as number);
  if (m.error && typeof m.error.unavailable === 'string') p.reject(new AuditUnavailableError(m.error.unavailable));
  else if (m.error) p.reject(Object.assign(new Error(String(m.error.message)), typeof m.error.code === 'string' ? { code: m.error.code } : {}));
  else p.resolve(m.value);
}

/** Session metrics are the node's: counted by the primary, which serves `/metrics`. */
function forwardMetrics(): void {
  const started = nodeSessionsStarted.inc.bind(nodeSessionsStarted);
  nodeSessionsStarted.inc = ((v?: number) => (started(v), send({ t: 'metric', name: 'started', delta: 1 }))) as typeof nodeSessionsStarted.inc;
  const inc = nodeSessionsActive.inc.bind(nodeSessionsActive);
  const dec = nodeSessionsActive.dec.bind(nodeSessionsActive);
  nodeSessionsActive.inc = ((v?: number) => (inc(v), send({ t: 'metric', name: 'active', delta: 1 }))) as typeof nodeSessionsActive.inc;
  nodeSessionsActive.dec = ((v?: number) => (dec(v), send({ t: 'metric', name: 'active', delta: -1 }))) as typeof nodeSessionsActive.dec;
}

/**
 * The node's audit gate, in its primary process: events are written to the node's spool there, and
 * `audit_failure` is decided (and an outage logged once for the node) there. A recording this
 * worker cannot write is reported there and refused here by the same mode.
 */
class PrimaryAuditGate extends AuditGate {
  constructor(
    private readonly init: WorkerInit,
    log: Logger,
  ) {
    super({ write: () => Promise.reject(new Error('written by the primary process')), dir: init.spoolDir, mode: init.auditFailure, log });
  }

  override emit(fields: EventFields): void {
    send({ t: 'audit.emit', fields });
  }

  override async emitDurable(fields: EventFields): Promise<void> {
    await ask({ op: 'audit.durable', fields });
  }

  override async ready(what: string): Promise<void> {
    await ask({ op: 'audit.ready', what });
  }

  override refuse(err: unknown, what: string): void {
    const e = wireError(err);
    send({ t: 'audit.refuse', what, ...e });
    if (this.init.auditFailure === 'refuse') throw new AuditUnavailableError(storageProblem(err));
  }
}

interface Serving {
  server: NodeServer;
  access: AccessCache;
  relay: JoinRelay;
  labels: Record<string, string>;
}

let serving: Serving | undefined;
const conns = new Map<number, net.Socket>();
/** Recordings open now (each reported to the primary when complete). */
let recordings = 0;
/** The node is stopping: exit once the connections are closed and their recordings complete. */
let stopping = false;

/**
 * When stopping and nothing is left (no connection, no open recording, no question to the primary
 * unanswered), says so after everything sent before (the sessions' last events) and exits.
 */
function stopWhenDone(): void {
  if (!stopping || conns.size > 0 || recordings > 0 || pending.size > 0) return;
  stopping = false;
  setImmediate(() => {
    if (process.connected) process.send!({ t: 'stopped' }, undefined, {}, () => process.exit(0));
    else process.exit(0);
  });
}

function start(init: WorkerInit): Serving {
  const log = primaryLogger(init.logLevel);
  forwardMetrics();
  const access = new AccessCache({ get: () => Promise.reject(new Error('a connection worker does not poll')) }, log.child('access'));
  access.load(init.access);
  const s = init.server;
  const sessions = new SessionDirectory(
    {
      put: <T>(path: string, body: unknown) => (send({ t: 'session.put', path, body }), Promise.resolve(undefined as T)),
      delete: <T>(path: string) => (send({ t: 'session.delete', path }), Promise.resolve(undefined as T)),
    },
    log.child('sessions'),
  );
  const relay = new JoinRelay(send, sessions, s.serverId);
  sessions.remote = async (sid) => {
    const found = await ask<{ login: string } | null>({ op: 'find', sid });
    return found ? relay.remoteSession(sid, found.login) : undefined;
  };
  const me: Partial<Serving> = { access, relay, labels: init.labels };
  const audit = new PrimaryAuditGate(init, log.child('audit'));
  me.server = new NodeServer({
    ...s,
    trustedHostCAs: () => access.hostCAKeys(),
    trustedUserCAs: () => access.userCAs().flatMap((ca) => ca.keys),
    authorize: (req) => access.checkCert(req.cert, req.login, { name: s.hostname, labels: me.labels! }),
    labels: () => me.labels!,
    // Counted by the primary, which admitted the connection.
    maxConnections: Number.MAX_SAFE_INTEGER,
    maxUsers: Number.MAX_SAFE_INTEGER,
    audit,
    sessionRecording: () => ask<SessionRecordingMode>({ op: 'recording' }),
    record: async (sid, mode) => {
      if (mode !== 'node') return NO_RECORDING;
      // Held from the primary's uploader before a byte is written, released once complete.
      await ask({ op: 'recording.open', sid });
      recordings++;
      let done = false;
      // Complete, discarded (the session was refused before it ran) or failed to close: the primary lets go of it.
      const finished = () => {
        if (done) return;
        done = true;
        recordings--;
        send({ t: 'recorded', sid });
        stopWhenDone();
      };
      const rec = recordIn(init.sessionsDir, sid, s.serverId, () => undefined);
      return {
        ...rec,
        close: () => rec.close().finally(finished),
        discard: () => {
          rec.discard();
          finished();
        },
      };
    },
    sessions,
    nodeWide: {
      addUser: (user) => ask<boolean>({ op: 'addUser', user }),
      removeUser: (user) => send({ t: 'removeUser', user }),
      authenticated: (remote) => send({ t: 'authed', ip: remote.ip, port: remote.port }),
      believeHello: (json, local) => ask<Address | undefined>({ op: 'hello', json, local }),
    },
    log: log.child('ssh'),
  });
  // Its own spawn server, started now: non-PTY programs are spawned there, off this thread.
  void spawnServer(log.child('spawn')).pid;
  return me as Serving;
}

process.on('message', (m: unknown, handle: unknown) => {
  if (typeof m !== 'object' || m === null) return;
  const msg = m as Record<string, unknown>;
  const join = asJoinMessage(m);
  if (join) return serving?.relay.receive(join);
  switch (msg.t) {
    case 'init':
      if (serving) return;
      serving = start(msg as unknown as WorkerInit);
      return send({ t: 'ready' });
    case 'conn': {
      const sock = handle as net.Socket | undefined;
      const id = msg.id as number;
      if (!sock || !serving || typeof id !== 'number') return sock?.destroy();
      conns.set(id, sock);
      sock.once('close', () => {
        conns.delete(id);
        send({ t: 'closed', id });
        stopWhenDone();
      });
      return serving.server.serve(sock);
    }
    case 'destroy':
      return void conns.get(msg.id as number)?.destroy();
    case 'access':
      return serving?.access.load(msg.snapshot as WorkerInit['access']);
    case 'labels':
      if (serving) serving.labels = msg.labels as Record<string, string>;
      return;
    case 'hostkey':
      return serving?.server.setHostKey(msg.key as string, msg.cert as string);
    case 'reply':
      answered(msg);
      return stopWhenDone();
    case 'stop':
      // Every connection ends (its programs get SIGHUP, as when a client leaves); their events and recordings follow.
      stopping = true;
      for (const sock of conns.values()) sock.end();
      void serving?.server.close();
      return stopWhenDone();
  }
});

// A message that cannot be sent any more: the channel is closing, and 'disconnect' follows.
process.on('error', () => undefined);

process.on('disconnect', () => {
  for (const p of pending.values()) p.reject(new Error("the node's primary process is gone"));
  pending.clear();
  for (const sock of conns.values()) sock.destroy();
  void (serving?.server.close() ?? Promise.resolve()).finally(() => process.exit(0));
});
