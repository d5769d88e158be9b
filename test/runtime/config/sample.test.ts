import { buildConfig, parseConfig, sampleConfig } from '../../../runtime/config';

describe('sampleConfig', () => {
  test('GIVEN the sample WHEN parsed and built THEN every service starts with the values it shows', () => {
    const text = sampleConfig({ nodeName: 'graviton', dataDir: '/var/lib/teleport' });
    const cfg = buildConfig(parseConfig(text, 'sample.yaml'), {}, {});

    expect(cfg.nodeName).toBe('graviton');
    expect(cfg.dataDir).toBe('/var/lib/teleport');
    expect(cfg.storage.type).toBe('sqlite');
    expect(cfg.auth.authentication.secondFactor).toBe('otp');
    expect(cfg.auth.clusterName).toBe('main');
    expect(cfg.auth.staticTokens).toEqual([]);
    expect([cfg.auth.enabled, cfg.ssh.enabled, cfg.proxy.enabled]).toEqual([true, true, true]);
    expect(cfg.ssh.commands).toEqual([{ name: 'hostname', command: ['hostname'], periodMs: 60_000 }]);
    expect(cfg.proxy.webListenAddr).toEqual({ host: '0.0.0.0', port: 3080 });
    // AND nothing in it is refused or ignored
    expect(cfg.warnings).toEqual([]);
  });

  test('GIVEN the sample WHEN its commented-out token, keypair and storage lines are uncommented THEN it is still valid', () => {
    const text = sampleConfig({ nodeName: 'n', dataDir: '/d' })
      .replace('  # tokens:\n  #   - ', '  tokens:\n    - ')
      .replace('  # https_keypairs:\n  #   - key_file:', '  https_keypairs:\n    - key_file:')
      .replace('  #     cert_file:', '      cert_file:')
      .replace('    # audit_events_uri:', '    audit_events_uri:')
      .replace('    # audit_sessions_uri:', '    audit_sessions_uri:')
      .replace('  # public_addr:', '  public_addr:');
    const cfg = buildConfig(parseConfig(text, 'sample.yaml'), {}, {});

    expect(cfg.auth.staticTokens).toEqual([{ roles: ['proxy', 'node'], token: 'replace-with-a-32-character-random-token' }]);
    expect(cfg.proxy.keyPairs).toEqual([{ keyFile: '/d/webproxy_key.pem', certFile: '/d/webproxy_cert.pem' }]);
    expect(cfg.storage.auditEventsUri).toEqual(['dynamodb://teleport-events']);
    expect(cfg.storage.auditSessions).toMatchObject({ type: 's3', bucket: 'teleport-recordings', prefix: 'records' });
    expect(cfg.warnings).toEqual([]);
    expect(cfg.proxy.publicAddrs).toEqual([{ host: 'teleport.example.com', port: 3080 }]);
  });

  test('GIVEN the sample WHEN its commented-out acme lines and public_addr are uncommented THEN it asks Let’s Encrypt for that name', () => {
    const text = sampleConfig({ nodeName: 'n', dataDir: '/d' })
      .replace('  # public_addr:', '  public_addr:')
      .replace('  # acme:\n  #   enabled: yes\n  #   email:', '  acme:\n    enabled: yes\n    email:');
    const cfg = buildConfig(parseConfig(text, 'sample.yaml'), {}, {});
    expect(cfg.proxy.acme).toEqual({ directoryUrl: 'https://acme-v02.api.letsencrypt.org/directory', email: 'admin@example.com' });
    expect(cfg.warnings).toEqual([]);
  });

  test('GIVEN a node name that needs quoting WHEN the sample is made THEN it still parses to that name', () => {
    const text = sampleConfig({ nodeName: 'web #1: "east"', dataDir: '/tmp/x y' });
    const file = parseConfig(text, 'sample.yaml');
    expect(file.teleport?.nodename).toBe('web #1: "east"');
    expect(file.teleport?.data_dir).toBe('/tmp/x y');
  });
});
