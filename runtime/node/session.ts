/**
 * One SSH `session` channel on the node: pty, env, shell, exec, subsystem
 * (sftp), signals, window changes, agent forwarding and the exit status,
 * run as the login's OS user. Interactive (pty) sessions are recorded, and
 * others may join them: a channel that sets `TELEPORT_SESSION=<id>` before
 * its shell joins that session instead of starting one (`tsh join`), if it
 * logged in with the session's login. Every party sees the same output and
 * types into the same terminal; the session is recorded once; joins and
 * leaves are audited (`session.join` / `session.leave`).
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as pty from 'node-pty';
import type { PseudoTtyInfo, ServerChannel, Session } from 'ssh2';
import { EventFields } from '../events/filelog';
import { recordingEndedMessage, writeRecording } from '../events/sessionsink';
import { execEvent, scpEvent, sessionEndEvent, sessionStartEvent, type SessionWho, subsystemEvent } from '../events/sessionevents';
import { Logger } from '../utils/logger';
import { nodeSessionsActive, nodeSessionsStarted } from '../service/metrics';
import { AgentForwarder } from './agent';
import { AuditGate, AuditUnavailableError } from './auditgate';
import { asUser, OsUser, shellArgs } from './osuser';
import { PamSettings } from './pam';
import { ActiveSession, Joinable, joinEventOf, JoiningParty, SessionDirectory } from './shared';
import { SpawnedProgram, SpawnError, spawnServer } from './spawnserver';

/** What a session needs from its connection. */
export interface ConnectionInfo {
  /** Cluster user (the certificate's key id). */
  user: string;
  login: string;
  osUser: OsUser;
  permit: { pty: boolean; portForwarding: boolean; agentForwarding: boolean; x11Forwarding: boolean };
  remoteAddr: string;
  remotePort: number;
  localAddr: string;
  localPort: number;
  serverId: string;
  hostname: string;
  labels: () => Record<string, string>;
  permitUserEnv: boolean;
  /** Start sessions inside PAM sessions. */
  pam?: PamSettings;
  /** Where the session's audit events go, and whether a session may run when they cannot be recorded. */
  audit: AuditGate;
  /** Starts recording an interactive session. */
  record(sid: string): SessionRecording | Promise<SessionRecording>;
  /** The agent channel opener of this connection. */
  openAgentChannel(cb: (err: Error | undefined, channel?: ServerChannel) => void): void;
  /** Marks activity for the idle timeout. */
  touch(): void;
  /** The node's joinable sessions. */
  sessions: SessionDirectory;
  log: Logger;
}

export interface SessionRecording {
  output(data: Buffer): void;
  event(fields: EventFields): void;
  close(): Promise<void>;
  /** Deletes what was recorded: the session was refused before it ran. */
  discard(): void;
}

/** ssh2 passes the TERM value of a pty request too. */
type PtyInfo = PseudoTtyInfo & { term?: string };

const SFTP_SERVERS = ['/usr/lib/openssh/sftp-server', '/usr/lib/sftp-server', '/usr/libexec/openssh/sftp-server', '/usr/libexec/sftp-server'];
const ACCEPTED_ENV = /^(LANG|LC_[A-Z_]+|TERM|COLORTERM|TZ)$/;
/** The environment variable a client sets to join a session (Teleport's sshutils.SessionEnvVar). */
export const SESSION_ENV = 'TELEPORT_SESSION';
const SID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const SIGNALS = new Set(['ABRT', 'ALRM', 'FPE', 'HUP', 'ILL', 'INT', 'KILL', 'PIPE', 'QUIT', 'SEGV', 'TERM', 'USR1', 'USR2']);

/** `~/.tsh/environment`: KEY=VALUE lines, read only when permitted (permit_user_env). */
function userEnvironment(home: string, log: Logger): Record<string, string> {
  const file = `${home}/.tsh/environment`;
  try {
    const st = fs.lstatSync(file);
    if (!st.isFile() || st.size > 64 * 1024) return {};
    const out: Record<string, string> = {};
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
      if (m && !line.trimStart().startsWith('#')) out[m[1]] = m[2];
    }
    return out;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn('cannot read ~/.tsh/environment', { error: err });
    return {};
  }
}

