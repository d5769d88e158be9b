/**
 * The HTTP layer of the auth API: a small route table, JSON bodies with a
 * size limit and one schema per body, caller identity from the verified TLS
 * client certificate, and typed errors mapped to status codes. A malformed
 * request gets a 4xx and touches nothing else.
 */
import { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { identityOf, TlsIdentity } from '../tlsca';
import { isClientGone } from '../utils/clientgone';
import { AccessDeniedError, BadParameterError, httpStatusOf, LimitExceededError, NotFoundError, TeleportError } from '../utils/errors';
import { Logger } from '../utils/logger';
import type { Admission } from '../service/admission';
import { SYSTEM_ROLES, SystemRole } from './resources';

/**
 * Who is calling: nobody (no client certificate), a cluster member, a user, a user of a trusted
 * (root) cluster (`remote_user`, allowed only where a route says so: they are no user of this cluster),
 * or a proxy of a trusted cluster (`remote_proxy`: only the routes by which it sends its cluster's CAs and reads this one's).
 */
/** The address of the client a proxy serves (runtime/proxy/clientaddr.ts), as the proxy names it in a body (`client_addr`). */
export const clientAddrSchema = z
  .string()
  .max(64)
  .refine((s) => isIP(s) !== 0, 'an IP address')
  .optional();

export type Caller =
  | { kind: 'nop' }
  | { kind: 'system'; role: SystemRole; identity: TlsIdentity }
  | { kind: 'user'; identity: TlsIdentity }
  | { kind: 'remote_user'; identity: TlsIdentity; cluster: string }
  | { kind: 'remote_proxy'; identity: TlsIdentity; cluster: string };

export type Permission = 'nop' | 'user' | 'remote_user' | 'remote_proxy' | SystemRole;

/** A trusted (root) cluster's user or host TLS CA certificates. */
export interface ForeignCA {
  cluster: string;
  certs: X509Certificate[];
}

/** The TLS CAs of the enabled trusted clusters. */
export interface ForeignCAs {
  user: ForeignCA[];
  host: ForeignCA[];
}

/** The host ID of a cluster member, whose certificate names it `<hostID>.<cluster>`; undefined for anyone else. */
export function callerHostId(caller: Caller, clusterName: string): string | undefined {
  if (caller.kind !== 'system') return undefined;
  const suffix = '.' + clusterName;
  const name = caller.identity.username;
  return name.length > suffix.length && name.endsWith(suffix) ? name.slice(0, -suffix.length) : undefined;
}

export interface RequestContext<B> {
  params: Record<string, string>;
  query: URLSearchParams;
  body: B;
  caller: Caller;
  remoteAddr: string;
}

export interface Route<B = unknown> {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  /** Who may call it. `nop` means anyone, even without a certificate. */
  allow: Permission[];
  body?: z.ZodType<B>;
  /** Take the body as raw bytes (a Buffer) of at most this many bytes, instead of JSON. */
  rawBodyLimit?: number;
  /**
   * A long poll: the handler mostly waits for a change, so it runs outside the bounded concurrency
   * (Router's `admission`), which is for handlers that work.
   */
  longPoll?: boolean;
  /** A handler may return a Buffer: it is sent as `application/octet-stream`. */
  handler(ctx: RequestContext<B>): Promise<unknown>;
}

export function route<B>(r: Route<B>): Route<unknown> {
  return r as unknown as Route<unknown>;
}

export const MAX_BODY_BYTES = 1024 * 1024;

/** A body over the limit: answered 413 and the connection closed, since the rest of the body is never read. */
class BodyTooLargeError extends LimitExceededError {}

interface Compiled {
  route: Route;
  re: RegExp;
  names: string[];
}

function compile(r: Route): Compiled {
  const names: string[] = [];
  const re = new RegExp(
    '^' +
      r.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:([a-zA-Z_]+)/g, (_m, n: string) => {
        names.push(n);
        return '([^/]+)';
      }) +
      '$',
  );
  return { route: r, re, names };
}

/**
 * Identifies the caller; a certificate must come from the CA that matches what it claims to be.
 * TLS verifies certificates from this cluster's CAs; one from a trusted cluster's CA (which the TLS
 * server does not know: trust changes while it runs) is verified here: issued and signed by that
 * CA, and valid now. From its user CA: a `remote_user`; from its host CA: a `remote_proxy` if the
 * certificate names role Proxy and a host of that cluster, else nobody.
 */
