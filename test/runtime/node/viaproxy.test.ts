/**
 * How a node alone tells a proxy's web port from an auth server (runtime/node/viaproxy.ts
 * discoverProxy), on real loopback sockets: an address that answers in any way decides at once;
 * while none answers it asks again with backoff, logging why, until one does or the start is
 * stopped. (The real proxy and auth server: test/e2e/tunnel-netns.test.ts.)
 */
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { discoverProxy } from '../../../runtime/node/viaproxy';
import { selfSignedServerCert } from '../../../runtime/tlsca';
import type { Logger } from '../../../runtime/utils/logger';
import { freePort, waitFor } from '../../helpers/proc';

const FAST = { minMs: 20, maxMs: 100 };
const WAITING = 'no address in auth_servers answers yet (a proxy or an auth server); retrying';

/** A logger that keeps what it was told. */
function recorder(): Logger & { warnings: Array<{ msg: string; fields?: Record<string, unknown> }> } {
  const warnings: Array<{ msg: string; fields?: Record<string, unknown> }> = [];
  const log = {
    warnings,
    debug: () => undefined,
    info: () => undefined,
    error: () => undefined,
    warn: (msg: string, fields?: Record<string, unknown>) => void warnings.push({ msg, ...(fields ? { fields } : {}) }),
    child: () => log,
  };
  return log;
}

/** An HTTPS server on 127.0.0.1:`port` that answers every request with `status` and `body`. */
async function httpsServer(port: number, status: number, body: unknown): Promise<https.Server> {
  const pair = await selfSignedServerCert(['localhost']);
  const server = https.createServer({ key: pair.key, cert: pair.cert }, (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return server;
}

const close = (s: net.Server) => new Promise((resolve) => s.close(resolve));

describe('discoverProxy', () => {
  const servers: net.Server[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await close(s);
  });

  it('GIVEN nothing answers at first WHEN a proxy comes up at the address THEN it keeps asking, logging each round with the reason, and returns the route through it', async () => {
    // GIVEN
    const port = await freePort();
    const log = recorder();
    // WHEN
    const found = discoverProxy([{ host: '127.0.0.1', port }], { log, backoff: FAST });
    await waitFor('two rounds without an answer', () => log.warnings.length >= 2);
    servers.push(await httpsServer(port, 200, { proxy: { ssh: { tunnel_listen_addr: '0.0.0.0:4024' } } }));
    // THEN
    expect(await found).toEqual({ web: { host: '127.0.0.1', port }, tunnel: { host: '127.0.0.1', port: 4024 } });
    expect(log.warnings[0]).toEqual({ msg: WAITING, fields: { errors: [expect.stringMatching(new RegExp(`^127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`))], retry_in_ms: expect.any(Number) } });
  });

  it('GIVEN an address that answers but is no proxy (an auth server: 404) THEN it is taken for an auth server at once, without waiting', async () => {
    const port = await freePort();
    servers.push(await httpsServer(port, 404, { error: 'not found' }));
    const log = recorder();
    expect(await discoverProxy([{ host: '127.0.0.1', port }], { log, backoff: FAST })).toBeUndefined();
    expect(log.warnings).toEqual([]);
  });

  it('GIVEN a 200 answer longer than any ping (over 64 KiB) THEN it is an answer (no proxy), at once', async () => {
    const port = await freePort();
    servers.push(await httpsServer(port, 200, { filler: 'x'.repeat(100_000) }));
    const log = recorder();
    expect(await discoverProxy([{ host: '127.0.0.1', port }], { log, backoff: FAST })).toBeUndefined();
    expect(log.warnings).toEqual([]);
  });

  it('GIVEN a peer that answers but does not speak TLS THEN that is an answer too (no proxy): no waiting', async () => {
    const plain = http.createServer((_req, res) => res.end('plain'));
    servers.push(plain);
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    const log = recorder();
    expect(await discoverProxy([{ host: '127.0.0.1', port: (plain.address() as net.AddressInfo).port }], { log, backoff: FAST })).toBeUndefined();
    expect(log.warnings).toEqual([]);
  });

  it('GIVEN one silent address and one proxy THEN the proxy is found in the first round', async () => {
    const [silent, port] = [await freePort(), await freePort()];
    servers.push(await httpsServer(port, 200, { proxy: { ssh: { tunnel_listen_addr: '0.0.0.0:3024', ssh_tunnel_public_addr: 'tunnel.example.com:443' } } }));
    const log = recorder();
    const route = await discoverProxy([{ host: '127.0.0.1', port: silent }, { host: '127.0.0.1', port }], { log, backoff: FAST });
    expect(route).toEqual({ web: { host: '127.0.0.1', port }, tunnel: { host: 'tunnel.example.com', port: 443 } });
    expect(log.warnings).toEqual([]);
  });

  it('GIVEN nothing answers WHEN the start is stopped (its signal aborts) THEN the wait ends at once with an error saying so', async () => {
    const port = await freePort();
    const log = recorder();
    const stop = new AbortController();
    const found = discoverProxy([{ host: '127.0.0.1', port }], { log, signal: stop.signal, backoff: { minMs: 600_000, maxMs: 600_000 } });
    await waitFor('a round without an answer', () => log.warnings.length >= 1);
    stop.abort();
    await expect(found).rejects.toThrow('stopped while waiting for auth_servers to answer');
  });
});
