/**
 * The reverse-tunnel server (proxy side) and agent (node side) in one
 * process, through a TCP relay the test can freeze: the agent registers its
 * host, the proxy reaches the node's stream with the client's address, a
 * tunnel that stops answering is noticed on both ends by the keepalives and
 * re-established, an idle tunnel carries only the agent's keepalives and their
 * answers, only the tunnel's own forward is served, and the agent
 * refuses a server that is not a proxy of the cluster under the name it dialled.
 */
import { createPrivateKey } from 'node:crypto';
import * as net from 'node:net';
import { Client } from 'ssh2';
import type { Duplex } from 'node:stream';
import { Identity } from '../../../runtime/auth/identity';
import { AgentPool } from '../../../runtime/node/agentpool';
import { TunnelAgent } from '../../../runtime/node/tunnel';
import { TUNNEL_BIND_ADDR, TUNNEL_BIND_PORT, TUNNEL_KEEPALIVE, TUNNEL_PROXY_KEEPALIVE, TunnelRegistry, TunnelServer } from '../../../runtime/proxy/tunnel';
import { CLIENT_ALGORITHMS, clientCertIdentity, formatAuthorizedKey, generateKeyPair, publicKeyBlob, signHostCert } from '../../../runtime/sshcert';
import { logger, setLogWriter } from '../../../runtime/utils/logger';
import { waitFor } from '../../helpers/proc';
import { roundRobinRelay } from '../../helpers/tcprelay';

const CLUSTER = 'tunnel.test';
const NODE_UUID = '0d0d0d0d-0000-4000-8000-00000000beef';
const PROXY_UUID = '0e0e0e0e-0000-4000-8000-00000000cafe';
const KEEPALIVE = { intervalMs: 200, countMax: 2 };
const hostCA = generateKeyPair('ed25519');

function identity(role: 'Node' | 'Proxy', uuid: string, principals: string[] = []): Identity {
  const pair = generateKeyPair('ed25519');
  const cert = signHostCert({ caPrivateKey: hostCA.privateKey, publicKey: publicKeyBlob(pair.publicKey), hostUUID: uuid, clusterName: CLUSTER, role, additionalPrincipals: principals });
  return {
    role,
    username: `${uuid}.${CLUSTER}`,
    clusterName: CLUSTER,
    sshKey: pair.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
    sshCert: formatAuthorizedKey(cert),
    tlsKey: '',
    tlsCert: '',
    tlsCACerts: [],
    sshCACerts: [],
  } as Identity;
}

/**
 * A TCP relay to `target` whose open connections can be frozen: bytes stop flowing both ways, nothing is closed.
 * `chunks` has the size of each chunk it carried, by direction.
 */
async function relay(target: number): Promise<{ port: number; chunks: { toTarget: number[]; fromTarget: number[] }; freeze(): void; close(): Promise<void> }> {
  const pairs: [net.Socket, net.Socket][] = [];
  const all: net.Socket[] = [];
  const chunks = { toTarget: [] as number[], fromTarget: [] as number[] };
  const server = net.createServer((a) => {
    const b = net.connect(target, '127.0.0.1');
    a.on('data', (d: Buffer) => chunks.toTarget.push(d.length));
    b.on('data', (d: Buffer) => chunks.fromTarget.push(d.length));
    a.pipe(b).pipe(a);
    a.on('error', () => b.destroy());
    b.on('error', () => a.destroy());
    pairs.push([a, b]);
    all.push(a, b);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    chunks,
    freeze: () => {
      for (const [a, b] of pairs.splice(0)) {
        a.unpipe(b);
        b.unpipe(a);
        // Held, not closed, until the test ends: a peer that vanished without a FIN.
        a.pause();
        b.pause();
      }
    },
    close: () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const sock of all) sock.destroy();
      return closed;
    },
  };
}

