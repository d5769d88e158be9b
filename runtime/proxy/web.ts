/**
 * The proxy's web listener (3080): HTTPS with the configured key pairs, or a
 * self-signed certificate made on first start (`webproxy_{key,cert}.pem` in
 * data_dir), or plain HTTP with `--insecure-no-tls` behind a load balancer
 * that terminates TLS. Serves `GET /webapi/ping` (load balancer health checks
 * and client discovery); the login API and pages come with the rest of the
 * proxy (issue 4).
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { sendError, sendJson } from '../auth/http';
import { selfSignedServerCert } from '../tlsca';
import { NotFoundError } from '../utils/errors';
import { Logger } from '../utils/logger';

export interface PingResponse {
  auth: { type: string; second_factor: string };
  proxy: { ssh: { listen_addr: string; tunnel_listen_addr: string; public_addr: string; ssh_public_addr: string } };
  server_version: string;
  min_client_version: string;
}

export interface WebServiceOptions {
  listen: { host: string; port: number };
  dataDir: string;
  /** Configured certificate/key files (first one is served); empty means self-signed. */
  keyPairs: { keyFile: string; certFile: string }[];
  insecureNoTls: boolean;
  /** DNS names and IPs for the self-signed certificate. */
  hostNames: string[];
  ping: () => Promise<PingResponse>;
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
      if (route === '/webapi/ping' && (req.method === 'GET' || req.method === 'HEAD')) {
        sendJson(res, 200, await opts.ping());
        return;
      }
      throw new NotFoundError(`no page at ${url.pathname}`);
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
