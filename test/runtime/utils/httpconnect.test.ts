/** Outbound connections through HTTPS_PROXY (a real tinyproxy), NO_PROXY, and the errors a user sees. */
import * as net from 'node:net';
import { dialTcp, proxyFor } from '../../../runtime/utils/httpconnect';
import { startTinyProxy, TinyProxy } from '../../helpers/tinyproxy';

const VARS = ['HTTPS_PROXY', 'https_proxy', 'NO_PROXY', 'no_proxy'] as const;

describe('HTTPS_PROXY and NO_PROXY', () => {
  let proxy: TinyProxy;
  let echo: net.Server;
  let echoPort: number;
  const saved: Record<string, string | undefined> = {};

  beforeAll(async () => {
    proxy = await startTinyProxy();
    echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    echoPort = (echo.address() as net.AddressInfo).port;
    for (const v of VARS) saved[v] = process.env[v];
  });
  afterEach(() => {
    for (const v of VARS) {
      if (saved[v] === undefined) delete process.env[v];
      else process.env[v] = saved[v];
    }
  });
  afterAll(async () => {
    echo?.close();
    await proxy?.stop();
  });

  /** Sends a line over a fresh connection to the echo server and returns what came back. */
  async function roundTrip(): Promise<string> {
    const sock = await dialTcp('127.0.0.1', echoPort, 10_000);
    sock.resume();
    return new Promise((resolve, reject) => {
      sock.once('data', (d) => {
        sock.destroy();
        resolve(d.toString());
      });
      sock.once('error', reject);
      sock.write('hello\n');
    });
  }

  it('GIVEN HTTPS_PROXY WHEN a connection is dialled THEN it goes through a CONNECT tunnel of that proxy', async () => {
    process.env.HTTPS_PROXY = proxy.url;
    const before = proxy.connects().length;
    expect(await roundTrip()).toBe('hello\n');
    expect(proxy.connects().slice(before)).toEqual([`127.0.0.1:${echoPort}`]);
  });

  it('GIVEN NO_PROXY naming the destination WHEN dialled THEN the connection is direct', async () => {
    process.env.HTTPS_PROXY = 'http://127.0.0.1:1';
    process.env.NO_PROXY = 'example.com,127.0.0.1';
    expect(proxyFor('127.0.0.1', echoPort)).toBeUndefined();
    expect(proxyFor('teleport.example.org', 3080)?.host).toBe('127.0.0.1:1');
    expect(await roundTrip()).toBe('hello\n');
  });

  it('GIVEN no proxy variable WHEN dialled THEN the connection is direct', async () => {
    for (const v of VARS) delete process.env[v];
    expect(proxyFor('127.0.0.1', echoPort)).toBeUndefined();
    expect(await roundTrip()).toBe('hello\n');
  });

  it('GIVEN a proxy that refuses the CONNECT or is down THEN the error names the destination, the proxy and its answer', async () => {
    process.env.HTTPS_PROXY = proxy.url;
    await expect(dialTcp('127.0.0.1', 1, 10_000)).rejects.toThrow(new RegExp(`cannot connect to 127\\.0\\.0\\.1:1 through the HTTP proxy 127\\.0\\.0\\.1:\\d+: it answered CONNECT with 5\\d\\d`));
    process.env.HTTPS_PROXY = 'http://127.0.0.1:1';
    await expect(dialTcp('127.0.0.1', echoPort, 10_000)).rejects.toThrow(/through the HTTP proxy 127\.0\.0\.1:1: .*ECONNREFUSED/);
  });

  it('GIVEN an HTTPS_PROXY that is not an http(s) URL THEN it is refused saying so', () => {
    process.env.HTTPS_PROXY = 'socks5://127.0.0.1:1080';
    expect(() => proxyFor('example.com', 3080)).toThrow(/"socks5:" proxies are not supported/);
  });
});
