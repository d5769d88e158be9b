/**
 * A node keeps its connections to the auth server across its periodic calls:
 * the heartbeats of a real node process, spaced further apart than Node's
 * default 5 s keep-alive, all go over the same TLS connection (no new
 * handshake per call), while an anonymous caller's connection is closed
 * after each answer. A node behind NAT, whose calls reach auth through the
 * proxy's auth pipe, keeps its pipe across its heartbeats the same way.
 */
import { randomUUID } from 'node:crypto';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import * as https from 'node:https';
import type { AccessSnapshot, AccessUnchanged } from '../../runtime/auth/access/feed';
import { AuthClient, HostPort } from '../../runtime/auth/client';
import { register } from '../../runtime/auth/register';
import { connectAuthPipe, serveAuthPipe } from '../../runtime/proxy/authpipe';
import { Heartbeat } from '../../runtime/service/heartbeat';
import { selfSignedServerCert } from '../../runtime/tlsca';
import { logger } from '../../runtime/utils/logger';
import { Server } from '../../runtime/auth/resources';
import { startAuth, TestAuth, TestNode } from '../helpers/cluster';
import { waitFor } from '../helpers/proc';
import { socketInodes, tcpSockets } from '../helpers/procfs';

const TOKEN = 'keepalive-node-token';
/** Heartbeats every 7.5–10 s: longer than the old 5 s keep-alive. */
const ANNOUNCE_TTL_S = 20;

/** The local ports of the established TCP connections that process `pid` holds to `port` (from /proc/net/tcp{,6}). */
function connectionsTo(pid: number, port: number): string[] {
  const inodes = socketInodes(pid);
  return tcpSockets()
    .filter((t) => t.state === '01' && t.remote === port && inodes.has(t.inode))
    .map((t) => String(t.local));
}

