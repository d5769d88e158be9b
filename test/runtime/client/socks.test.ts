/**
 * The `-D` SOCKS listener at the protocol level. The SSH connection to the node is replaced by
 * a stand-in whose `forwardOut` dials the target directly (the e2e test in tsh-commands runs the
 * real thing with curl); everything a client sees is real bytes over real sockets.
 */
import * as net from 'node:net';
import type { Client } from 'ssh2';
import { dynamicForward, parseDynamicSpec } from '../../../runtime/client/socks';

/** A target that answers each chunk with `echo:<chunk>`. */
let echo: net.Server;
let echoPort: number;
/** What the stand-in node was asked to connect to. */
const asked: string[] = [];
const node = {
  forwardOut(_srcIp: string, _srcPort: number, host: string, port: number, cb: (err: Error | undefined, ch?: unknown) => void) {
    asked.push(`${host}:${port}`);
    const sock = net.connect(port, host === 'localhost' ? '127.0.0.1' : host);
    sock.once('connect', () => cb(undefined, Object.assign(sock, { close: () => sock.destroy() })));
    sock.once('error', (err) => cb(err));
  },
} as unknown as Client;
const errors: string[] = [];
let server: net.Server;
let port: number;

beforeAll(async () => {
  echo = net.createServer((s) => s.on('data', (d) => s.write(`echo:${d}`)));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  echoPort = (echo.address() as net.AddressInfo).port;
  server = await dynamicForward(node, { bindHost: '127.0.0.1', bindPort: 0 }, (m) => errors.push(m));
  port = (server.address() as net.AddressInfo).port;
});
afterAll(() => {
  server.close();
  echo.close();
});
beforeEach(() => {
  asked.length = 0;
  errors.length = 0;
});

/** Sends `chunks` at once (as a pipelining client would) and returns what comes back until close or `until` bytes. */
function talk(chunks: Buffer[], until: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const sock = net.connect(port, '127.0.0.1', () => sock.write(Buffer.concat(chunks)));
    sock.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.length >= until) {
        sock.destroy();
        resolve(got);
      }
    });
    sock.on('close', () => resolve(got));
    sock.on('error', reject);
  });
}

const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const SOCKS5_HELLO = Buffer.from([0x05, 0x01, 0x00]);
const OK5 = Buffer.from([0x05, 0x00, 0x05, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);

describe('tsh ssh -D: the SOCKS listener', () => {
  test('GIVEN SOCKS5 with a host name and data sent before the reply WHEN served THEN the node connects to the name and the data arrives', async () => {
    const name = Buffer.from('localhost');
    const req = Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x03, name.length]), name, u16(echoPort)]);
    const got = await talk([SOCKS5_HELLO, req, Buffer.from('early')], OK5.length + 'echo:early'.length);
    expect(got.subarray(0, OK5.length)).toEqual(OK5);
    expect(got.subarray(OK5.length).toString()).toBe('echo:early');
    expect(asked).toEqual([`localhost:${echoPort}`]);
  });

  test('GIVEN SOCKS5 with an IPv4 address WHEN served THEN it connects there', async () => {
    const req = Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1]), u16(echoPort)]);
    const got = await talk([SOCKS5_HELLO, req, Buffer.from('v4')], OK5.length + 'echo:v4'.length);
    expect(got.subarray(OK5.length).toString()).toBe('echo:v4');
    expect(asked).toEqual([`127.0.0.1:${echoPort}`]);
  });

  test('GIVEN SOCKS4a WHEN served THEN the name after the user id is used, with a 0x5a grant', async () => {
    const req = Buffer.concat([Buffer.from([0x04, 0x01]), u16(echoPort), Buffer.from([0, 0, 0, 1]), Buffer.from('user\0localhost\0')]);
    const got = await talk([req, Buffer.from('4a')], 8 + 'echo:4a'.length);
    expect([...got.subarray(0, 2)]).toEqual([0x00, 0x5a]);
    expect(got.subarray(8).toString()).toBe('echo:4a');
    expect(asked).toEqual([`localhost:${echoPort}`]);
  });

  test('GIVEN a SOCKS5 BIND request WHEN served THEN it gets "command not supported" and is closed, and the next client is served', async () => {
    const req = Buffer.concat([Buffer.from([0x05, 0x02, 0x00, 0x01, 127, 0, 0, 1]), u16(echoPort)]);
    const got = await talk([SOCKS5_HELLO, req], 100);
    expect([...got]).toEqual([0x05, 0x00, 0x05, 0x07, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
    expect(asked).toEqual([]);
    expect(errors).toEqual(['-D: SOCKS5 command 2 is not supported (only CONNECT)']);
    const ok = Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1]), u16(echoPort)]);
    expect((await talk([SOCKS5_HELLO, ok, Buffer.from('again')], OK5.length + 10)).subarray(OK5.length).toString()).toBe('echo:again');
  });

  test('GIVEN a client offering only username/password WHEN served THEN it is told no method is acceptable', async () => {
    expect([...(await talk([Buffer.from([0x05, 0x01, 0x02])], 100))]).toEqual([0x05, 0xff]);
  });

  test('GIVEN a target the node cannot reach WHEN served THEN the client gets "connection refused"', async () => {
    const closed = await new Promise<number>((r) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => r(p));
      });
    });
    const req = Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1]), u16(closed)]);
    const got = await talk([SOCKS5_HELLO, req], 100);
    expect([...got.subarray(2, 4)]).toEqual([0x05, 0x05]);
    expect(errors[0]).toMatch(new RegExp(`channel for -D to 127.0.0.1:${closed}: open failed`));
  });

  test('GIVEN something that is not SOCKS WHEN it connects THEN that connection is closed without a reply', async () => {
    expect((await talk([Buffer.from('GET / HTTP/1.0\r\n\r\n')], 100)).length).toBe(0);
    expect(errors).toEqual(['-D: not a SOCKS4 or SOCKS5 client (first byte 71)']);
  });

  test('GIVEN -D specs WHEN parsed THEN port, address:port and [v6]:port work and junk is refused', () => {
    expect(parseDynamicSpec('1080')).toEqual({ bindHost: '127.0.0.1', bindPort: 1080 });
    expect(parseDynamicSpec('0.0.0.0:1080')).toEqual({ bindHost: '0.0.0.0', bindPort: 1080 });
    expect(parseDynamicSpec('[::1]:1080')).toEqual({ bindHost: '::1', bindPort: 1080 });
    expect(() => parseDynamicSpec('1080:localhost:80')).toThrow('"1080:localhost:80" is not [bind_address:]port');
    expect(() => parseDynamicSpec('70000')).toThrow('is not [bind_address:]port');
  });
});