function signalName(sig: NodeJS.Signals | number | undefined): string | undefined {
  if (sig === undefined || sig === null || sig === 0) return undefined;
  if (typeof sig === 'number') {
    const name = Object.entries(require('node:os').constants.signals as Record<string, number>).find(([, n]) => n === sig)?.[0];
    return name?.replace(/^SIG/, '');
  }
  return sig.replace(/^SIG/, '');
}

/** Calls `cb` once `stream` has ended, also when it ended before this call. */
function whenEnded(stream: NodeJS.ReadableStream & { readableEnded: boolean }, cb: () => void): void {
  if (stream.readableEnded) queueMicrotask(cb);
  else stream.once('end', cb);
}

/** Someone in an interactive session: its owner or a party that joined. */
interface Party {
  id: string;
  user: string;
  remote: string;
  stream: ServerChannel;
  joined: Date;
}

export class NodeSession implements Joinable {
  readonly sid = randomUUID();
  /** Set by `TELEPORT_SESSION`: the session this channel's shell joins. */
  private joinSid?: string;
  /** The session this channel joined. */
  private joined?: Joinable;
  /** Everyone in this session (a pty session that runs here), its owner first. */
  private readonly parties = new Map<string, Party>();
  /** Every user who took part, for session.end. */
  private readonly participants = new Set<string>();
  private ptyInfo?: PtyInfo;
  private readonly env: Record<string, string> = {};
  private term?: pty.IPty;
  private child?: SpawnedProgram;
  private agent?: AgentForwarder;
  private recording?: SessionRecording;
  private started = false;
  /** The channel closed (the client left, or the session ended). */
  private closed = false;
  private stream?: ServerChannel;
  /** The recording could not be written and the session is being ended. */
  private recordingFailed = false;

  constructor(
    session: Session,
    private readonly conn: ConnectionInfo,
  ) {
    // Our ssh2 patch: give the sftp subsystem a plain channel, piped to the system's sftp-server.
    (session as unknown as { rawSubsystems: boolean }).rawSubsystems = true;
    session.on('pty', (accept, reject, info) => {
      if (!conn.permit.pty) {
        conn.log.info('pty refused: the certificate has no permit-pty', { user: conn.user });
        return reject?.();
      }
      this.ptyInfo = info;
      accept?.();
    });
    session.on('window-change', (accept, _reject, info) => {
      // A party of a joined session resizes the shared terminal (the last resize wins, as in Teleport).
      (this.joined ?? this).resize(info.cols, info.rows);
      accept?.();
    });
    session.on('env', (accept, reject, info) => {
      if (info.key === SESSION_ENV && SID_RE.test(info.val)) {
        this.joinSid = info.val;
        accept?.();
      } else if (ACCEPTED_ENV.test(info.key) && info.val.length < 4096) {
        this.env[info.key] = info.val;
        accept?.();
      } else reject?.();
    });
    session.on('auth-agent', (accept, reject) => {
      if (!conn.permit.agentForwarding) return reject?.();
      this.agent = new AgentForwarder(conn.osUser, (cb) => conn.openAgentChannel(cb), conn.log);
      this.agent.start().then(
        () => accept?.(),
        (err) => {
          conn.log.warn('agent forwarding failed', { error: err });
          reject?.();
        },
      );
    });
    session.on('x11', (_accept, reject) => reject?.());
    session.on('signal', (accept, _reject, info) => {
      const name = String(info.name).replace(/^SIG/, '');
      if (SIGNALS.has(name)) {
        if (this.term) process.kill(this.term.pid, `SIG${name}` as NodeJS.Signals);
        else this.child?.kill(`SIG${name}` as NodeJS.Signals);
      }
      accept?.();
    });
    session.on('shell', (accept, reject) => this.run(accept, reject, undefined));
    session.on('exec', (accept, reject, info) => this.run(accept, reject, info.command));
    session.on('subsystem', (accept, reject, info) => this.subsystem(accept, reject, info.name));
    session.on('close', () => {
      this.closed = true;
      this.cleanup();
    });
  }

