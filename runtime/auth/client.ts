/**
 * The auth API client, over HTTPS with mutual TLS. It dials the auth servers
 * in turn (a list, or one load balancer) and verifies the server against the
 * cluster's TLS CA under the name `teleport.cluster.local`, so the address
 * used to reach it does not matter. Errors come back typed.
 *
 * Idle connections are kept (auth/keepalive.ts) for the next call, also when
 * they run over a stream `connect` opens (a node behind NAT, through the
 * proxy's auth pipe): one pipe and one TLS handshake serve a node's
 * heartbeats and polls instead of one per call.
 *
 * Two lanes: what a member does on its own schedule (the access long poll,
 * periodic heartbeats) goes in the background lane, one request at a time over
 * one connection per server, so an idle node holds one connection to auth, not
 * two (at 10,000 nodes that is 10,000 open files and TLS sessions less on the
 * auth server). A periodic heartbeat (`background`) then waits for the poll held
 * on that connection (at most its 60 s hold), well within the announce TTL
 * (600 s). A long poll (`poll`) never waits: it takes the background connection
 * when nothing is on it, else a foreground one, so a second poller on the same
 * client (a proxy's caches) or a first load is never held up behind a held
 * poll. Everything else (a login's calls, audit events, recordings, a first
 * heartbeat) goes in the foreground lane, at once, on connections of its own.
 */
