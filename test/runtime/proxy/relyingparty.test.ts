/**
 * The relying party of a browser's request (runtime/proxy/relyingparty.ts):
 * the proxy's public address the page's origin is, and nothing else.
 */
import type * as http from 'node:http';
import { publicWebUrl, relyingParty } from '../../../runtime/proxy/relyingparty';

const req = (origin?: string) => ({ headers: origin === undefined ? {} : { origin } }) as http.IncomingMessage;
const PUBLIC = [
  { host: 'Proxy.Example.com', port: 3080 },
  { host: 'teleport.example.com', port: 443 },
];
const error = (f: () => unknown) => {
  try {
    f();
    return 'no error';
  } catch (err) {
    return `${(err as { reason?: string }).reason}: ${(err as Error).message}`;
  }
};

describe('relying party of a web request', () => {
  test('GIVEN a page on a public address WHEN asked THEN its host name is the RP ID and its origin the origin (no default port)', () => {
    expect(relyingParty(req('https://proxy.example.com:3080'), PUBLIC, true)).toEqual({ id: 'proxy.example.com', origin: 'https://proxy.example.com:3080' });
    expect(relyingParty(req('https://teleport.example.com'), PUBLIC, true)).toEqual({ id: 'teleport.example.com', origin: 'https://teleport.example.com' });
  });

  test.each([
    ['another host', 'https://evil.example.com:3080'],
    ['the right host on another port', 'https://proxy.example.com:3081'],
    ['plain HTTP while the listener speaks TLS', 'http://proxy.example.com:3080'],
    ['a suffix of the public name', 'https://example.com:3080'],
  ])('GIVEN a page on %s WHEN asked THEN no ceremony runs', (_what, origin) => {
    expect(error(() => relyingParty(req(origin), PUBLIC, true))).toBe(
      `access_denied: security keys are used on the proxy's public address (https://Proxy.Example.com:3080, https://teleport.example.com:443), not from ${new URL(origin).origin}`,
    );
  });

  test('GIVEN plain HTTP behind a load balancer WHEN an http origin asks THEN it is the origin', () => {
    expect(relyingParty(req('http://proxy.example.com:3080'), PUBLIC, false)).toEqual({ id: 'proxy.example.com', origin: 'http://proxy.example.com:3080' });
  });

  test('GIVEN no Origin, no public address, or an IP address as the public address WHEN asked THEN refused, saying what to set', () => {
    expect(error(() => relyingParty(req(), PUBLIC, true))).toBe("bad_parameter: security keys are used from the proxy's web pages (the request has no Origin)");
    expect(error(() => relyingParty(req('https://proxy.example.com:3080'), [], true))).toBe(
      "bad_parameter: security keys need the proxy's public host name as their relying party ID: set proxy_service.public_addr",
    );
    expect(error(() => relyingParty(req('https://192.0.2.10:3080'), [{ host: '192.0.2.10', port: 3080 }], true))).toBe(
      'bad_parameter: proxy_service.public_addr 192.0.2.10 is an IP address: security keys need a DNS name as their relying party ID',
    );
  });

  test("GIVEN public addresses WHEN tsh's page is placed THEN it is on the first (no port for 443)", () => {
    expect(publicWebUrl(PUBLIC)).toBe('https://Proxy.Example.com:3080');
    expect(publicWebUrl([{ host: 'teleport.example.com', port: 443 }])).toBe('https://teleport.example.com');
    expect(() => publicWebUrl([])).toThrow('set proxy_service.public_addr');
  });
});