  get login(): string {
    return this.conn.login;
  }

  /** A window change: the terminal's size, audited and recorded once the session runs. */
  resize(cols: number, rows: number): void {
    if (!this.ptyInfo) return;
    this.ptyInfo = { ...this.ptyInfo, cols, rows };
    this.term?.resize(Math.max(1, cols), Math.max(1, rows));
    if (!this.started || !this.term) return;
    const ev = { event: 'resize', sid: this.sid, size: `${cols}:${rows}`, ...this.who() };
    this.conn.audit.emit(ev);
    this.recordEvent(ev);
  }

  private who(): SessionWho {
    return { user: this.conn.user, login: this.conn.login, server_id: this.conn.serverId, namespace: 'default' };
  }

  private environment(): Record<string, string> {
    const u = this.conn.osUser;
    const c = this.conn;
    return {
      ...(c.permitUserEnv ? userEnvironment(u.home, c.log) : {}),
      ...this.env,
      HOME: u.home,
      USER: u.name,
      LOGNAME: u.name,
      SHELL: u.shell,
      PATH: DEFAULT_PATH,
      SSH_CLIENT: `${c.remoteAddr} ${c.remotePort} ${c.localPort}`,
      SSH_CONNECTION: `${c.remoteAddr} ${c.remotePort} ${c.localAddr} ${c.localPort}`,
      SSH_TELEPORT_USER: c.user,
      TELEPORT_SESSION: this.sid,
      ...(this.ptyInfo ? { TERM: this.ptyInfo.term || 'xterm' } : {}),
      ...(this.agent ? { SSH_AUTH_SOCK: this.agent.socketPath } : {}),
    };
  }

  private cwd(): string {
    try {
      return fs.statSync(this.conn.osUser.home).isDirectory() ? this.conn.osUser.home : '/';
    } catch {
      return '/';
    }
  }

  private run(accept: () => ServerChannel, reject: (() => void) | undefined, command: string | undefined): void {
    if (this.started) return reject?.();
    // A C string on the wire (OpenSSH's sshd refuses the request too): no program could get it.
    if (command?.includes('\0')) {
      this.conn.log.warn('refusing a command with a NUL byte');
      return reject?.();
    }
    this.started = true;
    const c = this.conn;
    if (this.joinSid && command === undefined) return this.joinSession(this.joinSid, accept);
    let file: string;
    let args: string[];
    try {
      [file, args] = asUser(c.osUser, c.osUser.shell, shellArgs(command), c.pam);
    } catch (err) {
      c.log.warn('cannot start the session', { error: err });
      return reject?.();
    }
    const stream = this.open(accept);
    const started = Date.now();
    void this.audited(stream, async () => {
      // Recorded durably before anything runs: a shell's session.start (and its recording), else room for the exec event.
      if (this.ptyInfo) await this.sessionStart();
      else await c.audit.ready('exec');
      if (command !== undefined) await this.auditCommand(command);
    }).then((ok) => {
      if (!ok) return;
      stream.on('data', () => c.touch());
      if (this.ptyInfo) this.runPty(stream, file, args, command, started);
      else this.runPipes(stream, file, args, command);
    });
  }

  /** Ends the channel with `message` on its stderr and exit status 1: what it was to run did not start. */
  private endChannel(stream: ServerChannel, message: string): void {
    if (this.closed) return;
    stream.stderr.write(`${message}\r\n`);
    stream.exit(1);
    stream.end();
  }

  /**
   * Runs `record` (what must be audited before the session starts); true when the session may
   * start. When it cannot be audited the user is told why on stderr and the channel ends with exit
   * status 1, and nothing runs.
   */
  private async audited(stream: ServerChannel, record: () => Promise<void>): Promise<boolean> {
    try {
      await record();
    } catch (err) {
      this.recording?.discard();
      this.recording = undefined;
      const message = err instanceof AuditUnavailableError ? err.message : `session refused: ${(err as Error).message}`;
      if (!(err instanceof AuditUnavailableError)) this.conn.log.warn('cannot start the session', { error: err });
      this.endChannel(stream, message);
      return false;
    }
    if (!this.closed) return true;
    // The client left while the session was being audited: nothing runs, and the recording ends here.
    void this.recording?.close().catch((err) => this.conn.log.error('failed to close the recording', { error: err }));
    this.recording = undefined;
    return false;
  }

