/**
 * `proxy_service.acme` against Pebble (Let's Encrypt's ACME test server): the
 * proxy orders a certificate for its public name, answering the TLS-ALPN-01
 * validation on its own web port; serves it with Pebble's chain; renews it
 * when an operator asks (`teleport acme renew`) without dropping an open SSH
 * session or a kept-alive HTTPS connection; reuses the stored one after a
 * restart; renews on a reload once inside its renew_before window; keeps
 * serving (self-signed) when the ACME server is unreachable or the challenge
 * fails, saying why; and refuses an ACME config it cannot serve, at the
 * file's line.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { createAuth, TestAuth } from '../helpers/cluster';
import { SshUser } from '../helpers/openssh';
import { startPebble, Pebble } from '../helpers/pebble';
import { Daemon, freePort, runCli, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';

jest.setTimeout(180_000);

const NAME = 'proxy.acme.test';

/** The certificate the web port serves to a client asking for NAME, verified against `ca`. */
function served(port: number, ca: string): Promise<{ socket: tls.TLSSocket; cert: tls.PeerCertificate }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: NAME, ca, ALPNProtocols: ['http/1.1'] }, () =>
      resolve({ socket, cert: socket.getPeerCertificate(true) }),
    );
    socket.once('error', reject);
  });
}

/** One keep-alive request on an open TLS connection; resolves with the status line, rejects if the connection is gone. */
function ping(socket: tls.TLSSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    if (socket.destroyed) return reject(new Error('the connection is closed'));
    let got = '';
    const onData = (d: Buffer) => {
      got += d;
      const end = got.indexOf('\r\n\r\n');
      const len = /content-length: (\d+)/i.exec(got);
      if (end >= 0 && len && got.length >= end + 4 + Number(len[1])) {
        socket.off('data', onData);
        resolve(got.split('\r\n')[0]);
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`the connection closed; got ${JSON.stringify(got)}`)));
    socket.write(`GET /webapi/ping HTTP/1.1\r\nHost: ${NAME}\r\nConnection: keep-alive\r\n\r\n`);
  });
}

/** The log lines (JSON) with this message. */
function logLines(d: Daemon, msg: string): Record<string, any>[] {
  return (d.stdout + d.stderr)
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l))
    .filter((l) => l.msg === msg);
}

const ACME_LINES = (pebble: Pebble) => ['acme:', '  enabled: yes', '  email: ops@acme.test', `  uri: ${pebble.directoryUrl}`];

