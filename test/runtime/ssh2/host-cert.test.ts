/**
 * Patch 1 (kex.js, server.js): an ssh2 Server presents ed25519, ECDSA and RSA
 * host certificates, and the OpenSSH client, trusting only an
 * `@cert-authority` line with StrictHostKeyChecking=yes, accepts them — and
 * refuses them when its CA is another one.
 */
import { rmSync } from 'node:fs';
import { hostKeyWithCertificate, plainHostKey } from '../../../runtime/sshcert';
import { tempDir } from '../../helpers/proc';
import { LOGIN, ssh } from '../../helpers/sshd';
import {
  CertServer,
  EXEC_REPLY,
  KEY_TYPES,
  caBlob,
  certLine,
  hostCert,
  identityOptions,
  keyPair,
  startCertServer,
  strictHostOptions,
  userCert,
  writeIdentity,
  writeKnownHosts,
} from './fixtures';

const HOST_CERT_ALGOS: Record<string, string[]> = {
  ed25519: ['ssh-ed25519-cert-v01@openssh.com'],
  'ecdsa-p256': ['ecdsa-sha2-nistp256-cert-v01@openssh.com'],
  rsa: ['rsa-sha2-512-cert-v01@openssh.com', 'rsa-sha2-256-cert-v01@openssh.com'],
};

const dir = tempDir('ssh2-hostcert-');
const userCA = keyPair('ed25519', 'user-ca');
const user = keyPair('ed25519', 'user');
let userKey: string;
let server: CertServer;

beforeAll(async () => {
  userKey = writeIdentity(dir, 'user', user, userCert(user, userCA));
  server = await startCertServer({
    hostKeys: [
      ...KEY_TYPES.map((alg) => hostKeyWithCertificate(keyPair(alg, 'host').privateKey, certLine(hostCert(keyPair(alg, 'host'), keyPair(alg, 'host-ca'))))),
      plainHostKey(keyPair('ed25519', 'host').privateKey),
    ],
    trustedUserCAs: [caBlob(userCA)],
  });
});
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe.each(Object.entries(HOST_CERT_ALGOS).flatMap(([alg, algos]) => algos.map((algo) => [alg, algo] as const)))(
  'host certificate of a %s key offered as %s',
  (alg, algo) => {
    test('GIVEN known_hosts trusting only its CA WHEN OpenSSH connects THEN it accepts the certificate and runs the command', async () => {
      const knownHosts = writeKnownHosts(dir, `kh-${algo}`, [keyPair(alg as 'rsa', 'host-ca')]);

      const r = await ssh(server.port, [`${LOGIN}@127.0.0.1`, 'uptime'], [
        '-v',
        ...strictHostOptions(knownHosts, algo),
        ...identityOptions(userKey),
      ]);

      expect(r.stderr).toContain(`kex: host key algorithm: ${algo}`);
      expect(r.stderr).toMatch(/Server host certificate: \S+-cert-v01@openssh.com SHA256:\S+, serial \d+ ID "a1b2c3d4-/);
      expect(r.stderr).toMatch(/is known and matches the \S+-CERT host certificate/);
      expect(r.stderr).toContain(`Found CA key in ${knownHosts}:1`);
      expect(r.stdout).toBe(`${EXEC_REPLY}: uptime\n`);
      expect(r.code).toBe(0);
    });

    test('GIVEN known_hosts trusting another CA WHEN OpenSSH connects THEN host key verification fails', async () => {
      const knownHosts = writeKnownHosts(dir, `kh-other-${algo}`, [keyPair(alg as 'rsa', 'other-host-ca')]);
      const before = server.auths.length;

      const r = await ssh(server.port, [`${LOGIN}@127.0.0.1`, 'uptime'], [...strictHostOptions(knownHosts, algo), ...identityOptions(userKey)]);

      expect(r.code).toBe(255);
      expect(r.stderr).toContain('Host key verification failed');
      expect(r.stdout).toBe('');
      expect(server.auths.length).toBe(before);
    });
  },
);

test('GIVEN the server also lists the plain ed25519 key WHEN a client asks only for plain keys THEN the plain key is offered (no certificate)', async () => {
  const knownHosts = writeKnownHosts(dir, 'kh-plain', [keyPair('ed25519', 'host-ca')]);

  const r = await ssh(server.port, [`${LOGIN}@127.0.0.1`, 'uptime'], [
    '-v',
    ...strictHostOptions(knownHosts, 'ssh-ed25519'),
    ...identityOptions(userKey),
  ]);

  expect(r.stderr).toContain('kex: host key algorithm: ssh-ed25519');
  expect(r.stderr).not.toContain('Server host certificate');
  expect(r.stderr).toContain('Host key verification failed');
  expect(r.code).toBe(255);
});
