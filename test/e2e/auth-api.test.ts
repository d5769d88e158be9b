/**
 * The auth API at its edge: anonymous callers reach only ping, the CA
 * certificate and the join endpoint; malformed or invalid requests get 400,
 * oversized ones 413, and the server goes on serving.
 */
import * as https from 'node:https';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { startAuth, TestAuth } from '../helpers/cluster';

function request(port: number, method: string, path: string, body?: string | Buffer): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, method, path, rejectUnauthorized: false }, (res) => {
      let data = '';
      res.on('data', (d) => (data += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: data ? JSON.parse(data) : undefined }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('auth API edge', () => {
  let auth: TestAuth;
  beforeAll(async () => {
    auth = await startAuth();
  });
  afterAll(() => auth?.cleanup());

  it('GIVEN no client certificate THEN only the public routes answer', async () => {
    expect(await request(auth.port, 'GET', '/v1/ping')).toEqual({ status: 200, json: { cluster_name: 'example.com', server_version: expect.any(String) } });
    const ca = await request(auth.port, 'GET', '/v1/cacert');
    expect(Buffer.from(ca.json.tls_ca, 'base64').toString()).toMatch(/^-----BEGIN CERTIFICATE-----/);
    for (const [method, path] of [['GET', '/v1/users'], ['GET', '/v1/status'], ['GET', '/v1/authorities/user'], ['POST', '/v1/tokens'], ['GET', '/v1/events']]) {
      const r = await request(auth.port, method, path, method === 'POST' ? '{}' : undefined);
      expect([path, r.status, r.json.error.reason]).toEqual([path, 403, 'access_denied']);
    }
  });

  it('GIVEN malformed, invalid or oversized bodies THEN 400, 400 and 413 with a reason, and the server keeps serving', async () => {
    const bad = await request(auth.port, 'POST', '/v1/tokens/register', '{"hostID": ');
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toMatch(/not valid JSON/);
    const wrong = await request(auth.port, 'POST', '/v1/tokens/register', JSON.stringify({ hostID: '../../etc', role: 'Node' }));
    expect(wrong.status).toBe(400);
    expect(wrong.json.error.message).toMatch(/hostID/);
    const big = await request(auth.port, 'POST', '/v1/tokens/register', Buffer.alloc(2 * 1024 * 1024, 0x61));
    expect(big.status).toBe(413);
    expect(big.json.error.message).toBe('request body is larger than 1048576 bytes');
    expect((await request(auth.port, 'GET', '/v1/nope')).status).toBe(404);
    // '//…' is a path (no route: 404), not a host a URL parser would take it for (that was a 500); a target that is not a path is a 400.
    for (const [target, status, reason] of [['//', 404, 'not_found'], ['//evil.example/v1/ping', 404, 'not_found'], ['http://evil.example/v1/ping', 400, 'bad_parameter']]) {
      const r = await request(auth.port, 'GET', target as string);
      expect([target, r.status, r.json.error.reason]).toEqual([target, status, reason]);
    }
    // Garbage instead of a TLS handshake closes only that connection.
    await new Promise<void>((resolve) => {
      const s = net.connect(auth.port, '127.0.0.1', () => s.end(Buffer.from('\x16\x03\x01garbage-garbage-garbage')));
      s.on('close', () => resolve());
      s.on('error', () => resolve());
      s.resume();
    });
    await new Promise<void>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: auth.port, rejectUnauthorized: false }, () => s.end('NOT HTTP\r\n\r\n'));
      s.on('close', () => resolve());
      s.on('error', () => resolve());
      s.resume();
    });
    expect((await request(auth.port, 'GET', '/v1/ping')).status).toBe(200);
    expect(await auth.tctlOk('status')).toMatch(/^Cluster/);
  });
});
