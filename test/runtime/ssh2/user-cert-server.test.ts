/**
 * The OpenSSH client logs in to an ssh2 Server with ed25519, ECDSA and RSA
 * user certificates checked by verifyUserCertAuth; certificates for another
 * principal, from another CA, expired ones and plain keys are refused.
 * The patched ssh2 client logs in to the same server the way tsh reaches a node.
 * Also patch 3 (Protocol.js sendExtInfo comma): the server's server-sig-algs
 * lists rsa-sha2-512, so an RSA client signs with it.
 */
import { rmSync } from 'node:fs';
import { BaseAgent, Client, ClientChannel, IdentityCallback, ParsedKey, SignCallback, SigningRequestOptions } from 'ssh2';
import { CLIENT_HOST_KEY_ALGORITHMS, clientCertIdentity, hostCertVerifier, hostKeyWithCertificate } from '../../../runtime/sshcert';
import { tempDir } from '../../helpers/proc';
import { LOGIN, ssh } from '../../helpers/sshd';
import {
  CertServer,
  EXEC_REPLY,
  HOST_PRINCIPAL,
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

const CERT_ALGO: Record<string, string> = {
  ed25519: 'ssh-ed25519-cert-v01@openssh.com',
  'ecdsa-p256': 'ecdsa-sha2-nistp256-cert-v01@openssh.com',
  rsa: 'rsa-sha2-512-cert-v01@openssh.com',
};
const SIG_ALGO: Record<string, string> = { ed25519: 'ssh-ed25519', 'ecdsa-p256': 'ecdsa-sha2-nistp256', rsa: 'rsa-sha2-512' };
/** ssh2's client prefers rsa-sha2-256 when the server lists both. */
const SIG_ALGO_SSH2: Record<string, string> = { ...SIG_ALGO, rsa: 'rsa-sha2-256' };

const dir = tempDir('ssh2-usercert-');
const hostCA = keyPair('ed25519', 'host-ca');
const userCA = keyPair('ecdsa-p256', 'user-ca');
let knownHosts: string;
let server: CertServer;

beforeAll(async () => {
  knownHosts = writeKnownHosts(dir, 'known_hosts', [hostCA]);
  const host = keyPair('ed25519', 'host');
  server = await startCertServer({
    hostKeys: [hostKeyWithCertificate(host.privateKey, certLine(hostCert(host, hostCA)))],
    trustedUserCAs: [caBlob(userCA), caBlob(keyPair('rsa', 'user-ca'))],
  });
});
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

function login(keyPath: string, opts: { withCert?: boolean; verbose?: boolean; user?: string } = {}) {
  return ssh(server.port, [`${opts.user ?? LOGIN}@127.0.0.1`, 'id'], [
    ...(opts.verbose ? ['-v'] : []),
    ...strictHostOptions(knownHosts),
    ...identityOptions(keyPath, opts.withCert ?? true),
  ]);
}

function authsSince(n: number) {
  return server.auths.slice(n);
}

describe.each(KEY_TYPES)('a %s user certificate', (alg) => {
  test('GIVEN a certificate from a trusted CA listing the login WHEN OpenSSH logs in THEN the signed attempt is accepted and exec runs', async () => {
    const user = keyPair(alg, 'user');
    const key = writeIdentity(dir, `ok-${alg}`, user, userCert(user, userCA));
    const n = server.auths.length;

    const r = await login(key);

    expect(r.stdout).toBe(`${EXEC_REPLY}: id\n`);
    expect(r.code).toBe(0);
    const signed = authsSince(n).filter((a) => a.signed);
    expect(signed).toHaveLength(1);
    expect(signed[0]).toMatchObject({ username: LOGIN, algo: CERT_ALGO[alg], signatureAlgo: SIG_ALGO[alg], accepted: true });
    expect(signed[0].cert?.keyId).toBe('alice@example.com');
  });

  test('GIVEN a certificate for another principal WHEN OpenSSH logs in THEN it is refused naming the principal', async () => {
    const user = keyPair(alg, 'user');
    const key = writeIdentity(dir, `other-principal-${alg}`, user, userCert(user, userCA, { logins: ['somebody-else'] }));
    const n = server.auths.length;

    const r = await login(key, { withCert: true });

    expect(r.code).toBe(255);
    expect(r.stderr).toContain('Permission denied (publickey)');
    const certAttempts = authsSince(n).filter((a) => a.algo.includes('-cert-'));
    expect(certAttempts.length).toBeGreaterThan(0);
    for (const a of certAttempts) {
      expect(a.accepted).toBe(false);
      expect(a.reason).toContain(`LoginNotInCertificateError: access denied: login "${LOGIN}" is not allowed for user "alice@example.com"`);
    }
  });

  test('GIVEN a certificate from an untrusted CA WHEN OpenSSH logs in THEN it is refused as untrusted', async () => {
    const user = keyPair(alg, 'user');
    const key = writeIdentity(dir, `other-ca-${alg}`, user, userCert(user, keyPair('ed25519', 'rogue-ca')));
    const n = server.auths.length;

    const r = await login(key);

    expect(r.code).toBe(255);
    const certAttempts = authsSince(n).filter((a) => a.algo.includes('-cert-'));
    expect(certAttempts.length).toBeGreaterThan(0);
    expect(certAttempts.every((a) => !a.accepted && /signed by an untrusted CA/.test(a.reason ?? ''))).toBe(true);
  });
});

test('GIVEN an expired certificate WHEN OpenSSH logs in THEN it is refused as expired', async () => {
  const user = keyPair('ed25519', 'user');
  const key = writeIdentity(dir, 'expired', user, userCert(user, userCA, { now: new Date(Date.now() - 48 * 3600_000) }));
  const n = server.auths.length;

  const r = await login(key);

  expect(r.code).toBe(255);
  const certAttempts = authsSince(n).filter((a) => a.algo.includes('-cert-'));
  expect(certAttempts.length).toBeGreaterThan(0);
  expect(certAttempts.every((a) => !a.accepted && /has expired/.test(a.reason ?? ''))).toBe(true);
});

test('GIVEN a plain key with no certificate WHEN OpenSSH logs in THEN it is refused as a plain key', async () => {
  const key = writeIdentity(dir, 'plain', keyPair('ed25519', 'user'));
  const n = server.auths.length;

  const r = await login(key, { withCert: false });

  expect(r.code).toBe(255);
  expect(r.stderr).toContain('Permission denied (publickey)');
  const attempts = authsSince(n);
  expect(attempts).toHaveLength(1);
  expect(attempts[0]).toMatchObject({ algo: 'ssh-ed25519', signed: false, accepted: false });
  expect(attempts[0].reason).toContain('plain key (ssh-ed25519) offered; only user certificates are accepted');
});

test('GIVEN an RSA user certificate WHEN OpenSSH logs in THEN server-sig-algs lists rsa-sha2-512 and the client signs with it', async () => {
  const user = keyPair('rsa', 'user');
  const key = writeIdentity(dir, 'rsa-sigalg', user, userCert(user, keyPair('rsa', 'user-ca')));
  const n = server.auths.length;

  const r = await login(key, { verbose: true });

  expect(r.code).toBe(0);
  const m = /server-sig-algs=<([^>]*)>/.exec(r.stderr);
  expect(m).not.toBeNull();
  expect(m![1].split(',')).toEqual(expect.arrayContaining(['ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256']));
  const signed = authsSince(n).filter((a) => a.signed);
  expect(signed).toEqual([expect.objectContaining({ algo: 'rsa-sha2-512-cert-v01@openssh.com', signatureAlgo: 'rsa-sha2-512', accepted: true })]);
});

describe('an ssh2 client (as tsh) against the ssh2 server (as a node)', () => {
  function connect(agent: BaseAgent<ParsedKey>): Promise<{ error?: Error; stdout?: string; hostKeyAlgorithm?: string }> {
    return new Promise((resolve) => {
      const client = new Client();
      const out: { error?: Error; stdout?: string; hostKeyAlgorithm?: string } = {};
      client.on('handshake', (n) => (out.hostKeyAlgorithm = n.serverHostKey));
      client.on('error', (error) => {
        out.error = error;
        resolve(out);
      });
      client.on('ready', () =>
        client.exec('whoami', (err: Error | undefined, stream: ClientChannel) => {
          if (err) {
            out.error = err;
            client.end();
            return resolve(out);
          }
          let data = '';
          stream.on('data', (d: Buffer) => (data += d));
          stream.on('close', () => {
            out.stdout = data;
            client.end();
            resolve(out);
          });
        }),
      );
      client.connect({
        host: '127.0.0.1',
        port: server.port,
        username: LOGIN,
        agent,
        algorithms: { serverHostKey: CLIENT_HOST_KEY_ALGORITHMS },
        hostVerifier: hostCertVerifier({ trustedCAs: [caBlob(hostCA)], hostname: HOST_PRINCIPAL }),
      });
    });
  }

  test.each(KEY_TYPES)('GIVEN a %s user certificate WHEN the ssh2 client logs in THEN host and user certificates are both verified', async (alg) => {
    const user = keyPair(alg, 'user');
    const n = server.auths.length;

    const out = await connect(clientCertIdentity(user.privateKey, certLine(userCert(user, userCA))));

    expect(out.error).toBeUndefined();
    expect(out.hostKeyAlgorithm).toBe('ssh-ed25519-cert-v01@openssh.com');
    expect(out.stdout).toBe(`${EXEC_REPLY}: whoami\n`);
    const signed = authsSince(n).filter((a) => a.signed);
    expect(signed).toEqual([expect.objectContaining({ accepted: true, signatureAlgo: SIG_ALGO_SSH2[alg] })]);
  });

  test('GIVEN a client whose agent signs something other than the session data WHEN it logs in THEN verifyUserCertAuth refuses the signature', async () => {
    const user = keyPair('ecdsa-p256', 'user');
    const honest = clientCertIdentity(user.privateKey, certLine(userCert(user, userCA)));
    class ForgingAgent extends BaseAgent<ParsedKey> {
      getIdentities(cb: IdentityCallback<ParsedKey>): void {
        honest.getIdentities(cb);
      }
      sign(pubKey: ParsedKey, data: Buffer, options: SigningRequestOptions | SignCallback, cb?: SignCallback): void {
        const tampered = Buffer.concat([data, Buffer.from('tampered')]);
        if (typeof options === 'function') honest.sign(pubKey, tampered, options);
        else honest.sign(pubKey, tampered, options, cb);
      }
    }
    const n = server.auths.length;

    const out = await connect(new ForgingAgent());

    expect(out.error?.message).toBe('All configured authentication methods failed');
    const signed = authsSince(n).filter((a) => a.signed);
    expect(signed).toHaveLength(1);
    expect(signed[0].accepted).toBe(false);
    expect(signed[0].reason).toBe(`AccessDeniedError: user "${LOGIN}": signature by the key of certificate "alice@example.com" is invalid`);
  });
});
