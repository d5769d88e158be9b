import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BadParameterError } from '../../../runtime/utils/errors';
import { ConfigError, loadConfigFile, parseConfig } from '../../../runtime/config';
import { configErrorOf, errorLines, tempDirWith, yaml } from './helpers';

const MANUAL_EXAMPLE_VERBATIM = readFileSync(join(__dirname, 'fixtures', 'manual-example.yaml'), 'utf8');
/** The manual's algorithm lists name RC4 and SHA-1 algorithms, refused here (runtime/sshcert/algorithms.ts): the example without them. */
const LEGACY_ALGORITHM = /^\s+- (arcfour\d*|diffie-hellman-group1?4?-sha1|hmac-sha1(-96)?)$/;
const MANUAL_EXAMPLE = MANUAL_EXAMPLE_VERBATIM.split('\n')
  .filter((l) => !LEGACY_ALGORITHM.test(l))
  .join('\n');

describe('parseConfig: valid files', () => {
  test("GIVEN the Admin Manual's example teleport.yaml WHEN parsed THEN every section comes through", () => {
    const file = parseConfig(MANUAL_EXAMPLE, 'teleport.yaml');

    expect(file.teleport?.nodename).toBe('graviton');
    expect(file.teleport?.storage?.type).toBe('dir'); // the manual's `bolt`
    expect(file.teleport?.log).toEqual({ output: 'stderr', severity: 'error' });
    expect(file.teleport?.connection_limits).toEqual({ max_connections: 1000, max_users: 250 });
    expect(file.teleport?.ciphers).toContain('aes128-gcm@openssh.com');
    expect(file.teleport?.kex_algos).toEqual(['curve25519-sha256@libssh.org', 'ecdh-sha2-nistp256', 'ecdh-sha2-nistp384', 'ecdh-sha2-nistp521']);
    expect(file.teleport?.mac_algos).toEqual(['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-256']);
    expect(file.auth_service?.enabled).toBe(true); // `enabled: yes`
    expect(file.auth_service?.tokens).toEqual(['proxy,node:xxxxx', 'auth:yyyy']);
    expect(file.auth_service?.authentication?.u2f?.facets).toEqual(['https://localhost:3080']);
    expect(file.ssh_service?.commands).toEqual([{ name: 'arch', command: ['uname', '-p'], period: 3_600_000 }]);
    expect(file.ssh_service?.pam).toEqual({ enabled: false, service_name: 'teleport' });
    expect(file.proxy_service?.public_addr).toEqual(['teleport-proxy.example.com:3080']);
  });

  test("GIVEN the manual's example verbatim WHEN parsed THEN each RC4 / SHA-1 algorithm is refused at its line", () => {
    const lines = errorLines(() => parseConfig(MANUAL_EXAMPLE_VERBATIM, 'teleport.yaml'));
    const at = (name: string) => MANUAL_EXAMPLE_VERBATIM.split('\n').findIndex((l) => l.trim() === `- ${name}`) + 1;
    expect(lines.map((l) => l.replace(/; supported: .*/, ''))).toEqual([
      `teleport.yaml:${at('arcfour256')}:9: teleport.ciphers[4]: "arcfour256" is not a supported cipher (refused: RC4 is broken)`,
      `teleport.yaml:${at('arcfour128')}:9: teleport.ciphers[5]: "arcfour128" is not a supported cipher (refused: RC4 is broken)`,
      `teleport.yaml:${at('diffie-hellman-group14-sha1')}:9: teleport.kex_algos[4]: "diffie-hellman-group14-sha1" is not a supported key exchange algorithm (refused: SHA-1 is weak)`,
      `teleport.yaml:${at('diffie-hellman-group1-sha1')}:9: teleport.kex_algos[5]: "diffie-hellman-group1-sha1" is not a supported key exchange algorithm (refused: SHA-1 is weak)`,
      `teleport.yaml:${at('hmac-sha1')}:9: teleport.mac_algos[2]: "hmac-sha1" is not a supported MAC algorithm (refused: SHA-1 is weak)`,
      `teleport.yaml:${at('hmac-sha1-96')}:9: teleport.mac_algos[3]: "hmac-sha1-96" is not a supported MAC algorithm (refused: SHA-1 is weak)`,
    ]);
  });

  test('GIVEN an empty file or one with only comments WHEN parsed THEN it is an empty config', () => {
    expect(parseConfig('', 'teleport.yaml')).toEqual({});
    expect(parseConfig('# nothing here\n\n', 'teleport.yaml')).toEqual({});
  });

  test('GIVEN sections with no value WHEN parsed THEN they count as not set', () => {
    expect(parseConfig(yaml('teleport:', 'auth_service:', 'ssh_service:', '  labels:'), 't.yaml')).toEqual({
      teleport: undefined,
      auth_service: undefined,
      ssh_service: { labels: undefined },
    });
  });

  test.each([
    ['yes', true],
    ['no', false],
    ['on', true],
    ['off', false],
    ['true', true],
    ['false', false],
    ['"yes"', true],
    ['No', false],
    ['TRUE', true],
  ])('GIVEN `enabled: %s` WHEN parsed THEN enabled is %s', (value, want) => {
    const file = parseConfig(yaml('ssh_service:', `  enabled: ${value}`), 't.yaml');
    expect(file.ssh_service?.enabled).toBe(want);
  });

  test('GIVEN a numeric-looking token and node name WHEN parsed THEN they keep their exact text', () => {
    const file = parseConfig(yaml('teleport:', '  auth_token: 12345678901234567890123', '  nodename: 0123'), 't.yaml');
    expect(file.teleport?.auth_token).toBe('12345678901234567890123');
    expect(file.teleport?.nodename).toBe('0123');
  });

  test('GIVEN string-or-list fields written as one string WHEN parsed THEN they become lists', () => {
    const pin = 'sha256:' + 'AB'.repeat(32);
    const file = parseConfig(
      yaml('teleport:', `  ca_pin: ${pin}`, '  storage:', '    audit_events_uri: dynamodb://events', 'auth_service:', '  public_addr: auth.example.com'),
      't.yaml',
    );
    expect(file.teleport?.ca_pin).toEqual([pin.toLowerCase()]);
    expect(file.teleport?.storage?.audit_events_uri).toEqual(['dynamodb://events']);
    expect(file.auth_service?.public_addr).toEqual(['auth.example.com']);
  });

  test('GIVEN the production guide https_keypairs and the AWS storage keys WHEN parsed THEN they are accepted', () => {
    const file = parseConfig(
      yaml(
        'teleport:',
        '  storage:',
        '    type: dynamodb',
        '    region: eu-west-1',
        '    table_name: teleport.state',
        "    audit_events_uri: ['dynamodb://teleport.events', 'file:///var/lib/teleport/audit/events']",
        "    audit_sessions_uri: 's3://bucket/records?region=eu-west-1'",
        '    poll_stream_period: 1s',
        'proxy_service:',
        '  https_keypairs:',
        '  - key_file: /var/lib/teleport/webproxy_key.pem',
        '    cert_file: /var/lib/teleport/webproxy_cert.pem',
      ),
      't.yaml',
    );
    expect(file.teleport?.storage).toMatchObject({ type: 'dynamodb', poll_stream_period: 1000 });
    expect(file.teleport?.storage?.audit_events_uri).toHaveLength(2);
    expect(file.proxy_service?.https_keypairs).toEqual([
      { key_file: '/var/lib/teleport/webproxy_key.pem', cert_file: '/var/lib/teleport/webproxy_cert.pem' },
    ]);
  });
});

