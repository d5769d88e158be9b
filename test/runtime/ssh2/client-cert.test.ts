/**
 * Patches 2 and 5 (Protocol.authPK, client.js, kex.js, constants.js): the
 * ssh2 Client logs in to a real OpenSSH sshd (TrustedUserCAKeys) with ed25519,
 * ECDSA and RSA user certificates through clientCertIdentity, negotiates the
 * sshd's host certificate and checks it with hostCertVerifier.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, ClientChannel } from 'ssh2';
import {
  CLIENT_HOST_KEY_ALGORITHMS,
  clientCertIdentity,
  encodeOpenSSHPrivateKey,
  fingerprintSHA256,
  formatAuthorizedKey,
  hostCertVerifier,
  KeyAlgorithm,
  publicKeyBlob,
} from '../../../runtime/sshcert';
import { AccessDeniedError } from '../../../runtime/utils/errors';
import { tempDir, waitFor } from '../../helpers/proc';
import { LOGIN, Sshd, startSshd } from '../../helpers/sshd';
import { HOST_PRINCIPAL, KEY_TYPES, caBlob, certLine, hostCert, keyPair, userCert } from './fixtures';

const HOST_CERT_ALGO: Record<string, RegExp> = {
  ed25519: /^ssh-ed25519-cert-v01@openssh\.com$/,
  'ecdsa-p256': /^ecdsa-sha2-nistp256-cert-v01@openssh\.com$/,
  rsa: /^rsa-sha2-(256|512)-cert-v01@openssh\.com$/,
};

const dir = tempDir('ssh2-client-');
const hostCA = keyPair('ed25519', 'host-ca');
/** One user CA of each type, all trusted by every sshd. */
const userCAs = KEY_TYPES.map((alg) => keyPair(alg, 'user-ca'));
const sshds = new Map<KeyAlgorithm, Sshd>();

