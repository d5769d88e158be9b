/**
 * Nodes behind NAT: a node whose `auth_servers` is the proxy's web address
 * joins through the proxy, listens on no port, and is served through its
 * reverse tunnel to the proxy (3024) — with tsh and with stock OpenSSH through
 * the `proxy` subsystem, recorded and audited as usual, under the same access
 * decision. The tunnel listener refuses agents without a valid Node host
 * certificate of the cluster; the agent reconnects after the proxy restarts.
 *
 * Cluster: auth + proxy (HTTPS web) in one process; node "nat-node"
 * (env=nat) in its own, pointed at the proxy's web port. A second cluster
 * shows the node's own access decision on a tunnelled connection, a third a
 * node holding tunnels to two proxies behind one address.
 */
import { generateKeyPairSync, KeyObject, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { Client } from 'ssh2';
import { AuthClient } from '../../runtime/auth/client';
import { fetchHostCAKeys } from '../../runtime/auth/hostcas';
import { register } from '../../runtime/auth/register';
import { TunnelRegistry, TunnelServer } from '../../runtime/proxy/tunnel';
import { fetchRecording } from '../../runtime/recordings/playback';
import { logger, setLogWriter } from '../../runtime/utils/logger';
import { CLIENT_ALGORITHMS, clientCertIdentity, formatAuthorizedKey, loadPrivateKey, generateKeyPair, publicKeyBlob, signHostCert, signUserCert } from '../../runtime/sshcert';
import { clusterCAKey, startAuth, TestAuth, TestNode } from '../helpers/cluster';
import { SshUser } from '../helpers/openssh';
import { cliPath, Daemon, freePort, run, RunResult, tempDir, waitFor } from '../helpers/proc';
import { roundRobinRelay, TcpRelay } from '../helpers/tcprelay';
import { LOGIN } from '../helpers/sshd';
import { startTinyProxy, TinyProxy } from '../helpers/tinyproxy';
import { TshUser } from '../helpers/users';

const CLUSTER = 'example.com';
const NAT = 'nat-node';
const TUNNEL_UP = /reverse tunnel to the proxy is up/g;
const DENY_NAT = `kind: role\nversion: v3\nmetadata:\n  name: no-nat\nspec:\n  allow:\n    logins: [${LOGIN}]\n    node_labels:\n      '*': '*'\n  deny:\n    node_labels:\n      env: nat\n`;

/** What happened when an ssh2 client logged in to `port` as `username` with `key` and certificate `cert`. */
function tryAgent(port: number, username: string, key: KeyObject, cert: Buffer, certType: 'user' | 'host'): Promise<'ready' | string> {
  return new Promise((resolve) => {
    const c = new Client();
    c.on('ready', () => {
      c.end();
      resolve('ready');
    });
    c.on('error', (err) => resolve(err.message));
    c.connect({
      host: '127.0.0.1',
      port,
      username,
      agent: clientCertIdentity(key, formatAuthorizedKey(cert), certType),
      algorithms: CLIENT_ALGORITHMS,
      hostVerifier: () => true,
      readyTimeout: 10_000,
    });
  });
}

describe('nodes behind NAT, through reverse tunnels', () => {
  let cluster: TestAuth;
  let nat: TestNode;
  let work: string;
  let alice: TshUser;
  let bob: TshUser;
  let aliceSsh: SshUser;
  let natUUID: string;

  beforeAll(async () => {
    work = tempDir('tunnel-');
    cluster = await startAuth({ tokens: ['node:nat-join-token'], proxy: {} });
    nat = await TestNode.create(cluster, { token: 'nat-join-token', caPin: await cluster.caPin(), nodeName: NAT, labels: 'env=nat', authServer: `127.0.0.1:${cluster.proxyPorts!.web}` });
    nat.start();
    await nat.daemon!.waitForOutput(TUNNEL_UP);
    fs.writeFileSync(path.join(work, 'no-nat.yaml'), DENY_NAT);
    await cluster.tctlOk('create', path.join(work, 'no-nat.yaml'));
    alice = await TshUser.signUp(cluster, 'alice', [LOGIN]);
    await alice.login();
    bob = await TshUser.signUp(cluster, 'bob', [LOGIN], { roles: ['no-nat'] });
    await bob.login();
    aliceSsh = await SshUser.create(cluster, work, 'alice', LOGIN);
    const nodes = JSON.parse(await cluster.tctlOk('nodes', 'ls', '--format=json')) as { metadata: { name: string }; spec: { hostname: string; addr: string; use_tunnel?: boolean } }[];
    natUUID = nodes.find((n) => n.spec.hostname === NAT)!.metadata.name;
  });
  afterAll(async () => {
    await nat?.cleanup();
    await cluster?.cleanup();
    alice?.cleanup();
    bob?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  /** OpenSSH to the NAT node through the proxy's `proxy` subsystem, as alice. */
  const openssh = (remote: string[], extra: string[] = [], input?: string): Promise<RunResult> =>
    run('ssh', [
      ...aliceSsh.options(NAT, CLUSTER),
      '-o', `ProxyCommand=ssh ${aliceSsh.options('test-auth', CLUSTER).join(' ')} -p ${cluster.proxyPorts!.ssh} %r@127.0.0.1 -s proxy:%h:%p@${CLUSTER}`,
      ...extra,
      `${LOGIN}@${NAT}`, ...remote,
    ], input === undefined ? {} : { input });

  it('GIVEN auth_servers naming the proxy web port THEN the node joined through the proxy, listens on no TCP port, and is listed as a tunnel node', async () => {
    // THEN its configured SSH port refuses connections, and the process listens on no TCP port at all
    const refused = await new Promise<string>((resolve) => {
      const s = net.connect(nat.port, '127.0.0.1', () => resolve('connected'));
      s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    expect(refused).toBe('ECONNREFUSED');
    const ss = await run('ss', ['-Hltnp']);
    expect(ss.code).toBe(0);
    const listening = (pid: number | undefined) => ss.stdout.split('\n').filter((l) => l.includes(`pid=${pid},`));
    expect(listening(nat.daemon!.child.pid)).toEqual([]);
    // (ss names the listeners' processes here: the auth + proxy process shows up)
    expect(listening(cluster.daemon!.child.pid).length).toBeGreaterThanOrEqual(4);
    // AND its heartbeat says tunnel, with no address; tctl and tsh list it so
    const json = JSON.parse(await cluster.tctlOk('nodes', 'ls', '--format=json')) as { metadata: { name: string }; spec: { addr: string; use_tunnel?: boolean } }[];
    expect(json.find((n) => n.metadata.name === natUUID)!.spec).toMatchObject({ addr: '', use_tunnel: true });
    expect(await cluster.tctlOk('nodes', 'ls')).toMatch(new RegExp(`^${NAT}\\s+${natUUID}\\s+⟵ Tunnel\\s+env=nat$`, 'm'));
    const ls = await alice.tsh(['ls']);
    expect(ls.stdout).toMatch(new RegExp(`^${NAT}\\s+⟵ Tunnel\\s+env=nat$`, 'm'));
  });

  it('GIVEN an upgrade request on the web port THEN only GET /webapi/auth/connect with Upgrade: teleport-auth becomes the auth pipe; others get 400', async () => {
    /** The status line the web port answers an upgrade request with. */
    const ask = (method: string, target: string, upgrade: string) =>
      new Promise<string>((resolve) => {
        let buf = '';
        const s = tls.connect({ host: '127.0.0.1', port: cluster.proxyPorts!.web, rejectUnauthorized: false }, () =>
          s.write(`${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: ${upgrade}\r\nContent-Length: 0\r\n\r\n`),
        );
        const done = () => {
          s.destroy();
          resolve(buf.split('\r\n')[0]);
        };
        s.on('data', (d: Buffer) => {
          buf += d.toString('latin1');
          if (buf.includes('\r\n\r\n')) done();
        });
        s.on('error', (err) => resolve(err.message));
        s.on('close', done);
      });
    expect(await ask('GET', '/webapi/auth/connect', 'websocket')).toBe('HTTP/1.1 400 Bad Request');
    expect(await ask('GET', '/webapi/ping', 'teleport-auth')).toBe('HTTP/1.1 400 Bad Request');
    expect(await ask('POST', '/webapi/auth/connect', 'teleport-auth')).toBe('HTTP/1.1 400 Bad Request');
    expect(await ask('GET', '/webapi/auth/connect', 'teleport-auth')).toBe('HTTP/1.1 101 Switching Protocols');
  });

  it('GIVEN alice WHEN tsh ssh runs a command on the NAT node THEN it runs there through the tunnel', async () => {
    const r = await alice.tsh(['ssh', NAT, 'echo via-tunnel $USER; exit 4']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`via-tunnel ${LOGIN}\n`);
    expect(r.code).toBe(4);
    expect(cluster.daemon!.stdout + cluster.daemon!.stderr).toMatch(new RegExp(`proxying to node.*${natUUID}.*"tunnel":true`));
  });

  it('GIVEN OpenSSH through the proxy subsystem WHEN an interactive session runs THEN it is recorded and audited by the node as usual', async () => {
    const r = await openssh([], ['-tt'], 'echo typed-$((6*7))\nexit\n');
    expect(r.stdout).toContain('typed-42');
    const start = await waitFor('the session.start event of the NAT node', async () => (await cluster.events(['session.start'])).find((e) => e.server_id === natUUID));
    expect(start).toMatchObject({ user: 'alice', login: LOGIN, 'addr.remote': expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    const rec = await waitFor('the recording on the auth server', async () => {
      const client = await cluster.adminClient();
      try {
        return await fetchRecording(client, start.sid).catch(() => undefined);
      } finally {
        client.close();
      }
    });
    expect(rec.bytes.toString()).toContain('typed-42');
    expect(rec.events[0].event).toBe('session.start');
  });

  it('GIVEN bob, whose role denies env=nat WHEN he asks for the NAT node with tsh or OpenSSH THEN the proxy refuses with the reason and audits it', async () => {
    const denied = `access denied: user "bob" is not allowed on node "${NAT}"`;
    const r = await bob.tsh(['ssh', NAT, 'echo no']);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`ERROR: ${denied}\n`);
    const bobDir = path.join(work, 'bob');
    fs.mkdirSync(bobDir);
    const bobSsh = await SshUser.create(cluster, bobDir, 'bob', LOGIN);
    const viaProxy = await run('ssh', [...bobSsh.options('test-auth', CLUSTER), '-o', 'LogLevel=INFO', '-p', String(cluster.proxyPorts!.ssh), `${LOGIN}@127.0.0.1`, '-s', `proxy:${NAT}:0`]);
    expect(viaProxy.code).toBe(1);
    expect(viaProxy.stderr).toContain(denied);
    await waitFor('the refusal in the audit log', async () => (await cluster.events(['auth'])).some((e) => e.user === 'bob' && e.error === denied));
  });

  describe('the tunnel listener refuses agents without a valid Node host certificate', () => {
    interface Attempt {
      username: string;
      key: KeyObject;
      cert: Buffer;
      certType: 'user' | 'host';
    }
    /** A host certificate for `uuid` (host "agent"), from the cluster's host CA unless `ca` is given. */
    const hostCert = async (uuid: string, o: { ca?: KeyObject; role?: string; expired?: boolean; cluster?: string; login?: string } = {}): Promise<Attempt> => {
      const pair = generateKeyPair('ed25519');
      const cert = signHostCert({
        caPrivateKey: o.ca ?? (await clusterCAKey(cluster, 'host')),
        publicKey: publicKeyBlob(pair.publicKey),
        hostUUID: uuid,
        nodeName: 'agent',
        clusterName: o.cluster ?? CLUSTER,
        role: o.role ?? 'Node',
        ...(o.expired ? { ttlMs: 60_000, now: new Date(Date.now() - 3_600_000) } : {}),
      });
      return { username: o.login ?? `${uuid}.${o.cluster ?? CLUSTER}`, key: pair.privateKey, cert, certType: 'host' };
    };
    /** A user certificate whose login is the host's name, from the `ca` CA's key. */
    const userCert = async (uuid: string, ca: 'user' | 'host'): Promise<Attempt> => {
      const pair = generateKeyPair('ed25519');
      const username = `${uuid}.${CLUSTER}`;
      const cert = signUserCert({
        caPrivateKey: await clusterCAKey(cluster, ca),
        publicKey: publicKeyBlob(pair.publicKey),
        username,
        logins: [username],
        ttlMs: 60_000,
        permit: { pty: false, portForwarding: false, agentForwarding: false, x11Forwarding: false },
        roles: ['admin'],
      });
      return { username, key: pair.privateKey, cert, certType: 'user' };
    };
    const attempt = (a: Attempt) => tryAgent(cluster.proxyPorts!.tunnel, a.username, a.key, a.cert, a.certType);
    /** The proxy's log entries for refused agents. */
    const refusals = () =>
      (cluster.daemon!.stdout + cluster.daemon!.stderr)
        .split('\n')
        .filter((l) => l.includes('refused a reverse tunnel agent'))
        .map((l) => JSON.parse(l) as { login: string; error: string });

    it('GIVEN a valid Node host certificate of the cluster THEN the agent logs in (the control for the refusals below)', async () => {
      expect(await attempt(await hostCert(randomUUID()))).toBe('ready');
    });

    it.each<[string, string, (uuid: string) => Promise<Attempt>]>([
      ['a user certificate from the user CA', 'is signed by an untrusted CA', (u) => userCert(u, 'user')],
      ['a user certificate signed with the host CA key', 'is a user certificate, expected a host certificate', (u) => userCert(u, 'host')],
      ['a host certificate from another CA', 'is signed by an untrusted CA', (u) => hostCert(u, { ca: generateKeyPairSync('ed25519').privateKey })],
      ['an expired host certificate', 'has expired', (u) => hostCert(u, { expired: true })],
      ['a host certificate for role Proxy', 'is for role "Proxy", expected "Node"', (u) => hostCert(u, { role: 'Proxy' })],
      ['a host certificate naming another cluster', '"other.test" is neither this cluster (example.com) nor a leaf cluster of it', (u) => hostCert(u, { cluster: 'other.test' })],
      ['a host certificate used to log in as another host', 'not a principal of certificate', (u) => hostCert(u, { login: `${randomUUID()}.${CLUSTER}` })],
      ['a host certificate used to log in under its node name', 'does not name host "agent"', (u) => hostCert(u, { login: 'agent' })],
    ])('GIVEN %s WHEN it dials the tunnel port THEN it is refused and the reason logged', async (_what, reason, make) => {
      const a = await make(randomUUID());
      expect(await attempt(a)).toMatch(/authentication methods failed/);
      await waitFor('the refusal in the proxy log', () => refusals().some((e) => e.login === a.username && e.error.includes(reason)));
    });
  });

  it('GIVEN the proxy stops and starts again THEN the agent reconnects on its own and the node is reachable again', async () => {
    const before = (nat.daemon!.stdout + nat.daemon!.stderr).match(TUNNEL_UP)!.length;
    await cluster.stop();
    await nat.daemon!.waitForOutput(/reverse tunnel to the proxy is down/);
    cluster.start();
    await cluster.ready();
    await waitFor('the tunnel to come back', () => (nat.daemon!.stdout + nat.daemon!.stderr).match(TUNNEL_UP)!.length > before, 60_000);
    const r = await alice.tsh(['ssh', NAT, 'echo back-again']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('back-again\n');
  });
});

/**
 * The node's own access decision on a tunnelled connection: the proxy's ping
 * advertises `tunnel_public_addr`, which here is a tunnel server run by the
 * test with a proxy identity of the cluster, so the test reaches the node's
 * SSH server through the tunnel without the proxy's check in front.
 */
describe('a node behind NAT decides access itself', () => {
  let cluster: TestAuth;
  let nat: TestNode;
  let work: string;
  let tunnels: TunnelRegistry;
  let server: TunnelServer;
  let proxyClient: AuthClient;
  let natUUID: string;

  beforeAll(async () => {
    setLogWriter(() => undefined);
    work = tempDir('tunnel-node-');
    const tunnelPort = await freePort();
    cluster = await startAuth({ tokens: ['node:nat-join-token', 'proxy:proxy-join-token'], proxy: { extra: [`tunnel_public_addr: 127.0.0.1:${tunnelPort}`] } });
    const caPin = await cluster.caPin();
    const proxyIdentity = await register({
      servers: [{ host: '127.0.0.1', port: cluster.port }],
      token: 'proxy-join-token',
      caPins: [caPin],
      role: 'Proxy',
      hostUUID: randomUUID(),
      nodeName: 'test-proxy',
      additionalPrincipals: ['127.0.0.1'],
      dnsNames: [],
      log: logger('test'),
    });
    proxyClient = new AuthClient({ servers: [{ host: '127.0.0.1', port: cluster.port }], credentials: { key: proxyIdentity.tlsKey, cert: proxyIdentity.tlsCert, ca: proxyIdentity.tlsCACerts } });
    const hostCAs = await fetchHostCAKeys(proxyClient);
    tunnels = new TunnelRegistry();
    server = new TunnelServer({
      listen: { host: '127.0.0.1', port: tunnelPort },
      identity: proxyIdentity,
      clusterName: CLUSTER,
      hostCAKeys: () => hostCAs,
      registry: tunnels,
      preAuth: { loginGraceMs: 10_000, maxStartups: { start: 10, rate: 30, full: 100 } },
      maxConnections: 100,
      log: logger('test:tunnel'),
    });
    await server.listen();
    nat = await TestNode.create(cluster, { token: 'nat-join-token', caPin, nodeName: NAT, labels: 'env=nat', authServer: `127.0.0.1:${cluster.proxyPorts!.web}` });
    nat.start();
    await nat.daemon!.waitForOutput(TUNNEL_UP);
    fs.writeFileSync(path.join(work, 'no-nat.yaml'), DENY_NAT);
    await cluster.tctlOk('create', path.join(work, 'no-nat.yaml'));
    await cluster.tctlOk('users', 'add', 'alice', LOGIN);
    await cluster.tctlOk('users', 'add', 'bob', LOGIN, '--roles=no-nat');
    const nodes = JSON.parse(await cluster.tctlOk('nodes', 'ls', '--format=json')) as { metadata: { name: string }; spec: { hostname: string } }[];
    natUUID = nodes.find((n) => n.spec.hostname === NAT)!.metadata.name;
  });
  afterAll(async () => {
    await server?.close();
    proxyClient?.close();
    await nat?.cleanup();
    await cluster?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  /** Runs `echo` on the node as `user`, over a channel of the node's tunnel opened by the test's tunnel server. */
  const execThroughTunnel = async (user: string): Promise<string> => {
    const key = path.join(work, `${user}-key`);
    await cluster.tctlOk('auth', 'sign', '--user', user, '--format', 'openssh', '-o', key, '--ttl', '10m');
    const stream = await tunnels.dial(natUUID, { host: '192.0.2.9', port: 4242 });
    return new Promise((resolve) => {
      const c = new Client();
      c.on('ready', () =>
        c.exec('echo reached-$((6*7))', (err, ch) => {
          if (err) return resolve(err.message);
          let out = '';
          ch.on('data', (d: Buffer) => (out += d));
          ch.on('close', () => {
            c.end();
            resolve(out);
          });
        }),
      );
      c.on('error', (err) => resolve(err.message));
      c.connect({
        sock: stream,
        username: LOGIN,
        agent: clientCertIdentity(loadPrivateKey(fs.readFileSync(key, 'utf8')), fs.readFileSync(`${key}-cert.pub`, 'utf8')),
        algorithms: CLIENT_ALGORITHMS,
        hostVerifier: () => true,
        readyTimeout: 10_000,
      } as Parameters<Client['connect']>[0]);
    });
  };

  it('GIVEN tunnel_public_addr on the proxy THEN the node dialled that address for its tunnel', () => {
    expect(tunnels.has(natUUID)).toBe(true);
  });

  it('GIVEN alice (allowed) THEN a command runs through the tunnel, audited with the client address the tunnel carried (the control)', async () => {
    expect(await execThroughTunnel('alice')).toBe('reached-42\n');
    await waitFor('the exec event from the client address', async () => (await cluster.events(['exec'])).some((e) => e.server_id === natUUID && e['addr.remote'] === '192.0.2.9:4242'));
  });

  it('GIVEN bob, whose role denies env=nat, with no proxy check in front THEN the node refuses him and audits it', async () => {
    expect(await execThroughTunnel('bob')).toMatch(/authentication methods failed/);
    const denied = `access denied: user "bob" is not allowed on node "${NAT}"`;
    await waitFor('the node refusal in the audit log', async () => (await cluster.events(['auth'])).some((e) => e.server_id === natUUID && e.user === 'bob' && e.error === denied));
  });
});

/**
 * Two proxies (one in the auth process, one in its own) behind one tunnel
 * address, a round-robin TCP load balancer that both advertise as
 * `tunnel_public_addr`: the NAT node holds a tunnel to each.
 */
describe('a node behind NAT with two proxies', () => {
  let cluster: TestAuth;
  let proxy2: Daemon | undefined;
  let proxy2Ports: { ssh: number; web: number; tunnel: number };
  let lb: TcpRelay;
  let nat: TestNode;
  let work: string;
  let aliceSsh: SshUser;
  let natUUID: string;

  beforeAll(async () => {
    work = tempDir('tunnel-two-');
    const lbPort = await freePort();
    cluster = await startAuth({ tokens: ['node:nat-join-token', 'proxy:proxy-join-token'], proxy: { extra: [`tunnel_public_addr: 127.0.0.1:${lbPort}`] } });
    const caPin = await cluster.caPin();
    proxy2Ports = { ssh: await freePort(), web: await freePort(), tunnel: await freePort() };
    const config = path.join(work, 'proxy2.yaml');
    fs.writeFileSync(
      config,
      ['auth_service:', '  enabled: no', 'ssh_service:', '  enabled: no', 'proxy_service:',
        `  listen_addr: 127.0.0.1:${proxy2Ports.ssh}`, `  web_listen_addr: 127.0.0.1:${proxy2Ports.web}`,
        `  tunnel_listen_addr: 127.0.0.1:${proxy2Ports.tunnel}`, `  tunnel_public_addr: 127.0.0.1:${lbPort}`, ''].join('\n'),
    );
    proxy2 = Daemon.spawn(process.execPath, [
      cliPath('teleport'), 'start', '--roles=proxy', '-c', config, `--data-dir=${path.join(work, 'proxy2-data')}`, '--nodename=proxy-two',
      `--auth-server=${cluster.addr}`, '--token=proxy-join-token', `--ca-pin=${caPin}`,
    ]);
    await proxy2.waitForOutput(/teleport is running/);
    lb = await roundRobinRelay([cluster.proxyPorts!.tunnel, proxy2Ports.tunnel], { port: lbPort });
    nat = await TestNode.create(cluster, { token: 'nat-join-token', caPin, nodeName: NAT, authServer: `127.0.0.1:${cluster.proxyPorts!.web}` });
    nat.start();
    await nat.ready();
    await cluster.tctlOk('users', 'add', 'alice', LOGIN);
    aliceSsh = await SshUser.create(cluster, work, 'alice', LOGIN);
    const nodes = JSON.parse(await cluster.tctlOk('nodes', 'ls', '--format=json')) as { metadata: { name: string }; spec: { hostname: string } }[];
    natUUID = nodes.find((n) => n.spec.hostname === NAT)!.metadata.name;
  });
  afterAll(async () => {
    await nat?.cleanup();
    await lb?.close();
    await proxy2?.stop('SIGKILL');
    await cluster?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  /** OpenSSH to the NAT node through the proxy whose SSH port is `port` (its host certificate names it `alias`). */
  const through = (port: number, alias: string): Promise<RunResult> =>
    run('ssh', [
      ...aliceSsh.options(NAT, CLUSTER),
      '-o', `ProxyCommand=ssh ${aliceSsh.options(alias, CLUSTER).join(' ')} -p ${port} %r@127.0.0.1 -s proxy:%h:%p@${CLUSTER}`,
      `${LOGIN}@${NAT}`, 'echo reached',
    ]);
  const established = (d: Daemon) => (d.stdout + d.stderr).split('\n').some((l) => l.includes('reverse tunnel established') && l.includes(natUUID));

  it('GIVEN two proxies behind the tunnel address THEN the node holds a tunnel to each, and each proxy reaches it', async () => {
    await waitFor('a tunnel on each proxy', () => established(cluster.daemon!) && established(proxy2!));
    expect(await through(cluster.proxyPorts!.ssh, 'test-auth')).toMatchObject({ code: 0, stdout: 'reached\n' });
    expect(await through(proxy2Ports.ssh, 'proxy-two')).toMatchObject({ code: 0, stdout: 'reached\n' });
  });

  it('GIVEN one proxy stops THEN the node stays reachable through the other', async () => {
    await proxy2!.stop();
    expect(await through(cluster.proxyPorts!.ssh, 'test-auth')).toMatchObject({ code: 0, stdout: 'reached\n' });
  });
});

/**
 * HTTPS_PROXY (item 4 of the issue): the NAT node's ping, auth pipe and
 * reverse tunnel, and tsh's web and SSH connections, all go through an HTTP
 * CONNECT proxy (tinyproxy) when the environment names one.
 */
describe('a node behind NAT and tsh behind an HTTP proxy', () => {
  let cluster: TestAuth;
  let nat: TestNode;
  let httpProxy: TinyProxy;
  let alice: TshUser;

  beforeAll(async () => {
    httpProxy = await startTinyProxy();
    cluster = await startAuth({ tokens: ['node:nat-join-token'], proxy: {} });
    nat = await TestNode.create(cluster, {
      token: 'nat-join-token', caPin: await cluster.caPin(), nodeName: NAT, authServer: `127.0.0.1:${cluster.proxyPorts!.web}`,
      env: { HTTPS_PROXY: httpProxy.url, NO_PROXY: '' },
    });
    nat.start();
    await nat.daemon!.waitForOutput(TUNNEL_UP);
    alice = await TshUser.signUp(cluster, 'alice', [LOGIN]);
  });
  afterAll(async () => {
    await nat?.cleanup();
    await cluster?.cleanup();
    await httpProxy?.stop();
    alice?.cleanup();
  });

  it('GIVEN HTTPS_PROXY on the node THEN it joined, reaches auth and holds its tunnel through CONNECTs to the proxy web and tunnel ports only', () => {
    const { web, tunnel } = cluster.proxyPorts!;
    const targets = new Set(httpProxy.connects());
    expect([...targets].sort()).toEqual([`127.0.0.1:${tunnel}`, `127.0.0.1:${web}`].sort());
  });

  it('GIVEN HTTPS_PROXY for tsh WHEN alice logs in and runs a command on the NAT node THEN tsh reached the web and SSH ports through the proxy', async () => {
    const { ssh, web } = cluster.proxyPorts!;
    const before = httpProxy.connects().length;
    const env = { HTTPS_PROXY: httpProxy.url, NO_PROXY: '' };
    const login = await alice.tsh(['login', '--proxy', `${cluster.webUrl()},${ssh}`, '--insecure', '--user', 'alice'], `${alice.password}\n${alice.nextCode()}\n`, env);
    expect({ code: login.code, stderr: login.stderr }).toEqual({ code: 0, stderr: expect.not.stringMatching(/error/i) });
    const r = await alice.tsh(['ssh', NAT, 'echo via-http-proxy'], undefined, env);
    expect(r.stdout).toBe('via-http-proxy\n');
    expect(r.code).toBe(0);
    const used = new Set(httpProxy.connects().slice(before));
    expect(used).toEqual(new Set([`127.0.0.1:${web}`, `127.0.0.1:${ssh}`]));
  });

  it('GIVEN HTTPS_PROXY naming a proxy that is down WHEN tsh runs THEN it fails saying it could not get through that proxy', async () => {
    const r = await alice.tsh(['ssh', NAT, 'true'], undefined, { HTTPS_PROXY: 'http://127.0.0.1:1', NO_PROXY: '' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/through the HTTP proxy 127\.0\.0\.1:1/);
  });
});
