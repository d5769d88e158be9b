/**
 * `proxy_service.acme` in teleport.yaml: Teleport's keys (enabled, email, uri) and ours
 * (renew_before); what it needs (DNS names in public_addr) and what it cannot go with
 * (the operator's own certificate, --insecure-no-tls), each refused at its line.
 */
import { buildConfig, parseConfig } from '../../../runtime/config';
import { errorLines, yaml } from './helpers';

const ENV = { HOME: '/home/test' };

/** buildConfig over a file whose proxy_service has these lines (the file's lines 1-3 come first). */
const build = (proxyLines: string[], flags: Record<string, unknown> = {}) =>
  buildConfig(parseConfig(yaml('teleport:', '  data_dir: /d', 'proxy_service:', ...proxyLines.map((l) => `  ${l}`)), 't.yaml'), flags, ENV);

describe('proxy_service.acme', () => {
  it('GIVEN acme enabled with a DNS public_addr WHEN built THEN it asks Let’s Encrypt by default, with the email and renew_before given', () => {
    const cfg = build(['public_addr: proxy.example.com:443', 'acme:', '  enabled: yes', '  email: ops@example.com', '  renew_before: 720h']);
    expect(cfg.proxy.acme).toEqual({ directoryUrl: 'https://acme-v02.api.letsencrypt.org/directory', email: 'ops@example.com', renewBeforeMs: 720 * 3600_000 });
  });

  it('GIVEN acme with a uri WHEN built THEN that directory is used', () => {
    const cfg = build(['public_addr: proxy.example.com', 'acme:', '  enabled: yes', '  uri: https://acme.example.net/dir']);
    expect(cfg.proxy.acme!.directoryUrl).toBe('https://acme.example.net/dir');
  });

  it('GIVEN acme keys but enabled: no (or absent) WHEN built THEN there is no ACME and nothing else is required', () => {
    expect(build(['acme:', '  enabled: no', '  email: ops@example.com']).proxy.acme).toBeUndefined();
    expect(build(['acme:', '  email: ops@example.com']).proxy.acme).toBeUndefined();
  });

  it.each<[string, string[], string]>([
    ['a plain-HTTP uri', ['public_addr: p.example.com', 'acme:', '  enabled: yes', '  uri: http://acme.example.net/dir'], 't.yaml:7:10: proxy_service.acme.uri: expected the https:// URL of an ACME directory, got "http://acme.example.net/dir"'],
    ['a uri that is not a URL', ['public_addr: p.example.com', 'acme:', '  enabled: yes', '  uri: acme'], 't.yaml:7:10: proxy_service.acme.uri: expected the https:// URL of an ACME directory, got "acme"'],
    ['a uri with credentials', ['public_addr: p.example.com', 'acme:', '  enabled: yes', '  uri: https://me:secret@acme.example.net/dir'], 't.yaml:7:10: proxy_service.acme.uri: the ACME directory URL must not hold a user name or password'],
    ['an email without @', ['public_addr: p.example.com', 'acme:', '  enabled: yes', '  email: ops'], 't.yaml:7:12: proxy_service.acme.email: expected an e-mail address, got "ops"'],
    ['renew_before of 0', ['public_addr: p.example.com', 'acme:', '  enabled: yes', '  renew_before: 0s'], 't.yaml:7:19: proxy_service.acme.renew_before: the duration "0s" must be greater than zero'],
    ['an unknown key', ['public_addr: p.example.com', 'acme:', '  enabled: yes', '  insecure: yes'], 't.yaml:7:5: unknown key "insecure" in proxy_service.acme'],
    ['no public_addr', ['acme:', '  enabled: yes'], 't.yaml:5:14: proxy_service.acme.enabled: acme needs proxy_service.public_addr'],
    ['an IPv6 public_addr', ['public_addr: "[::1]:3080"', 'acme:', '  enabled: yes'], 't.yaml:4:16: proxy_service.public_addr[0]: acme cannot get a certificate for the IP address ::1: public_addr must be a DNS name'],
    ['an IPv4 public_addr second', ['public_addr: ["p.example.com", "10.0.0.1:443"]', 'acme:', '  enabled: yes'], 't.yaml:4:34: proxy_service.public_addr[1]: acme cannot get a certificate for the IP address 10.0.0.1'],
    ['a single-label public_addr', ['public_addr: proxy', 'acme:', '  enabled: yes'], 't.yaml:4:16: proxy_service.public_addr[0]: acme cannot get a certificate for proxy: it is not a fully qualified DNS name'],
    ['https_cert_file', ['public_addr: p.example.com', 'https_key_file: /k', 'https_cert_file: /c', 'acme:', '  enabled: yes'], 't.yaml:6:20: proxy_service.https_cert_file: https_cert_file cannot be used with acme.enabled'],
  ])('GIVEN acme with %s WHEN built THEN it is refused at the line', (_what, lines, message) => {
    const text = errorLines(() => build(lines)).join('\n');
    expect(text).toContain(message);
    expect(text).not.toContain('secret');
  });

  it('GIVEN acme enabled WHEN --insecure-no-tls is given THEN it is refused (the validation needs TLS on the web port)', () => {
    const lines = errorLines(() => build(['public_addr: p.example.com', 'acme:', '  enabled: yes'], { insecureNoTls: true }));
    expect(lines.join('\n')).toContain('--insecure-no-tls: cannot be used with proxy_service.acme');
  });
});
