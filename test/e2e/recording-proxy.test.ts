/**
 * Recording proxy mode (`auth_service.session_recording: proxy`): the proxy
 * terminates the user's SSH connection, logs in to a stock OpenSSH server
 * (TrustedUserCAKeys and a host certificate from the cluster) with the
 * user's certificate through the forwarded agent, and records and audits the
 * session. With `proxy_checks_host_keys: yes` it refuses a target without a
 * host certificate from the cluster. A separate node follows the cluster's
 * mode as it changes, without being restarted.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { AuthClient } from '../../runtime/auth/client';
import { formatAuthorizedKey, generateKeyPair, parseCertificate, publicKeyBlob } from '../../runtime/sshcert';
import { createAuth, TestAuth, TestNode } from '../helpers/cluster';
import { readThenSend, speaksFirst } from '../helpers/halfclose';
import { SshUser } from '../helpers/openssh';
import { cliPath, Daemon, freePort, run, tempDir, waitFor } from '../helpers/proc';
import { LOGIN, startSshd, Sshd, trustedUserCAKeys } from '../helpers/sshd';
import { TshUser } from '../helpers/users';

const TOKEN = 'recording-proxy-node-token';
const NS_PER_MS = 1_000_000;

/** A host certificate request as the proxy sends it (runtime/proxy/hostcerts.ts). */
const hostCertRequest = (ttlMs: number) => ({
  public_key: Buffer.from(formatAuthorizedKey(publicKeyBlob(generateKeyPair('ed25519').publicKey))).toString('base64'),
  host_names: ['target.example.com'],
  ttl: ttlMs * NS_PER_MS,
});
const AGENT_REQUIRED = 'forward your agent to the proxy';