export function callerOf(socket: TLSSocket, hostCA: X509Certificate[], userCA: X509Certificate[], foreign: () => ForeignCAs = () => ({ user: [], host: [] })): Caller {
  const peer = socket.getPeerCertificate(false);
  if (!peer || !peer.raw) return { kind: 'nop' };
  const cert = new X509Certificate(peer.raw);
  const issuedBy = (cas: X509Certificate[]) => cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey));
  if (!socket.authorized) {
    const now = Date.now();
    if (Date.parse(cert.validFrom) > now || Date.parse(cert.validTo) < now) return { kind: 'nop' };
    const cas = foreign();
    const user = cas.user.find((f) => issuedBy(f.certs));
    if (user) return { kind: 'remote_user', identity: identityOf(peer.raw), cluster: user.cluster };
    const host = cas.host.find((f) => issuedBy(f.certs));
    if (!host) return { kind: 'nop' };
    const identity = identityOf(peer.raw);
    if (identity.groups.length !== 1 || identity.groups[0] !== 'Proxy' || !identity.username.endsWith('.' + host.cluster)) return { kind: 'nop' };
    return { kind: 'remote_proxy', identity, cluster: host.cluster };
  }
  const identity = identityOf(peer.raw);
  if (issuedBy(hostCA)) {
    const role = identity.groups[0] as SystemRole;
    if (identity.groups.length === 1 && SYSTEM_ROLES.includes(role)) return { kind: 'system', role, identity };
    throw new AccessDeniedError('host certificate does not name a system role');
  }
  if (issuedBy(userCA)) return { kind: 'user', identity };
  throw new AccessDeniedError('client certificate is not from this cluster');
}

function allowed(caller: Caller, allow: Permission[]): boolean {
  if (allow.includes('nop')) return true;
  if (caller.kind === 'system') return caller.role === 'Admin' || caller.role === 'Auth' || allow.includes(caller.role);
  if (caller.kind === 'user') return allow.includes('user');
  if (caller.kind === 'remote_user') return allow.includes('remote_user');
  if (caller.kind === 'remote_proxy') return allow.includes('remote_proxy');
  return false;
}

/**
 * How much of an oversized body is still read, and dropped, before the 413: a
 * server that answers and closes while the client is still sending makes the
 * kernel reset the connection, and the client loses the answer. Past this much
 * the connection is closed at once (bounded work; the client may then see the reset).
 */
export const OVERSIZED_BODY_DRAIN_BYTES = 8 * 1024 * 1024;

/** Reads a body of at most `limit` bytes; a larger one is drained as above, then BodyTooLargeError (413). */
function readRaw(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tooLarge = () => new BodyTooLargeError(`request body is larger than ${limit} bytes`);
    const declared = Number(req.headers['content-length']);
    if (declared > limit + OVERSIZED_BODY_DRAIN_BYTES) return reject(tooLarge());
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = (err?: Error) => {
      req.removeListener('data', onData);
      req.removeListener('end', onEnd);
      req.removeListener('error', stop);
      req.removeListener('close', onClose);
      if (err) {
        req.pause();
        reject(err);
      }
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else if (size > limit + OVERSIZED_BODY_DRAIN_BYTES) stop(tooLarge());
      else chunks.length = 0; // over the limit: kept reading, no longer kept
    };
    const onEnd = () => {
      stop();
      if (size > limit) reject(tooLarge());
      else resolve(Buffer.concat(chunks));
    };
    const onClose = () => stop(new BadParameterError('the client closed the connection before the end of the request body'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', stop);
    req.on('close', onClose);
  });
}

/** Reads a JSON body of at most `limit` bytes; an empty body is undefined. */
export async function readJsonBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  const body = await readRaw(req, limit);
  if (!body.length) return undefined;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new BadParameterError(`request body is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * The request's target as a URL. Only origin-form (`/path?query`) is served: `//x` is a path here,
 * not another host, and anything else (`*`, `http://host/…`) is a BadParameterError (400).
 */
export function requestUrl(req: IncomingMessage): URL {
  const target = req.url ?? '/';
  if (!target.startsWith('/')) throw new BadParameterError(`request target ${JSON.stringify(target.slice(0, 100))} is not a path`);
  try {
    return new URL(`http://server${target}`);
  } catch {
    throw new BadParameterError(`request target ${JSON.stringify(target.slice(0, 100))} is not a valid path`);
  }
}

/** decodeURIComponent, with malformed percent-encoding a BadParameterError (400). */
export function decodePathPart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new BadParameterError('malformed percent-encoding in the URL');
  }
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value ?? {});
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