  private async auditCommand(command: string): Promise<void> {
    const scp = scpEvent(command, this.who(), `${this.conn.remoteAddr}:${this.conn.remotePort}`);
    if (scp) await this.conn.audit.emitDurable(scp);
  }

  /** Writes a session event to the recording; a recording that cannot be written ends the session (audit_failure: refuse). */
  private recordEvent(ev: EventFields): void {
    this.writeRecording((r) => r.event(ev));
  }

  /** False when the recording failed and the session is being ended (audit_failure: refuse): what was not recorded is not shown. */
  private writeRecording(write: (r: SessionRecording) => void): boolean {
    const r = this.recording;
    if (!r) return !this.recordingFailed;
    try {
      this.recording = writeRecording(r, this.conn.audit, write);
      return true;
    } catch (refusal) {
      this.recording = undefined;
      this.recordingFailed = true;
      this.stream?.stderr.write(`\r\n${recordingEndedMessage(refusal as Error)}\r\n`);
      this.cleanup();
      return false;
    }
  }

  /** Starts the recording and records session.start in it and, durably, in the audit log. */
  private async sessionStart(): Promise<void> {
    const c = this.conn;
    const ev = sessionStartEvent({
      sid: this.sid,
      who: this.who(),
      remote: `${c.remoteAddr}:${c.remotePort}`,
      local: `${c.localAddr}:${c.localPort}`,
      cols: this.ptyInfo!.cols,
      rows: this.ptyInfo!.rows,
      hostname: c.hostname,
      labels: c.labels(),
    });
    try {
      this.recording = await c.record(this.sid);
    } catch (err) {
      c.audit.refuse(err, 'recording');
    }
    try {
      this.recording?.event(ev);
    } catch (err) {
      this.recording?.discard();
      this.recording = undefined;
      c.audit.refuse(err, 'recording');
    }
    await c.audit.emitDurable(ev);
  }

  private runPty(stream: ServerChannel, file: string, args: string[], command: string | undefined, started: number): void {
    const info = this.ptyInfo!;
    let term: pty.IPty;
    try {
      term = pty.spawn(file, args, {
        name: info.term || 'xterm',
        cols: Math.max(1, info.cols || 80),
        rows: Math.max(1, info.rows || 24),
        cwd: this.cwd(),
        env: this.environment(),
        encoding: null,
      } as pty.IPtyForkOptions);
    } catch (err) {
      this.conn.log.warn('cannot start a pty', { error: err });
      return this.endChannel(stream, `failed to start a session: ${(err as Error).message}`);
    }
    this.term = term;
    const c = this.conn;
    this.addParty({ id: randomUUID(), user: c.user, remote: `${c.remoteAddr}:${c.remotePort}`, stream, joined: new Date(started) });
    term.onData((d) => {
      const data = d as unknown as Buffer;
      if (!this.writeRecording((r) => r.output(data))) return;
      for (const p of this.parties.values()) if (p.stream.writable) p.stream.write(data);
    });
    c.sessions.add(this.sid, this, () => this.activeRecord());
    term.onExit(({ exitCode, signal }) => {
      this.term = undefined;
      this.conn.sessions.remove(this.sid);
      const sig = signalName(signal);
      if (command !== undefined) this.emitExec(command, exitCode, sig);
      const ev = sessionEndEvent({
        sid: this.sid,
        who: this.who(),
        participants: [...this.participants],
        hostname: this.conn.hostname,
        serverAddr: `${this.conn.localAddr}:${this.conn.localPort}`,
        started: new Date(started),
      });
      this.recordEvent(ev);
      void this.recording?.close().catch((err) => this.conn.log.error('failed to close the recording', { error: err }));
      this.recording = undefined;
      this.conn.audit.emit(ev);
      // The parties who joined leave with the session's exit status.
      for (const p of [...this.parties.values()].slice(1)) this.finish(p.stream, exitCode, sig);
      this.finish(stream, exitCode, sig);
    });
  }