beforeAll(async () => {
  for (const alg of KEY_TYPES) {
    const host = keyPair(alg, 'host');
    const hostKey = join(dir, `host-${alg}`);
    writeFileSync(hostKey, encodeOpenSSHPrivateKey(host.privateKey), { mode: 0o600 });
    writeFileSync(`${hostKey}-cert.pub`, certLine(hostCert(host, hostCA)) + '\n');
    sshds.set(
      alg,
      await startSshd({
        hostKey,
        hostCert: `${hostKey}-cert.pub`,
        trustedUserCAKeys: userCAs.map((ca) => formatAuthorizedKey(caBlob(ca))).join('\n') + '\n',
      }),
    );
  }
});
afterAll(async () => {
  for (const s of sshds.values()) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Outcome {
  hostKeyAlgorithm?: string;
  stdout?: string;
  error?: Error;
  denied: AccessDeniedError[];
}

/** Connects, runs one command, and reports what happened (never rejects). */
function connectAndExec(port: number, opts: { alg: KeyAlgorithm; userCARole?: string; hostCAs?: Buffer[]; hostname?: string }): Promise<Outcome> {
  const user = keyPair(opts.alg, 'user');
  const cert = userCert(user, keyPair(opts.alg, opts.userCARole ?? 'user-ca'));
  const outcome: Outcome = { denied: [] };
  return new Promise((resolve) => {
    const client = new Client();
    const finish = () => {
      client.end();
      resolve(outcome);
    };
    client.on('handshake', (negotiated) => (outcome.hostKeyAlgorithm = negotiated.serverHostKey));
    client.on('error', (err) => {
      outcome.error = err;
      finish();
    });
    client.on('ready', () => {
      client.exec('echo "hello from $(whoami)"', (err: Error | undefined, stream: ClientChannel) => {
        if (err) {
          outcome.error = err;
          return finish();
        }
        let out = '';
        stream.on('data', (d: Buffer) => (out += d));
        stream.on('close', () => {
          outcome.stdout = out;
          finish();
        });
      });
    });
    client.connect({
      host: '127.0.0.1',
      port,
      username: LOGIN,
      agent: clientCertIdentity(user.privateKey, certLine(cert)),
      algorithms: { serverHostKey: CLIENT_HOST_KEY_ALGORITHMS },
      hostVerifier: hostCertVerifier({
        trustedCAs: opts.hostCAs ?? [caBlob(hostCA)],
        hostname: opts.hostname ?? HOST_PRINCIPAL,
        onDenied: (e) => outcome.denied.push(e),
      }),
      readyTimeout: 15_000,
    });
  });
}

describe.each(KEY_TYPES)('sshd with a %s host certificate', (alg) => {
  test(`GIVEN a ${alg} user certificate from a trusted CA WHEN the ssh2 client connects THEN the host certificate is verified and sshd accepts the certificate login`, async () => {
    const sshd = sshds.get(alg)!;

    const outcome = await connectAndExec(sshd.port, { alg });

    expect(outcome.error).toBeUndefined();
    expect(outcome.denied).toEqual([]);
    expect(outcome.hostKeyAlgorithm).toMatch(HOST_CERT_ALGO[alg]);
    expect(outcome.stdout).toBe(`hello from ${LOGIN}\n`);
    const userFp = fingerprintSHA256(publicKeyBlob(keyPair(alg, 'user').publicKey));
    expect(sshd.daemon.stderr).toContain('Accepted certificate ID "alice@example.com"');
    expect(sshd.daemon.stderr).toMatch(new RegExp(`Accepted publickey for ${LOGIN} from 127\\.0\\.0\\.1 port \\d+ ssh2: \\S+-CERT ${userFp.replace(/[+/]/g, '\\$&')} ID alice@example.com \\(serial \\d+\\) CA `));
  });
});

test('GIVEN a user certificate from a CA sshd does not trust WHEN the ssh2 client connects THEN sshd refuses the login', async () => {
  const sshd = sshds.get('ed25519')!;

  const outcome = await connectAndExec(sshd.port, { alg: 'ecdsa-p256', userCARole: 'rogue-user-ca' });

  expect(outcome.denied).toEqual([]);
  expect(outcome.error?.message).toBe('All configured authentication methods failed');
  expect(outcome.stdout).toBeUndefined();
  const rogueFp = fingerprintSHA256(caBlob(keyPair('ecdsa-p256', 'rogue-user-ca')));
  await waitFor('sshd to log the refusal', () => sshd.daemon.stderr.includes(`ID alice@example.com`) && sshd.daemon.stderr.includes(rogueFp));
  expect(sshd.daemon.stderr).toMatch(new RegExp(`Failed publickey for ${LOGIN} from 127\\.0\\.0\\.1 port \\d+ ssh2: ECDSA-CERT .* CA ECDSA ${rogueFp.replace(/[+/]/g, '\\$&')}`));
});

test('GIVEN the client trusts another host CA WHEN it connects THEN the host certificate is refused as untrusted before authentication', async () => {
  const sshd = sshds.get('rsa')!;

  const outcome = await connectAndExec(sshd.port, { alg: 'rsa', hostCAs: [caBlob(keyPair('ed25519', 'other-host-ca'))] });

  expect(outcome.error?.message).toBe('Host denied (verification failed)');
  expect(outcome.denied).toHaveLength(1);
  expect(outcome.denied[0]).toBeInstanceOf(AccessDeniedError);
  expect(outcome.denied[0].message).toMatch(/^certificate "a1b2c3d4-\S+" is signed by an untrusted CA/);
  expect(outcome.stdout).toBeUndefined();
});

test('GIVEN the dialled name is not a principal of the host certificate WHEN the client connects THEN the host is refused naming the principal', async () => {
  const outcome = await connectAndExec(sshds.get('ecdsa-p256')!.port, { alg: 'ed25519', hostname: 'impostor.example' });

  expect(outcome.error?.message).toBe('Host denied (verification failed)');
  expect(outcome.denied.map((e) => e.message)).toEqual([expect.stringContaining('principal "impostor.example" is not listed')]);
});

test('GIVEN the client offers only plain host key algorithms WHEN it connects THEN the plain key is refused (not a certificate, not known)', async () => {
  const denied: AccessDeniedError[] = [];
  const user = keyPair('ed25519', 'user');
  const err = await new Promise<Error | undefined>((resolve) => {
    const client = new Client();
    client.on('error', (e) => resolve(e));
    client.on('ready', () => {
      client.end();
      resolve(undefined);
    });
    client.connect({
      host: '127.0.0.1',
      port: sshds.get('ed25519')!.port,
      username: LOGIN,
      agent: clientCertIdentity(user.privateKey, certLine(userCert(user, keyPair('ed25519', 'user-ca')))),
      algorithms: { serverHostKey: ['ssh-ed25519'] },
      hostVerifier: hostCertVerifier({ trustedCAs: [caBlob(hostCA)], hostname: HOST_PRINCIPAL, onDenied: (e) => denied.push(e) }),
    });
  });

  expect(err?.message).toBe('Host denied (verification failed)');
  expect(denied.map((e) => e.message)).toEqual([`host "${HOST_PRINCIPAL}" presented a plain ssh-ed25519 key that is not known`]);
});

test('GIVEN the plain host key is listed in knownHostKeys WHEN the client offers only plain host key algorithms THEN it connects (fallback for hosts without a certificate)', async () => {
  const denied: AccessDeniedError[] = [];
  const user = keyPair('ed25519', 'user');
  const hostPlain = publicKeyBlob(keyPair('ed25519', 'host').publicKey);
  const result = await new Promise<{ error?: Error; hostKeyAlgorithm?: string }>((resolve) => {
    const client = new Client();
    let hostKeyAlgorithm: string | undefined;
    client.on('handshake', (n) => (hostKeyAlgorithm = n.serverHostKey));
    client.on('error', (error) => resolve({ error }));
    client.on('ready', () => {
      client.end();
      resolve({ hostKeyAlgorithm });
    });
    client.connect({
      host: '127.0.0.1',
      port: sshds.get('ed25519')!.port,
      username: LOGIN,
      agent: clientCertIdentity(user.privateKey, certLine(userCert(user, keyPair('ed25519', 'user-ca')))),
      algorithms: { serverHostKey: ['ssh-ed25519'] },
      hostVerifier: hostCertVerifier({ trustedCAs: [], hostname: HOST_PRINCIPAL, knownHostKeys: [hostPlain], onDenied: (e) => denied.push(e) }),
    });
  });

  expect(result).toEqual({ hostKeyAlgorithm: 'ssh-ed25519' });
  expect(denied).toEqual([]);
});