describe('keep-alive on the auth API', () => {
  let auth: TestAuth;
  let node: TestNode | undefined;
  let admin: AuthClient;

  beforeAll(async () => {
    auth = await startAuth({ tokens: [`node:${TOKEN}`] });
    admin = await auth.adminClient();
  });
  afterAll(async () => {
    admin?.close();
    await node?.cleanup();
    await auth?.cleanup();
  });

  it('a node sends its heartbeats over the connection it already has', async () => {
    // GIVEN a node process whose heartbeats come every 7.5–10 s
    node = await TestNode.create(auth, { token: TOKEN, caPin: await auth.caPin(), nodeName: 'kept', env: { TELEPORT_ANNOUNCE_TTL: String(ANNOUNCE_TTL_S) } });
    const pid = node.start().child.pid!;
    await node.ready();
    const expiresOf = async () => (await admin.get<Server[]>('/v1/namespaces/default/nodes')).find((s) => s.spec.hostname === 'kept')?.metadata.expires;
    // WHEN three more heartbeats reach the auth server, looking at the node's connections to it after each
    const seen = new Set<string>();
    const samples: string[][] = [];
    let last = await waitFor('the first heartbeat', expiresOf, 30_000, 100);
    for (let i = 0; i < 3; i++) {
      last = await waitFor(`heartbeat ${i + 2}`, async () => {
        const e = await expiresOf();
        return e && e !== last ? e : undefined;
      }, 30_000, 100);
      const ports = connectionsTo(pid, auth.port);
      samples.push(ports);
      for (const p of ports) seen.add(p);
    }
    // THEN they all went over the same connections: its long poll of the access data and one for
    // the rest, never a new one (a new TLS handshake) per heartbeat
    expect(samples[0].length).toBeGreaterThanOrEqual(1);
    expect(samples[0].length).toBeLessThanOrEqual(2);
    expect([...seen].sort()).toEqual([...samples[0]].sort());
  }, 120_000);

  it('a node behind NAT sends its heartbeats through the proxy over the pipe it already has', async () => {
    // GIVEN a proxy web listener serving the auth pipe to the auth server, counting the pipes it opens
    const pair = await selfSignedServerCert(['localhost']);
    const web = https.createServer({ key: pair.key, cert: pair.cert });
    const open = new Set<Duplex>();
    let pipesOpened = 0;
    web.on('upgrade', (req, socket: Duplex, head: Buffer) =>
      serveAuthPipe(req, socket, head, {
        connectAuth: () =>
          new Promise<net.Socket>((resolve, reject) => {
            pipesOpened++;
            const s = net.connect(auth.port, '127.0.0.1', () => resolve(s));
            s.once('error', reject);
          }),
        open,
        maxPipes: 100,
        log: logger('test'),
      }),
    );
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    const viaProxy = { host: '127.0.0.1', port: (web.address() as net.AddressInfo).port };
    const connect = (_server: HostPort) => connectAuthPipe(viaProxy, 5_000);
    let client: AuthClient | undefined;
    let heartbeat: Heartbeat | undefined;
    try {
      // AND a node that joined through that pipe, heartbeating every 5.25–7 s (longer than Node's default 5 s keep-alive)
      const servers = [{ host: '127.0.0.1', port: auth.port }];
      const hostUUID = randomUUID();
      const log = logger('test');
      const id = await register({ servers, token: TOKEN, caPins: [await auth.caPin()], role: 'Node', hostUUID, nodeName: 'natted', additionalPrincipals: [], dnsNames: [], log, connect });
      client = new AuthClient({ servers, credentials: { key: id.tlsKey, cert: id.tlsCert, ca: id.tlsCACerts }, connect });
      const record = (): Server => ({ kind: 'node', version: 'v2', metadata: { name: hostUUID, namespace: 'default' }, spec: { addr: '127.0.0.1:3022', hostname: 'natted', cmd_labels: {} } });
      heartbeat = new Heartbeat(client, record, 14_000, log);
      const expiresOf = async () => (await admin.get<Server[]>('/v1/namespaces/default/nodes')).find((s) => s.spec.hostname === 'natted')?.metadata.expires;
      await heartbeat.start();
      let last = await waitFor('the first heartbeat', expiresOf, 30_000, 100);
      const afterFirst = pipesOpened;
      // WHEN three more heartbeats reach the auth server
      for (let i = 0; i < 3; i++) {
        last = await waitFor(`heartbeat ${i + 2}`, async () => {
          const e = await expiresOf();
          return e && e !== last ? e : undefined;
        }, 30_000, 100);
      }
      // THEN none of them opened a new pipe (a new TLS handshake with auth): they went over the one the first used
      expect(afterFirst).toBeGreaterThanOrEqual(1);
      expect(pipesOpened).toBe(afterFirst);
      expect(open.size).toBeGreaterThanOrEqual(1);
    } finally {
      heartbeat?.stop();
      client?.close();
      for (const s of open) s.destroy();
      await new Promise<void>((resolve) => web.close(() => resolve()));
    }
  }, 120_000);

  it('a node\'s periodic calls share one connection: a heartbeat waits for the access poll held on it, a call of its own does not', async () => {
    // GIVEN a node's client whose connections to auth are counted
    let opened = 0;
    const connect = (server: HostPort) =>
      new Promise<net.Socket>((resolve, reject) => {
        opened++;
        const s = net.connect(server.port, server.host, () => resolve(s));
        s.once('error', reject);
      });
    const servers = [{ host: '127.0.0.1', port: auth.port }];
    const hostUUID = randomUUID();
    const id = await register({ servers, token: TOKEN, caPins: [await auth.caPin()], role: 'Node', hostUUID, nodeName: 'lanes', additionalPrincipals: [], dnsNames: [], log: logger('test') });
    const client = new AuthClient({ servers, credentials: { key: id.tlsKey, cert: id.tlsCert, ca: id.tlsCACerts }, connect });
    try {
      const { version } = await client.get<AccessSnapshot>('/v1/access?version=&wait=0', { lane: 'poll' });
      const record: Server = { kind: 'node', version: 'v2', metadata: { name: hostUUID, namespace: 'default' }, spec: { addr: '127.0.0.1:3022', hostname: 'lanes', cmd_labels: {} } };
      const order: string[] = [];
      // WHEN an access poll is held (nothing changes for 3 s) and a periodic heartbeat and a call of the node's own are made meanwhile
      const poll = client.get<AccessUnchanged>(`/v1/access?version=${encodeURIComponent(version)}&wait=3000`, { lane: 'poll', timeoutMs: 30_000 }).then(() => void order.push('poll'), (e: Error) => void order.push(`poll failed: ${e.message}`));
      const heartbeat = client.post('/v1/namespaces/default/nodes', record, { lane: 'background' }).then(() => void order.push('heartbeat'), (e: Error) => void order.push(`heartbeat failed: ${e.message}`));
      const own = client.get('/v1/configuration/cluster').then(() => void order.push('own call'), (e: Error) => void order.push(`own call failed: ${e.message}`));
      await Promise.all([poll, heartbeat, own]);
      // THEN the node's own call was answered at once (on a connection of its own), the heartbeat after the poll, on the poll's connection
      expect(order).toEqual(['own call', 'poll', 'heartbeat']);
      expect(opened).toBe(2);
    } finally {
      client.close();
    }
  }, 60_000);

  it('a second access poller on the same client (a proxy\'s two caches) never waits behind a held poll', async () => {
    // GIVEN a proxy's client with one access poll held on its background connection (nothing changes for 20 s)
    const servers = [{ host: '127.0.0.1', port: auth.port }];
    const id = await register({ servers, token: TOKEN, caPins: [await auth.caPin()], role: 'Node', hostUUID: randomUUID(), nodeName: 'two-pollers', additionalPrincipals: [], dnsNames: [], log: logger('test') });
    const client = new AuthClient({ servers, credentials: { key: id.tlsKey, cert: id.tlsCert, ca: id.tlsCACerts } });
    try {
      const { version } = await client.get<AccessSnapshot>('/v1/access?version=&wait=0', { lane: 'poll' });
      const order: string[] = [];
      const held = client.get<AccessUnchanged>(`/v1/access?version=${encodeURIComponent(version)}&wait=20000`, { lane: 'poll', timeoutMs: 60_000 }).then(() => void order.push('held poll'));
      // WHEN a second cache loads its first copy and then polls with a short hold
      const first = await client.get<AccessSnapshot>('/v1/access?version=&wait=0', { lane: 'poll' });
      order.push('second load');
      await client.get<AccessUnchanged>(`/v1/access?version=${encodeURIComponent(first.version)}&wait=500`, { lane: 'poll', timeoutMs: 60_000 });
      order.push('second poll');
      // THEN both were answered while the first poll was still held
      expect(order).toEqual(['second load', 'second poll']);
      client.close();
      await held.catch(() => undefined);
    } finally {
      client.close();
    }
  }, 60_000);

  it('closes an anonymous caller\'s connection after the answer', async () => {
    // GIVEN a caller without a client certificate WHEN it asks for the cluster's CA
    const res = await new Promise<{ connection?: string }>((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', port: auth.port, path: '/v1/cacert', rejectUnauthorized: false, agent: new https.Agent({ keepAlive: true }) }, (r) => {
        r.resume();
        resolve(r.headers);
      });
      req.on('error', reject);
    });
    // THEN the server closes the connection instead of keeping it for later
    expect(res.connection).toBe('close');
  });
});
