/**
 * The proxy's web listener (3080): HTTPS with the configured key pairs, or a
 * self-signed certificate made on first start (`webproxy_{key,cert}.pem` in
 * data_dir), or plain HTTP with `--insecure-no-tls` behind a load balancer
 * that terminates TLS. Serves the web API (all also under `/v1`):
 *   GET  /webapi/ping                     load balancer health checks, client discovery
 *   POST /webapi/ssh/certs                tsh login: password + second factor in, certificates out
 *   GET  /webapi/signuptokens/:token      what the sign-up page shows (user, TOTP enrolment URL)
 *   POST /webapi/signuptokens/:token      completes the sign-up (password + TOTP code)
 * Bodies are JSON of at most 64 KiB, validated by one schema each; a bad one gets a 4xx.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { z } from 'zod';
import { readJsonBody, sendError, sendJson } from '../auth/http';
import { selfSignedServerCert } from '../tlsca';
import { BadParameterError, NotFoundError } from '../utils/errors';
import { Logger } from '../utils/logger';

export interface PingResponse {
  auth: { type: string; second_factor: string };
  proxy: { ssh: { listen_addr: string; tunnel_listen_addr: string; public_addr: string; ssh_public_addr: string } };
  server_version: string;
  min_client_version: string;
}

/** What the web API asks of the cluster (the auth service, through the proxy's identity). */
export interface WebApi {
  ping(): Promise<PingResponse>;
  login(user: string, body: LoginBody): Promise<unknown>;
  signupToken(token: string): Promise<unknown>;
  completeSignup(token: string, body: SignupBody): Promise<unknown>;
}

const WEB_BODY_LIMIT = 64 * 1024;
const TOKEN_RE = /^[0-9a-f]{32}$/;

/** `POST /webapi/ssh/certs` (formats.md §4.3 CreateSSHCertReq). */
export const loginBodySchema = z
  .object({
    user: z.string().min(1).max(255),
    password: z.string().min(1).max(1024),
    otp_token: z.string().max(16).optional(),
    hotp_token: z.string().max(16).optional(),
    pub_key: z.string().min(1).max(16384),
    tls_pub_key: z.string().max(16384).optional(),
    ttl: z.number().int().nonnegative().optional(),
    compatibility: z.string().max(32).optional(),
    route_to_cluster: z.string().max(255).optional(),
  })
  .strict();
export type LoginBody = z.infer<typeof loginBodySchema>;

export const signupBodySchema = z.object({ password: z.string().min(1).max(1024), otp_token: z.string().max(16).optional() }).strict();
export type SignupBody = z.infer<typeof signupBodySchema>;

async function parseBody<T>(req: http.IncomingMessage, schema: z.ZodType<T>): Promise<T> {
  const parsed = schema.safeParse((await readJsonBody(req, WEB_BODY_LIMIT)) ?? {});
  if (parsed.success) return parsed.data;
  throw new BadParameterError('invalid request: ' + parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; '));
}

function signupToken(value: string): string {
  if (!TOKEN_RE.test(value)) throw new NotFoundError('sign-up token not found or expired');
  return value;
}

export interface WebServiceOptions {
  listen: { host: string; port: number };
  dataDir: string;
  /** Configured certificate/key files (first one is served); empty means self-signed. */
  keyPairs: { keyFile: string; certFile: string }[];
  insecureNoTls: boolean;
  /** DNS names and IPs for the self-signed certificate. */
  hostNames: string[];
  api: WebApi;
  log: Logger;
}

export interface WebService {
  readonly address: { host: string; port: number };
  readonly scheme: 'https' | 'http';
  close(): Promise<void>;
}

const SECURITY_HEADERS = {
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

/** The key pair to serve: the configured one, or the self-signed one kept in data_dir (made once, 0600). */
async function loadKeyPair(opts: WebServiceOptions): Promise<{ key: string; cert: string }> {
  const configured = opts.keyPairs[0];
  if (configured) return { key: fs.readFileSync(configured.keyFile, 'utf8'), cert: fs.readFileSync(configured.certFile, 'utf8') };
  const keyFile = path.join(opts.dataDir, 'webproxy_key.pem');
  const certFile = path.join(opts.dataDir, 'webproxy_cert.pem');
  if (!fs.existsSync(keyFile) || !fs.existsSync(certFile)) {
    const pair = await selfSignedServerCert(opts.hostNames);
    fs.writeFileSync(keyFile, pair.key, { mode: 0o600 });
    fs.writeFileSync(certFile, pair.cert, { mode: 0o600 });
    opts.log.warn('serving HTTPS with a self-signed certificate; set https_keypairs for one clients trust', { cert: certFile });
  }
  return { key: fs.readFileSync(keyFile, 'utf8'), cert: fs.readFileSync(certFile, 'utf8') };
}

export async function startWebService(opts: WebServiceOptions): Promise<WebService> {
  const { log } = opts;
  const handler = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    try {
      const url = new URL(req.url ?? '/', 'http://proxy');
      const route = url.pathname.replace(/^\/v1(?=\/webapi\/)/, '');
      const signup = /^\/webapi\/signuptokens\/([^/]+)$/.exec(route);
      const { api } = opts;
      if (route === '/webapi/ping' && (req.method === 'GET' || req.method === 'HEAD')) {
        sendJson(res, 200, await api.ping());
      } else if (route === '/webapi/ssh/certs' && req.method === 'POST') {
        const body = await parseBody(req, loginBodySchema);
        sendJson(res, 200, await api.login(body.user, body));
      } else if (signup && req.method === 'GET') {
        sendJson(res, 200, await api.signupToken(signupToken(signup[1])));
      } else if (signup && req.method === 'POST') {
        const body = await parseBody(req, signupBodySchema);
        sendJson(res, 200, await api.completeSignup(signupToken(signup[1]), body));
      } else {
        throw new NotFoundError(`no page at ${url.pathname}`);
      }
    } catch (err) {
      sendError(res, err, log);
    }
  };
  const server = opts.insecureNoTls
    ? http.createServer(handler)
    : https.createServer({ ...(await loadKeyPair(opts)), minVersion: 'TLSv1.2' }, handler);
  server.headersTimeout = 30_000;
  server.requestTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listen.port, opts.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = { host: opts.listen.host, port: (server.address() as AddressInfo).port };
  const scheme = opts.insecureNoTls ? 'http' : 'https';
  log.info('web service is listening', { addr: `${scheme}://${address.host}:${address.port}` });
  return {
    address,
    scheme,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
