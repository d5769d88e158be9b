/**
 * Recording proxy mode (`session_recording: proxy`): instead of piping the
 * client's bytes to the target, the proxy terminates the SSH connection that
 * runs over the `proxy` subsystem channel, presenting a host certificate for
 * the target's name (hostcerts.ts). It authenticates the user's certificate
 * and authorizes the login with the same decision nodes make, then logs in to
 * the target (a stock OpenSSH server or a node) as that user with the user's
 * certificate, signed by the agent the client forwarded to the proxy
 * (forwardagent.ts). Each session channel is mirrored to the target; the proxy
 * records interactive sessions and audits sessions, commands (exec), scp,
 * sftp and port forwarding as a node does (events/sessionevents.ts), through
 * the same audit gate and recording uploader (events/sessionsink.ts).
 *
 * With `proxy_checks_host_keys: yes` the target must present a host
 * certificate from the cluster's host CA for the name dialled.
 */
import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { Client, type ClientChannel, type Connection, type ParsedKey, type PseudoTtyInfo, Server, type ServerChannel, type Session } from 'ssh2';
import { AccessDecision, accessFor, Permissions } from '../auth/access/decision';
import { execEvent, scpEvent, sessionEndEvent, sessionStartEvent, type SessionWho, subsystemEvent } from '../events/sessionevents';
import { AuditGate, AuditUnavailableError } from '../node/auditgate';
import { eofAfterWrites } from '../node/forwarding';
import { permitsOf } from '../node/server';
import type { SessionRecording } from '../node/session';
import { recordingEndedMessage, writeRecording } from '../events/sessionsink';
import { type Certificate, CLIENT_ALGORITHMS, hostCertVerifier, LoginNotInCertificateError, serverAlgorithms, type SshAlgorithms, verifyUserCertAuth } from '../sshcert';
import { AccessDeniedError } from '../utils/errors';
import { Logger } from '../utils/logger';
import { ForwardedAgent, type AgentOpener } from './forwardagent';
import type { HostPort } from './resolve';
import { joinHostPort } from './target';

export const PROXY_RECORDING_IDENT = 'Teleport';

/** What the user is told when the client did not forward its agent to the proxy. */
export const AGENT_REQUIRED =
  'this cluster records sessions on the proxy (session_recording: proxy): forward your agent to the proxy so that it can log in to the target with your certificate (tsh ssh -A, or ssh -o ForwardAgent=yes)';

export interface ForwardTarget {
  /** The name the user dialled. */
  name: string;
  /** Names its host certificate may list for `proxy_checks_host_keys`: the name dialled, and a registered node's hostname and UUID. */
  certNames: string[];
  /** `host:port` the proxy connected to. */
  addr: string;
  /** The registered node's hostname, else the name dialled. */
  hostname: string;
  labels: Record<string, string>;
}

export interface ForwardOptions {
  /** The `proxy` subsystem channel the client speaks SSH on. */
  channel: ServerChannel;
  /** Connected to the target, its first bytes not yet read. */
  sock: Duplex;
  target: ForwardTarget;
  /** This proxy's host ID: the audit log takes a member's events only as its own (auth/member-audit.ts); the target is named by `server_hostname` and `server_addr`. */
  serverId: string;
  /** Presented to the client: a host certificate for the target's name. */
  hostKey: ParsedKey;
  algorithms: SshAlgorithms;
  /** The certificate the client logged in to the proxy with: the session's user. */
  user: Certificate;
  /** The client's address. */
  remote: HostPort;
  /** The agent forwarded on the subsystem's session channel, when the client has forwarded it by the time it logs in. */
  agent: () => AgentOpener | undefined;
  trustedUserCAs: () => Buffer[];
  /** Host CA keys the target's host certificate must be signed by; undefined: any host key is accepted (`proxy_checks_host_keys: no`). */
  trustedHostCAs?: Buffer[];
  authorize(cert: Certificate, login: string): AccessDecision;
  audit: AuditGate;
  record(sid: string): SessionRecording;
  readyTimeoutMs: number;
  log: Logger;
}

