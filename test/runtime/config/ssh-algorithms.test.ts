/**
 * teleport.ciphers / kex_algos / mac_algos: validated against the supported
 * names at file:line, and a list replaces the defaults.
 */
import { buildConfig, parseConfig } from '../../../runtime/config';
import { DEFAULT_SSH_ALGORITHMS, SSH_ALGORITHMS, sshAlgorithmsOf } from '../../../runtime/sshcert/algorithms';
import { errorLines, yaml } from './helpers';

const ENV = { HOME: '/home/test' };

describe('teleport.ciphers / kex_algos / mac_algos', () => {
  test('GIVEN no algorithm keys WHEN the config is built THEN node and proxy get the modern defaults', () => {
    // GIVEN / WHEN
    const cfg = buildConfig(parseConfig(yaml('teleport:', '  nodename: n'), 't.yaml'), { dataDir: '/d' }, ENV);
    // THEN
    expect(sshAlgorithmsOf(cfg)).toEqual(DEFAULT_SSH_ALGORITHMS);
    expect(DEFAULT_SSH_ALGORITHMS.kex[0]).toBe('mlkem768x25519-sha256');
    expect(DEFAULT_SSH_ALGORITHMS.macs.every((m) => m.endsWith('-etm@openssh.com'))).toBe(true);
    expect([...DEFAULT_SSH_ALGORITHMS.kex, ...DEFAULT_SSH_ALGORITHMS.ciphers, ...DEFAULT_SSH_ALGORITHMS.macs].join()).not.toMatch(/sha1|nistp|cbc|arcfour/);
  });

  test('GIVEN one algorithm of each kind WHEN the config is built THEN exactly those are offered (the list replaces the defaults)', () => {
    // GIVEN
    const text = yaml('teleport:', '  ciphers: [aes256-ctr]', '  kex_algos: [curve25519-sha256]', '  mac_algos: [hmac-sha2-256-etm@openssh.com]');
    // WHEN
    const cfg = buildConfig(parseConfig(text, 't.yaml'), { dataDir: '/d' }, ENV);
    // THEN
    expect(sshAlgorithmsOf(cfg)).toEqual({ kex: ['curve25519-sha256'], ciphers: ['aes256-ctr'], macs: ['hmac-sha2-256-etm@openssh.com'] });
  });

  test('GIVEN only kex_algos WHEN the config is built THEN ciphers and MACs keep their defaults, in the order given', () => {
    const cfg = buildConfig(parseConfig(yaml('teleport:', '  kex_algos: [ecdh-sha2-nistp256, curve25519-sha256]'), 't.yaml'), { dataDir: '/d' }, ENV);
    expect(sshAlgorithmsOf(cfg)).toEqual({ ...DEFAULT_SSH_ALGORITHMS, kex: ['ecdh-sha2-nistp256', 'curve25519-sha256'] });
  });

  test('GIVEN every supported name WHEN parsed THEN all are accepted', () => {
    const list = (names: readonly string[]) => `[${names.join(', ')}]`;
    const text = yaml(
      'teleport:',
      `  ciphers: ${list(SSH_ALGORITHMS.cipher.supported)}`,
      `  kex_algos: ${list(SSH_ALGORITHMS.kex.supported)}`,
      `  mac_algos: ${list(SSH_ALGORITHMS.mac.supported)}`,
    );
    expect(parseConfig(text, 't.yaml').teleport?.kex_algos).toEqual(SSH_ALGORITHMS.kex.supported);
  });

  test('GIVEN unknown, misspelt and deliberately unsupported names WHEN parsed THEN each is an error at its file:line listing the supported names', () => {
    // GIVEN
    const text = yaml(
      'teleport:', //                                  1
      '  kex_algos:', //                               2
      '    - curve25519-sha256', //                    3
      '    - diffie-hellman-group-exchange-sha256', // 4
      '    - sntrup761x25519-sha512@openssh.com', //   5
      '  ciphers:', //                                 6
      '    - aes256ctr', //                            7
      '    - aes128-cbc', //                           8
      '  mac_algos: [umac-128-etm@openssh.com]', //    9
    );
    // WHEN
    const lines = errorLines(() => parseConfig(text, 'teleport.yaml'));
    // THEN
    const kexNames = SSH_ALGORITHMS.kex.supported.join(', ');
    expect(lines).toEqual([
      `teleport.yaml:4:7: teleport.kex_algos[1]: "diffie-hellman-group-exchange-sha256" is not a supported key exchange algorithm (refused: the SSH library has no server side for group exchange); supported: ${kexNames}`,
      `teleport.yaml:5:7: teleport.kex_algos[2]: "sntrup761x25519-sha512@openssh.com" is not a supported key exchange algorithm (refused: not implemented; mlkem768x25519-sha256 is the post-quantum key exchange here); supported: ${kexNames}`,
      `teleport.yaml:7:7: teleport.ciphers[0]: "aes256ctr" is not a supported cipher (did you mean "aes256-ctr"?); supported: ${SSH_ALGORITHMS.cipher.supported.join(', ')}`,
      `teleport.yaml:8:7: teleport.ciphers[1]: "aes128-cbc" is not a supported cipher (refused: CBC mode is weak); supported: ${SSH_ALGORITHMS.cipher.supported.join(', ')}`,
      `teleport.yaml:9:15: teleport.mac_algos[0]: "umac-128-etm@openssh.com" is not a supported MAC algorithm; supported: ${SSH_ALGORITHMS.mac.supported.join(', ')}`,
    ]);
  });

  test('GIVEN an empty list or a name listed twice WHEN parsed THEN it is an error at the key', () => {
    const lines = errorLines(() => parseConfig(yaml('teleport:', '  ciphers: []', '  mac_algos: [hmac-sha2-256-etm@openssh.com, hmac-sha2-256-etm@openssh.com]'), 't.yaml'));
    expect(lines).toEqual([
      `t.yaml:2:12: teleport.ciphers: an empty list would offer no cipher and no client could connect; leave the key out for the defaults (${SSH_ALGORITHMS.cipher.defaults.join(', ')})`,
      't.yaml:3:14: teleport.mac_algos: "hmac-sha2-256-etm@openssh.com" is listed more than once',
    ]);
  });
});
