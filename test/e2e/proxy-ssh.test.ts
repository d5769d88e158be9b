/**
 * The proxy's SSH service with the stock OpenSSH client: `ssh` and `scp`
 * through `ProxyCommand ssh -p <proxy> %r@proxy -s proxy:%h:%p`, host
 * resolution by name, UUID and IP:port, the clear errors, the refusals, and
 * malformed connections. The proxy runs in this process against a cluster
 * (auth + node) from `teleport start`.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { AuthClient } from '../../runtime/auth/client';
import { Identity } from '../../runtime/auth/identity';
import { register } from '../../runtime/auth/register';
import { Server } from '../../runtime/auth/resources';
import { startProxySshService, ProxySshService } from '../../runtime/proxy/ssh';
import { logger, setLogWriter } from '../../runtime/utils/logger';
import { startAuth, startCluster, TestAuth, TestNode } from '../helpers/cluster';
import { isRefusal } from '../helpers/idle';
import { SshUser } from '../helpers/openssh';
import { run, RunResult, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';

const NODE = 'test-auth';
const CLUSTER = 'example.com';
const PROXY_NAME = 'proxy.example.com';
const MALFORMED = 1000;

describe('proxy SSH service with OpenSSH', () => {
  let cluster: TestAuth;
  let other: TestAuth;
  let work: string;
  let alice: SshUser;
  let authClient: AuthClient;
  let proxy: ProxySshService;
  let proxyUUID: string;
  let proxyIdentity: Identity;
  let nodeUUID: string;
  const logs: string[] = [];

  beforeAll(async () => {
    setLogWriter((line) => logs.push(line));
    work = tempDir('proxy-ssh-');
    [cluster, other] = await Promise.all([
      startCluster({ tokens: ['proxy:proxy-join-token', 'node:node-join-token'] }),
      startAuth({ clusterName: 'other.test' }),
    ]);
    await cluster.tctlOk('users', 'add', 'alice', LOGIN);
    alice = await SshUser.create(cluster, work, 'alice', LOGIN);
    proxyUUID = randomUUID();
    proxyIdentity = await register({
      servers: [{ host: '127.0.0.1', port: cluster.port }],
      token: 'proxy-join-token',
      caPins: [await cluster.caPin()],
      role: 'Proxy',
      hostUUID: proxyUUID,
      nodeName: 'test-proxy',
      additionalPrincipals: [PROXY_NAME],
      dnsNames: [],
      log: logger('test'),
    });
    const identity = proxyIdentity;
    authClient = new AuthClient({
      servers: [{ host: '127.0.0.1', port: cluster.port }],
      credentials: { key: identity.tlsKey, cert: identity.tlsCert, ca: identity.tlsCACerts },
    });
    proxy = await startProxySshService({
      listen: { host: '127.0.0.1', port: 0 },
      identity,
      authClient,
      authServers: [{ host: '127.0.0.1', port: cluster.port }],
      clusterName: CLUSTER,
      hostUUID: proxyUUID,
      log: logger('proxy:ssh'),
    });
    const nodes = await authClient.get<Server[]>('/v1/namespaces/default/nodes');
    nodeUUID = nodes.find((n) => n.spec.hostname === NODE)!.metadata.name;
  });
  afterAll(async () => {
    await proxy?.close();
    authClient?.close();
    await Promise.all([cluster?.cleanup(), other?.cleanup()]);
    fs.rmSync(work, { recursive: true, force: true });
  });

  /** OpenSSH options for the hop to the proxy: its host cert is checked under the name it was issued for. */
  const proxyHop = (user = alice) => user.options('proxy', CLUSTER);
  /** `ssh ... -s proxy:<target>` straight to the proxy, as a ProxyCommand runs it. */
  const subsystem = (target: string, user = alice): Promise<RunResult> =>
    run('ssh', [...proxyHop(user), '-p', String(proxy.address.port), `${user.login}@127.0.0.1`, '-s', `proxy:${target}`]);
  const proxyCommand = (target: string) => `ProxyCommand=ssh ${proxyHop().join(' ')} -p ${proxy.address.port} %r@127.0.0.1 -s proxy:${target}`;
  /** `ssh` to a node through the proxy; `target` is the subsystem argument. */
  const viaProxy = (remote: string[], target = '%h:%p'): Promise<RunResult> =>
    run('ssh', [...alice.options(NODE), '-o', proxyCommand(target), '-p', String(cluster.nodePort), `${LOGIN}@${NODE}`, ...remote]);

  describe('reaching a node', () => {
    it('GIVEN ProxyCommand with -s proxy:%h:%p WHEN ssh runs a command on the node by name THEN output and exit code pass through', async () => {
      const r = await viaProxy(['echo via-proxy $USER; exit 3']);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(`via-proxy ${LOGIN}\n`);
      expect(r.code).toBe(3);
      expect(logs.some((l) => l.includes('proxying to node') && l.includes(nodeUUID))).toBe(true);
    });

    it('GIVEN the Admin Manual form (node port and -s proxy:%h:%p, no alias on the node hop) THEN the exported line covers the node on any port', async () => {
      const nodeHop = alice.options(NODE).filter((o, i, all) => !o.startsWith('HostKeyAlias=') && !(o === '-o' && all[i + 1]?.startsWith('HostKeyAlias=')));
      const r = await run('ssh', [...nodeHop, '-o', proxyCommand('%h:%p'), '-p', String(cluster.nodePort), `${LOGIN}@${NODE}.${CLUSTER}`, 'echo manual-form']);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('manual-form\n');
    });

    it('GIVEN the node UUID or its IP:port as the target THEN the same node answers', async () => {
      const byUUID = await viaProxy(['hostname; echo uuid-ok'], `${nodeUUID}:`);
      expect(byUUID.stdout).toContain('uuid-ok');
      expect(byUUID.code).toBe(0);
      const byAddr = await viaProxy(['echo addr-ok'], `127.0.0.1:${cluster.nodePort}`);
      expect(byAddr.stdout).toBe('addr-ok\n');
      expect(byAddr.code).toBe(0);
    });

    it('GIVEN the ssh_config of the README WHEN connecting to <nodename>.<cluster> or <uuid>.<cluster> THEN known_hosts needs only the CA line', async () => {
      const config = path.join(work, 'ssh_config');
      fs.writeFileSync(
        config,
        [
          `Host ${PROXY_NAME}`,
          '    HostName 127.0.0.1',
          `    Port ${proxy.address.port}`,
          `    HostKeyAlias ${PROXY_NAME}`,
          '    ProxyCommand none',
          `Host *.${CLUSTER}`,
          `    Port ${cluster.nodePort}`,
          `    ProxyCommand ssh -F ${config} %r@${PROXY_NAME} -s proxy:%h:%p`,
          'Host *',
          `    IdentityFile ${alice.key}`,
          `    CertificateFile ${alice.key}-cert.pub`,
          '    IdentitiesOnly yes',
          '    BatchMode yes',
          `    UserKnownHostsFile ${alice.knownHosts}`,
          '    StrictHostKeyChecking yes',
          '    LogLevel ERROR',
          '',
        ].join('\n'),
      );
      expect(fs.readFileSync(alice.knownHosts, 'utf8').trim().split('\n')).toEqual([
        expect.stringMatching(/^@cert-authority example\.com,\*\.example\.com,\[example\.com\]:\*,\[\*\.example\.com\]:\* /),
      ]);
      for (const host of [`${NODE}.${CLUSTER}`, `${nodeUUID}.${CLUSTER}`]) {
        const r = await run('ssh', ['-F', config, `${LOGIN}@${host}`, 'echo config-ok']);
        expect({ host, stdout: r.stdout, stderr: r.stderr, code: r.code }).toEqual({ host, stdout: 'config-ok\n', stderr: '', code: 0 });
      }
    });

    it('GIVEN the client ends its side first THEN the node still answers through the half-open pipe and the subsystem exits 0', async () => {
      const r = await run('ssh', [...proxyHop(), '-p', String(proxy.address.port), `${LOGIN}@127.0.0.1`, '-s', `proxy:127.0.0.1:${cluster.nodePort}`], {
        input: 'SSH-2.0-OpenSSH_half_close\r\n',
      });
      expect(r.stdout).toMatch(/^SSH-2\.0-Teleport\r\n/);
      expect(r.code).toBe(0);
    });

    it('GIVEN scp with the ProxyCommand THEN a file goes to the node and back unchanged', async () => {
      const src = path.join(work, 'upload.bin');
      const content = randomBytes(64 * 1024);
      fs.writeFileSync(src, content);
      const scpOpts = [...alice.options(NODE), '-o', proxyCommand('%h:%p'), '-P', String(cluster.nodePort)];
      const remote = path.join(work, 'on-node.bin');
      const up = await run('scp', [...scpOpts, src, `${LOGIN}@${NODE}:${remote}`]);
      expect(up.stderr).toBe('');
      expect(up.code).toBe(0);
      const back = path.join(work, 'download.bin');
      const down = await run('scp', [...scpOpts, `${LOGIN}@${NODE}:${remote}`, back]);
      expect(down.code).toBe(0);
      expect(fs.readFileSync(back).equals(content)).toBe(true);
    });
  });

  describe('clear errors', () => {
    it('GIVEN a host that is no node THEN one line says the proxy will not dial it and the exit status is 1', async () => {
      const r = await subsystem('no-such-node.invalid:0');
      expect(r.code).toBe(1);
      expect(r.stderr).toBe('access denied: "no-such-node.invalid" is not a node of cluster example.com\n');
      // Through the ProxyCommand, the same line reaches the user.
      const via = await viaProxy(['true'], 'no-such-node.invalid:0');
      expect(via.code).toBe(255);
      expect(via.stderr).toContain('access denied: "no-such-node.invalid" is not a node of cluster example.com');
    });

    it('GIVEN an unknown UUID, another cluster or a malformed request THEN each gets its own clear error', async () => {
      const uuid = randomUUID();
      expect(await subsystem(`${uuid}:0`)).toMatchObject({ code: 1, stderr: `no node with UUID ${uuid} in cluster example.com\n` });
      const otherCluster = await subsystem(`${NODE}:0@other.test`);
      expect(otherCluster).toMatchObject({ code: 1, stderr: expect.stringMatching(/^cluster other\.test not found/) });
      const withNamespace = await subsystem(`${NODE}:0@default@nowhere`);
      expect(withNamespace.stderr).toMatch(/^cluster nowhere not found/);
      const noPort = await subsystem(NODE);
      expect(noPort).toMatchObject({ code: 1, stderr: expect.stringMatching(/^invalid proxy subsystem request "proxy:test-auth": "test-auth" has no port/) });
      const badPort = await subsystem(`${NODE}:99999`);
      expect(badPort.stderr).toMatch(/"99999" is not a port number/);
    });

    it('GIVEN the local cluster named explicitly THEN the node is reached', async () => {
      const r = await viaProxy(['echo named-cluster'], `%h:%p@${CLUSTER}`);
      expect(r.stdout).toBe('named-cluster\n');
    });
  });

  describe('refusals', () => {
    it('GIVEN a cert from another cluster THEN the proxy refuses it and audits the failure', async () => {
      await other.tctlOk('users', 'add', 'alice', LOGIN);
      const dir = tempDir('proxy-other-');
      try {
        const stranger = await SshUser.create(other, dir, 'alice', LOGIN);
        fs.copyFileSync(alice.knownHosts, stranger.knownHosts);
        const r = await subsystem(`${NODE}:0`, stranger);
        expect(r.code).toBe(255);
        expect(r.stderr).toMatch(/Permission denied/);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
      await waitFor('the proxy auth failure event', async () =>
        (await cluster.events(['auth'])).some((e) => e.server_id === proxyUUID && e.user === LOGIN && e.success === false && /trusted/i.test(e.error)),
      );
    });

    it('GIVEN exec, a shell, -W or another subsystem straight on the proxy THEN each is refused', async () => {
      const to = ['-p', String(proxy.address.port), `${LOGIN}@127.0.0.1`];
      const exec = await run('ssh', [...proxyHop(), ...to, 'echo should-not-run']);
      expect(exec.code).toBe(255);
      expect(exec.stdout).toBe('');
      expect(exec.stderr).toContain("proxy doesn't support request type 'exec'");
      const shell = await run('ssh', [...proxyHop(), '-T', ...to], { input: 'echo should-not-run\n' });
      expect(shell.code).toBe(255);
      expect(shell.stdout).toBe('');
      expect(shell.stderr).toContain("proxy doesn't support request type 'shell'");
      const forward = await run('ssh', [...proxyHop(), '-W', `127.0.0.1:${cluster.nodePort}`, ...to]);
      expect(forward.code).toBe(255);
      expect(forward.stdout).not.toMatch(/^SSH-/);
      expect(forward.stderr).toMatch(/stdio forwarding failed|administratively prohibited/);
      const sftp = await run('ssh', [...proxyHop(), ...to, '-s', 'sftp']);
      expect(sftp.code).toBe(255);
      expect(sftp.stderr).toContain('unsupported subsystem "sftp"');
    });
  });

  it(`GIVEN ${MALFORMED} malformed connections THEN the proxy still serves`, async () => {
    const hit = (i: number) =>
      new Promise<void>((resolve) => {
        const s = net.connect(proxy.address.port, '127.0.0.1');
        const noise = randomBytes(8 + (i % 300));
        const data = i % 3 === 0 ? noise : i % 3 === 1 ? Buffer.concat([Buffer.from('SSH-2.0-fuzz\r\n'), noise]) : Buffer.from(`GET / HTTP/1.1\r\n\r\n${noise}`);
        s.on('connect', () => s.end(data));
        s.on('error', () => undefined);
        s.on('close', () => resolve());
        s.resume();
      });
    let next = 0;
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < MALFORMED) await hit(next++);
    }));
    expect(next).toBe(MALFORMED);
    const r = await viaProxy(['echo still-serving']);
    expect(r.stdout).toBe('still-serving\n');
  });

  it('GIVEN connections that never log in THEN they are closed after the login grace, and those over the limit at once', async () => {
    const strict = await startProxySshService({
      listen: { host: '127.0.0.1', port: 0 },
      identity: proxyIdentity,
      authClient,
      authServers: [],
      clusterName: CLUSTER,
      hostUUID: proxyUUID,
      log: logger('proxy:strict'),
      maxConnections: 2,
      preAuth: { loginGraceMs: 300, maxStartups: { start: 10, rate: 30, full: 100 }, perSourceMaxStartups: { start: 10, rate: 30, full: 100 } },
    });
    const silent = () =>
      new Promise<{ closed: Promise<string> }>((resolve) => {
        const s = net.connect(strict.address.port, '127.0.0.1');
        let got = '';
        s.on('data', (d) => (got += d));
        s.on('error', () => undefined);
        const closed = new Promise<string>((r) => s.on('close', () => r(got)));
        s.on('connect', () => resolve({ closed }));
      });
    try {
      const [a, b] = [await silent(), await silent()];
      const over = await silent();
      // The one over max_connections is refused with the server's version line and an SSH disconnect saying why
      const refusal = await over.closed;
      expect(isRefusal(refusal)).toBe(true);
      expect(refusal).toContain('too many connections');
      expect(await a.closed).toMatch(/^SSH-2\.0-Teleport\r\n/);
      expect(await b.closed).toMatch(/^SSH-2\.0-Teleport\r\n/);
      expect(logs.some((l) => l.includes('connection limit reached'))).toBe(true);
    } finally {
      await strict.close();
    }
  });

  it('GIVEN a second node with the same nodename THEN the name is ambiguous and UUID or IP:port still pick one', async () => {
    const twin = await TestNode.create(cluster, { token: 'node-join-token', caPin: await cluster.caPin(), nodeName: NODE });
    try {
      twin.start();
      await twin.ready();
      const r = await waitFor('the ambiguous host error', async () => {
        const res = await subsystem(`${NODE}:0`);
        return res.stderr.includes('ambiguous') ? res : undefined;
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^ambiguous host "test-auth": it matches 2 nodes in cluster example\.com: .*; name the node by its UUID or by IP:port\n$/);
      expect(r.stderr).toContain(nodeUUID);
      const twinAddr = await viaProxy(['echo twin-ok'], `127.0.0.1:${twin.port}`);
      expect(twinAddr.stdout).toBe('twin-ok\n');
      const first = await viaProxy(['echo first-ok'], `${nodeUUID}:`);
      expect(first.stdout).toBe('first-ok\n');
    } finally {
      await twin.cleanup();
    }
  });
});