interface Forwarded {
  opts: ForwardOptions;
  who: SessionWho & { server_hostname: string; server_addr: string };
  remote: string;
  permit: Permissions;
  target: Client;
  /** Opens an agent channel to the client for the target (the client's own agent forwarding). */
  inner: Connection;
}

/** Serves the SSH connection on `opts.channel` until either side ends. */
export function serveForwarded(opts: ForwardOptions): void {
  const log = opts.log;
  const server = new Server({ hostKeys: [opts.hostKey], ident: PROXY_RECORDING_IDENT, algorithms: serverAlgorithms(opts.algorithms) } as ConstructorParameters<typeof Server>[0], (inner) =>
    onInner(inner, opts),
  );
  server.on('error', (err: Error) => log.debug('forwarding server error', { error: err.message }));
  const stream = Object.assign(opts.channel, { remoteAddress: opts.remote.host, remotePort: opts.remote.port, remoteFamily: 'IPv4' });
  server.injectSocket(stream as unknown as import('node:net').Socket);
  opts.channel.once('close', () => opts.sock.destroy());
}

function onInner(inner: Connection, opts: ForwardOptions): void {
  const log = opts.log;
  const remote = joinHostPort(opts.remote.host, opts.remote.port);
  let fwd: Forwarded | undefined;
  let connecting = false;
  inner.on('error', (err) => log.debug('forwarded connection error', { remote, error: err.message }));
  inner.on('close', () => {
    fwd?.target.end();
    opts.sock.destroy();
  });
  const refuse = (reject: () => void, user: string, login: string, error: string) => {
    opts.audit.emit({ event: 'auth', user, login, success: false, error, server_id: opts.serverId, server_hostname: opts.target.hostname, 'addr.remote': remote });
    log.info('forwarded login refused', { user, login, target: opts.target.addr, error });
    inner.authBanner(error);
    if (opts.channel.writable) opts.channel.stderr.write(error + '\n');
    reject();
  };

  inner.on('authentication', (ctx) => {
    if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
    const login = ctx.username;
    const reject = () => ctx.reject(['publickey']);
    let cert: Certificate;
    try {
      cert = verifyUserCertAuth(ctx, { trustedCAs: opts.trustedUserCAs() });
    } catch (err) {
      if (err instanceof LoginNotInCertificateError) return refuse(reject, opts.user.keyId, login, err.message);
      return reject();
    }
    // The same user on both hops: the connection to the proxy says who this is.
    if (cert.keyId !== opts.user.keyId) return refuse(reject, opts.user.keyId, login, `access denied: certificate of "${cert.keyId}" on a connection of "${opts.user.keyId}"`);
    if (!(ctx as { signature?: Buffer }).signature) return ctx.accept();
    if (fwd || connecting) return reject();
    const decision = opts.authorize(cert, login);
    if (!decision.allowed) return refuse(reject, cert.keyId, login, decision.reason);
    const agent = opts.agent();
    if (!agent) return refuse(reject, cert.keyId, login, AGENT_REQUIRED);
    connecting = true;
    const permit = permitsOf(cert, accessFor(decision.user, decision.roles).permit);
    const forTarget: AgentOpener = (cb) => inner.openssh_authAgent((err, ch) => cb(err, ch));
    connectTarget(opts, login, new ForwardedAgent(agent, cert, permit.agentForwarding ? forTarget : undefined)).then(
      (target) => {
        connecting = false;
        fwd = { opts, who: { user: cert.keyId, login, server_id: opts.serverId, namespace: 'default', server_hostname: opts.target.hostname, server_addr: opts.target.addr }, remote, permit, target, inner };
        target.on('close', () => inner.end());
        log.info('recording proxy: logged in to the target', { user: cert.keyId, login, target: opts.target.addr });
        ctx.accept();
      },
      (err: Error) => {
        connecting = false;
        refuse(reject, cert.keyId, login, err.message);
      },
    );
  });

  inner.on('ready', () => {
    const f = fwd!;
    inner.on('session', (accept) => {
      const session = accept();
      if (session) new ForwardedSession(session, f);
    });
    inner.on('tcpip', (accept, reject, info) => forwardPort(f, accept, reject, info));
    // Remote forwarding (ssh -R) is not offered through a recording proxy.
    inner.on('request', (_accept, reject) => reject?.());
  });
}

