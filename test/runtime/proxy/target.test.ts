/** Parsing the `proxy:` subsystem request strictly. */
import { joinHostPort, parseProxySubsystem } from '../../../runtime/proxy/target';
import { BadParameterError } from '../../../runtime/utils/errors';

describe('parseProxySubsystem', () => {
  it.each([
    ['proxy:db:3022', { host: 'db', port: 3022, namespace: 'default', cluster: '' }],
    ['proxy:db.example.com:22@example.com', { host: 'db.example.com', port: 22, namespace: 'default', cluster: 'example.com' }],
    ['proxy:10.0.0.5:0@prod@leaf.example.com', { host: '10.0.0.5', port: 0, namespace: 'prod', cluster: 'leaf.example.com' }],
    ['proxy:db:', { host: 'db', port: 0, namespace: 'default', cluster: '' }],
    ['proxy:db:22@', { host: 'db', port: 22, namespace: 'default', cluster: '' }],
    ['proxy:[::1]:3022', { host: '::1', port: 3022, namespace: 'default', cluster: '' }],
    ['proxy:7d3e2f4a-0000-4000-8000-000000000001:', { host: '7d3e2f4a-0000-4000-8000-000000000001', port: 0, namespace: 'default', cluster: '' }],
    ['proxy:@leaf', { host: '', port: 0, namespace: 'default', cluster: 'leaf' }],
  ])('GIVEN %s THEN it parses', (request, want) => {
    expect(parseProxySubsystem(request)).toEqual(want);
  });

  it.each([
    ['sftp', /does not start with "proxy:"/],
    ['proxy:', /the target is empty/],
    ['proxy:db', /"db" has no port/],
    ['proxy::22', /the host is empty/],
    ['proxy:db:65536', /"65536" is not a port number/],
    ['proxy:db:-1', /"-1" is not a port number/],
    ['proxy:db:22x', /"22x" is not a port number/],
    ['proxy:d b:22', /"d b" is not a host name/],
    ['proxy:db;rm -rf:22', /is not a host name/],
    ['proxy:[::1:22', /is not \[ipv6\]:port/],
    ['proxy:[example]:22', /"example" is not an IPv6 address/],
    ['proxy:db:22@a@b@c', /too many "@"/],
    ['proxy:db:22@@leaf', /"" is not a valid namespace name/],
    ['proxy:db:22@bad/cluster', /"bad\/cluster" is not a valid cluster name/],
    ['proxy:@', /proxy:@cluster takes only a cluster name/],
    ['proxy:' + 'a'.repeat(2000) + ':22', /longer than 1024 characters/],
  ])('GIVEN %s THEN it is a BadParameterError naming the problem', (request, message) => {
    let err: unknown;
    try {
      parseProxySubsystem(request);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BadParameterError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toContain('expected proxy:host:port[@cluster]');
  });

  it('GIVEN an IPv6 host THEN joinHostPort brackets it', () => {
    expect(joinHostPort('::1', 22)).toBe('[::1]:22');
    expect(joinHostPort('10.0.0.1', 22)).toBe('10.0.0.1:22');
  });
});