  private addParty(p: Party): void {
    this.parties.set(p.id, p);
    this.participants.add(p.user);
    p.stream.on('data', (d: Buffer) => this.term?.write(d));
  }

  /** The record the auth server lists while this session runs. */
  private activeRecord(): ActiveSession {
    const c = this.conn;
    return {
      id: this.sid,
      namespace: 'default',
      server_id: c.serverId,
      server_hostname: c.hostname,
      login: c.login,
      parties: [...this.parties.values()].map((p) => ({ id: p.id, user: p.user, remote_addr: p.remote, joined: p.joined.toISOString() })),
      terminal_params: { w: this.ptyInfo?.cols ?? 80, h: this.ptyInfo?.rows ?? 24 },
      created: [...this.parties.values()][0]?.joined.toISOString() ?? new Date().toISOString(),
    };
  }

  /** The `session.join` event of a party joining this session. */
  joinEvent(party: { user: string; remote: string }): EventFields {
    return joinEventOf(this.sid, this.conn.login, this.conn.serverId, party);
  }

  /** Another channel joins this session (its join already audited): it sees the output from now on and types into the terminal. */
  join(party: JoiningParty): void {
    const id = randomUUID();
    this.addParty({ id, user: party.user, remote: party.remote, stream: party.stream, joined: new Date() });
    const ev = this.joinEvent(party);
    this.recordEvent(ev);
    this.conn.sessions.changed(this.sid);
    party.stream.once('close', () => {
      if (!this.parties.delete(id)) return;
      const left = { ...ev, event: 'session.leave' };
      this.conn.audit.emit(left);
      this.recordEvent(left);
      this.conn.sessions.changed(this.sid);
      party.onLeave();
    });
  }

  /** `TELEPORT_SESSION=<sid>` then a shell: joins that session if it runs here with this connection's login. */
  private joinSession(sid: string, accept: () => ServerChannel): void {
    const c = this.conn;
    const stream = this.open(accept);
    if (!this.ptyInfo) return this.endChannel(stream, 'joining a session needs a terminal (a pty request)');
    c.sessions.find(sid).then(
      (target) => {
        if (!target) return this.endChannel(stream, `session ${sid} is not running on this node`);
        if (target.login !== c.login) return this.endChannel(stream, `session ${sid} runs as login "${target.login}": join it with that login`);
        const party = { user: c.user, login: c.login, remote: `${c.remoteAddr}:${c.remotePort}`, stream, onLeave: () => this.cleanup() };
        // The join is on disk before the party sees anything (audit_failure: refuse).
        void this.audited(stream, () => c.audit.emitDurable(target.joinEvent(party))).then((ok) => {
          if (!ok || this.closed) return;
          stream.on('data', () => c.touch());
          this.joined = target;
          target.join(party);
        });
      },
      (err: Error) => this.endChannel(stream, `cannot join session ${sid}: ${err.message}`),
    );
  }

  /**
   * Runs a non-PTY program (exec, a shell without a pty, sftp) through the node's spawn server
   * (spawnserver.ts: the fork and exec happen off this thread) and wires its pipes to the channel.
   */
  private runPipes(stream: ServerChannel, file: string, args: string[], command: string | undefined): void {
    // What the client sends while the program starts waits in the channel (pipe() below resumes it).
    stream.pause();
    spawnServer(this.conn.log).spawn({ file, args, cwd: this.cwd(), env: this.environment() }).then(
      (child) => this.wirePipes(stream, child, command),
      (err: Error) => {
        if (err instanceof SpawnError && err.reason === 'start') {
          // The exec failed (as child_process's 'error' event said before): exit status 127, as a shell says.
          this.conn.log.warn('cannot start the command', { error: err });
          if (command !== undefined) this.emitExec(command, 127);
          if (!this.closed) this.finish(stream, 127);
          return;
        }
        // e.g. an environment value with a NUL byte, or no spawn server: this channel ends, not the node.
        this.conn.log.warn('cannot start a program', { error: err });
        this.endChannel(stream, `failed to start a session: ${err.message}`);
      },
    );
  }

