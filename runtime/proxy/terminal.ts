/**
 * The web UI's browser terminal: `GET /webapi/sites/:site/connect?params=<json>`
 * (Teleport 4.x's path; params `{"server_id":"<node uuid>","login":"<os login>","term":{"w":80,"h":24}}`,
 * with `"sid":"<session id>"` to join a running session instead of starting one)
 * upgraded to a WebSocket that carries one interactive shell on a node.
 *
 * Before the upgrade (refusals are plain HTTP answers: 400, 401, 403, 404):
 *   - `Origin` must be this proxy's own (a browser always sends it; a page on
 *     another site gets 403): the CSRF rule of the web API, here for a GET;
 *   - the web session: its token in the `__Host-teleport-session` cookie (set
 *     at login, HttpOnly) and, as the bearer rule of the other API calls, the
 *     same token offered as the WebSocket subprotocol `bearer.<token>` beside
 *     `teleport.terminal.v1` (browsers cannot set `Authorization` on a
 *     WebSocket; a subprotocol, unlike a query string, lands in no access log);
 *     both must name the same live session (compared in constant time);
 *   - the login must be one the access decision allows that user on that node
 *     (the logins the node list offers).
 * Then the proxy connects exactly as `tsh ssh` does: a key made for this one
 * terminal, a user certificate for the session's user from the auth service
 * (expiring with the web session), a login to the proxy's own SSH listener,
 * the `proxy:<uuid>:0@<cluster>` subsystem (node resolution, the proxy's access
 * decision, reverse tunnels), and SSH to the node, which checks the certificate
 * and decides again, records and audits the session.
 *
 * Messages: binary frames are terminal bytes both ways (UTF-8 is bytes; the
 * browser decodes it); a text frame from the browser is a control message,
 * `{"type":"resize","cols":<1-1000>,"rows":<1-1000>}` (an SSH window-change).
 * Anything else (bad JSON, another type, a frame over 64 KiB) closes that
 * socket with 1003/1007/1009. The server closes with 1000 and
 * `exit status <n>` when the shell ends, and sends `{"type":"error","message":…}`
 * before closing when the session cannot start (1008 when refused). The
 * socket is closed (4001) when the web session ends: at its expiry, at logout
 * on this proxy at once, and within `sessionCheckMs` when it ends elsewhere
 * (logout through another proxy, `tctl users reset`, the user deleted).
 */
import * as http from 'node:http';
import type { Duplex } from 'node:stream';
import { type ClientChannel } from 'ssh2';
import { type RawData, WebSocket, WebSocketServer } from 'ws';
import { z } from 'zod';
import { decodePathPart, requestUrl } from '../auth/http';
import type { UserNode } from '../auth/server';
import { dialNode, type NodeConnection } from '../client/dial';
import type { EventFields } from '../events/filelog';
import { formatAuthorizedKey, generateKeyPair, publicKeyBlob } from '../sshcert';
import { AccessDeniedError, BadParameterError, ConnectionProblemError, httpStatusOf, NotFoundError, TeleportError } from '../utils/errors';
import { Logger } from '../utils/logger';
import { constantTimeEqual } from '../utils/secrets';
import { sameOrigin } from './crossorigin';
import { dial } from './relay';
import type { LocalClients } from './localclients';
import { unmapIPv4 } from '../utils/ip';
import type { HostPort } from './resolve';
import { joinHostPort } from './target';

const TERMINAL_PATH = /^(?:\/v1)?\/webapi\/sites\/([^/]+)\/connect$/;
export const TERMINAL_PROTOCOL = 'teleport.terminal.v1';
export const BEARER_PROTOCOL_PREFIX = 'bearer.';
/** The web session's cookie: HttpOnly, Secure, SameSite=Strict, host-only (`__Host-`). */
export const SESSION_COOKIE = '__Host-teleport-session';
/** Close codes beyond RFC 6455's: the web session ended. */
export const CLOSE_SESSION_ENDED = 4001;
/** Largest frame from the browser (a paste of 64 KiB is one frame). */
export const MAX_MESSAGE_BYTES = 64 * 1024;
const TOKEN_RE = /^[0-9a-f]{64}$/;
/** Output buffered for a slow browser before the node is read no more, and when it is read again. */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
const DIMENSION = z.number().int().min(1).max(1000);

export const terminalParamsSchema = z
  .object({
    server_id: z.string().min(1).max(255),
    login: z.string().min(1).max(255),
    term: z.object({ w: DIMENSION, h: DIMENSION }).strict(),
    /** Join this running session instead of starting a shell (the node checks it runs there with this login). */
    sid: z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'must be a session ID').optional(),
  })
  .strict();