describe('reverse tunnel server and agent', () => {
  const logs: string[] = [];
  const closers: (() => unknown)[] = [];
  beforeAll(() => setLogWriter((line) => logs.push(line)));
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
    serverClosers.splice(0);
  });

  /** The close of each server startServer started, in order. */
  const serverClosers: (() => unknown)[] = [];
  async function startServer(proxy: Identity, registry: TunnelRegistry, keepAlive = KEEPALIVE): Promise<number> {
    const server = new TunnelServer({
      listen: { host: '127.0.0.1', port: 0 },
      identity: proxy,
      clusterName: CLUSTER,
      hostCAKeys: () => [publicKeyBlob(hostCA.publicKey)],
      registry,
      preAuth: { loginGraceMs: 10_000, maxStartups: { start: 10, rate: 30, full: 100 } },
      maxConnections: 100,
      log: logger('proxy:tunnel'),
      keepAlive,
    });
    const close = () => server.close();
    closers.push(close);
    serverClosers.push(close);
    return (await server.listen()).port;
  }

  function startAgent(port: number, serve: (stream: Duplex, from: { ip: string; port: number }) => void, keepAlive = KEEPALIVE): TunnelAgent {
    const agent = new TunnelAgent({
      proxy: { host: '127.0.0.1', port },
      identity: identity('Node', NODE_UUID),
      hostCAKeys: async () => [publicKeyBlob(hostCA.publicKey)],
      serve,
      log: logger('node:tunnel'),
      keepAlive,
    });
    closers.push(() => agent.stop());
    agent.start();
    return agent;
  }

  it('GIVEN an agent with a Node certificate THEN its host is registered and the proxy reaches it with the client address; a frozen tunnel is dropped on both ends and re-established', async () => {
    // GIVEN a proxy behind a freezable relay, and an agent that echoes what comes through
    const registry = new TunnelRegistry();
    const port = await startServer(identity('Proxy', PROXY_UUID, ['127.0.0.1']), registry);
    const r = await relay(port);
    closers.push(() => r.close());
    const seen: { ip: string; port: number }[] = [];
    const agent = startAgent(r.port, (stream, from) => {
      seen.push(from);
      stream.pipe(stream);
    });
    // WHEN it is up THEN the registry has its host
    await waitFor('the tunnel to register', () => registry.has(NODE_UUID));
    // WHEN the proxy dials the host THEN the agent serves a stream from the client's address
    const stream = await registry.dial(NODE_UUID, { host: '203.0.113.7', port: 5555 });
    const echoed = new Promise<string>((resolve) => stream.once('data', (d: Buffer) => resolve(d.toString())));
    stream.write('ping');
    expect(await echoed).toBe('ping');
    expect(seen).toEqual([{ ip: '203.0.113.7', port: 5555 }]);
    stream.destroy();
    // AND an unknown host has no tunnel
    await expect(registry.dial('00000000-0000-4000-8000-000000000000', { host: '127.0.0.1', port: 1 })).rejects.toThrow('no reverse tunnel to host');
    // WHEN the tunnel stops carrying bytes without closing THEN the keepalives drop it on the proxy and the agent
    r.freeze();
    await waitFor('the proxy to drop the dead tunnel', () => !registry.has(NODE_UUID));
    await waitFor('the agent to notice', () => logs.some((l) => l.includes('reverse tunnel to the proxy is down')));
    // AND the agent dials again and the host is registered again
    await waitFor('the tunnel to come back', () => registry.has(NODE_UUID) && agent.connected);
  });

  it('GIVEN an idle tunnel with both ends on their default keepalive timers (10 times faster) THEN only the agent sends keepalives: the proxy answers them and sends none of its own', async () => {
    // GIVEN the default timers of both ends, scaled down
    const scaled = (k: { intervalMs: number; countMax: number }) => ({ intervalMs: k.intervalMs / 10, countMax: k.countMax });
    const registry = new TunnelRegistry();
    const r = await relay(await startServer(identity('Proxy', PROXY_UUID, ['127.0.0.1']), registry, scaled(TUNNEL_PROXY_KEEPALIVE)));
    closers.push(() => r.close());
    const agent = startAgent(r.port, () => undefined, scaled(TUNNEL_KEEPALIVE));
    await waitFor('the tunnel to be up', () => registry.has(NODE_UUID) && agent.connected);
    // WHEN it stays idle for 5 of the agent's keepalives
    const toProxy = r.chunks.toTarget.length;
    const toAgent = r.chunks.fromTarget.length;
    await waitFor('5 packets from the agent', () => r.chunks.toTarget.length - toProxy >= 5);
    const fromAgent = r.chunks.toTarget.slice(toProxy, toProxy + 5);
    const fromProxy = r.chunks.fromTarget.slice(toAgent, toAgent + 5);
    // THEN every packet from the proxy is the same size (an answer), smaller than every packet from the agent (a keepalive request)
    expect(new Set(fromProxy).size).toBe(1);
    expect(new Set(fromAgent).size).toBe(1);
    expect(fromProxy[0]).toBeLessThan(fromAgent[0]);
  });

  it('GIVEN a logged-in agent THEN only the one tunnel forward is served: other forwards, a second one, sessions and direct-tcpip are refused', async () => {
    // GIVEN an agent logged in with a valid Node certificate (an ssh2 client, to send what the real agent never does)
    const registry = new TunnelRegistry();
    const port = await startServer(identity('Proxy', PROXY_UUID, ['127.0.0.1']), registry);
    const node = identity('Node', NODE_UUID);
    const c = new Client();
    closers.push(() => c.end());
    await new Promise<void>((resolve, reject) => {
      c.once('ready', () => resolve()).once('error', reject);
      c.connect({ host: '127.0.0.1', port, username: node.username, agent: clientCertIdentity(createPrivateKey(node.sshKey), node.sshCert, 'host'), algorithms: CLIENT_ALGORITHMS, hostVerifier: () => true });
    });
    const outcome = (op: (cb: (err: Error | undefined) => void) => void) => new Promise<string>((resolve) => op((err) => resolve(err ? 'refused' : 'accepted')));
    // WHEN it asks for another forward THEN it is refused and nothing is registered
    expect(await outcome((cb) => c.forwardIn('0.0.0.0', 8080, (err) => cb(err)))).toBe('refused');
    expect(registry.has(NODE_UUID)).toBe(false);
    // WHEN it opens a session or a direct-tcpip channel THEN both are refused
    expect(await outcome((cb) => c.exec('id', (err) => cb(err)))).toBe('refused');
    expect(await outcome((cb) => c.forwardOut('127.0.0.1', 1, '127.0.0.1', port, (err) => cb(err)))).toBe('refused');
    // WHEN it asks for the tunnel forward THEN it is registered; a second one is refused
    expect(await outcome((cb) => c.forwardIn(TUNNEL_BIND_ADDR, TUNNEL_BIND_PORT, (err) => cb(err)))).toBe('accepted');
    expect(registry.has(NODE_UUID)).toBe(true);
    expect(await outcome((cb) => c.forwardIn(TUNNEL_BIND_ADDR, TUNNEL_BIND_PORT, (err) => cb(err)))).toBe('refused');
  });

  it('GIVEN two proxies behind one address, the first taking the first two connections THEN the agent pool holds a tunnel to each; stopping one leaves the node reachable through the other', async () => {
    // GIVEN two proxies (their own identities and registries) behind one address that alternates between them
    const registries = [new TunnelRegistry(), new TunnelRegistry()];
    const proxyIds = ['0e0e0e0e-0000-4000-8000-0000000000a1', '0e0e0e0e-0000-4000-8000-0000000000a2'];
    const servers = await Promise.all(registries.map((r, i) => startServer(identity('Proxy', proxyIds[i], ['127.0.0.1']), r)));
    const lb = await roundRobinRelay(servers, { firstTakesTwo: true });
    closers.push(() => lb.close());
    // WHEN a pool told there are two proxies dials that address
    const pool = new AgentPool({
      agent: {
        proxy: { host: '127.0.0.1', port: lb.port },
        identity: identity('Node', NODE_UUID),
        hostCAKeys: async () => [publicKeyBlob(hostCA.publicKey)],
        serve: (stream) => stream.pipe(stream),
        log: logger('node:tunnel'),
        keepAlive: KEEPALIVE,
      },
      countProxies: async () => 2,
      log: logger('node:pool'),
    });
    closers.push(() => pool.stop());
    pool.start();
    // THEN each proxy holds a tunnel to the node
    await waitFor('a tunnel on each proxy', () => registries.every((r) => r.has(NODE_UUID)));
    expect(pool.proxies().sort()).toEqual(proxyIds.map((id) => `${id}.${CLUSTER}`).sort());
    // WHEN the first proxy goes away THEN the second still reaches the node
    await closers.splice(closers.indexOf(serverClosers[0]), 1)[0]();
    await waitFor('the pool to lose the first proxy', () => pool.proxies().length === 1);
    const stream = await registries[1].dial(NODE_UUID, { host: '127.0.0.1', port: 1 });
    const echoed = new Promise<string>((resolve) => stream.once('data', (d: Buffer) => resolve(d.toString())));
    stream.write('still-here');
    expect(await echoed).toBe('still-here');
    stream.destroy();
  });

  it('GIVEN a proxy that drops the connection before its version line (as over its max_startups) THEN the agent warns with the reason and dials again', async () => {
    // GIVEN a listener that closes every connection at once
    let dropped = 0;
    const server = net.createServer((sock) => {
      dropped++;
      sock.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const before = logs.length;
    // WHEN an agent dials it
    startAgent((server.address() as net.AddressInfo).port, () => undefined);
    // THEN its warning names what ended the connection, not just that it failed
    const warning = await waitFor('the warning', () => logs.slice(before).find((l) => l.includes('cannot open a reverse tunnel to the proxy')));
    expect(JSON.parse(warning)).toMatchObject({ level: 'warn', error: expect.stringMatching(/^(Connection lost before handshake|read ECONNRESET)$/) });
    // AND it dials again
    await waitFor('a second attempt', () => dropped >= 2);
  });

  it.each([
    ['a Node certificate', identity('Node', PROXY_UUID, ['127.0.0.1']), 'is for role \\"Node\\", expected \\"Proxy\\"'],
    ['a Proxy certificate without the dialled name', identity('Proxy', PROXY_UUID, ['proxy.elsewhere']), 'principal \\"127.0.0.1\\" is not listed'],
  ])('GIVEN a server presenting %s THEN the agent refuses it and never registers', async (_what, server, reason) => {
    const registry = new TunnelRegistry();
    const port = await startServer(server, registry);
    const before = logs.length;
    const agent = startAgent(port, () => undefined);
    await waitFor('the refusal in the agent log', () => logs.slice(before).some((l) => l.includes('cannot open a reverse tunnel to the proxy') && l.includes(reason)));
    expect(registry.size).toBe(0);
    expect(agent.connected).toBe(false);
  });
});
