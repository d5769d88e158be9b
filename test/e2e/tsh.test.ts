/**
 * `tsh` against a real cluster (auth + node + proxy with --insecure-no-tls):
 * login over the web API with password and TOTP piped on stdin, status,
 * ssh to the node through the proxy, and logout. HOME is a temp dir.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { totp } from '../../runtime/auth/totp';
import { checkNodeHostKey, checkProxyHostKey } from '../../runtime/client/dial';
import { webRequest } from '../../runtime/client/weblogin';
import { formatAuthorizedKey, generateKeyPair, publicKeyBlob, signHostCert } from '../../runtime/sshcert';
import { startCluster, TestAuth } from '../helpers/cluster';
import { cliPath, run, runCli, tempDir } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { identityOf } from '../../runtime/tlsca';

describe('tsh login, status, ssh, logout', () => {
  let c: TestAuth;
  let home: string;
  let otpSecret: string;
  let base: string;
  const PASSWORD = 'correct horse battery';
  const tsh = (args: string[], input?: string, env: NodeJS.ProcessEnv = {}) => runCli('tsh', args, { env: { HOME: home, TELEPORT_HOME: '', ...env }, input });
  // The sign-up used the current TOTP step and a used code is refused: logins use the next step's code
  // (within the server's one-step window); a refused password does not use up the code.
  const nextCode = () => totp(otpSecret, { timeMs: Date.now() + 30_000 });
  const proxyArg = () => `http://127.0.0.1:${c.proxyPorts!.web},${c.proxyPorts!.ssh}`;
  const keyDir = () => path.join(home, '.tsh', 'keys', '127.0.0.1');

  beforeAll(async () => {
    home = tempDir('tsh-home-');
    c = await startCluster({ proxy: { insecureNoTls: true } });
    base = `http://127.0.0.1:${c.proxyPorts!.web}`;
    const out = await c.tctlOk('users', 'add', 'alice', LOGIN);
    const token = /\/web\/newuser\/([0-9a-f]{32})/.exec(out)![1];
    otpSecret = ((await (await fetch(`${base}/webapi/signuptokens/${token}`)).json()) as { otp_secret: string }).otp_secret;
    const done = await fetch(`${base}/webapi/signuptokens/${token}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ password: PASSWORD, otp_token: totp(otpSecret) }),
    });
    expect(done.status).toBe(200);
  });
  afterAll(async () => {
    await c?.cleanup();
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('GIVEN a wrong password WHEN tsh login runs THEN it fails with a clear message and writes no keys', async () => {
    const r = await tsh(['login', '--proxy', proxyArg(), '--user', 'alice'], `not the password\n${nextCode()}\n`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/ERROR: .*(invalid|denied|password|credentials)/i);
    expect(fs.existsSync(keyDir())).toBe(false);
    expect(fs.existsSync(path.join(home, '.tsh', '127.0.0.1.yaml'))).toBe(false);
  });

  it('GIVEN a proxy without TLS and no scheme in --proxy WHEN tsh login runs without --insecure THEN it refuses before asking for the password', async () => {
    const r = await tsh(['login', '--proxy', `127.0.0.1:${c.proxyPorts!.web}`, '--user', 'alice'], `${PASSWORD}\n`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^ERROR: .*does not speak HTTPS; use --proxy http:\/\/127\.0\.0\.1:\d+/);
    expect(fs.existsSync(path.join(home, '.tsh', 'current-profile'))).toBe(false);
  });

  it('GIVEN the password and a TOTP code on stdin WHEN tsh login runs THEN keys, known_hosts and profile are written privately', async () => {
    const r = await tsh(['login', '--proxy', proxyArg(), '--user', 'alice', '--ttl', '60'], `${PASSWORD}\n${nextCode()}\n`);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: expect.stringMatching(/^Enter password for Teleport user alice:\nEnter your OTP token:\n$/) });
    expect(r.stdout).toContain('Logged in as: alice');
    expect((fs.statSync(path.join(home, '.tsh')).mode & 0o777)).toBe(0o700);
    for (const f of ['alice', 'alice.pub', 'alice-cert.pub', 'certs.pem']) expect(fs.existsSync(path.join(keyDir(), f))).toBe(true);
    expect(fs.statSync(path.join(keyDir(), 'alice')).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(keyDir(), 'alice-x509-key.pem')).mode & 0o777).toBe(0o600);
    expect(identityOf(fs.readFileSync(path.join(keyDir(), 'alice-x509.pem'), 'utf8'))).toMatchObject({ username: 'alice', groups: ['admin'] });
    expect(fs.readFileSync(path.join(keyDir(), 'alice'), 'utf8')).toMatch(/^-----BEGIN OPENSSH PRIVATE KEY-----/);
    // known_hosts trusts the host CA for the cluster's hosts and for the proxy's SSH host (for OpenSSH through tsh config).
    expect(fs.readFileSync(path.join(home, '.tsh', 'known_hosts'), 'utf8')).toMatch(/^@cert-authority example\.com,\*\.example\.com,127\.0\.0\.1 ssh-/m);
    expect(fs.readFileSync(path.join(home, '.tsh', '127.0.0.1.yaml'), 'utf8')).toMatch(/user: alice/);
  });

  it('GIVEN a login WHEN tsh status runs THEN it shows the user, cluster, logins and validity', async () => {
    const r = await tsh(['status']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^> Profile URL:\s+http:\/\/127\.0\.0\.1:\d+$/m);
    expect(r.stdout).toMatch(/^ {2}Logged in as:\s+alice$/m);
    expect(r.stdout).toMatch(/^ {2}Cluster:\s+example\.com$/m);
    expect(r.stdout).toMatch(new RegExp(`^ {2}Logins:\\s+${LOGIN}$`, 'm'));
    expect(r.stdout).toMatch(/^ {2}Valid until:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC \[valid for (59m|1h0m)\d+s\]$/m);
    expect(r.stdout).toMatch(/^ {2}Extensions:\s+.*permit-pty/m);
  });

  it('GIVEN a login WHEN tsh ssh runs a command on the node THEN its output and exit code come back', async () => {
    const hi = await tsh(['ssh', 'test-auth', 'echo', 'hi']);
    expect(hi.stderr).toBe('');
    expect(hi.stdout).toBe('hi\n');
    expect(hi.code).toBe(0);
    const seven = await tsh(['ssh', `${LOGIN}@test-auth`, 'exit 7']);
    expect(seven.code).toBe(7);
    const killed = await tsh(['ssh', 'test-auth', 'kill -KILL $$']);
    expect(killed.code).toBe(255);
    const pty = await tsh(['ssh', '-t', 'test-auth', 'tty']);
    expect(pty.stdout).toMatch(/^\/dev\/pts\/\d+\r?\n$/);
    const piped = await tsh(['ssh', '-p', String(c.nodePort), 'test-auth', 'cat'], 'through stdin\n');
    expect(piped.stdout).toBe('through stdin\n');
  });

  it('GIVEN stdin is a terminal WHEN tsh ssh runs without a command THEN a shell with a PTY runs and its exit code comes back', async () => {
    // script(1) gives tsh a terminal; the shell reads the typed line from it.
    const r = await run('script', ['-qec', `${process.execPath} ${cliPath('tsh')} ssh test-auth`, '/dev/null'], {
      env: { HOME: home, TELEPORT_HOME: '' },
      input: 'echo tty-$((40+2)); tty; exit 3\r',
    });
    expect(r.stdout).toMatch(/^tty-42\r?\r\n\/dev\/pts\/\d+\r?\r\n/m);
    expect(r.code).toBe(3);
  });

  it('GIVEN a node name that is not in the cluster WHEN tsh ssh runs THEN it fails with a message', async () => {
    const r = await tsh(['ssh', 'no-such-node', 'true']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/ERROR: .*no-such-node/);
  });

  it('GIVEN known_hosts trusting another CA WHEN tsh ssh runs THEN the host certificate is refused', async () => {
    const kh = path.join(home, '.tsh', 'known_hosts');
    const saved = fs.readFileSync(kh, 'utf8');
    try {
      const otherCA = formatAuthorizedKey(publicKeyBlob(generateKeyPair('ed25519').publicKey));
      fs.writeFileSync(kh, `@cert-authority example.com,*.example.com ${otherCA} type=host\n`);
      const r = await tsh(['ssh', 'test-auth', 'echo', 'hi']);
      expect(r.code).not.toBe(0);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/ERROR: .*untrusted CA/);
    } finally {
      fs.writeFileSync(kh, saved);
    }
  });

  it('GIVEN a login WHEN tsh logout runs THEN the keys and profile are gone and status says not logged in', async () => {
    const r = await tsh(['logout']);
    expect(r.code).toBe(0);
    expect(fs.existsSync(path.join(keyDir(), 'alice'))).toBe(false);
    expect(fs.existsSync(path.join(keyDir(), 'alice-cert.pub'))).toBe(false);
    expect(fs.existsSync(path.join(keyDir(), 'alice-x509-key.pem'))).toBe(false);
    expect(fs.existsSync(path.join(home, '.tsh', '127.0.0.1.yaml'))).toBe(false);
    const st = await tsh(['status']);
    expect(st.code).not.toBe(0);
    expect(st.stderr).toMatch(/not logged in/);
  });
});

describe('tsh against a proxy with a self-signed HTTPS certificate', () => {
  let c: TestAuth;
  let home: string;

  beforeAll(async () => {
    home = tempDir('tsh-home-tls-');
    c = await startCluster({ proxy: {} });
  });
  afterAll(async () => {
    await c?.cleanup();
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('GIVEN no --insecure THEN login refuses the certificate; GIVEN --insecure THEN login over HTTPS and ssh work', async () => {
    const out = await c.tctlOk('users', 'add', 'bob', LOGIN);
    const token = /\/web\/newuser\/([0-9a-f]{32})/.exec(out)![1];
    const web = { scheme: 'https' as const, host: '127.0.0.1', port: c.proxyPorts!.web, insecure: true };
    const { otp_secret: secret } = await webRequest<{ otp_secret: string }>(web, 'GET', `/webapi/signuptokens/${token}`);
    await webRequest(web, 'POST', `/webapi/signuptokens/${token}`, { password: 'bobs long password', otp_token: totp(secret) });
    const env = { HOME: home, TELEPORT_HOME: '' };
    const proxy = `127.0.0.1:${c.proxyPorts!.web},${c.proxyPorts!.ssh}`;

    // WHEN tsh login runs without --insecure THEN it refuses before asking anything, and says the ways on:
    // --insecure for the quickstart's self-signed certificate, or trusting it through NODE_EXTRA_CA_CERTS.
    const strict = await runCli('tsh', ['login', '--proxy', proxy, '--user', 'bob'], { env, input: 'bobs long password\n' });
    expect(strict.code).toBe(1);
    expect(strict.stderr).toBe(
      `ERROR: the proxy's HTTPS certificate at https://127.0.0.1:${c.proxyPorts!.web} is not trusted (self-signed certificate). ` +
        'For the self-signed certificate of a quickstart proxy, add --insecure (the certificate is then not checked), ' +
        "or have tsh trust it: run it with NODE_EXTRA_CA_CERTS=<the proxy's data_dir>/webproxy_cert.pem (teleport start prints the path). " +
        "For a proxy of your own, give it a certificate from a CA this machine trusts (https_keypairs), or name that CA's file in NODE_EXTRA_CA_CERTS\n",
    );
    expect(fs.existsSync(path.join(home, '.tsh'))).toBe(false);

    const login = await runCli('tsh', ['login', '--insecure', '--proxy', proxy, '--user', 'bob'], { env, input: `bobs long password\n${totp(secret, { timeMs: Date.now() + 30_000 })}\n` });
    expect(login.code).toBe(0);
    expect(login.stdout).toMatch(/^> Profile URL:\s+https:\/\/127\.0\.0\.1:\d+$/m);
    const hi = await runCli('tsh', ['ssh', 'test-auth', 'echo', 'over-https-login'], { env });
    expect(hi.stdout).toBe('over-https-login\n');
  });

  it('GIVEN NODE_EXTRA_CA_CERTS naming the proxy\'s self-signed certificate WHEN tsh login runs without --insecure THEN it checks the certificate and logs in', async () => {
    // GIVEN another user, with a home of their own.
    const carolHome = tempDir('tsh-home-ca-');
    try {
      const out = await c.tctlOk('users', 'add', 'carol', LOGIN);
      const token = /\/web\/newuser\/([0-9a-f]{32})/.exec(out)![1];
      const web = { scheme: 'https' as const, host: '127.0.0.1', port: c.proxyPorts!.web, insecure: true };
      const { otp_secret: secret } = await webRequest<{ otp_secret: string }>(web, 'GET', `/webapi/signuptokens/${token}`);
      await webRequest(web, 'POST', `/webapi/signuptokens/${token}`, { password: 'carols long password', otp_token: totp(secret) });
      // WHEN tsh trusts the file teleport start names (webproxy_cert.pem in the proxy's data dir) and logs in through "localhost".
      const login = await runCli('tsh', ['login', '--proxy', `localhost:${c.proxyPorts!.web},${c.proxyPorts!.ssh}`, '--user', 'carol'], {
        env: { HOME: carolHome, TELEPORT_HOME: '', NODE_EXTRA_CA_CERTS: path.join(c.dataDir, 'webproxy_cert.pem') },
        input: `carols long password\n${totp(secret, { timeMs: Date.now() + 30_000 })}\n`,
      });
      // THEN the login succeeds, and the profile records a checked login (no insecure flag).
      expect({ code: login.code, stdout: login.stdout }).toEqual({ code: 0, stdout: expect.stringContaining('Logged in as: carol') });
      expect(fs.readFileSync(path.join(carolHome, '.tsh', 'localhost.yaml'), 'utf8')).not.toContain('insecure');
    } finally {
      fs.rmSync(carolHome, { recursive: true, force: true });
    }
  });
});

describe('tsh host certificate checks', () => {
  const ca = generateKeyPair('ed25519');
  const otherCA = generateKeyPair('ed25519');
  const hostKey = publicKeyBlob(generateKeyPair('ed25519').publicKey);
  const trusted = [publicKeyBlob(ca.publicKey)];
  const hostCert = (caKey: typeof ca, clusterName: string, role: string, nodeName = 'node-1') =>
    signHostCert({ caPrivateKey: caKey.privateKey, publicKey: hostKey, hostUUID: 'uuid-1', nodeName, clusterName, role });

  it('GIVEN a node certificate from the cluster CA THEN the node name and <name>.<cluster> are accepted', () => {
    expect(() => checkNodeHostKey(hostCert(ca, 'example.com', 'Node'), 'node-1', 'example.com', trusted)).not.toThrow();
    expect(() => checkNodeHostKey(hostCert(ca, 'example.com', 'Node'), 'node-1.example.com', 'example.com', trusted)).not.toThrow();
  });

  it('GIVEN a node certificate from another cluster\'s CA THEN it is refused', () => {
    expect(() => checkNodeHostKey(hostCert(otherCA, 'other.com', 'Node'), 'node-1', 'example.com', trusted)).toThrow(/untrusted CA/);
  });

  it('GIVEN a node certificate for another name, or a plain key THEN it is refused', () => {
    expect(() => checkNodeHostKey(hostCert(ca, 'example.com', 'Node'), 'node-2', 'example.com', trusted)).toThrow(/lists neither node-2/);
    expect(() => checkNodeHostKey(hostKey, 'node-1', 'example.com', trusted)).toThrow(/plain ssh-ed25519 host key/);
  });

  it('GIVEN the proxy hop THEN only a Proxy certificate of this cluster from its CA is accepted, whatever the name dialled', () => {
    expect(() => checkProxyHostKey(hostCert(ca, 'example.com', 'Proxy'), 'example.com', trusted)).not.toThrow();
    expect(() => checkProxyHostKey(hostCert(ca, 'example.com', 'Node'), 'example.com', trusted)).toThrow(/role "Node", not Proxy/);
    expect(() => checkProxyHostKey(hostCert(ca, 'other.com', 'Proxy'), 'example.com', trusted)).toThrow(/cluster "other.com"/);
    expect(() => checkProxyHostKey(hostCert(otherCA, 'example.com', 'Proxy'), 'example.com', trusted)).toThrow(/untrusted CA/);
  });
});