import * as https from 'node:https';
import { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { AUTH_SERVER_NAME } from '../tlsca';
import { AUTH_CLIENT_IDLE_MS } from './keepalive';
import { ConnectionProblemError, errorFromReason, TeleportError } from '../utils/errors';

export interface HostPort {
  host: string;
  port: number;
}

export interface ClientCredentials {
  key: string;
  cert: string;
  /** TLS CAs to trust. */
  ca: string[];
}

export interface AuthClientOptions {
  servers: HostPort[];
  /** Without credentials only anonymous routes work, and the server is not verified unless `ca` is set. */
  credentials?: ClientCredentials;
  /** Verify the server against these CAs when calling without credentials (after pinning). */
  ca?: string[];
  timeoutMs?: number;
  /**
   * Opens the byte stream to a server instead of a TCP connection (e.g. an
   * SSH channel through the proxy); TLS is still run and verified over it.
   */
  connect?: (server: HostPort) => Promise<Duplex>;
}

const RESPONSE_LIMIT = 64 * 1024 * 1024;

/**
 * See the module comment: `background` requests share one connection per server, one after another;
 * `poll` takes that connection only when it is free (never waits); `foreground` ones go at once.
 */
export type Lane = 'foreground' | 'background' | 'poll';

export interface CallOptions {
  /** How long the connection may stay silent (default: the client's), e.g. longer than a long poll's hold. */
  timeoutMs?: number;
  /** @default 'foreground' */
  lane?: Lane;
}

export class AuthClient {
  private agent: https.Agent;
  private background: https.Agent;
  /** Requests given to the background agent that have not finished (running or queued). */
  private backgroundBusy = 0;

  constructor(private readonly opts: AuthClientOptions) {
    if (!opts.servers.length) throw new ConnectionProblemError('no auth server address configured');
    this.agent = this.newAgent();
    this.background = this.newAgent(1);
  }

  /** An agent for one lane: `maxSockets` connections per server at most (background: 1). */
  private newAgent(maxSockets = Infinity): https.Agent {
    const c = this.opts.credentials;
    const ca = c?.ca ?? this.opts.ca;
    const agent = new https.Agent({
      keepAlive: true,
      maxSockets,
      timeout: AUTH_CLIENT_IDLE_MS,
      minVersion: 'TLSv1.2',
      servername: AUTH_SERVER_NAME,
      ...(c ? { key: c.key, cert: c.cert } : {}),
      ...(ca ? { ca, rejectUnauthorized: true } : { rejectUnauthorized: false }),
    });
    // Through `connect`: the agent's connections are TLS over the stream it opens (the pool is still
    // the agent's, by server address, so kept connections are reused as on a direct one).
    if (this.opts.connect) {
      const tunnel = this.tunnel(c, ca);
      agent.createConnection = (options: { host?: string | null; port?: number | null }, done: (err: Error | null, socket: Duplex) => void) =>
        tunnel({ host: options.host ?? '', port: Number(options.port) }, done);
    }
    return agent;
  }

  /**
   * New credentials (a host CA rotation: a certificate from the new CA, or trust in both CAs) for
   * the requests that start from now on; requests under way finish on their connections, which
   * close once idle.
   */
  setCredentials(credentials: ClientCredentials): void {
    this.opts.credentials = credentials;
    for (const old of [this.agent, this.background]) {
      for (const sockets of Object.values(old.freeSockets)) sockets?.forEach((s) => s.destroy());
      old.on('free', (socket: Duplex) => socket.destroy());
    }
    this.agent = this.newAgent();
    this.background = this.newAgent(1);
  }

  /**
   * Calls one route; connection failures move on to the next server, API errors do not. `timeoutMs`
   * (default: the client's) is how long the connection may stay silent, e.g. longer than a long poll's hold.
   */
  async call<T>(method: string, path: string, body?: unknown, timeoutMs?: number, lane: Lane = 'foreground'): Promise<T> {
    const payload = body === undefined ? undefined : { data: Buffer.from(JSON.stringify(body)), type: 'application/json' };
    return this.each((server) => this.once<T>(server, method, path, payload, false, timeoutMs, lane));
  }

  /** Like `call`, but sends `body` as raw bytes and resolves the raw response body; errors still come back typed. */
  async callRaw(method: string, path: string, body?: Buffer): Promise<Buffer> {
    const payload = body === undefined ? undefined : { data: body, type: 'application/octet-stream' };
    return this.each((server) => this.once<Buffer>(server, method, path, payload, true));
  }

  /** POSTs a JSON body and takes the answer as bytes (a route that returns a Buffer). */
  async postForBytes(path: string, body: unknown): Promise<Buffer> {
    const payload = { data: Buffer.from(JSON.stringify(body)), type: 'application/json' };
    return this.each((server) => this.once<Buffer>(server, 'POST', path, payload, true));
  }

  private async each<T>(attempt: (server: HostPort) => Promise<T>): Promise<T> {
    let last: unknown;
    for (const server of this.opts.servers) {
      try {
        return await attempt(server);
      } catch (err) {
        if (err instanceof TeleportError && err.reason !== 'connection_problem') throw err;
        last = err;
      }
    }
    throw last instanceof TeleportError
      ? last
      : new ConnectionProblemError(`cannot reach the auth server: ${(last as Error)?.message}`, { cause: last });
  }

  private once<T>(server: HostPort, method: string, path: string, payload: { data: Buffer; type: string } | undefined, raw: boolean, timeoutMs?: number, lane: Lane = 'foreground'): Promise<T> {
    const where = `${server.host}:${server.port}`;
    const onBackground = lane === 'background' || (lane === 'poll' && this.backgroundBusy === 0);
    if (onBackground) this.backgroundBusy++;
    const answer = new Promise<T>((resolve, reject) => {
      const req = https.request(
        {
          host: server.host,
          port: server.port,
          method,
          path,
          agent: onBackground ? this.background : this.agent,
          servername: AUTH_SERVER_NAME,
          timeout: timeoutMs ?? this.opts.timeoutMs ?? 30_000,
          headers: payload ? { 'content-type': payload.type, 'content-length': payload.data.length } : {},
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > RESPONSE_LIMIT) req.destroy(new Error('response too large'));
            else chunks.push(c);
          });
          res.on('end', () => {
            if (raw && (res.statusCode ?? 500) < 400) {
              resolve(Buffer.concat(chunks) as T);
              return;
            }
            let parsed: unknown;
            try {
              parsed = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : {};
            } catch {
              reject(new ConnectionProblemError(`auth server ${where} sent a response that is not JSON (status ${res.statusCode})`));
              return;
            }
            if ((res.statusCode ?? 500) >= 400) {
              const e = (parsed as { error?: { reason?: string; message?: string } }).error;
              reject(errorFromReason(e?.reason ?? 'internal', e?.message ?? `auth server ${where} answered ${res.statusCode}`));
            } else resolve(parsed as T);
          });
          res.on('error', (err) => reject(new ConnectionProblemError(`auth server ${where}: ${err.message}`, { cause: err })));
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (err) => reject(new ConnectionProblemError(`auth server ${where}: ${err.message}`, { cause: err })));
      req.end(payload?.data);
    });
    return onBackground ? answer.finally(() => this.backgroundBusy--) : answer;
  }

  /** A `createConnection` that runs TLS over the stream `connect` opens to the server, with these credentials. */
  private tunnel(c: ClientCredentials | undefined, ca: string[] | undefined) {
    return (server: HostPort, done: (err: Error | null, socket: Duplex) => void): undefined => {
      this.opts.connect!(server).then(
        (stream) =>
          done(
            null,
            tls.connect({
              socket: stream,
              servername: AUTH_SERVER_NAME,
              minVersion: 'TLSv1.2',
              ...(c ? { key: c.key, cert: c.cert } : {}),
              ...(ca ? { ca, rejectUnauthorized: true } : { rejectUnauthorized: false }),
            }),
          ),
        (err: Error) => done(err, undefined as unknown as Duplex),
      );
      return undefined;
    };
  }

  get<T>(path: string, opts: CallOptions = {}): Promise<T> {
    return this.call<T>('GET', path, undefined, opts.timeoutMs, opts.lane);
  }
  post<T>(path: string, body: unknown, opts: CallOptions = {}): Promise<T> {
    return this.call<T>('POST', path, body, opts.timeoutMs, opts.lane);
  }
  put<T>(path: string, body: unknown): Promise<T> {
    return this.call<T>('PUT', path, body);
  }
  delete<T>(path: string): Promise<T> {
    return this.call<T>('DELETE', path);
  }

  close(): void {
    this.agent.destroy();
    this.background.destroy();
  }
}
