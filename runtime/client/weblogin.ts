/**
 * Talking to the proxy's web API for `tsh login`: parsing `--proxy`,
 * `GET /webapi/ping` and `POST /webapi/ssh/certs`. The scheme is the one
 * written in `--proxy` (`http://` or `https://`); without one it is HTTPS,
 * and only with `--insecure` does a proxy that answers in plain HTTP
 * (`--insecure-no-tls`) get a second try over http.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { Duplex } from 'node:stream';
import { AccessDeniedError, BadParameterError, ConnectionProblemError, NotFoundError, TeleportError } from '../utils/errors';
import { dialTcp, dialTls, proxyFor, serverName } from '../utils/httpconnect';
import { Ports } from '../contract/ports';

export const DEFAULT_WEB_PORT = Ports.web;
export const DEFAULT_SSH_PORT = Ports.proxySsh;
const RESPONSE_LIMIT = 1024 * 1024;

export interface ProxySpec {
  /** Set when `--proxy` named one. */
  scheme?: 'http' | 'https';
  host: string;
  webPort: number;
  /** Set when `--proxy` named one. */
  sshPort?: number;
}

function port(text: string, what: string): number {
  const n = Number(text);
  if (!/^\d{1,5}$/.test(text) || n < 1 || n > 65535) throw new BadParameterError(`--proxy: ${what} "${text}" is not a port number`);
  return n;
}

/** `[scheme://]host[:webport][,sshport]`, host may be `[v6]`. */
export function parseProxySpec(spec: string): ProxySpec {
  let rest = spec.trim();
  let scheme: ProxySpec['scheme'];
  const m = /^(https?):\/\//i.exec(rest);
  if (m) {
    scheme = m[1].toLowerCase() as 'http' | 'https';
    rest = rest.slice(m[0].length).replace(/\/+$/, '');
  }
  const [hostPort, sshText, ...extra] = rest.split(',');
  if (extra.length) throw new BadParameterError(`--proxy "${spec}": expected host:webport[,sshport]`);
  const hp = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::([^:]*))?$/.exec(hostPort ?? '');
  if (!hp) throw new BadParameterError(`--proxy "${spec}": "${hostPort}" is not host[:port]`);
  const host = hp[1].replace(/^\[|\]$/g, '');
  return {
    scheme,
    host,
    webPort: hp[2] ? port(hp[2], 'web port') : DEFAULT_WEB_PORT,
    sshPort: sshText !== undefined && sshText !== '' ? port(sshText, 'SSH port') : undefined,
  };
}

export function formatHostPort(host: string, p: number): string {
  return host.includes(':') ? `[${host}]:${p}` : `${host}:${p}`;
}

export interface WebClientOptions {
  scheme: 'http' | 'https';
  host: string;
  port: number;
  /** Skip verification of the proxy's HTTPS certificate. */
  insecure?: boolean;
}

/** OpenSSL's and Node's codes for a server certificate this machine does not trust (or that is not for this name). */
const UNTRUSTED_CERT_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Whether `err` (from webRequest) is a server certificate this machine does not trust. */
export function isUntrustedCertError(err: unknown): boolean {
  const cause = (err as { cause?: NodeJS.ErrnoException })?.cause;
  return UNTRUSTED_CERT_CODES.has(cause?.code ?? '');
}

/** Why the proxy's certificate was refused, and the two ways on: --insecure for the quickstart's self-signed one, or trusting it. */
function untrustedCertError(where: string, err: Error): ConnectionProblemError {
  return new ConnectionProblemError(
    `the proxy's HTTPS certificate at ${where} is not trusted (${err.message}). ` +
      `For the self-signed certificate of a quickstart proxy, add --insecure (the certificate is then not checked), ` +
      `or have tsh trust it: run it with NODE_EXTRA_CA_CERTS=<the proxy's data_dir>/webproxy_cert.pem (teleport start prints the path). ` +
      `For a proxy of your own, give it a certificate from a CA this machine trusts (https_keypairs), or name that CA's file in NODE_EXTRA_CA_CERTS`,
    { cause: err },
  );
}

/** Errors that mean "this server does not speak TLS". */
function isPlainHttpAnswer(err: unknown): boolean {
  const e = err as NodeJS.ErrnoException & { reason?: string };
  return e?.code === 'EPROTO' || /wrong version number|packet length too long|http request/i.test(String(e?.message ?? ''));
}