function sendBytes(res: ServerResponse, body: Buffer): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, 'cache-control': 'no-store' });
  res.end(body);
}

export function sendError(res: ServerResponse, err: unknown, log: Logger): void {
  if (err instanceof BodyTooLargeError) {
    res.shouldKeepAlive = false;
    sendJson(res, 413, { error: { reason: err.reason, message: err.message } });
    return;
  }
  if (err instanceof TeleportError) {
    sendJson(res, httpStatusOf(err.reason), { error: { reason: err.reason, message: err.message } });
    return;
  }
  if (isClientGone(err) && (!res.socket || res.socket.destroyed)) {
    // The client's own connection is gone (not a reset on one of the server's calls):
    // nothing to answer, and not the server's fault, so no error line and no stack.
    log.debug('the client went away before the request was answered', { error: (err as Error).message });
    res.destroy();
    return;
  }
  log.error('request failed', { error: err instanceof Error ? err.stack : String(err) });
  sendJson(res, 500, { error: { reason: 'internal', message: 'internal server error' } });
}

export class Router {
  private readonly routes: Compiled[];

  constructor(
    routes: Route[],
    private readonly identify: (socket: TLSSocket) => Caller,
    private readonly log: Logger,
    /** Bounds the handlers running at once (service/admission.ts); unbounded without. */
    private readonly admission?: Admission,
  ) {
    this.routes = routes.map(compile);
  }

  private readonly callers = new WeakMap<TLSSocket, Caller>();

  /** The caller of a connection, worked out once per TLS connection (keep-alive reuses it). */
  private callerFor(socket: TLSSocket): Caller {
    let caller = this.callers.get(socket);
    if (!caller) {
      caller = this.identify(socket);
      this.callers.set(socket, caller);
    }
    return caller;
  }

  readonly handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // Idle connections are kept long (keepalive.ts) only for callers this cluster's CAs verified.
    if (!(req.socket as TLSSocket).authorized) res.shouldKeepAlive = false;
    try {
      const url = requestUrl(req);
      let methodMatched = false;
      for (const c of this.routes) {
        const m = c.re.exec(url.pathname);
        if (!m) continue;
        methodMatched = true;
        if (c.route.method !== req.method) continue;
        const caller = this.callerFor(req.socket as TLSSocket);
        if (!allowed(caller, c.route.allow)) {
          throw new AccessDeniedError(caller.kind === 'nop' ? 'this API needs a client certificate' : `access denied to ${req.method} ${url.pathname}`);
        }
        const params = Object.fromEntries(c.names.map((n, i) => [n, decodePathPart(m[i + 1])]));
        const raw =
          req.method === 'GET' || req.method === 'DELETE' ? undefined : c.route.rawBodyLimit !== undefined ? await readRaw(req, c.route.rawBodyLimit) : await readJsonBody(req);
        let body: unknown = raw;
        if (c.route.body) {
          const parsed = c.route.body.safeParse(raw ?? {});
          if (!parsed.success) {
            throw new BadParameterError(
              'invalid request: ' + parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; '),
            );
          }
          body = parsed.data;
        }
        const ctx = { params, query: url.searchParams, body, caller, remoteAddr: req.socket.remoteAddress ?? '' };
        const run = () => c.route.handler(ctx);
        const result = await (this.admission && !c.route.longPoll ? this.admission.run(run) : run());
        if (Buffer.isBuffer(result)) sendBytes(res, result);
        else sendJson(res, 200, result);
        return;
      }
      throw methodMatched ? new BadParameterError(`method ${req.method} not allowed on ${url.pathname}`) : new NotFoundError(`no API at ${url.pathname}`);
    } catch (err) {
      if (res.headersSent) res.destroy();
      else sendError(res, err, this.log);
    }
  };
}