export type TerminalParams = z.infer<typeof terminalParamsSchema>;

const controlSchema = z.object({ type: z.literal('resize'), cols: DIMENSION, rows: DIMENSION }).strict();

/** What the terminal asks of the cluster, with the web session's token. */
export interface TerminalApi {
  clusterName: string;
  getSession(token: string): Promise<{ user: string; expires?: string }>;
  sessionNodes(token: string): Promise<UserNode[]>;
  /** A user certificate (authorized_keys line) for the session's user and this public key. */
  sessionCert(token: string, sshPublicKey: string): Promise<{ cert: string }>;
}

export interface TerminalOptions {
  api: TerminalApi;
  /** The proxy's own SSH listener, dialled as tsh would dial it. */
  sshProxyAddr: HostPort;
  /** The cluster's host CA keys, which the proxy's and the node's host certificates must come from. */
  hostCAs: () => Buffer[];
  /** Whether the web listener speaks TLS itself (Origin must then be https). */
  tls: boolean;
  /** The client's address (clientaddr.ts), for the log and the audit log. */
  clientAddr: (req: http.IncomingMessage) => string;
  /** Where the terminal's connections to the SSH listener are registered with the browser's address (localclients.ts). */
  localClients: LocalClients;
  /** Sends an audit event (a refused login: `auth`, as the proxy's SSH service audits its refusals). */
  audit: (fields: EventFields) => void;
  /** The proxy's host UUID, the `server_id` of its audit events. */
  serverId: string;
  log: Logger;
  /** How often an open terminal checks that its web session still exists. @default 10000 */
  sessionCheckMs?: number;
  /** Time to reach the node. @default 30000 */
  dialTimeoutMs?: number;
}

/** The request's URL; undefined when its target is not a path. */
function urlOf(req: http.IncomingMessage): URL | undefined {
  try {
    return requestUrl(req);
  } catch {
    return undefined;
  }
}

/** Whether an upgrade request is for the terminal (its path). */
export function isTerminalRequest(req: http.IncomingMessage): boolean {
  const url = urlOf(req);
  return !!url && TERMINAL_PATH.test(url.pathname);
}

/** The web session's token from the request's cookies; undefined when there is none. */
export function sessionCookie(req: http.IncomingMessage): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** `Set-Cookie` for a new web session (`maxAgeSeconds` > 0) or to remove it (0). */
export function sessionCookieHeader(token: string, maxAgeSeconds: number): string {
  return `${SESSION_COOKIE}=${token}; Path=/; Max-Age=${maxAgeSeconds}; Secure; HttpOnly; SameSite=Strict`;
}