/** Logs in to the target as `login` with the user's certificate from the forwarded agent. */
function connectTarget(opts: ForwardOptions, login: string, agent: ForwardedAgent): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    let denied: Error | undefined;
    const cas = opts.trustedHostCAs;
    const verify = (key: Buffer) => {
      if (!cas) return true;
      const ok = opts.target.certNames.some((hostname) => hostCertVerifier({ trustedCAs: cas, hostname, onDenied: (err) => (denied = err) })(key));
      if (ok) denied = undefined;
      return ok;
    };
    const fail = (err: Error) => {
      client.end();
      if (denied) return reject(new AccessDeniedError(`the proxy refused target ${opts.target.name}: ${denied.message} (proxy_checks_host_keys: yes)`));
      if (err instanceof AccessDeniedError) return reject(err);
      if ((err as { level?: string }).level === 'client-authentication') return reject(new AccessDeniedError(`target ${opts.target.name} refused the certificate of "${opts.user.keyId}" for login "${login}"`));
      reject(new AccessDeniedError(`cannot log in to target ${opts.target.name}: ${err.message}`));
    };
    let settled = false;
    const once = (f: () => void) => {
      if (settled) return;
      settled = true;
      f();
    };
    // Errors after the first (or after the login) are logged: an unhandled one would end the process.
    client.on('error', (err) => {
      if (settled) opts.log.debug('target connection error', { target: opts.target.addr, error: err.message });
      else once(() => fail(err));
    });
    client.once('close', () => once(() => fail(new Error('connection closed during the handshake'))));
    client.once('ready', () => once(() => resolve(client)));
    client.connect({ sock: opts.sock as unknown as import('node:net').Socket, username: login, agent, algorithms: CLIENT_ALGORITHMS, hostVerifier: verify, readyTimeout: opts.readyTimeoutMs });
  });
}

/** `direct-tcpip` (ssh -L) through the target, audited as a node audits it. */
function forwardPort(f: Forwarded, accept: () => ServerChannel, reject: () => void, info: { srcIP: string; srcPort: number; destIP: string; destPort: number }): void {
  const addr = `${info.destIP}:${info.destPort}`;
  if (!f.permit.portForwarding) {
    f.opts.audit.emit({ event: 'port', addr, success: false, error: 'port forwarding is not permitted', ...f.who, code: 'T3003E' });
    return reject();
  }
  f.target.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (err, out) => {
    if (err) {
      f.opts.audit.emit({ event: 'port', addr, success: false, error: err.message, ...f.who, code: 'T3003E' });
      return reject();
    }
    f.opts.audit.emit({ event: 'port', addr, success: true, ...f.who, code: 'T3003I' });
    const ch = accept();
    // Half-close kept end to end: the target's EOF reaches the client as EOF alone (ssh2's end() on a
    // server channel would also close it and drop what the client still sends).
    ch.pipe(out);
    out.pipe(ch, { end: false });
    out.once('end', () => eofAfterWrites(ch));
    ch.on('close', () => out.close());
    out.on('close', () => ch.close());
  });
}

type Start = { kind: 'shell' } | { kind: 'exec'; command: string } | { kind: 'subsystem'; name: string };
type PtyInfo = PseudoTtyInfo & { term?: string };