describe('recording proxy mode', () => {
  let c: TestAuth;
  let node: TestNode | undefined;
  let certified: Sshd;
  let selfKeyed: Sshd;
  let alice: TshUser;
  let work: string;
  let agent: Daemon | undefined;
  let daveAgent: Daemon | undefined;

  /** Switches the cluster's session_recording (the auth server's config) and restarts auth+proxy only. */
  const setMode = async (mode: 'node' | 'proxy') => {
    await c.stop();
    fs.writeFileSync(c.configPath, fs.readFileSync(c.configPath, 'utf8').replace(/session_recording: \w+/, `session_recording: ${mode}`));
    c.start();
    await c.ready();
  };

  /** `tsh ssh` inside script(1), so that it has a terminal and the session is interactive. */
  const interactive = (args: string[], input: string) =>
    run('script', ['-qec', [process.execPath, cliPath('tsh'), 'ssh', ...args].join(' '), '/dev/null'], { env: { HOME: alice.home, TELEPORT_HOME: '' }, input });

  const played = (sid: string) =>
    waitFor(`the recording of ${sid}`, async () => {
      const r = await alice.tsh(['play', sid]);
      return r.code === 0 ? r.stdout : undefined;
    });

  beforeAll(async () => {
    work = tempDir('recproxy-');
    c = await createAuth({
      tokens: [`node:${TOKEN}`],
      proxy: { insecureNoTls: true, extra: ['direct_dial_cidrs: ["127.0.0.1/32"]'] },
      authExtra: ['session_recording: proxy', 'proxy_checks_host_keys: yes'],
    });
    c.start();
    await c.ready();
    const userCA = trustedUserCAKeys(await c.tctlOk('auth', 'export', '--type=user'));
    const hostKey = path.join(work, 'sshd-host');
    await c.tctlOk('auth', 'sign', '--host', '127.0.0.1,openssh-1', '--format', 'openssh', '-o', hostKey, '--ttl', '2h');
    [certified, selfKeyed] = await Promise.all([startSshd({ trustedUserCAKeys: userCA, hostKey, hostCert: `${hostKey}-cert.pub`, extraConfig: ['Subsystem sftp internal-sftp'] }), startSshd({ trustedUserCAKeys: userCA })]);
    alice = await TshUser.signUp(c, 'alice', [LOGIN]);
    await alice.login();
  });

  afterAll(async () => {
    await agent?.stop();
    await daveAgent?.stop();
    await node?.cleanup();
    await Promise.all([certified?.close(), selfKeyed?.close()]);
    await c?.cleanup();
    alice?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('GIVEN tsh ssh -A to a certified sshd WHEN a command runs THEN sshd accepted the user certificate through the proxy and the command is audited', async () => {
    // WHEN
    const r = await alice.tsh(['ssh', '-A', '-p', String(certified.port), `${LOGIN}@127.0.0.1`, 'echo', 'via-recording-proxy']);
    // THEN
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('via-recording-proxy\n');
    expect(r.code).toBe(0);
    expect(certified.daemon.stderr).toMatch(/Accepted certificate ID "alice"/);
    const exec = await waitFor('the exec event', async () => (await c.events(['exec'])).find((e) => e.command === 'echo via-recording-proxy'));
    expect(exec).toMatchObject({ user: 'alice', login: LOGIN, server_hostname: '127.0.0.1', exitCode: '0' });
  });

  it('GIVEN an interactive tsh ssh -A session on sshd WHEN it ends THEN its start and end are audited and tsh play replays it', async () => {
    // WHEN
    const typed = await interactive(['-A', '-p', String(certified.port), `${LOGIN}@127.0.0.1`], 'echo typed-$((6*7)); exit\r');
    expect(typed.stdout).toContain('typed-42');
    // THEN
    const start = await waitFor('session.start', async () => (await c.events(['session.start'])).find((e) => e.server_hostname === '127.0.0.1'));
    expect(start).toMatchObject({ user: 'alice', login: LOGIN });
    const end = await waitFor('session.end', async () => (await c.events(['session.end'])).find((e) => e.sid === start.sid));
    expect(end).toMatchObject({ user: 'alice', participants: ['alice'] });
    expect(await played(start.sid)).toContain('typed-42');
  });

  it('GIVEN tsh scp -A WHEN it copies a file to sshd through the proxy THEN the file arrives and its sftp subsystem is audited', async () => {
    // GIVEN
    const local = path.join(work, 'tsh-upload.txt');
    fs.writeFileSync(local, 'tsh scp through the recording proxy\n');
    const remote = path.join(work, 'tsh-uploaded.txt');
    // WHEN
    const r = await alice.tsh(['scp', '-A', '-P', String(certified.port), local, `${LOGIN}@127.0.0.1:${remote}`]);
    // THEN
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(fs.readFileSync(remote, 'utf8')).toBe('tsh scp through the recording proxy\n');
    expect(await waitFor('the subsystem event', async () => (await c.events(['subsystem'])).find((e) => e.user === 'alice' && e.server_hostname === '127.0.0.1'))).toMatchObject({ name: 'sftp' });
  });

  it('GIVEN tsh ssh without -A WHEN it reaches sshd through the proxy THEN it fails with a clear message and sshd saw no login', async () => {
    const before = certified.daemon.stderr.length;
    // WHEN
    const r = await alice.tsh(['ssh', '-p', String(certified.port), `${LOGIN}@127.0.0.1`, 'echo', 'must-not-run']);
    // THEN
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(AGENT_REQUIRED);
    expect(certified.daemon.stderr.slice(before)).not.toMatch(/Accepted/);
  });

  it('GIVEN OpenSSH with an agent holding the certificate WHEN it goes through the proxy with ForwardAgent THEN commands, scp, sftp and port forwarding reach sshd and are audited', async () => {
    // GIVEN an ssh-agent with the key and its certificate from tctl auth sign
    const user = await SshUser.create(c, work, 'alice', LOGIN);
    const sock = path.join(work, 'agent.sock');
    agent = Daemon.spawn('ssh-agent', ['-D', '-a', sock]);
    await waitFor('the agent socket', async () => fs.existsSync(sock) || undefined);
    const env = { SSH_AUTH_SOCK: sock };
    const added = await run('ssh-add', [user.key], { env });
    expect(added.code).toBe(0);
    const viaProxy = (forward: boolean) =>
      run('ssh', [
        ...user.options('127.0.0.1'),
        '-o', `ForwardAgent=${forward ? 'yes' : 'no'}`,
        '-o', `ProxyCommand=ssh ${user.options('test-auth').join(' ')} -o ForwardAgent=${forward ? 'yes' : 'no'} -p ${c.proxyPorts!.ssh} %r@127.0.0.1 -s proxy:%h:%p`,
        '-p', String(certified.port), `${LOGIN}@127.0.0.1`, 'echo', 'openssh-via-recording-proxy',
      ], { env });
    // WHEN
    const r = await viaProxy(true);
    // THEN
    expect(r.stdout).toBe('openssh-via-recording-proxy\n');
    expect(r.code).toBe(0);
    // and without agent forwarding the proxy says why it cannot go on
    const without = await viaProxy(false);
    expect(without.code).toBe(255);
    expect(without.stderr).toContain(AGENT_REQUIRED);

    // and scp and sftp through the proxy are audited as on a node (scp, subsystem)
    const proxyCommand = `ProxyCommand=ssh ${user.options('test-auth').join(' ')} -o ForwardAgent=yes -p ${c.proxyPorts!.ssh} %r@127.0.0.1 -s proxy:%h:%p`;
    const local = path.join(work, 'upload.txt');
    fs.writeFileSync(local, 'uploaded through the recording proxy\n');
    const remote = path.join(work, 'uploaded.txt');
    const scp = await run('scp', ['-O', ...user.options('127.0.0.1'), '-o', proxyCommand, '-P', String(certified.port), local, `${LOGIN}@127.0.0.1:${remote}`], { env });
    expect(scp.stderr).toBe('');
    expect(scp.code).toBe(0);
    expect(fs.readFileSync(remote, 'utf8')).toBe('uploaded through the recording proxy\n');
    const sftp = await run('sftp', [...user.options('127.0.0.1'), '-o', proxyCommand, '-P', String(certified.port), '-b', '-', `${LOGIN}@127.0.0.1`], { env, input: `get ${remote} ${remote}.back\n` });
    expect(sftp.code).toBe(0);
    expect(fs.readFileSync(`${remote}.back`, 'utf8')).toBe('uploaded through the recording proxy\n');
    const audited = await waitFor('the scp and subsystem events', async () => {
      const events = await c.events(['scp', 'subsystem']);
      const up = events.find((e) => e.event === 'scp' && e.path === remote);
      const sub = events.find((e) => e.event === 'subsystem' && e.server_hostname === '127.0.0.1');
      return up && sub ? { up, sub } : undefined;
    });
    expect(audited.up).toMatchObject({ action: 'upload', user: 'alice', code: 'T3005I' });
    expect(audited.sub).toMatchObject({ name: 'sftp', user: 'alice', code: 'T3001I' });

    // and a direct-tcpip channel (ssh -W) goes through sshd, audited as a port event
    const echo = net.createServer((sock) => sock.once('data', (d) => sock.end(`echo:${d}`)));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', () => resolve()));
    const echoPort = (echo.address() as net.AddressInfo).port;
    try {
      const forwarded = await run('ssh', [...user.options('127.0.0.1'), '-o', proxyCommand, '-p', String(certified.port), '-W', `127.0.0.1:${echoPort}`, `${LOGIN}@127.0.0.1`], { env, input: 'ping\n' });
      expect(forwarded.stdout).toBe('echo:ping\n');
    } finally {
      echo.close();
    }
    // and -L through the proxy keeps half-close: a server that speaks first and half-closes still gets what the client sends after
    const first = await speaksFirst('greeting');
    const lport = await freePort();
    const lfwd = Daemon.spawn('ssh', [...user.options('127.0.0.1'), '-o', proxyCommand, '-p', String(certified.port), '-N', '-o', 'ExitOnForwardFailure=yes', '-L', `${lport}:127.0.0.1:${first.port}`, '-v', `${LOGIN}@127.0.0.1`], env);
    try {
      await lfwd.waitForOutput(/Local forwarding listening on 127\.0\.0\.1 port/);
      expect(await readThenSend(lport, 'after-eof')).toBe('greeting');
      expect(await first.received).toBe('after-eof');
    } finally {
      await lfwd.stop();
      first.close();
    }
    const port = await waitFor('the port event', async () => (await c.events(['port'])).find((e) => e.addr === `127.0.0.1:${echoPort}`));
    expect(port).toMatchObject({ user: 'alice', success: true, server_hostname: '127.0.0.1' });

    // and another user's certificate on the inner hop of alice's proxy connection is refused
    await c.tctlOk('users', 'add', 'bob', LOGIN);
    const bob = await SshUser.create(c, work, 'bob', LOGIN);
    const mixed = await run('ssh', [
      ...bob.options('127.0.0.1'),
      '-o', `ProxyCommand=ssh ${user.options('test-auth').join(' ')} -o ForwardAgent=yes -p ${c.proxyPorts!.ssh} %r@127.0.0.1 -s proxy:%h:%p`,
      '-p', String(certified.port), `${LOGIN}@127.0.0.1`, 'echo', 'must-not-run',
    ], { env });
    expect(mixed.code).toBe(255);
    expect(mixed.stdout).toBe('');
    expect(mixed.stderr).toContain('access denied: certificate of "bob" on a connection of "alice"');
  });

  it('GIVEN proxy_checks_host_keys: yes WHEN the target presents a self-generated host key THEN the proxy refuses it, saying why', async () => {
    // WHEN
    const r = await alice.tsh(['ssh', '-A', '-p', String(selfKeyed.port), `${LOGIN}@127.0.0.1`, 'echo', 'must-not-run']);
    // THEN
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('the proxy refused target 127.0.0.1');
    expect(r.stderr).toContain('proxy_checks_host_keys: yes');
    expect(selfKeyed.daemon.stderr).not.toMatch(/Accepted/);
  });

  it('GIVEN sshd registered with tctl create WHEN users list and reach it by name THEN it is listed and reached as its roles allow', async () => {
    // GIVEN the certified sshd as a node resource, and carol whose role allows only env=staging nodes
    const resource = path.join(work, 'openssh-node.yaml');
    fs.writeFileSync(resource, ['kind: node', 'version: v2', 'metadata:', '  name: openssh-1', '  labels:', '    env: openssh', 'spec:', `  addr: 127.0.0.1:${certified.port}`, '  hostname: openssh-1', ''].join('\n'));
    expect(await c.tctlOk('create', resource)).toContain('node "openssh-1" has been created');
    const bad = path.join(work, 'bad-node.yaml');
    fs.writeFileSync(bad, ['kind: node', 'version: v2', 'metadata:', '  name: bad-1', 'spec:', '  addr: 127.0.0.1', '  hostname: bad-1', ''].join('\n'));
    const refusedBad = await c.tctl('create', bad);
    expect(refusedBad.code).not.toBe(0);
    expect(refusedBad.stderr).toContain('node "bad-1": spec.addr "127.0.0.1" is not host:port');
    const again = await c.tctl('create', resource);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain('node "openssh-1" already exists');
    const role = path.join(work, 'staging-only.yaml');
    fs.writeFileSync(role, ['kind: role', 'version: v3', 'metadata:', '  name: staging-only', 'spec:', '  allow:', `    logins: [${LOGIN}]`, '    node_labels:', '      env: staging', ''].join('\n'));
    await c.tctlOk('create', role);
    const carol = await TshUser.signUp(c, 'carol', [LOGIN], { roles: ['staging-only'] });
    try {
      await carol.login();
      // WHEN / THEN alice (admin) sees and reaches it by name
      expect((await alice.tsh(['ls'])).stdout).toMatch(/openssh-1 .*env=openssh/);
      const r = await alice.tsh(['ssh', '-A', `${LOGIN}@openssh-1`, 'echo', 'registered-openssh']);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('registered-openssh\n');
      // and carol neither sees nor reaches it
      expect((await carol.tsh(['ls'])).stdout).not.toContain('openssh-1');
      const denied = await carol.tsh(['ssh', '-A', `${LOGIN}@openssh-1`, 'echo', 'must-not-run']);
      expect(denied.code).not.toBe(0);
      expect(denied.stdout).toBe('');
      expect(denied.stderr).toContain('access denied');
    } finally {
      carol.cleanup();
    }
  });

  it('GIVEN a login allowed on the proxy hop but not for the target WHEN the inner hop asks for it THEN the proxy refuses it', async () => {
    // GIVEN dave may log in as nobody anywhere, and as the test login only on env=staging nodes; openssh-1 is env=openssh
    const roles = path.join(work, 'dave-roles.yaml');
    fs.writeFileSync(roles, [
      'kind: role', 'version: v3', 'metadata:', '  name: nobody-anywhere', 'spec:', '  allow:', '    logins: [nobody]', "    node_labels: {'*': '*'}", '---',
      'kind: role', 'version: v3', 'metadata:', '  name: login-on-staging', 'spec:', '  allow:', `    logins: [${LOGIN}]`, '    node_labels: {env: staging}', '',
    ].join('\n'));
    await c.tctlOk('create', roles);
    await c.tctlOk('users', 'add', 'dave', `nobody,${LOGIN}`, '--roles=nobody-anywhere,login-on-staging');
    const dave = await SshUser.create(c, work, 'dave', LOGIN);
    const sock = path.join(work, 'dave-agent.sock');
    daveAgent = Daemon.spawn('ssh-agent', ['-D', '-a', sock]);
    await waitFor('the agent socket', async () => fs.existsSync(sock) || undefined);
    expect((await run('ssh-add', [dave.key], { env: { SSH_AUTH_SOCK: sock } })).code).toBe(0);
    const before = certified.daemon.stderr.length;
    // WHEN the proxy hop logs in as nobody (allowed) and the inner hop as the test login (not allowed on openssh-1)
    const r = await run('ssh', [
      ...dave.options('openssh-1'),
      '-o', `ProxyCommand=ssh ${dave.options('test-auth').join(' ')} -o ForwardAgent=yes -p ${c.proxyPorts!.ssh} nobody@127.0.0.1 -s proxy:openssh-1:0`,
      `${LOGIN}@openssh-1`, 'echo', 'must-not-run',
    ], { env: { SSH_AUTH_SOCK: sock } });
    // THEN
    expect(r.code).toBe(255);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('access denied');
    expect(certified.daemon.stderr.slice(before)).not.toMatch(/Accepted certificate ID "dave"/);
  });

  it("GIVEN the proxy's identity WHEN it asks the auth server for a host certificate in proxy mode THEN it gets one of at most 2 hours", async () => {
    // GIVEN
    const proxy = await c.identity('Proxy');
    const client = new AuthClient({ servers: [{ host: '127.0.0.1', port: c.port }], credentials: { key: proxy.tlsKey, cert: proxy.tlsCert, ca: proxy.tlsCACerts } });
    try {
      // WHEN / THEN
      const ok = await client.post<{ cert: string }>('/v1/hosts/certs', hostCertRequest(3600_000));
      expect(parseCertificate(Buffer.from(ok.cert, 'base64').toString()).principals).toEqual(['target.example.com']);
      await expect(client.post('/v1/hosts/certs', hostCertRequest(3 * 3600_000))).rejects.toThrow("a proxy's host certificates live at most 2h");
    } finally {
      client.close();
    }
  });

  it('GIVEN a node that is not restarted WHEN the cluster switches between proxy and node mode THEN recordings move between the proxy and the node', async () => {
    // GIVEN a node in its own process
    node = await TestNode.create(c, { token: TOKEN, nodeName: 'rec-node' });
    node.start();
    await node.ready();
    await waitFor('rec-node in tsh ls', async () => (await alice.tsh(['ls'])).stdout.includes('rec-node') || undefined);
    const script = 'echo "sid=$TELEPORT_SESSION"; echo mode-$((6*7)); exit\r';

    // WHEN the cluster records on the proxy: the proxy needs the agent, and the node does not record
    // (the proxy's node list is cached for 2 s: until it names rec-node, the proxy says it is no node)
    const refused = await waitFor('the proxy to know rec-node', async () => {
      const r = await alice.tsh(['ssh', 'rec-node', 'echo', 'x']);
      return r.stderr.includes('is not a node of cluster') ? undefined : r;
    });
    expect(refused.stderr).toContain(AGENT_REQUIRED);
    const before = (await c.events(['session.start'])).length;
    const inProxyMode = await interactive(['-A', 'rec-node'], script);
    const nodeSid = /sid=([0-9a-f-]{36})/.exec(inProxyMode.stdout)![1];
    // THEN two session.start events: the node's (not recorded) and the proxy's (recorded)
    const starts = await waitFor('both session.start events', async () => {
      const s = (await c.events(['session.start'])).slice(before);
      return s.length >= 2 ? s : undefined;
    });
    const proxySid = starts.map((e) => e.sid as string).find((s) => s !== nodeSid)!;
    expect(await played(proxySid)).toContain('mode-42');
    expect((await alice.tsh(['play', nodeSid])).code).not.toBe(0);

    // WHEN the cluster switches to node recording (auth and proxy restart; the node does not)
    const nodePid = node.daemon!.child.pid;
    await setMode('node');
    // THEN the same session without -A is recorded by the node, under the node's session ID
    const inNodeMode = await waitFor('a session in node mode', async () => {
      const r = await interactive(['rec-node'], script);
      return /sid=/.test(r.stdout) ? r : undefined;
    });
    const sid = /sid=([0-9a-f-]{36})/.exec(inNodeMode.stdout)![1];
    expect(await played(sid)).toContain('mode-42');
    expect(node.daemon!.child.pid).toBe(nodePid);
    expect(node.daemon!.child.exitCode).toBeNull();
  });

  it('GIVEN node mode WHEN the proxy asks the auth server for a host certificate THEN it is refused', async () => {
    // GIVEN the previous test left the cluster in node mode
    expect(fs.readFileSync(c.configPath, 'utf8')).toContain('session_recording: node');
    const proxy = await c.identity('Proxy');
    const client = new AuthClient({ servers: [{ host: '127.0.0.1', port: c.port }], credentials: { key: proxy.tlsKey, cert: proxy.tlsCert, ca: proxy.tlsCACerts } });
    try {
      // WHEN / THEN
      await expect(client.post('/v1/hosts/certs', hostCertRequest(3600_000))).rejects.toThrow('a proxy may get host certificates only while session_recording is proxy');
    } finally {
      client.close();
    }
  });
});
