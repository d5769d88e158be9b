/**
 * The TLS front doors (auth API 3025, web 3080) close a connection whose
 * handshake is not done within 10 s of connecting, even when the client
 * keeps it busy by dripping its ClientHello a byte at a time.
 */
import * as net from 'node:net';
import { startAuth, TestAuth } from '../helpers/cluster';
import { run } from '../helpers/proc';

/** The first 30 bytes of a TLS record announcing a 512-byte ClientHello (30 s at a byte a second, well past the 10 s deadline). */
const RECORD_START = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), Buffer.alloc(19, 0x2a)]);
const DRIP_EVERY_MS = 1_000;

const dripping = new Set<net.Socket>();

/** A connection that drips RECORD_START and never finishes; resolves when the server closes it, fails if the record got out first. */
function drip(port: number): Promise<{ bytesSent: number }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    dripping.add(sock);
    let i = 0;
    // The attacker's pacing, not a wait: a byte every second keeps an idle timer from firing.
    const timer = setInterval(() => {
      if (i < RECORD_START.length) return void sock.write(RECORD_START.subarray(i, ++i));
      reject(new Error('the whole record went out before the server closed the connection'));
      sock.destroy();
    }, DRIP_EVERY_MS);
    sock.on('error', () => undefined);
    sock.once('connect', () => sock.write(RECORD_START.subarray(0, ++i)));
    sock.once('close', () => {
      clearInterval(timer);
      dripping.delete(sock);
      resolve({ bytesSent: i });
    });
  });
}

describe('TLS handshake deadline on the auth and web listeners', () => {
  let auth: TestAuth;
  beforeAll(async () => {
    auth = await startAuth({ proxy: {} });
  });
  afterAll(async () => {
    dripping.forEach((s) => s.destroy());
    await auth?.cleanup();
  });

  for (const door of ['web', 'auth'] as const) {
    it(`GIVEN a client dripping its ClientHello to the ${door} listener THEN the server closes it before the hello is complete, while a real client is served`, async () => {
      const port = door === 'web' ? auth.proxyPorts!.web : auth.port;
      // GIVEN / WHEN a slow client
      const slow = drip(port);
      // THEN a real TLS client is served meanwhile
      const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`], { input: '' });
      expect(r.stdout).toMatch(/Cipher is (?!\(NONE\))/);
      // AND the slow one is closed by the server (drip() fails if the record got out first)
      expect((await slow).bytesSent).toBeGreaterThan(1);
    });
  }
});
