import { generateKeyPairSync } from 'node:crypto';
import { parseConfig } from '../../../runtime/config';
import { CIPHER_SUITE_NAMES, policyKeyMismatch, tlsPolicy } from '../../../runtime/tlsca/ciphersuites';
import { generateTlsKey } from '../../../runtime/tlsca';
import { configErrorOf, yaml } from '../config/helpers';

/** What the front doors must never offer: CBC, CCM (and CCM_8), SHA-1 MACs, non-ECDHE TLS 1.2 key exchange. */
const WEAK = /CBC|CCM|-SHA$|^(?!ECDHE-|TLS_)/;

describe('the TLS policy of the front doors', () => {
  test('GIVEN no teleport.ciphersuites THEN TLS 1.2+ with ECDHE + AEAD suites and every TLS 1.3 suite but CCM', () => {
    const p = tlsPolicy();
    const suites = p.ciphers.split(':');
    expect(p.minVersion).toBe('TLSv1.2');
    expect(suites).toEqual([
      'ECDHE-ECDSA-AES128-GCM-SHA256',
      'ECDHE-RSA-AES128-GCM-SHA256',
      'ECDHE-ECDSA-AES256-GCM-SHA384',
      'ECDHE-RSA-AES256-GCM-SHA384',
      'ECDHE-ECDSA-CHACHA20-POLY1305',
      'ECDHE-RSA-CHACHA20-POLY1305',
      'TLS_AES_128_GCM_SHA256',
      'TLS_AES_256_GCM_SHA384',
      'TLS_CHACHA20_POLY1305_SHA256',
    ]);
    for (const s of suites) expect(s).not.toMatch(WEAK);
    expect(p.ecdhCurve).toBe('X25519:P-256:P-384');
    expect(tlsPolicy([])).toEqual(p);
  });

  test('GIVEN TLS 1.2 names THEN TLS 1.2 is narrowed to them and TLS 1.3 keeps its suites', () => {
    const p = tlsPolicy(['TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384', 'tls-ecdhe-rsa-with-chacha20-poly1305']);
    expect(p.minVersion).toBe('TLSv1.2');
    expect(p.ciphers).toBe('ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256');
  });

  test('GIVEN TLS 1.3 names only THEN TLS 1.2 is off and TLS 1.3 narrowed; with both kinds each is narrowed', () => {
    expect(tlsPolicy(['tls-aes-256-gcm-sha384'])).toMatchObject({ minVersion: 'TLSv1.3', ciphers: 'TLS_AES_256_GCM_SHA384' });
    expect(tlsPolicy(['tls-aes-128-gcm-sha256', 'tls-ecdhe-ecdsa-with-aes-128-gcm-sha256'])).toMatchObject({
      minVersion: 'TLSv1.2',
      ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256',
    });
  });

  test('GIVEN a weak or unknown name THEN the policy refuses it', () => {
    expect(() => tlsPolicy(['tls-ecdhe-rsa-with-aes-128-cbc-sha'])).toThrow(/weak TLS cipher suite/);
    expect(() => tlsPolicy(['tls-nope'])).toThrow(/unknown TLS cipher suite/);
  });

  test('GIVEN suites that fit no TLS 1.2 handshake with the key THEN there is a warning, else none', () => {
    const ec = generateTlsKey();
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
    const rsaOnly = tlsPolicy(['tls-ecdhe-rsa-with-aes-128-gcm-sha256']);
    expect(policyKeyMismatch(rsaOnly, ec)).toMatch(/no TLS 1\.2 suite for this ECDSA certificate/);
    expect(policyKeyMismatch(rsaOnly, rsa)).toBeUndefined();
    expect(policyKeyMismatch(tlsPolicy(['tls-ecdhe-ecdsa-with-aes-128-gcm-sha256']), rsa)).toMatch(/RSA certificate/);
    expect(policyKeyMismatch(tlsPolicy(), ec)).toBeUndefined();
    expect(policyKeyMismatch(tlsPolicy(['tls-aes-128-gcm-sha256']), rsa)).toBeUndefined();
  });
});

describe('teleport.ciphersuites in teleport.yaml', () => {
  test("GIVEN Teleport's names in any case THEN they are accepted, normalised to lower case", () => {
    const file = parseConfig(yaml('teleport:', '  ciphersuites:', '    - TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256', '    - tls-aes-256-gcm-sha384'), 't.yaml');
    expect(file.teleport?.ciphersuites).toEqual(['tls-ecdhe-ecdsa-with-aes-128-gcm-sha256', 'tls-aes-256-gcm-sha384']);
    for (const name of CIPHER_SUITE_NAMES) expect(parseConfig(yaml('teleport:', `  ciphersuites: [${name}]`), 't.yaml').teleport?.ciphersuites).toEqual([name]);
  });

  test('GIVEN a weak (CBC, SHA-1, RSA key exchange) or unknown suite THEN a config error at its file:line says why', () => {
    const err = configErrorOf(() =>
      parseConfig(
        yaml(
          'teleport:',
          '  ciphersuites:',
          '    - tls-ecdhe-ecdsa-with-aes-128-gcm-sha256',
          '    - tls-ecdhe-rsa-with-aes-128-cbc-sha',
          '    - tls-rsa-with-aes-128-gcm-sha256',
          '    - tls-ecdhe-ecdsa-with-aes-128-ccm-8',
        ),
        '/etc/teleport.yaml',
      ),
    );
    const lines = err.message.split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^\/etc\/teleport\.yaml:4:\d+: .*"tls-ecdhe-rsa-with-aes-128-cbc-sha" is a weak TLS cipher suite \(CBC mode, SHA-1 MAC\)/);
    expect(lines[1]).toMatch(/^\/etc\/teleport\.yaml:5:\d+: .*"tls-rsa-with-aes-128-gcm-sha256" is a weak TLS cipher suite \(RSA key exchange has no forward secrecy\)/);
    expect(lines[2]).toMatch(/^\/etc\/teleport\.yaml:6:\d+: .*unknown TLS cipher suite "tls-ecdhe-ecdsa-with-aes-128-ccm-8"; allowed: tls-ecdhe-ecdsa-with-aes-128-gcm-sha256/);
  });
});
