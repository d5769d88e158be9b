/**
 * The auth pipe through the proxy's web port (proxy/authpipe.ts), both ends:
 * bytes pass end to end, the number of open pipes is capped (503), an auth
 * server that cannot be reached is a 502, and the node side says so.
 */
import * as https from 'node:https';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { connectAuthPipe, serveAuthPipe } from '../../../runtime/proxy/authpipe';
import { selfSignedServerCert } from '../../../runtime/tlsca';
import { ConnectionProblemError } from '../../../runtime/utils/errors';
import { logger } from '../../../runtime/utils/logger';
import { waitFor } from '../../helpers/proc';

describe('the auth pipe', () => {
  let echo: net.Server;
  let web: https.Server;
  let webPort: number;
  const open = new Set<Duplex>();
  let authUp = true;

  beforeAll(async () => {
    // GIVEN an "auth server" that echoes, and a web listener that serves the auth pipe to it, at most one at once
    echo = net.createServer((s) => s.pipe(s).on('error', () => undefined));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    const echoPort = (echo.address() as net.AddressInfo).port;
    const pair = await selfSignedServerCert(['localhost']);
    web = https.createServer({ key: pair.key, cert: pair.cert });
    web.on('upgrade', (req, socket: Duplex, head: Buffer) =>
      serveAuthPipe(req, socket, head, {
        connectAuth: () =>
          authUp
            ? new Promise((resolve, reject) => {
                const s = net.connect(echoPort, '127.0.0.1', () => resolve(s));
                s.once('error', reject);
              })
            : Promise.reject(new Error('connection refused')),
        open,
        maxPipes: 1,
        log: logger('test'),
      }),
    );
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    webPort = (web.address() as net.AddressInfo).port;
  });
  afterAll(async () => {
    for (const s of open) s.destroy();
    await new Promise<void>((resolve) => web.close(() => resolve()));
    await new Promise<void>((resolve) => echo.close(() => resolve()));
  });

  const pipe = () => connectAuthPipe({ host: '127.0.0.1', port: webPort }, 5_000);

  it('GIVEN a pipe THEN bytes reach auth and come back; GIVEN one more than the cap THEN 503, until the first closes', async () => {
    const first = await pipe();
    const back = new Promise<string>((resolve) => first.once('data', (d: Buffer) => resolve(d.toString())));
    first.resume();
    first.write('through-the-pipe');
    expect(await back).toBe('through-the-pipe');
    await expect(pipe()).rejects.toThrow(/answered 503/);
    first.destroy();
    await waitFor('the pipe to be released', () => open.size === 0);
    const again = await pipe();
    again.destroy();
  });

  it('GIVEN auth cannot be reached THEN the proxy answers 502 and the node side fails with a connection problem', async () => {
    authUp = false;
    try {
      const err = await pipe().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectionProblemError);
      expect((err as Error).message).toMatch(/through the proxy at 127\.0\.0\.1:\d+: it answered 502/);
      expect(open.size).toBe(0);
    } finally {
      authUp = true;
    }
  });
});
