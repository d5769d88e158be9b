/**
 * The proxy's web listener: `GET /webapi/ping` for load balancer health
 * checks and clients, over HTTPS with a self-signed certificate made on first
 * start, or over plain HTTP with --insecure-no-tls.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { startCluster, TestAuth } from '../helpers/cluster';
import { SshUser } from '../helpers/openssh';
import { run, tempDir } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';

describe('proxy web listener', () => {
  const clusters: TestAuth[] = [];
  afterAll(async () => {
    for (const c of clusters) await c.cleanup();
  });

  it('GIVEN no key pair configured THEN ping answers 200 JSON over HTTPS with a self-signed certificate kept in data_dir', async () => {
    const c = await startCluster({ proxy: {}, authExtra: ['authentication:', '  type: local', '  second_factor: otp'] });
    clusters.push(c);
    const r = await run('curl', ['-sk', '-w', '\\n%{http_code}', `https://127.0.0.1:${c.proxyPorts!.web}/webapi/ping`]);
    const [body, status] = r.stdout.split('\n');
    expect(status).toBe('200');
    expect(JSON.parse(body)).toMatchObject({
      auth: { type: 'local', second_factor: 'otp' },
      proxy: { ssh: { listen_addr: `127.0.0.1:${c.proxyPorts!.ssh}` } },
      server_version: expect.any(String),
    });
    const certFile = path.join(c.dataDir, 'webproxy_cert.pem');
    expect(fs.statSync(path.join(c.dataDir, 'webproxy_key.pem')).mode & 0o777).toBe(0o600);
    expect(new X509Certificate(fs.readFileSync(certFile)).subjectAltName).toContain('IP Address:127.0.0.1');
    // Without -k the certificate is not trusted: it is self-signed.
    expect((await run('curl', ['-s', `https://127.0.0.1:${c.proxyPorts!.web}/webapi/ping`])).code).not.toBe(0);
    expect((await run('curl', ['-sk', '-o', '/dev/null', '-w', '%{http_code}', `https://127.0.0.1:${c.proxyPorts!.web}/nope`])).stdout).toBe('404');
  });

  it('GIVEN teleport start with all three roles THEN OpenSSH reaches the node through the proxy and sign-up URLs name the proxy', async () => {
    const c = clusters[0];
    await c.tctlOk('users', 'add', 'alice', LOGIN);
    const work = tempDir('proxy-all-');
    try {
      const alice = await SshUser.create(c, work, 'alice', LOGIN);
      const hop = `ssh ${alice.options('test-auth').join(' ')} -p ${c.proxyPorts!.ssh} %r@127.0.0.1 -s proxy:%h:%p`;
      const r = await run('ssh', [...alice.options('test-auth'), '-o', `ProxyCommand=${hop}`, '-p', String(c.nodePort), `${LOGIN}@test-auth`, 'echo through-the-proxy']);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('through-the-proxy\n');
      const out = await c.tctlOk('users', 'add', 'bob', LOGIN);
      expect(out).toContain(`https://test-auth:${c.proxyPorts!.web}/web/newuser/`);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });

  it('GIVEN --insecure-no-tls THEN ping answers over plain HTTP', async () => {
    const c = await startCluster({ proxy: { insecureNoTls: true } });
    clusters.push(c);
    const r = await run('curl', ['-s', '-w', '\\n%{http_code}', `http://127.0.0.1:${c.proxyPorts!.web}/v1/webapi/ping`]);
    const [body, status] = r.stdout.split('\n');
    expect(status).toBe('200');
    expect(JSON.parse(body).auth.second_factor).toBe('otp');
  });
});