describe('proxy_service.acme against Pebble', () => {
  let cluster: TestAuth;
  let pebble: Pebble;
  let root: string;
  let work: string;

  beforeAll(async () => {
    work = tempDir('acme-');
    cluster = await createAuth({ nodePort: await freePort(), proxy: {} });
    pebble = await startPebble(cluster.proxyPorts!.web);
    // proxy_service is the file's last section: its ACME keys go at the end.
    fs.appendFileSync(cluster.configPath, [`public_addr: ${NAME}:${cluster.proxyPorts!.web}`, ...ACME_LINES(pebble)].map((l) => `  ${l}\n`).join(''));
    cluster.start(pebble.env);
    await cluster.ready();
    root = await pebble.issuingRoot();
  });
  afterAll(async () => {
    await cluster?.cleanup();
    await pebble?.stop();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('GIVEN acme enabled WHEN the proxy starts THEN it orders a certificate from Pebble, validated on its web port, and serves it with Pebble’s chain', async () => {
    const d = cluster.daemon!;
    await d.waitForOutput(/"msg":"obtained a certificate from the ACME server"/);
    // THEN until then it said it served a self-signed certificate, and Pebble's validation reached the web port
    expect(logLines(d, 'no ACME certificate yet: serving a self-signed one until the ACME server issues it')).toHaveLength(1);
    expect(logLines(d, 'answering a TLS-ALPN-01 validation')[0]).toMatchObject({ server_name: NAME });
    // THEN the next steps it printed do not tell users to log in with --insecure
    expect(d.stdout + d.stderr).toMatch(new RegExp(`Proxy: +https://${NAME.replace(/\./g, '\\.')}:${cluster.proxyPorts!.web} \\(web\\), SSH on port`));
    expect(d.stdout + d.stderr).not.toMatch(/self-signed certificate\)|tsh login .*--insecure/);
    // THEN a client that trusts only Pebble's root sees a certificate for the name, issued by Pebble's intermediate
    const { socket, cert } = await served(cluster.proxyPorts!.web, root);
    socket.destroy();
    expect(cert.subjectaltname).toBe(`DNS:${NAME}`);
    expect(cert.issuer.CN).toMatch(/^Pebble Intermediate CA/);
    expect(cert.serialNumber).toBe(logLines(d, 'obtained a certificate from the ACME server')[0].serial);
    // THEN the account key, the certificate and its key are stored, readable by the owner only
    const dir = path.join(cluster.dataDir, 'acme');
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    for (const f of ['account_key.pem', 'key.pem', 'cert.pem']) expect(fs.statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);
  });

  it('GIVEN an SSH session through the proxy and a kept-alive HTTPS connection WHEN an operator forces a renewal THEN a new certificate is served and both stay up', async () => {
    const web = cluster.proxyPorts!.web;
    await cluster.daemon!.waitForOutput(/"msg":"obtained a certificate from the ACME server"/);
    let kept: { socket: tls.TLSSocket; cert: tls.PeerCertificate } | undefined;
    let ssh: Daemon | undefined;
    try {
      // GIVEN an OpenSSH session to the node through the proxy, waiting for a line
      await cluster.tctlOk('users', 'add', 'alice', LOGIN);
      const user = await SshUser.create(cluster, work, 'alice', LOGIN);
      ssh = new Daemon(
        spawn(
          'ssh',
          [
            ...user.options('test-auth'),
            '-o', `ProxyCommand=ssh ${user.options('test-auth').join(' ')} -p ${cluster.proxyPorts!.ssh} %r@127.0.0.1 -s proxy:%h:%p`,
            '-p', String(cluster.nodePort),
            `${LOGIN}@test-auth`,
            'echo ready; read line; echo got $line',
          ],
          { stdio: ['pipe', 'pipe', 'pipe'] },
        ),
      );
      await ssh.waitForOutput(/^ready$/m);
      // GIVEN a kept-alive HTTPS connection, reused by its client every second (within the server's 5 s keep-alive timeout)
      kept = await served(web, root);
      const conn = kept.socket;
      expect(await ping(conn)).toBe('HTTP/1.1 200 OK');
      let renewing = true;
      const reuses: string[] = [];
      const reuse = (async () => {
        while (renewing) {
          await new Promise((r) => setTimeout(r, 1000));
          reuses.push(await ping(conn).catch((err: Error) => err.message));
        }
      })();
      // WHEN the operator runs `teleport acme renew`
      const r = await runCli('teleport', ['acme', 'renew', '-c', cluster.configPath, '--timeout', '60s']).finally(() => (renewing = false));
      await reuse;
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const renewed = /renewed: serial ([0-9A-F]+), valid until /.exec(r.stdout);
      expect(renewed).not.toBeNull();
      // THEN new connections get the new certificate (a new serial), still verified by Pebble's root
      const after = await served(web, root);
      after.socket.destroy();
      expect(after.cert.serialNumber).toBe(renewed![1]);
      expect(after.cert.serialNumber).not.toBe(kept.cert.serialNumber);
      expect(after.cert.subjectaltname).toBe(`DNS:${NAME}`);
      // THEN the kept-alive connection answered throughout and still does, and the SSH session goes on and ends normally
      expect(reuses.every((status) => status === 'HTTP/1.1 200 OK')).toBe(true);
      expect(await ping(conn)).toBe('HTTP/1.1 200 OK');
      ssh.child.stdin!.write('still-here\n');
      await ssh.waitForOutput(/^got still-here$/m);
      expect(await ssh.exited).toBe(0);
      expect(fs.existsSync(path.join(cluster.dataDir, 'acme', 'renew'))).toBe(false);
    } finally {
      kept?.socket.destroy();
      await ssh?.stop();
    }
  });

  it('GIVEN a stored certificate WHEN the proxy restarts THEN it serves that certificate without a new order', async () => {
    const before = await served(cluster.proxyPorts!.web, root);
    before.socket.destroy();
    // WHEN teleport stops and starts again
    await cluster.stop();
    cluster.start(pebble.env);
    await cluster.ready();
    // THEN the same certificate is served, and nothing was ordered
    const after = await served(cluster.proxyPorts!.web, root);
    after.socket.destroy();
    expect(after.cert.serialNumber).toBe(before.cert.serialNumber);
    const d = cluster.daemon!;
    expect(logLines(d, 'ordering a certificate from the ACME server')).toHaveLength(0);
    expect(logLines(d, 'no ACME certificate yet: serving a self-signed one until the ACME server issues it')).toHaveLength(0);
  });

  it('GIVEN a stored certificate WHEN renew_before is set longer than its lifetime and teleport reloads (HUP) THEN it renews once, at start', async () => {
    const before = await served(cluster.proxyPorts!.web, root);
    before.socket.destroy();
    // GIVEN renew_before longer than Pebble's five-year certificates (acme is the file's last block)
    fs.appendFileSync(cluster.configPath, '    renew_before: 50000h\n');
    const d = cluster.daemon!;
    const ordersBefore = logLines(d, 'ordering a certificate from the ACME server').length;
    // WHEN teleport reloads its config
    d.child.kill('SIGHUP');
    await d.waitForOutput(/"msg":"reloaded"/);
    await waitFor('the renewal', () => logLines(d, 'obtained a certificate from the ACME server').length > 0 && logLines(d, 'ordering a certificate from the ACME server').length > ordersBefore);
    await waitFor('the new certificate', async () => {
      const s = await served(cluster.proxyPorts!.web, root);
      s.socket.destroy();
      return s.cert.serialNumber !== before.cert.serialNumber;
    });
    // THEN the order said why, and the next renewal is not due at once (no order loop)
    const orders = logLines(d, 'ordering a certificate from the ACME server').slice(ordersBefore);
    expect(orders).toEqual([expect.objectContaining({ reason: 'the certificate is inside its renewal window' })]);
    const obtained = logLines(d, 'obtained a certificate from the ACME server').at(-1)!;
    expect(Date.parse(obtained.renew_at) - Date.now()).toBeGreaterThan(50 * 60_000);
  });

  it('GIVEN garbage, a TLS-ALPN-01 hello for a name with no pending challenge and a hello offering acme-tls/1 among others WHEN they reach the web port THEN the first two are closed, the third served as usual, and the port keeps serving', async () => {
    const web = cluster.proxyPorts!.web;
    // WHEN a client sends bytes that are not a ClientHello THEN the proxy closes that connection
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(web, '127.0.0.1', () => s.write(Buffer.from('\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00', 'latin1')));
      s.on('close', () => resolve());
      s.on('error', reject);
      s.resume();
    });
    // WHEN a validator-like client offers only acme-tls/1 THEN the handshake fails (no challenge is pending)
    await expect(
      new Promise((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: web, servername: NAME, ALPNProtocols: ['acme-tls/1'], rejectUnauthorized: false }, () => resolve(s));
        s.once('error', reject);
        s.once('close', () => reject(new Error('closed')));
      }),
    ).rejects.toThrow();
    // WHEN a client offers acme-tls/1 among other protocols THEN it is no validation: it gets the served certificate
    const mixed = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: web, servername: NAME, ca: root, ALPNProtocols: ['acme-tls/1', 'http/1.1'] }, () => resolve(s));
      s.once('error', reject);
    });
    expect(mixed.getPeerCertificate().issuer.CN).toMatch(/^Pebble Intermediate CA/);
    mixed.destroy();
    // THEN a normal client is served
    const ok = await served(web, root);
    expect(await ping(ok.socket)).toBe('HTTP/1.1 200 OK');
    ok.socket.destroy();
  });
});

