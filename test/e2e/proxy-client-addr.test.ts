/**
 * The client's real address in a node's audit events when the user comes
 * through the proxy: the proxy signs a `Teleport-Proxy` hello on every
 * direct dial to a registered node, and the node believes it only from a
 * proxy of its cluster, for itself, now and once. Clients dial from
 * 127.0.0.2 while the proxy dials the node from 127.0.0.1, so an event that
 * names the proxy's address fails. A real cluster (`teleport start` with
 * auth, node and proxy), tsh, OpenSSH and a stock sshd.
 */
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Client } from 'ssh2';
import { WebSocket } from 'ws';
import { register } from '../../runtime/auth/register';
import type { Identity } from '../../runtime/auth/identity';
import { signProxyHello } from '../../runtime/proxy/hello';
import { SESSION_COOKIE, TERMINAL_PROTOCOL } from '../../runtime/proxy/terminal';
import { CLIENT_ALGORITHMS, clientCertIdentity, formatAuthorizedKey, generateKeyPair, publicKeyBlob, signUserCert } from '../../runtime/sshcert';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { logger } from '../../runtime/utils/logger';
import { clusterCAKey, startCluster, TestAuth } from '../helpers/cluster';
import { SshUser } from '../helpers/openssh';
import { run, tempDir, waitFor } from '../helpers/proc';
import { LOGIN, startSshd, type Sshd } from '../helpers/sshd';
import { TshUser } from '../helpers/users';

const NODE = 'test-auth';
const CLUSTER = 'example.com';
const CLIENT_IP = '127.0.0.2';

/** A TCP relay on 127.0.0.1 to `port` that dials out from 127.0.0.2, remembering the source ports it used. */
async function relayFrom127002(port: number): Promise<{ port: number; sourcePorts: number[]; close(): Promise<void> }> {
  const all = new Set<net.Socket>();
  const sourcePorts: number[] = [];
  const server = net.createServer((a) => {
    const b = net.connect({ port, host: '127.0.0.1', localAddress: CLIENT_IP });
    b.once('connect', () => sourcePorts.push(b.localPort!));
    for (const [x, y] of [[a, b], [b, a]]) {
      all.add(x);
      x.on('error', () => y.destroy());
      x.on('close', () => (all.delete(x), y.destroy()));
    }
    a.pipe(b).pipe(a);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    sourcePorts,
    close: () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of all) s.destroy();
      return closed;
    },
  };
}