  private wirePipes(stream: ServerChannel, child: SpawnedProgram, command: string | undefined): void {
    this.child = child;
    // The client left while the program was being started: it ends as it would have a moment later.
    if (this.closed) {
      child.discardPipes();
      return this.cleanup();
    }
    child.stdout.pipe(stream, { end: false });
    child.stderr.pipe(stream.stderr, { end: false });
    stream.pipe(child.stdin);
    child.stdin.on('error', () => undefined);
    let stdoutDone = false;
    let stderrDone = false;
    let finished = false;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    const maybeFinish = () => {
      if (finished || !exit || !stdoutDone || !stderrDone) return;
      finished = true;
      const sig = signalName(exit.signal ?? undefined);
      if (command !== undefined) this.emitExec(command, exit.code ?? 0, sig);
      this.finish(stream, exit.code ?? 0, sig);
    };
    // A pipe that reached EOF before it arrived here has already emitted 'end'.
    whenEnded(child.stdout, () => ((stdoutDone = true), maybeFinish()));
    whenEnded(child.stderr, () => ((stderrDone = true), maybeFinish()));
    // A pipe that fails ends as at EOF (no more output can come from it), not the node.
    child.stdout.on('error', () => ((stdoutDone = true), maybeFinish()));
    child.stderr.on('error', () => ((stderrDone = true), maybeFinish()));
    child.on('exit', (code: number | null, signal: NodeJS.Signals | null) => {
      exit = { code, signal };
      maybeFinish();
    });
    child.on('lost', (err: Error) => {
      this.conn.log.warn('the session program was lost with its spawn server', { error: err });
      child.discardPipes();
      if (command !== undefined) this.emitExec(command, 1);
      this.endChannel(stream, `session ended: ${err.message}`);
      this.cleanup();
    });
  }

  private emitExec(command: string, exitCode: number, signal?: string): void {
    this.conn.audit.emit(execEvent(command, exitCode, signal, this.who(), `${this.conn.remoteAddr}:${this.conn.remotePort}`));
  }

  private finish(stream: ServerChannel, code: number, signal?: string): void {
    if (signal) stream.exit(signal, false, '');
    else stream.exit(code);
    stream.end();
    this.cleanup();
  }

  private subsystem(accept: (() => ServerChannel) | undefined, reject: (() => void) | undefined, name: string): void {
    const server = SFTP_SERVERS.find((p) => fs.existsSync(p));
    if (name !== 'sftp' || !server || this.started || !accept) {
      this.conn.audit.emit(subsystemEvent(name, name === 'sftp' ? 'sftp-server not found' : 'unknown subsystem', this.who()));
      return reject?.();
    }
    this.started = true;
    let file: string;
    let args: string[];
    try {
      [file, args] = asUser(this.conn.osUser, server, [], this.conn.pam);
    } catch (err) {
      this.conn.log.warn('cannot start sftp', { error: err });
      return reject?.();
    }
    const stream = this.open(accept);
    void this.audited(stream, () => this.conn.audit.emitDurable(subsystemEvent(name, '', this.who()))).then((ok) => {
      if (ok) this.runPipes(stream, file, args, undefined);
    });
  }

  /**
   * Accepts the session's channel. When the connection drops (idle timeout, network loss) the
   * channel closes without the client's CHANNEL_CLOSE, and ssh2 then emits no 'close' on the
   * session: what the session runs ends either way, and a shell's session.end is audited.
   */
  private open(accept: () => ServerChannel): ServerChannel {
    const stream = accept();
    nodeSessionsStarted.inc();
    nodeSessionsActive.inc();
    stream.once('close', () => nodeSessionsActive.dec());
    this.stream = stream;
    stream.on('close', () => {
      this.closed = true;
      this.cleanup();
    });
    return stream;
  }

  private cleanup(): void {
    if (this.term) {
      try {
        this.term.kill('SIGHUP');
      } catch {
        /* already gone */
      }
    }
    if (this.child && !this.child.done) this.child.kill('SIGHUP');
    this.agent?.close();
    this.agent = undefined;
  }
}