describe('proxy_service.acme failures', () => {
  it('GIVEN an ACME directory that does not answer WHEN the proxy starts THEN it runs with a self-signed certificate and logs the reason and the retry', async () => {
    const deadPort = await freePort();
    const c = await createAuth({ proxy: { extra: ['public_addr: proxy.acme.test', 'acme:', '  enabled: yes', `  uri: https://127.0.0.1:${deadPort}/dir`] } });
    try {
      c.start();
      await c.ready();
      await c.daemon!.waitForOutput(/"msg":"cannot obtain a certificate from the ACME server; still serving the previous one"/);
      const [failure] = logLines(c.daemon!, 'cannot obtain a certificate from the ACME server; still serving the previous one');
      expect(failure.error).toMatch(/ECONNREFUSED/);
      expect(failure.retry_in).toBe('30s');
      // THEN the web port still serves (the self-signed certificate)
      const s = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const t = tls.connect({ host: '127.0.0.1', port: c.proxyPorts!.web, rejectUnauthorized: false }, () => resolve(t));
        t.once('error', reject);
      });
      expect(await ping(s)).toBe('HTTP/1.1 200 OK');
      s.destroy();
      expect(c.daemon!.child.exitCode).toBeNull();
    } finally {
      await c.cleanup();
    }
  });

  it('GIVEN Pebble validating on a port where the proxy does not listen WHEN the proxy orders THEN the failed challenge is logged with its reason, retried later, and the proxy keeps serving', async () => {
    // GIVEN Pebble whose TLS-ALPN-01 validation dials a closed port
    const p = await startPebble(await freePort());
    const c = await createAuth({ proxy: { extra: [`public_addr: ${NAME}`, ...ACME_LINES(p)] } });
    try {
      c.start(p.env);
      await c.ready();
      // WHEN the order's challenge fails THEN the reason (Pebble's problem detail) and the backoff are logged
      await c.daemon!.waitForOutput(/"msg":"cannot obtain a certificate from the ACME server; still serving the previous one"/);
      const [failure] = logLines(c.daemon!, 'cannot obtain a certificate from the ACME server; still serving the previous one');
      expect(failure.error).toMatch(/^Failed to connect to 127\.0\.0\.1:\d+ for the tls-alpn-01 challenge/);
      expect(failure.retry_in).toBe('30s');
      // THEN nothing was stored, and the web port serves the self-signed certificate
      expect(fs.existsSync(path.join(c.dataDir, 'acme', 'cert.pem'))).toBe(false);
      const s = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const t = tls.connect({ host: '127.0.0.1', port: c.proxyPorts!.web, servername: NAME, rejectUnauthorized: false }, () => resolve(t));
        t.once('error', reject);
      });
      expect(s.getPeerCertificate().issuer.CN).not.toMatch(/Pebble/);
      expect(await ping(s)).toBe('HTTP/1.1 200 OK');
      s.destroy();
    } finally {
      await c.cleanup();
      await p.stop();
    }
  });

  it('GIVEN a config without acme WHEN teleport acme renew runs THEN it refuses, saying so, and writes nothing', async () => {
    const c = await createAuth({ proxy: {} });
    try {
      const r = await runCli('teleport', ['acme', 'renew', '-c', c.configPath]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`proxy_service.acme is not enabled in ${c.configPath}: there is no ACME certificate to renew`);
      expect(fs.existsSync(c.dataDir)).toBe(false);
    } finally {
      await c.cleanup();
    }
  });

  it.each([
    ['public_addr is an IP address', ['public_addr: 127.0.0.1', 'acme:', '  enabled: yes'], '  public_addr: 127.0.0.1', /acme cannot get a certificate for the IP address 127\.0\.0\.1/],
    ['public_addr is missing', ['acme:', '  enabled: yes'], '    enabled: yes', /acme needs proxy_service.public_addr/],
    [
      'https_keypairs are configured too',
      ['public_addr: proxy.acme.test', 'https_keypairs:', '  - key_file: /k.pem', '    cert_file: /c.pem', 'acme:', '  enabled: yes'],
      '    - key_file: /k.pem',
      /https_keypairs cannot be used with acme\.enabled/,
    ],
  ])('GIVEN acme enabled and %s WHEN teleport starts THEN it refuses, at the line', async (_why, extra, reportedLine, message) => {
    const c = await createAuth({ proxy: { extra } });
    try {
      const line = fs.readFileSync(c.configPath, 'utf8').split('\n').indexOf(reportedLine) + 1;
      expect(line).toBeGreaterThan(0);
      const r = await runCli('teleport', ['start', '--roles=auth,proxy', '-c', c.configPath]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(new RegExp(`${c.configPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${line}:\\d+: .*${message.source}`));
      // THEN nothing was started or written for ACME
      expect(fs.existsSync(path.join(c.dataDir, 'acme'))).toBe(false);
    } finally {
      await c.cleanup();
    }
  });
});