function offeredProtocols(req: http.IncomingMessage): string[] {
  return (req.headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
}

/** Answers an upgrade request with an HTTP error and closes the connection. */
function refuseUpgrade(socket: Duplex, err: TeleportError): void {
  const status = err instanceof NoSessionError ? 401 : httpStatusOf(err.reason);
  const body = JSON.stringify({ error: { reason: err.reason, message: err.message } });
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/** No web session, or not the same one in the cookie and the bearer: 401. */
class NoSessionError extends AccessDeniedError {}

interface Checked {
  token: string;
  user: string;
  expires?: string;
  params: TerminalParams;
  node: UserNode;
}

export class Terminals {
  private readonly wss: WebSocketServer;
  /** Open terminals by web session token (kept in memory only), to close them when it ends. */
  private readonly bySession = new Map<string, Set<WebSocket>>();

  constructor(private readonly opts: TerminalOptions) {
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: MAX_MESSAGE_BYTES,
      perMessageDeflate: false,
      handleProtocols: () => TERMINAL_PROTOCOL,
    });
  }

  /** Serves an upgrade request for `/webapi/sites/:site/connect` (isTerminalRequest). */
  upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    this.check(req).then(
      (checked) => this.wss.handleUpgrade(req, socket, head, (ws) => this.serve(ws, checked, this.browserOf(req))),
      (err: unknown) => {
        if (!(err instanceof TeleportError)) {
          this.opts.log.error('cannot check a terminal request', { error: err instanceof Error ? err.stack : String(err) });
          err = new ConnectionProblemError('internal error');
        }
        this.opts.log.info('refused a terminal', { from: this.opts.clientAddr(req), error: (err as Error).message });
        refuseUpgrade(socket, err as TeleportError);
      },
    );
  }

  /** The browser's address (its TCP port when it is the TCP peer, else 0: a load balancer's X-Forwarded-For names no port). */
  private browserOf(req: http.IncomingMessage): HostPort {
    const host = this.opts.clientAddr(req);
    const peer = unmapIPv4(req.socket.remoteAddress ?? '');
    return { host, port: host === peer ? (req.socket.remotePort ?? 0) : 0 };
  }

  /** Logout on this proxy: that session's terminals close at once. */
  sessionEnded(token: string): void {
    for (const ws of this.bySession.get(token) ?? []) ws.close(CLOSE_SESSION_ENDED, 'web session ended');
  }

  close(): void {
    for (const ws of this.wss.clients) ws.terminate();
  }

  /** Every check before the upgrade (module comment); throws a TeleportError. */
  private async check(req: http.IncomingMessage): Promise<Checked> {
    const { api } = this.opts;
    const url = requestUrl(req);
    const site = decodePathPart(TERMINAL_PATH.exec(url.pathname)![1]);
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') throw new BadParameterError('this path takes WebSocket upgrades only');
    const origin = req.headers.origin;
    if (!origin || !sameOrigin(req, origin, this.opts.tls ? ['https:'] : ['https:', 'http:'])) {
      throw new AccessDeniedError("cross-site requests are refused: the terminal takes WebSocket requests from the proxy's own pages only");
    }
    const protocols = offeredProtocols(req);
    if (!protocols.includes(TERMINAL_PROTOCOL)) throw new BadParameterError(`offer the WebSocket subprotocol ${TERMINAL_PROTOCOL}`);
    const cookie = sessionCookie(req);
    const bearer = protocols.find((p) => p.startsWith(BEARER_PROTOCOL_PREFIX))?.slice(BEARER_PROTOCOL_PREFIX.length);
    if (!cookie || !bearer) throw new NoSessionError('the terminal needs a web session: its cookie and its bearer token; log in again');
    if (!TOKEN_RE.test(cookie) || !constantTimeEqual(cookie, bearer)) throw new NoSessionError('invalid or expired web session; log in again');
    const token = cookie;
    let session: { user: string; expires?: string };
    try {
      session = await api.getSession(token);
    } catch (err) {
      if (err instanceof AccessDeniedError) throw new NoSessionError(err.message);
      throw err;
    }
    if (site !== api.clusterName) throw new NotFoundError(`cluster "${site}" is not served by this proxy; it serves "${api.clusterName}"`);
    const params = this.params(url);
    const node = (await api.sessionNodes(token)).find((n) => n.server.metadata.name === params.server_id);
    if (!node) throw new NotFoundError(`no node "${params.server_id}" that user "${session.user}" may see in cluster ${api.clusterName}`);
    if (!node.logins.includes(params.login)) {
      const error = `access denied: login "${params.login}" is not allowed for user "${session.user}" on node "${node.server.spec.hostname}"`;
      this.opts.audit({ event: 'auth', user: session.user, login: params.login, success: false, error, server_id: this.opts.serverId, 'addr.remote': this.opts.clientAddr(req) });
      throw new AccessDeniedError(error);
    }
    return { token, user: session.user, ...(session.expires ? { expires: session.expires } : {}), params, node };
  }

  private params(url: URL): TerminalParams {
    const raw = url.searchParams.get('params');
    if (raw === null) throw new BadParameterError('missing params: ?params={"server_id":…,"login":…,"term":{"w":…,"h":…}}');
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      throw new BadParameterError('params is not JSON');
    }
    const parsed = terminalParamsSchema.safeParse(value);
    if (!parsed.success) throw new BadParameterError('invalid params: ' + parsed.error.issues.map((i) => `${i.path.join('.') || '(params)'}: ${i.message}`).join('; '));
    return parsed.data;
  }

  /** One upgraded terminal: connect to the node, then copy bytes both ways until either side ends. */
  private serve(ws: WebSocket, c: Checked, browser: HostPort): void {
    const { opts } = this;
    const fields = { user: c.user, login: c.params.login, node: c.params.server_id, from: browser.host };
    const log = opts.log;
    let open = this.bySession.get(c.token);
    if (!open) this.bySession.set(c.token, (open = new Set()));
    open.add(ws);
    let conn: NodeConnection | undefined;
    let channel: ClientChannel | undefined;
    const endSession = (why: string) => {
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.resume(); // (paused while the session starts: the browser's answer to the close must be read)
      ws.close(CLOSE_SESSION_ENDED, why);
    };
    const expiry = c.expires ? setTimeout(() => endSession('web session expired'), Math.max(0, new Date(c.expires).getTime() - Date.now())) : undefined;
    const poll = setInterval(() => {
      opts.api.getSession(c.token).catch((err: unknown) => {
        if (err instanceof AccessDeniedError) endSession('web session ended');
      });
    }, opts.sessionCheckMs ?? 10_000);
    ws.on('error', (err) => log.debug('terminal socket error', { ...fields, error: err.message }));
    ws.once('close', () => {
      clearTimeout(expiry);
      clearInterval(poll);
      open.delete(ws);
      if (!open.size) this.bySession.delete(c.token);
      channel?.end();
      conn?.close();
      log.debug('terminal closed', fields);
    });
    // Input that arrives while the session starts waits for it.
    ws.pause();
    this.connect(c, browser).then(
      (connected) => {
        conn = connected.conn;
        channel = connected.channel;
        if (ws.readyState !== WebSocket.OPEN) return void conn.close();
        log.info('terminal session started', fields);
        this.pipe(ws, connected.channel);
        ws.resume();
      },
      (err: Error) => {
        log.info('cannot start a terminal session', { ...fields, error: err.message });
        if (ws.readyState !== WebSocket.OPEN) return;
        ws.resume(); // (to read the browser's answer to the close)
        ws.send(JSON.stringify({ type: 'error', message: err.message }));
        ws.close(err instanceof AccessDeniedError ? 1008 : 1011, 'the session could not start');
      },
    );
  }

  private async connect(c: Checked, browser: HostPort): Promise<{ conn: NodeConnection; channel: ClientChannel }> {
    const { opts } = this;
    const pair = generateKeyPair('ed25519');
    const { cert } = await opts.api.sessionCert(c.token, formatAuthorizedKey(publicKeyBlob(pair.publicKey)));
    const timeout = opts.dialTimeoutMs ?? 30_000;
    const conn = await dialNode({
      proxyAddr: joinHostPort(opts.sshProxyAddr.host, opts.sshProxyAddr.port),
      dialTcp: async (host, port, ms) => {
        const sock = await dial({ host, port }, ms);
        opts.localClients.register(sock, browser);
        return sock;
      },
      cluster: opts.api.clusterName,
      hostCAs: opts.hostCAs(),
      privateKey: pair.privateKey,
      certLine: cert,
      login: c.params.login,
      host: c.params.server_id,
      port: 0,
      readyTimeoutMs: timeout,
    });
    try {
      const pty = { term: 'xterm-256color', cols: c.params.term.w, rows: c.params.term.h };
      const channel = await new Promise<ClientChannel>((resolve, reject) =>
        conn.node.shell(pty, { env: { LANG: 'C.UTF-8', ...(c.params.sid ? { TELEPORT_SESSION: c.params.sid } : {}) } }, (err, ch) => (err ? reject(new ConnectionProblemError(`cannot start the shell: ${err.message}`)) : resolve(ch))),
      );
      return { conn, channel };
    } catch (err) {
      conn.close();
      throw err;
    }
  }

  /** Copies the shell's output to the socket and the socket's input to the shell; a malformed message closes this socket. */
  private pipe(ws: WebSocket, channel: ClientChannel): void {
    let status: number | undefined;
    let paused = false;
    // Backpressure: stop reading the node while the browser lags, resume once it has caught up.
    const toBrowser = (d: Buffer) => {
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.send(d, { binary: true }, () => {
        if (paused && ws.bufferedAmount < LOW_WATER) {
          paused = false;
          channel.resume();
        }
      });
      if (!paused && ws.bufferedAmount > HIGH_WATER) {
        paused = true;
        channel.pause();
      }
    };
    channel.on('data', toBrowser);
    channel.stderr.on('data', toBrowser);
    channel.on('error', (err: Error) => this.opts.log.debug('terminal channel error', { error: err.message }));
    channel.on('exit', (code: number | null) => {
      if (typeof code === 'number') status = code;
    });
    channel.once('close', () => {
      if (ws.readyState === WebSocket.OPEN) ws.close(1000, status === undefined ? 'session ended' : `exit status ${status}`);
    });
    ws.on('message', (data: RawData, isBinary: boolean) => {
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      if (isBinary) {
        // (input still in flight when the shell has ended goes nowhere)
        if (channel.writable) channel.write(bytes);
        return;
      }
      let message: unknown;
      try {
        message = JSON.parse(bytes.toString('utf8'));
      } catch {
        return ws.close(1007, 'a text message must be JSON');
      }
      const control = controlSchema.safeParse(message);
      if (!control.success) return ws.close(1003, 'unsupported message: expected {"type":"resize","cols":n,"rows":n}');
      if (channel.writable) channel.setWindow(control.data.rows, control.data.cols, 0, 0);
    });
  }
}