describe('client addresses through the proxy', () => {
  let cluster: TestAuth;
  let work: string;
  let alice: TshUser;
  let relay: Awaited<ReturnType<typeof relayFrom127002>>;
  let sshd: Sshd | undefined;
  let proxyId: Identity;
  let nodeId: Identity;
  let userKey: KeyObject;
  let userCert: string;
  let commands = 0;

  beforeAll(async () => {
    work = tempDir('client-addr-');
    cluster = await startCluster({ proxy: { insecureNoTls: true }, tokens: ['proxy:proxy-join-token', 'node:node-join-token'] });
    alice = await TshUser.signUp(cluster, 'alice', [LOGIN]);
    relay = await relayFrom127002(cluster.proxyPorts!.ssh);
    const r = await alice.tsh(['login', '--proxy', `${cluster.webUrl()},${relay.port}`, '--insecure', '--user', 'alice'], `${alice.password}\n${alice.nextCode()}\n`);
    if (r.code !== 0) throw new Error(`tsh login failed: ${r.stderr}`);
    const joined = (role: 'Proxy' | 'Node', token: string) =>
      cluster.caPin().then((pin) =>
        register({ servers: [{ host: '127.0.0.1', port: cluster.port }], token, caPins: [pin], role, hostUUID: `forger-${role.toLowerCase()}`, nodeName: `forger-${role.toLowerCase()}`, additionalPrincipals: [], dnsNames: [], log: logger('test') }),
      );
    [proxyId, nodeId] = await Promise.all([joined('Proxy', 'proxy-join-token'), joined('Node', 'node-join-token')]);
    const pair = generateKeyPair('ed25519');
    userKey = pair.privateKey;
    userCert = formatAuthorizedKey(
      signUserCert({ caPrivateKey: await clusterCAKey(cluster, 'user'), publicKey: publicKeyBlob(pair.publicKey), username: 'alice', logins: [LOGIN], ttlMs: 3600_000, permit: { pty: true, portForwarding: false, agentForwarding: false, x11Forwarding: false }, roles: ['admin'] }),
    );
  });
  afterAll(async () => {
    await sshd?.close();
    await relay?.close();
    alice?.cleanup();
    await cluster?.cleanup();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  /** The node's audit event of `type` whose `field` is `value`, once it reaches the auth server. */
  const eventWith = (type: string, field: string, value: string) =>
    waitFor(`the node's ${type} event with ${field} ${value}`, async () => (await cluster.events([type])).find((e) => e[field] === value));

  /** SSH straight to the node's port, writing `prefix` first, runs `command`; the TCP port it came from and what ran. */
  async function execStraight(prefix: Buffer, command: string): Promise<{ localPort: number; stdout: string }> {
    const sock = net.connect({ host: '127.0.0.1', port: cluster.nodePort! });
    await once(sock, 'connect');
    const localPort = sock.localPort!;
    sock.write(prefix);
    const client = new Client();
    try {
      await new Promise<void>((resolve, reject) => {
        client.once('ready', () => resolve()).once('error', reject);
        client.connect({ sock, username: LOGIN, agent: clientCertIdentity(userKey, userCert), algorithms: CLIENT_ALGORITHMS, hostVerifier: () => true, readyTimeout: 15_000 });
      });
      const stdout = await new Promise<string>((resolve, reject) =>
        client.exec(command, (err, ch) => {
          if (err) return reject(err);
          let out = '';
          ch.on('data', (d: Buffer) => (out += d.toString()));
          ch.stderr.resume();
          ch.once('close', () => resolve(out));
        }),
      );
      return { localPort, stdout };
    } finally {
      client.end();
      sock.destroy();
    }
  }
  const uniqueCommand = () => `echo client-addr-${++commands}`;
  const nodeAddr = () => ({ ip: '127.0.0.1', port: cluster.nodePort! });
  const signed = (id: Identity, client: { ip: string; port: number }, node = nodeAddr(), time = Date.now()) =>
    signProxyHello({ key: createPrivateKey(id.sshKey), certLine: id.sshCert }, client, node, time);

  it("GIVEN tsh ssh from 127.0.0.2 through the proxy to a node it dials directly THEN the node's session.start names 127.0.0.2 and the client's port", async () => {
    // WHEN an interactive session runs through the proxy (on a terminal: -t)
    const r = await alice.tsh(['ssh', '-t', `${LOGIN}@${NODE}`, 'echo tsh-through-proxy'], '');
    expect(r.stdout).toContain('tsh-through-proxy');
    // THEN
    const start = await waitFor('the session.start of the tsh session', async () => (await cluster.events(['session.start'])).find((e) => e.user === 'alice'));
    expect(start['addr.remote']).toMatch(/^127\.0\.0\.2:\d+$/);
    expect(relay.sourcePorts).toContain(Number(start['addr.remote'].split(':')[1]));
  });

  it('GIVEN OpenSSH from 127.0.0.2 with a ProxyCommand to the proxy subsystem THEN the exec event names 127.0.0.2', async () => {
    // GIVEN
    const user = await SshUser.create(cluster, work, 'alice', LOGIN);
    const hop = [...user.options(NODE, CLUSTER), '-b', CLIENT_IP, '-p', String(cluster.proxyPorts!.ssh), `${LOGIN}@127.0.0.1`, '-s', 'proxy:%h:%p'].join(' ');
    const command = uniqueCommand();
    // WHEN
    const r = await run('ssh', [...user.options(NODE, CLUSTER), '-o', `ProxyCommand=ssh ${hop}`, '-p', String(cluster.nodePort), `${LOGIN}@${NODE}`, command]);
    expect(r.stdout).toBe(command.slice(5) + '\n');
    // THEN
    expect((await eventWith('exec', 'command', command))['addr.remote']).toMatch(/^127\.0\.0\.2:\d+$/);
  });

  it("GIVEN the browser terminal opened from 127.0.0.2 THEN the node's session.start names the browser's address and port", async () => {
    // GIVEN a web session of bob
    const bob = await TshUser.signUp(cluster, 'bob', [LOGIN], { roles: ['admin'] });
    try {
      const web = cluster.webUrl();
      const login = await fetch(`${web}/webapi/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'bob', pass: bob.password, second_factor_token: bob.nextCode() }) });
      expect(login.status).toBe(200);
      const { token } = (await login.json()) as { token: string };
      const cookie = login.headers.getSetCookie().find((h) => h.startsWith(`${SESSION_COOKIE}=`))!.split(';')[0];
      const nodes = (await (await fetch(`${web}/webapi/sites/${CLUSTER}/nodes`, { headers: { authorization: `Bearer ${token}` } })).json()) as { items: { id: string; hostname: string }[] };
      const serverId = nodes.items.find((n) => n.hostname === NODE)!.id;
      // WHEN a terminal opens from 127.0.0.2
      const params = encodeURIComponent(JSON.stringify({ server_id: serverId, login: LOGIN, term: { w: 80, h: 24 } }));
      const ws = new WebSocket(`${web.replace(/^http/, 'ws')}/webapi/sites/${CLUSTER}/connect?params=${params}`, [TERMINAL_PROTOCOL, `bearer.${token}`], { localAddress: CLIENT_IP, headers: { cookie, origin: web } });
      try {
        let output = '';
        ws.on('message', (d, binary) => binary && (output += Buffer.from(d as Buffer).toString()));
        ws.on('error', () => undefined);
        await once(ws, 'open');
        const browserPort = (ws as unknown as { _socket: net.Socket })._socket.localPort!;
        ws.send(Buffer.from('echo from-the-$((6*7))-browser\n'), { binary: true });
        await waitFor('the shell to answer', () => output.includes('from-the-42-browser'));
        // THEN
        const start = await waitFor('the session.start of the terminal', async () => (await cluster.events(['session.start'])).find((e) => e.user === 'bob'));
        expect(start['addr.remote']).toBe(`${CLIENT_IP}:${browserPort}`);
      } finally {
        ws.terminate();
      }
    } finally {
      bob.cleanup();
    }
  });

  it('GIVEN a client that connects to the node and sends nothing THEN the node sends its version line at once (it does not wait for a hello)', async () => {
    const sock = net.connect({ host: '127.0.0.1', port: cluster.nodePort! });
    try {
      sock.on('error', () => undefined);
      let got = '';
      sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
      await waitFor('the version line', () => got.includes('\r\n'));
      expect(got).toMatch(/^SSH-2\.0-Teleport\r\n/);
    } finally {
      sock.destroy();
    }
  });

  it('GIVEN OpenSSH straight to the node (no hello) THEN it works and its own address is audited', async () => {
    const user = await SshUser.create(cluster, work, 'alice', LOGIN);
    const command = uniqueCommand();
    const r = await run('ssh', [...user.options(NODE, CLUSTER), '-b', CLIENT_IP, '-p', String(cluster.nodePort), `${LOGIN}@127.0.0.1`, command]);
    expect(r.stdout).toBe(command.slice(5) + '\n');
    expect((await eventWith('exec', 'command', command))['addr.remote']).toMatch(/^127\.0\.0\.2:\d+$/);
  });

  it("GIVEN a hello signed by a proxy of the cluster for this node, now (positive control) THEN the node audits the hello's client address", async () => {
    const command = uniqueCommand();
    const r = await execStraight(signed(proxyId, { ip: '192.0.2.10', port: 1010 }), command);
    expect(r.stdout).toBe(command.slice(5) + '\n');
    expect((await eventWith('exec', 'command', command))['addr.remote']).toBe('192.0.2.10:1010');
  });

  describe('hellos the node does not believe: the connection goes on and the TCP peer is audited', () => {
    const notBelieved = async (prefix: Buffer) => {
      const command = uniqueCommand();
      const r = await execStraight(prefix, command);
      expect(r.stdout).toBe(command.slice(5) + '\n');
      expect((await eventWith('exec', 'command', command))['addr.remote']).toBe(`127.0.0.1:${r.localPort}`);
    };

    it('GIVEN a user who writes an unsigned hello with a fake address straight to the node THEN it is not believed', async () => {
      await notBelieved(Buffer.from('Teleport-Proxy{"clientAddr":"6.6.6.6:666"}\0'));
    });

    it("GIVEN a hello signed with a node's host certificate (role Node) THEN it is not believed", async () => {
      await notBelieved(signed(nodeId, { ip: '6.6.6.6', port: 666 }));
    });

    it('GIVEN a proxy hello made for another node THEN it is not believed here', async () => {
      await notBelieved(signed(proxyId, { ip: '6.6.6.6', port: 666 }, { ip: '127.0.0.1', port: cluster.nodePort! + 1 }));
    });

    it('GIVEN a proxy hello from two minutes ago THEN it is not believed', async () => {
      await notBelieved(signed(proxyId, { ip: '6.6.6.6', port: 666 }, nodeAddr(), Date.now() - 120_000));
    });

    it('GIVEN a proxy hello captured and replayed THEN the replay is not believed', async () => {
      const hello = signed(proxyId, { ip: '192.0.2.11', port: 1111 });
      const first = uniqueCommand();
      await execStraight(hello, first);
      expect((await eventWith('exec', 'command', first))['addr.remote']).toBe('192.0.2.11:1111');
      await notBelieved(hello);
    });
  });

  it('GIVEN a malformed hello (not JSON) THEN the node closes that connection only', async () => {
    // (a raw socket: an SSH client given a socket the node has already closed may never notice)
    const sock = net.connect({ host: '127.0.0.1', port: cluster.nodePort! });
    await once(sock, 'connect');
    let received = '';
    sock.on('data', (d: Buffer) => (received += d.toString()));
    const closed = once(sock, 'close');
    sock.write(Buffer.from('Teleport-Proxy{not json\0'));
    await closed;
    expect(received).toMatch(/^SSH-2\.0-Teleport/);
    const command = uniqueCommand();
    expect((await execStraight(Buffer.alloc(0), command)).stdout).toBe(command.slice(5) + '\n');
  });

  it('GIVEN a stock sshd reached through the proxy (direct_dial_cidrs) THEN it gets no hello and the session works', async () => {
    // GIVEN sshd trusting the user CA, and the proxy allowed to dial it
    sshd = await startSshd({ trustedUserCAKeys: (await cluster.tctlOk('auth', 'export', '--type=user')).replace(/^cert-authority /gm, '') });
    await cluster.stop();
    fs.appendFileSync(cluster.configPath, '  direct_dial_cidrs: ["127.0.0.1/32"]\n');
    cluster.start();
    await cluster.ready();
    const user = await SshUser.create(cluster, path.join(work), 'alice', LOGIN);
    // WHEN
    const r = await run('ssh', [
      '-F', '/dev/null', '-i', user.key, '-o', `CertificateFile=${user.key}-cert.pub`, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
      '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR',
      '-o', `ProxyCommand=ssh ${user.options(NODE, CLUSTER).join(' ')} -p ${cluster.proxyPorts!.ssh} %r@127.0.0.1 -s proxy:%h:%p`,
      '-p', String(sshd.port), `${LOGIN}@127.0.0.1`, 'echo openssh-reached',
    ]);
    // THEN (sshd drops a client whose first line is not a version line)
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('openssh-reached\n');
  });
});
