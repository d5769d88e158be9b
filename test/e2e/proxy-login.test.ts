/**
 * The proxy's web API for sign-up and login, as the sign-up page and tsh use
 * it: a user invited with `tctl users add` sets a password and enrols TOTP,
 * logs in for certificates, and uses them with OpenSSH through the proxy.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { totp } from '../../runtime/auth/totp';
import { encodeOpenSSHPrivateKey, formatAuthorizedKey, generateKeyPair, parseCertificate, publicKeyBlob } from '../../runtime/sshcert';
import { startCluster, TestAuth } from '../helpers/cluster';
import { SshUser } from '../helpers/openssh';
import { run, tempDir } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';

describe('proxy web API: sign-up and login', () => {
  let c: TestAuth;
  let work: string;
  let base: string;
  const post = (p: string, body: unknown) =>
    fetch(`${base}${p}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });

  beforeAll(async () => {
    work = tempDir('proxy-login-');
    c = await startCluster({ proxy: { insecureNoTls: true } });
    base = `http://127.0.0.1:${c.proxyPorts!.web}`;
  });
  afterAll(async () => {
    await c?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('GIVEN a sign-up URL WHEN the user sets a password and TOTP and logs in THEN the certificate works with OpenSSH through the proxy', async () => {
    const out = await c.tctlOk('users', 'add', 'joe', LOGIN);
    const token = /\/web\/newuser\/([0-9a-f]{32})/.exec(out)![1];
    const info = (await (await fetch(`${base}/webapi/signuptokens/${token}`)).json()) as { otp_secret: string };
    expect(info).toMatchObject({ user: 'joe', second_factor: 'otp', otp_url: expect.stringMatching(/^otpauth:\/\/totp\//) });
    const done = await post(`/webapi/signuptokens/${token}`, { password: 'correct horse battery', otp_token: totp(info.otp_secret) });
    expect(done.status).toBe(200);
    expect((await post(`/webapi/signuptokens/${token}`, { password: 'again-and-again', otp_token: totp(info.otp_secret) })).status).toBe(404);

    const pair = generateKeyPair('ed25519');
    const login = (password: string, otp: string) =>
      post('/webapi/ssh/certs', { user: 'joe', password, otp_token: otp, pub_key: Buffer.from(formatAuthorizedKey(publicKeyBlob(pair.publicKey))).toString('base64'), ttl: 3600e9 });
    expect((await login('wrong password!', totp(info.otp_secret, { timeMs: Date.now() + 30_000 }))).status).toBe(403);
    const ok = await login('correct horse battery', totp(info.otp_secret, { timeMs: Date.now() + 30_000 }));
    expect(ok.status).toBe(200);
    const body = (await ok.json()) as { cert: string; host_signers: { domain_name: string }[] };
    const certLine = Buffer.from(body.cert, 'base64').toString();
    expect(parseCertificate(certLine).principals).toEqual([LOGIN]);
    expect(body.host_signers[0].domain_name).toBe('example.com');

    const key = path.join(work, 'joe');
    fs.writeFileSync(key, encodeOpenSSHPrivateKey(pair.privateKey), { mode: 0o600 });
    fs.writeFileSync(key + '-cert.pub', certLine + '\n');
    const helper = await SshUser.create(c, work, 'joe', LOGIN); // only for its known_hosts and option layout
    const opts = (alias: string) => helper.options(alias).map((o) => o.replace(helper.key, key));
    const hop = `ssh ${opts('test-auth').join(' ')} -p ${c.proxyPorts!.ssh} %r@127.0.0.1 -s proxy:%h:%p`;
    const r = await run('ssh', [...opts('test-auth'), '-o', `ProxyCommand=${hop}`, '-p', String(c.nodePort), `${LOGIN}@test-auth`, 'echo logged-in-via-web']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('logged-in-via-web\n');
  });

  it('GIVEN malformed, invalid or oversized bodies THEN 400, 400 and 413, and the proxy keeps serving', async () => {
    const bad = await post('/webapi/ssh/certs', '{"user": ');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(/not valid JSON/);
    const invalid = await post('/webapi/ssh/certs', { user: 'joe', surprise: 1 });
    expect(invalid.status).toBe(400);
    const big = await post('/webapi/ssh/certs', JSON.stringify({ user: 'x'.repeat(200_000) }));
    expect(big.status).toBe(413);
    expect((await fetch(`${base}/webapi/signuptokens/../../etc`)).status).toBe(404);
    // '//…' is a path (no page: 404), not a host a URL parser would take it for (that was a 500); a target that is not a path is a 400.
    for (const [target, expected] of [['//', 404], ['//evil.example/webapi/ping', 404], ['http://evil.example/webapi/ping', 400]] as const) {
      const status = await new Promise<number | undefined>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: c.proxyPorts!.web, path: target }, (res) => resolve(res.resume().statusCode)).on('error', reject);
      });
      expect([target, status]).toEqual([target, expected]);
    }
    expect((await fetch(`${base}/webapi/ping`)).status).toBe(200);
  });
});