/** One session channel of the client, mirrored to a session channel on the target. */
class ForwardedSession {
  private readonly sid = randomUUID();
  private pty?: PtyInfo;
  private readonly env: Record<string, string> = {};
  private agent = false;
  private started = false;
  private closed = false;
  private remote?: ClientChannel;
  private stream?: ServerChannel;
  private recording?: SessionRecording;

  constructor(
    session: Session,
    private readonly f: Forwarded,
  ) {
    session.on('pty', (accept, reject, info) => {
      if (!f.permit.pty) return reject?.();
      this.pty = info;
      accept?.();
    });
    session.on('env', (accept, reject, info) => {
      // The target's AcceptEnv decides which it takes.
      if (Object.keys(this.env).length >= 64 || info.val.length > 4096) return reject?.();
      this.env[info.key] = info.val;
      accept?.();
    });
    session.on('auth-agent', (accept, reject) => {
      if (!f.permit.agentForwarding) return reject?.();
      this.agent = true;
      accept?.();
    });
    session.on('x11', (_accept, reject) => reject?.());
    session.on('window-change', (accept, _reject, info) => {
      accept?.();
      if (!this.pty) return;
      this.pty = { ...this.pty, cols: info.cols, rows: info.rows };
      this.remote?.setWindow(info.rows, info.cols, info.height, info.width);
      if (!this.recording) return;
      const ev = { event: 'resize', sid: this.sid, size: `${info.cols}:${info.rows}`, ...f.who };
      f.opts.audit.emit(ev);
      this.write((r) => r.event(ev));
    });
    session.on('signal', (accept, _reject, info) => {
      this.remote?.signal(String(info.name).replace(/^SIG/, ''));
      accept?.();
    });
    session.on('shell', (accept, reject) => this.start(accept, reject, { kind: 'shell' }));
    session.on('exec', (accept, reject, info) => this.start(accept, reject, { kind: 'exec', command: info.command }));
    session.on('subsystem', (accept, reject, info) => this.start(accept, reject, { kind: 'subsystem', name: info.name }));
  }

  private start(accept: (() => ServerChannel) | undefined, reject: (() => void) | undefined, what: Start): void {
    if (this.started || !accept || (what.kind === 'exec' && what.command.includes('\0'))) return reject?.();
    this.started = true;
    const stream = accept();
    this.stream = stream;
    stream.once('close', () => {
      this.closed = true;
      this.remote?.close();
    });
    void this.audited(stream, what).then((ok) => ok && this.open(stream, what));
  }

  /** Records durably what must be before the session starts (as a node does); false when the session must not start. */
  private async audited(stream: ServerChannel, what: Start): Promise<boolean> {
    const { f } = this;
    const { audit } = f.opts;
    try {
      if (what.kind === 'subsystem') await audit.emitDurable(subsystemEvent(what.name, '', f.who));
      else {
        if (this.pty) await this.sessionStart();
        else await audit.ready('exec');
        const scp = what.kind === 'exec' ? scpEvent(what.command, f.who, f.remote) : undefined;
        if (scp) await audit.emitDurable(scp);
      }
    } catch (err) {
      this.recording?.discard();
      this.recording = undefined;
      const message = err instanceof AuditUnavailableError ? err.message.replace('the node', 'the proxy') : `session refused: ${(err as Error).message}`;
      this.end(stream, message);
      return false;
    }
    if (!this.closed) return true;
    void this.recording?.close().catch(() => undefined);
    this.recording = undefined;
    return false;
  }

  private async sessionStart(): Promise<void> {
    const { f } = this;
    const t = f.opts.target;
    const ev = sessionStartEvent({ sid: this.sid, who: f.who, remote: f.remote, local: t.addr, cols: this.pty!.cols, rows: this.pty!.rows, hostname: t.hostname, labels: t.labels });
    try {
      this.recording = f.opts.record(this.sid);
      this.recording.event(ev);
    } catch (err) {
      this.recording?.discard();
      this.recording = undefined;
      f.opts.audit.refuse(err, 'recording');
    }
    await f.opts.audit.emitDurable(ev);
  }

