/**
 * How a failed request is answered and logged (sendError, shared by the auth
 * API and the web listener): a reset on one of the server's own calls while
 * the client still waits is a server failure (500, an error line); only a
 * client whose own connection is gone is a debug line. Real HTTP on loopback.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { sendError } from '../../../runtime/auth/http';
import { logger, setLogLevel, setLogWriter } from '../../../runtime/utils/logger';

describe('sendError', () => {
  let lines: Record<string, unknown>[];
  let server: http.Server | undefined;
  beforeEach(() => {
    lines = [];
    setLogLevel('debug');
    setLogWriter((l) => lines.push(JSON.parse(l) as Record<string, unknown>), true);
  });
  afterEach(async () => {
    setLogLevel('info');
    setLogWriter((l) => process.stderr.write(l + '\n'), !process.stderr.isTTY);
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    server = undefined;
  });

  it('GIVEN a reset on a call the server made WHEN the client still waits THEN it gets a 500 and the failure is an error line', async () => {
    // GIVEN a handler whose own upstream call was reset.
    server = http.createServer((_req, res) => sendError(res, Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), logger('test')));
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;

    // WHEN a client asks.
    const status = await new Promise<number | undefined>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: '/' }, (res) => {
        res.resume();
        resolve(res.statusCode);
      }).on('error', reject);
    });

    // THEN it is answered 500 and logged as an error, not as a client that went away.
    expect(status).toBe(500);
    expect(lines.map((l) => `${String(l.level)} ${String(l.msg)}`)).toEqual(['error request failed']);
  });
});
