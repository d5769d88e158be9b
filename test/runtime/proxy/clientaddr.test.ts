import * as http from 'node:http';
import { buildConfig, parseCidr, parseConfig } from '../../../runtime/config';
import { ClientAddress } from '../../../runtime/proxy/clientaddr';
import { configErrorOf, yaml } from '../config/helpers';

/** The parts of a request ClientAddress reads. */
const req = (peer: string, xff?: string | string[]) =>
  ({ socket: { remoteAddress: peer }, headers: xff === undefined ? {} : { 'x-forwarded-for': xff } }) as unknown as http.IncomingMessage;

describe('the client address of a web request', () => {
  test('GIVEN nothing trusted THEN the TCP peer, whatever X-Forwarded-For says (IPv4-mapped peers as IPv4)', () => {
    const c = new ClientAddress();
    expect(c.of(req('198.51.100.1', '203.0.113.9'))).toBe('198.51.100.1');
    expect(c.of(req('::ffff:198.51.100.1'))).toBe('198.51.100.1');
    expect(c.of(req('2001:db8::1', '203.0.113.9'))).toBe('2001:db8::1');
  });

  test('GIVEN trusted balancers THEN the first untrusted address from the right of X-Forwarded-For', () => {
    const c = new ClientAddress(['10.0.0.0/8', 'fd00::/8'].map(parseCidr));
    // WHEN a client behind the balancer wrote its own header THEN the balancer's appended entry wins
    expect(c.of(req('10.0.1.5', '1.2.3.4, 203.0.113.9'))).toBe('203.0.113.9');
    // WHEN there are several trusted hops (and repeated headers) THEN they are skipped
    expect(c.of(req('10.0.1.5', ['203.0.113.9', '10.0.2.7']))).toBe('203.0.113.9');
    expect(c.of(req('::ffff:10.0.1.5', '2001:db8::9, fd00::1'))).toBe('2001:db8::9');
    // WHEN every hop is trusted THEN the leftmost
    expect(c.of(req('10.0.1.5', '10.9.9.9, 10.0.2.7'))).toBe('10.9.9.9');
    // WHEN the header is missing, empty or malformed THEN the last trusted hop
    expect(c.of(req('10.0.1.5'))).toBe('10.0.1.5');
    expect(c.of(req('10.0.1.5', ''))).toBe('10.0.1.5');
    expect(c.of(req('10.0.1.5', '203.0.113.9, 10.0.2.7:443'))).toBe('10.0.1.5');
    expect(c.of(req('10.0.1.5', '203.0.113.9, ,10.0.2.7'))).toBe('10.0.2.7');
    // WHEN the peer is not a trusted balancer THEN its header is ignored
    expect(c.of(req('198.51.100.1', '203.0.113.9'))).toBe('198.51.100.1');
  });
});

describe('proxy_service.trust_x_forwarded_for_from in teleport.yaml', () => {
  test('GIVEN addresses and blocks, as a string or a list THEN they become the trusted set', () => {
    const one = buildConfig(parseConfig(yaml('proxy_service:', '  trust_x_forwarded_for_from: 10.0.0.0/16'), 't.yaml'), {}, {});
    expect(one.proxy.trustXForwardedForFrom).toEqual([{ address: '10.0.0.0', prefix: 16, family: 'ipv4' }]);
    const many = buildConfig(parseConfig(yaml('proxy_service:', '  trust_x_forwarded_for_from: [192.0.2.1, "2001:db8::/32"]'), 't.yaml'), {}, {});
    expect(many.proxy.trustXForwardedForFrom).toEqual([
      { address: '192.0.2.1', prefix: 32, family: 'ipv4' },
      { address: '2001:db8::', prefix: 32, family: 'ipv6' },
    ]);
    expect(buildConfig(parseConfig('', 't.yaml'), {}, {}).proxy.trustXForwardedForFrom).toEqual([]);
  });

  test('GIVEN a host name, a prefix too long or garbage THEN a config error at file:line', () => {
    const lines = configErrorOf(() =>
      parseConfig(yaml('proxy_service:', '  trust_x_forwarded_for_from:', '    - alb.example.com', '    - 10.0.0.0/33', '    - "::1/129"', '    - 10.0.0.0/'), '/etc/teleport.yaml'),
    ).message.split('\n');
    expect(lines).toEqual([
      expect.stringMatching(/^\/etc\/teleport\.yaml:3:\d+: .*"alb\.example\.com": expected an IP address or ip\/prefix/),
      expect.stringMatching(/^\/etc\/teleport\.yaml:4:\d+: .*the prefix length must be 0 to 32/),
      expect.stringMatching(/^\/etc\/teleport\.yaml:5:\d+: .*the prefix length must be 0 to 128/),
      expect.stringMatching(/^\/etc\/teleport\.yaml:6:\d+: .*the prefix length must be 0 to 32/),
    ]);
  });
});
