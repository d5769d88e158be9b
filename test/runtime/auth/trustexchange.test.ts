/**
 * The leaf's request to the root's proxy when it establishes trust (runtime/auth/trustexchange.ts),
 * against a real HTTPS server with a self-signed certificate: verified by default (the token must
 * not go to whoever answers), accepted with --insecure, and the root's refusal passed on.
 */
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TrustedClusterResource } from '../../../runtime/auth/resources';
import { trustExchange, VALIDATE_PATH } from '../../../runtime/auth/trustexchange';
import { selfSignedServerCert } from '../../../runtime/tlsca';

describe('trust exchange request', () => {
  let server: https.Server;
  let port: number;
  const seen: { path?: string; body: string }[] = [];

  beforeAll(async () => {
    const pair = await selfSignedServerCert(['127.0.0.1']);
    server = https.createServer({ key: pair.key, cert: pair.cert }, (req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        seen.push({ path: req.url, body });
        const token = (JSON.parse(body) as { token: string }).token;
        if (token === 'good') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ certificate_authorities: [] }));
        res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'invalid token' } }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const tc = (token: string): TrustedClusterResource => ({
    kind: 'trusted_cluster',
    version: 'v2',
    metadata: { name: 'root' },
    spec: { enabled: true, token, web_proxy_addr: `127.0.0.1:${port}`, tunnel_addr: `127.0.0.1:${port}`, role_map: [] },
  });

  it('GIVEN a self-signed root proxy certificate WHEN verified THEN refused with the reason, and no request reaches it', async () => {
    await expect(trustExchange({ insecure: false })(tc('good'), [])).rejects.toThrow(/the trusted cluster uses misconfigured HTTP\/TLS certificate: 127\.0\.0\.1:\d+: self.signed certificate/);
    expect(seen).toEqual([]);
  });

  it('GIVEN --insecure THEN the request is made, with the token and our CAs, and the answer returned', async () => {
    await expect(trustExchange({ insecure: true })(tc('good'), [])).resolves.toEqual({ certificate_authorities: [] });
    expect(seen.pop()).toEqual({ path: VALIDATE_PATH, body: JSON.stringify({ token: 'good', certificate_authorities: [] }) });
  });

  it('GIVEN the root refuses THEN its reason is passed on as access denied', async () => {
    await expect(trustExchange({ insecure: true })(tc('bad'), [])).rejects.toThrow(`the trusted cluster at 127.0.0.1:${port} refused to establish trust: invalid token`);
  });
});