describe('parseConfig: every error says file:line:col and what is wrong', () => {
  test('GIVEN unknown keys at several depths WHEN parsed THEN each is reported at its key, with a suggestion', () => {
    const lines = errorLines(() =>
      parseConfig(
        yaml(
          'teleport:', //                       1
          '  nodenam: x', //                    2
          '  storage:', //                      3
          '    tipe: dir', //                   4
          'ssh_service:', //                    5
          '    liste_addr: 0.0.0.0:3022', //    6
          '    commands:', //                   7
          '    - name: arch', //                8
          '      command: [uname]', //          9
          '      period: 1h', //               10
          '      perod: 2h', //                11
          'extra_section: 1', //               12
        ),
        'teleport.yaml',
      ),
    );
    expect(lines).toEqual([
      'teleport.yaml:2:3: unknown key "nodenam" in teleport (did you mean "nodename"?)',
      'teleport.yaml:4:5: unknown key "tipe" in teleport.storage (did you mean "type"?)',
      'teleport.yaml:6:5: unknown key "liste_addr" in ssh_service (did you mean "listen_addr"?)',
      'teleport.yaml:11:7: unknown key "perod" in ssh_service.commands[0] (did you mean "period"?)',
      'teleport.yaml:12:1: unknown key "extra_section" at the top level (expected teleport, auth_service, ssh_service, proxy_service)',
    ]);
  });

  test('GIVEN an unknown key with no value WHEN parsed THEN it is still reported', () => {
    expect(errorLines(() => parseConfig(yaml('ssh_service:', '  liste_addr:'), 'teleport.yaml'))).toEqual([
      'teleport.yaml:2:3: unknown key "liste_addr" in ssh_service (did you mean "listen_addr"?)',
    ]);
  });

  test('GIVEN a service section nested under teleport (as the PAM example does) WHEN parsed THEN the hint says it is top-level', () => {
    const lines = errorLines(() => parseConfig(yaml('teleport:', '   ssh_service:', '      pam:', '         enabled: yes'), 'teleport.yaml'));
    expect(lines).toEqual(['teleport.yaml:2:4: unknown key "ssh_service" in teleport (ssh_service is a top-level section)']);
  });

  test('GIVEN values of the wrong type WHEN parsed THEN the message names the key, the expectation and what was found', () => {
    const lines = errorLines(() =>
      parseConfig(
        yaml(
          'teleport:', //                               1
          '  connection_limits:', //                    2
          '    max_connections: lots', //               3
          '  auth_servers: {a: b}', //                  4
          'ssh_service:', //                            5
          '  labels: [a, b]', //                        6
          '  permit_user_env: maybe', //                7
          'proxy_service: yes', //                      8
        ),
        'teleport.yaml',
      ),
    );
    expect(lines).toEqual([
      'teleport.yaml:3:22: teleport.connection_limits.max_connections: expected a whole number, got "lots"',
      'teleport.yaml:4:17: teleport.auth_servers: expected a string or a list of addresses, got a mapping',
      'teleport.yaml:6:11: ssh_service.labels: expected a mapping of label names to values, got a list',
      'teleport.yaml:7:20: ssh_service.permit_user_env: expected a boolean (yes/no, true/false, on/off), got "maybe"',
      'teleport.yaml:8:16: proxy_service: expected a mapping of keys to values, got "yes"',
    ]);
  });

  test('GIVEN a bad enum value WHEN parsed THEN the allowed values are listed', () => {
    const lines = errorLines(() =>
      parseConfig(
        yaml('teleport:', '  storage:', '    type: s3', 'auth_service:', '  authentication:', '    second_factor: sms'),
        'teleport.yaml',
      ),
    );
    expect(lines).toEqual([
      'teleport.yaml:3:11: teleport.storage.type: expected one of dir, sqlite, dynamodb, etcd (also bolt for dir), got "s3"',
      'teleport.yaml:6:20: auth_service.authentication.second_factor: expected one of off, otp, u2f, webauthn, on, optional, got "sms"',
    ]);
  });

  test('GIVEN severity in any case WHEN parsed THEN it is accepted and normalised', () => {
    const file = parseConfig(yaml('teleport:', '  log:', '    severity: Warn'), 't.yaml');
    expect(file.teleport?.log?.severity).toBe('warn');
  });

  test('GIVEN tab indentation WHEN parsed THEN the error names the line and says to use spaces', () => {
    const err = configErrorOf(() => parseConfig('teleport:\n  nodename: a\n\tdata_dir: /x\n', 'teleport.yaml'));
    expect(err.message).toBe('teleport.yaml:3:1: tabs are not allowed in indentation; indent with spaces');
    expect(err.issues).toEqual([
      { file: 'teleport.yaml', line: 3, col: 1, message: 'tabs are not allowed in indentation; indent with spaces' },
    ]);
  });

  test('GIVEN a YAML syntax error WHEN parsed THEN it is reported with its position', () => {
    const lines = errorLines(() => parseConfig(yaml('teleport:', '  nodename: x', 'teleport:', '  data_dir: a: b'), 'teleport.yaml'));
    expect(lines).toEqual([
      'teleport.yaml:3:1: YAML syntax error: map keys must be unique',
      'teleport.yaml:4:13: YAML syntax error: nested mappings are not allowed in compact mappings',
    ]);
    const unclosed = errorLines(() => parseConfig(yaml('teleport:', '  data_dir: "/x'), 'teleport.yaml'));
    expect(unclosed).toEqual(['teleport.yaml:3:1: YAML syntax error: missing closing "quote']);
  });

  test('GIVEN a bad duration WHEN parsed THEN the duration error is at the value', () => {
    const lines = errorLines(() =>
      parseConfig(
        yaml('auth_service:', '  client_idle_timeout: 10', '  keep_alive_interval: 5 minutes', 'ssh_service:', '  commands:', '  - name: up', '    command: [uptime]', '    period: 0s'),
        'teleport.yaml',
      ),
    );
    expect(lines).toEqual([
      'teleport.yaml:2:24: auth_service.client_idle_timeout: invalid duration "10": missing unit after 10 (use h, m, s, ms, us or ns), e.g. "30s", "5m", "1h30m" or "1h0m0s"',
      'teleport.yaml:3:24: auth_service.keep_alive_interval: invalid duration "5 minutes": unknown unit " minutes" (use h, m, s, ms, us or ns)',
      'teleport.yaml:8:13: ssh_service.commands[0].period: the duration "0s" must be greater than zero',
    ]);
  });

  test('GIVEN bad address ports WHEN parsed THEN each names the address and the port problem', () => {
    const lines = errorLines(() =>
      parseConfig(
        yaml('teleport:', '  auth_servers:', '    - 10.0.0.1:3025', '    - 10.0.0.2:70000', 'proxy_service:', '  web_listen_addr: 0.0.0.0:https'),
        'teleport.yaml',
      ),
    );
    expect(lines).toEqual([
      'teleport.yaml:4:7: teleport.auth_servers[1]: invalid address "10.0.0.2:70000": port 70000 is out of range (0-65535)',
      'teleport.yaml:6:20: proxy_service.web_listen_addr: invalid address "0.0.0.0:https": port "https" is not a number',
    ]);
  });

  test('GIVEN a bad ca_pin WHEN parsed THEN it says what a pin looks like', () => {
    const lines = errorLines(() => parseConfig(yaml('teleport:', '  ca_pin:', '    - sha256:1234', '    - md5:abcd'), 'teleport.yaml'));
    expect(lines).toEqual([
      'teleport.yaml:3:7: teleport.ca_pin[0]: expected a CA pin "sha256:<64 hex digits>" as printed by "tctl status", got "sha256:1234"',
      'teleport.yaml:4:7: teleport.ca_pin[1]: expected a CA pin "sha256:<64 hex digits>" as printed by "tctl status", got "md5:abcd"',
    ]);
  });

  test('GIVEN a command label without name and period WHEN parsed THEN the missing keys are named at the item', () => {
    const lines = errorLines(() => parseConfig(yaml('ssh_service:', '  commands:', '  - command: [uname, -r]'), 'teleport.yaml'));
    expect(lines).toEqual([
      'teleport.yaml:3:5: ssh_service.commands[0]: missing "name" (a label name)',
      'teleport.yaml:3:5: ssh_service.commands[0]: missing "period" (a duration such as 30s, 5m or 1h0m0s)',
    ]);
  });

  test('GIVEN cross-key problems WHEN parsed THEN they point at the key that needs the others', () => {
    const lines = errorLines(() =>
      parseConfig(
        yaml(
          'teleport:', //                    1
          '  storage:', //                   2
          '    type: dynamodb', //           3
          'proxy_service:', //               4
          '  https_key_file: /k.pem', //     5
        ),
        'teleport.yaml',
      ),
    );
    expect(lines).toEqual([
      'teleport.yaml:3:11: teleport.storage.type: storage type dynamodb needs table_name',
      'teleport.yaml:3:11: teleport.storage.type: storage type dynamodb needs region (or an endpoint)',
      'teleport.yaml:5:19: proxy_service.https_key_file: https_key_file needs https_cert_file as well',
    ]);
  });

  test('GIVEN etcd storage without peers WHEN parsed THEN peers are asked for', () => {
    const lines = errorLines(() => parseConfig(yaml('teleport:', '  storage:', '    type: etcd'), 'teleport.yaml'));
    expect(lines).toEqual(['teleport.yaml:3:11: teleport.storage.type: storage type etcd needs peers (a list of etcd URLs)']);
  });

  test('GIVEN bad static tokens and label names WHEN parsed THEN each entry is named', () => {
    const lines = errorLines(() =>
      parseConfig(
        yaml('auth_service:', '  tokens:', '  - "admin:xyz"', '  - "node-only"', 'ssh_service:', '  labels:', '    "bad key": x'),
        'teleport.yaml',
      ),
    );
    expect(lines).toEqual([
      'teleport.yaml:3:5: auth_service.tokens[0]: unknown role "admin" in "admin:xyz" (expected auth, node, proxy, trusted_cluster, signup)',
      'teleport.yaml:4:5: auth_service.tokens[1]: expected "roles:token" such as "proxy,node:secret", got "node-only"',
      'teleport.yaml:7:16: ssh_service.labels.bad key: invalid label name "bad key": use letters, digits and . / _ -',
    ]);
  });

  test('GIVEN many problems in one file WHEN parsed THEN all are reported together, in file order', () => {
    const err = configErrorOf(() =>
      parseConfig(
        yaml('proxy_service:', '  listen_addr: x:y', 'teleport:', '  log:', '    output: nowhere', '  nodename: n', '  bogus: 1'),
        'teleport.yaml',
      ),
    );
    expect(err).toBeInstanceOf(BadParameterError);
    expect(err.issues.map((i) => i.line)).toEqual([2, 5, 7]);
    expect(err.message.split('\n')).toHaveLength(3);
  });

  test('GIVEN a document that is not a mapping WHEN parsed THEN the error says so', () => {
    expect(errorLines(() => parseConfig('- a\n- b\n', 'teleport.yaml'))).toEqual([
      'teleport.yaml:1:1: expected a mapping of keys to values, got a list',
    ]);
  });
});

describe('loadConfigFile', () => {
  test('GIVEN a file on disk WHEN loaded THEN errors name the path as given', () => {
    const dir = tempDirWith({ 'teleport.yaml': yaml('teleport:', '  data_dir: 5', '  nodname: n') });
    const path = join(dir, 'teleport.yaml');
    expect(errorLines(() => loadConfigFile(path))).toEqual([`${path}:3:3: unknown key "nodname" in teleport (did you mean "nodename"?)`]);
  });

  test('GIVEN a valid file WHEN loaded THEN its content is returned', () => {
    const dir = tempDirWith({ 'teleport.yaml': MANUAL_EXAMPLE });
    expect(loadConfigFile(join(dir, 'teleport.yaml')).auth_service?.cluster_name).toBe('main');
  });

  test('GIVEN a missing file or a directory WHEN loaded THEN a ConfigError names the path', () => {
    const dir = tempDirWith();
    const missing = join(dir, 'nope.yaml');
    expect(() => loadConfigFile(missing)).toThrow(ConfigError);
    expect(() => loadConfigFile(missing)).toThrow(`${missing}: config file not found`);
    expect(() => loadConfigFile(dir)).toThrow(`${dir}: is a directory, not a config file`);
  });
});