/** One JSON request to the web API; a non-2xx answer becomes the matching typed error with the server's message. */
export function webRequest<T>(opts: WebClientOptions, method: 'GET' | 'POST', urlPath: string, body?: unknown): Promise<T> {
  const where = `${opts.scheme}://${formatHostPort(opts.host, opts.port)}${urlPath}`;
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const tlsOptions = opts.scheme === 'https' ? { rejectUnauthorized: !opts.insecure, ...serverName(opts.host) } : {};
  // With HTTPS_PROXY naming a proxy for this address: a CONNECT tunnel (utils/httpconnect.ts), TLS inside it.
  const throughProxy = (_o: unknown, cb: (err: Error | null, sock: Duplex) => void): undefined => {
    (opts.scheme === 'https' ? dialTls(opts.host, opts.port, 30_000, tlsOptions) : dialTcp(opts.host, opts.port, 30_000)).then(
      (sock) => cb(null, sock),
      (err: Error) => cb(err, undefined as unknown as Duplex),
    );
    return undefined;
  };
  return new Promise<T>((resolve, reject) => {
    const mod = opts.scheme === 'https' ? https : http;
    const req = mod.request(
      {
        method,
        host: opts.host,
        port: opts.port,
        path: urlPath,
        headers: { accept: 'application/json', ...(data ? { 'content-type': 'application/json', 'content-length': data.length } : {}) },
        timeout: 30_000,
        ...tlsOptions,
        ...(proxyFor(opts.host, opts.port) ? { createConnection: throughProxy } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > RESPONSE_LIMIT) req.destroy(new ConnectionProblemError(`${where}: response larger than ${RESPONSE_LIMIT} bytes`));
          else chunks.push(c);
        });
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          // A text answer (the CA export) is the text itself.
          if (status >= 200 && status < 300 && /^text\/plain\b/.test(res.headers['content-type'] ?? '')) return resolve(text as T);
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            return reject(new ConnectionProblemError(`${where}: answered ${res.statusCode} with a body that is not JSON`));
          }
          if (status >= 200 && status < 300) return resolve(json as T);
          const msg = (json as { error?: { message?: string }; message?: string })?.error?.message ?? (json as { message?: string })?.message ?? `HTTP ${status}`;
          if (status === 401 || status === 403) return reject(new AccessDeniedError(msg));
          if (status === 404) return reject(new NotFoundError(`${where}: ${msg}`));
          if (status >= 400 && status < 500) return reject(new BadParameterError(msg));
          reject(new ConnectionProblemError(`${where}: ${msg}`));
        });
      },
    );
    req.on('timeout', () => req.destroy(new ConnectionProblemError(`${where}: no answer within 30s`)));
    req.on('error', (err) => {
      if (err instanceof TeleportError) return reject(err);
      if (UNTRUSTED_CERT_CODES.has((err as NodeJS.ErrnoException).code ?? '')) return reject(untrustedCertError(`https://${formatHostPort(opts.host, opts.port)}`, err));
      const e = new ConnectionProblemError(`cannot reach the proxy at ${where}: ${err.message}`);
      (e as { cause?: unknown }).cause = err;
      reject(e);
    });
    req.end(data);
  });
}

export interface PingResponse {
  /** `oidc` / `github`: the cluster's default connector (`authentication.connector_name`). */
  auth?: { type?: string; second_factor?: string; oidc?: { name?: string }; github?: { name?: string } };
  proxy?: { ssh?: { listen_addr?: string; public_addr?: string; ssh_public_addr?: string } };
  server_version?: string;
}

export interface SshLoginRequest {
  user: string;
  password: string;
  otp_token?: string;
  /** A security key's answer (runtime/client/securitykey.ts). */
  webauthn_response?: Record<string, unknown>;
  /** base64 of the authorized_keys line */
  pub_key: string;
  tls_pub_key?: string;
  /** nanoseconds */
  ttl?: number;
}

export interface SshLoginResponse {
  username: string;
  /** base64 of the authorized_keys style certificate line */
  cert: string;
  /** base64 PEM */
  tls_cert?: string;
  host_signers: { domain_name: string; checking_keys: string[]; tls_certs?: string[] }[];
}

/**
 * Finds how to reach the web API: the scheme given, else HTTPS, falling back
 * to HTTP only with `insecure` when the server answers the TLS hello in plain
 * HTTP. Returns the working options and the ping answer.
 */
export async function discoverProxy(spec: ProxySpec, insecure: boolean): Promise<{ web: WebClientOptions; ping: PingResponse }> {
  const base = { host: spec.host, port: spec.webPort, insecure };
  if (spec.scheme) {
    const web = { ...base, scheme: spec.scheme };
    return { web, ping: await webRequest<PingResponse>(web, 'GET', '/webapi/ping') };
  }
  const web: WebClientOptions = { ...base, scheme: 'https' };
  try {
    return { web, ping: await webRequest<PingResponse>(web, 'GET', '/webapi/ping') };
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    if (!isPlainHttpAnswer(cause)) throw err;
    if (!insecure) {
      throw new ConnectionProblemError(
        `the proxy at ${formatHostPort(spec.host, spec.webPort)} does not speak HTTPS; use --proxy http://${formatHostPort(spec.host, spec.webPort)} (or --insecure) to log in over plain HTTP`,
      );
    }
    const plain: WebClientOptions = { ...base, scheme: 'http' };
    return { web: plain, ping: await webRequest<PingResponse>(plain, 'GET', '/webapi/ping') };
  }
}

/** The proxy's SSH address: `--proxy`'s SSH port, else the ping's ssh_public_addr, else the proxy host with the SSH listen port (3023 by default). */
export function sshProxyAddr(spec: ProxySpec, ping: PingResponse): string {
  if (spec.sshPort) return formatHostPort(spec.host, spec.sshPort);
  const pub = ping.proxy?.ssh?.ssh_public_addr;
  if (pub) return /:\d+$/.test(pub) ? pub : formatHostPort(pub, DEFAULT_SSH_PORT);
  const listen = /:(\d{1,5})$/.exec(ping.proxy?.ssh?.listen_addr ?? '');
  return formatHostPort(spec.host, listen ? Number(listen[1]) : DEFAULT_SSH_PORT);
}

export function requestSshCerts(web: WebClientOptions, req: SshLoginRequest): Promise<SshLoginResponse> {
  return webRequest<SshLoginResponse>(web, 'POST', '/webapi/ssh/certs', req);
}