  /** Opens the target's session channel and relays it. */
  private open(stream: ServerChannel, what: Start): void {
    const { f } = this;
    const started = new Date();
    const pty = this.pty ? { rows: this.pty.rows, cols: this.pty.cols, height: this.pty.height, width: this.pty.width, term: this.pty.term || 'xterm', modes: this.pty.modes } : undefined;
    const opened = (err: Error | undefined, remote: ClientChannel) => {
      if (err) {
        if (what.kind === 'exec') f.opts.audit.emit(execEvent(what.command, 1, undefined, f.who, f.remote));
        this.finishRecording(started);
        return this.end(stream, `the target refused the session: ${err.message}`);
      }
      if (this.closed) return remote.close();
      this.remote = remote;
      this.relay(stream, remote, what, started);
    };
    const extra = { env: this.env, ...(this.agent ? { agentForward: true } : {}) } as object;
    try {
      if (what.kind === 'shell') f.target.shell(pty ?? false, extra, opened);
      else if (what.kind === 'exec') f.target.exec(what.command, { ...extra, ...(pty ? { pty } : {}) }, opened);
      else f.target.subsys(what.name, opened);
    } catch (err) {
      // The target's connection is gone.
      opened(err as Error, undefined as unknown as ClientChannel);
    }
  }

  private relay(stream: ServerChannel, remote: ClientChannel, what: Start, started: Date): void {
    const { f } = this;
    let exit: { code: number; signal?: string } | undefined;
    remote.on('data', (d: Buffer) => {
      if (!this.write((r) => r.output(d))) return;
      if (!stream.write(d)) {
        remote.pause();
        stream.once('drain', () => remote.resume());
      }
    });
    remote.stderr.on('data', (d: Buffer) => stream.stderr.write(d));
    stream.on('data', (d: Buffer) => remote.write(d));
    stream.on('end', () => remote.end());
    remote.on('exit', (code: number | null, signal?: string) => {
      exit = typeof code === 'number' ? { code } : { code: 0, signal: signal ?? 'KILL' };
    });
    remote.on('close', () => {
      if (what.kind === 'exec') f.opts.audit.emit(execEvent(what.command, exit?.code ?? 0, exit?.signal, f.who, f.remote));
      this.finishRecording(started);
      if (stream.writable) {
        if (exit?.signal) stream.exit(exit.signal, false, '');
        else if (exit) stream.exit(exit.code);
        stream.end();
      }
    });
  }

  /** session.end, in the recording and the audit log, for an interactive session. */
  private finishRecording(started: Date): void {
    if (!this.pty) return;
    const { f } = this;
    const ev = sessionEndEvent({ sid: this.sid, who: f.who, participants: [f.who.user], hostname: f.opts.target.hostname, serverAddr: f.opts.target.addr, started });
    this.write((r) => r.event(ev));
    void this.recording?.close().catch((err) => f.opts.log.error('failed to close the recording', { error: err }));
    this.recording = undefined;
    f.opts.audit.emit(ev);
  }

  /**
   * Writes to the recording; false when it failed and the session is being ended
   * (audit_failure: refuse), so what was not recorded is not shown.
   */
  private write(w: (r: SessionRecording) => void): boolean {
    const r = this.recording;
    if (!r) return true;
    try {
      this.recording = writeRecording(r, this.f.opts.audit, w);
      return true;
    } catch (refusal) {
      this.recording = undefined;
      this.stream?.stderr.write(`\r\n${recordingEndedMessage(refusal as Error)}\r\n`);
      this.remote?.close();
      this.f.inner.end();
      return false;
    }
  }

  private end(stream: ServerChannel, message: string): void {
    if (this.closed || !stream.writable) return;
    stream.stderr.write(`${message}\r\n`);
    stream.exit(1);
    stream.end();
  }
}
