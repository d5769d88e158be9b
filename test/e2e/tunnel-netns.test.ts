/**
 * Nodes behind NAT, proven with real networks (issue 18 acceptance): each node runs in a network
 * namespace of its own (test/helpers/netns.ts; root, iproute2 and nftables), the cluster (auth +
 * proxy) on this host, the proxy's listeners on the lab address 172.31.<n>.1 only.
 *
 *   this host: proxy 172.31.<n>.1 ── wan 172.31.<n>.2  "router" (NAT)  lan 172.31.<n>.5 ── 172.31.<n>.6 "node"
 *   this host: tinyproxy 172.31.<n>.9 ── 172.31.<n>.10 "proxied"
 *
 * "node" has one route, to the proxy's address, through "router", which masquerades what it
 * forwards: the node dials out, and nothing on the proxy's side can dial the node (this host's
 * route to the lab's /24 is `unreachable`). "proxied" has no route at all beyond its link to
 * tinyproxy: HTTPS_PROXY is its only way out. Both join with auth_servers = the proxy's web
 * address and are reached with tsh and stock OpenSSH through their reverse tunnels; the NAT
 * node's link drops for 20 s and its tunnel comes back on its own.
 *
 * Then, on loopback, two limits of the NAT node that are fixed: a node started before its proxy
 * answers waits (with backoff, saying why) and then joins; a NAT node starts although its unused
 * ssh_service.listen_addr port is taken.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { startAuth, TestAuth, TestNode } from '../helpers/cluster';
import { NetLab } from '../helpers/netns';
import { SshUser } from '../helpers/openssh';
import { Daemon, freePort, run, RunResult, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { startTinyProxy, TinyProxy } from '../helpers/tinyproxy';
import { TshUser } from '../helpers/users';

const CLUSTER = 'example.com';
const TOKEN = 'nat-join-token';
const TUNNEL_UP = /reverse tunnel to the proxy is up/;
/** Lab names of this file: namespaces tnatns<n>-*, host links tnatns<n>*. */
const LAB_PREFIX = 'tnatns';
/** How long the NAT node's link stays down. */
const OUTAGE_MS = 20_000;

const output = (d: Daemon) => d.stdout + d.stderr;
/** The lines of `d`'s output that contain every one of `parts`. */
const linesWith = (d: Daemon, ...parts: string[]) => output(d).split('\n').filter((l) => parts.every((p) => l.includes(p)));

/** Runs every step, even when one fails, then fails with the first error (cleanup in afterAll). */
async function cleanUp(...steps: Array<() => unknown>): Promise<void> {
  let first: unknown;
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      first ??= err;
    }
  }
  if (first) throw first;
}

/** The UUID the cluster lists node `hostname` under. */
async function nodeUUID(cluster: TestAuth, hostname: string): Promise<string> {
  const nodes = JSON.parse(await cluster.tctlOk('nodes', 'ls', '--format=json')) as { metadata: { name: string }; spec: { hostname: string } }[];
  return nodes.find((n) => n.spec.hostname === hostname)!.metadata.name;
}

/** An IPv4 address of this host outside the lab and loopback (the machine's own network). */
function otherHostAddress(lab: NetLab): string {
  const found = Object.values(os.networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal && !i.address.startsWith(lab.addr(0).replace(/0$/, '')));
  if (!found) throw new Error('this host has no IPv4 address outside the lab to probe');
  return found.address;
}

describe('nodes behind NAT in network namespaces', () => {
  let lab: NetLab;
  let router: string;
  let nodeNs: string;
  let proxiedNs: string;
  let cluster: TestAuth;
  let httpProxy: TinyProxy;
  let nat: TestNode;
  let proxied: TestNode;
  let alice: TshUser;
  let aliceSsh: SshUser;
  let work: string;
  let natUUID: string;
  const proxyHost = () => lab.addr(1);

  beforeAll(async () => {
    work = tempDir('tunnel-netns-');
    lab = NetLab.create(LAB_PREFIX);
    router = lab.namespace('router');
    nodeNs = lab.namespace('node');
    proxiedNs = lab.namespace('proxied');
    lab.veth({ dev: lab.hostDev('wan'), addr: `${lab.addr(1)}/30` }, { ns: router, dev: 'wan', addr: `${lab.addr(2)}/30` });
    lab.veth({ ns: router, dev: 'lan', addr: `${lab.addr(5)}/30` }, { ns: nodeNs, dev: 'eth0', addr: `${lab.addr(6)}/30` });
    lab.route(nodeNs, `${proxyHost()}/32`, 'via', lab.addr(5));
    lab.nat(router, 'wan');
    lab.veth({ dev: lab.hostDev('proxied'), addr: `${lab.addr(9)}/30` }, { ns: proxiedNs, dev: 'eth0', addr: `${lab.addr(10)}/30` });

    cluster = await startAuth({ tokens: [`node:${TOKEN}`], proxy: { host: proxyHost() } });
    const caPin = await cluster.caPin();
    const authServer = `${proxyHost()}:${cluster.proxyPorts!.web}`;
    httpProxy = await startTinyProxy({ listen: lab.addr(9), allow: lab.addr(10) });
    nat = await TestNode.create(cluster, { token: TOKEN, caPin, nodeName: 'nat-node', labels: 'env=nat', authServer, launcher: lab.launcher(nodeNs) });
    proxied = await TestNode.create(cluster, {
      token: TOKEN, caPin, nodeName: 'proxied-node', authServer, launcher: lab.launcher(proxiedNs), env: { HTTPS_PROXY: httpProxy.url, NO_PROXY: '' },
    });
    nat.start();
    proxied.start();
    await nat.daemon!.waitForOutput(TUNNEL_UP, 60_000);
    await proxied.daemon!.waitForOutput(TUNNEL_UP, 60_000);
    natUUID = await nodeUUID(cluster, 'nat-node');
    alice = await TshUser.signUp(cluster, 'alice', [LOGIN]);
    await alice.login();
    aliceSsh = await SshUser.create(cluster, work, 'alice', LOGIN);
  }, 180_000);
  afterAll(() =>
    cleanUp(
      () => nat?.cleanup(),
      () => proxied?.cleanup(),
      () => httpProxy?.stop(),
      () => cluster?.cleanup(),
      () => alice?.cleanup(),
      () => lab?.close(),
      () => fs.rmSync(work, { recursive: true, force: true }),
    ),
  );

  /** OpenSSH to `node` through the proxy's `proxy` subsystem, as alice. */
  const openssh = (node: string, command: string): Promise<RunResult> =>
    run('ssh', [
      ...aliceSsh.options(node, CLUSTER),
      '-o', `ProxyCommand=ssh ${aliceSsh.options('test-auth', CLUSTER).join(' ')} -p ${cluster.proxyPorts!.ssh} %r@${proxyHost()} -s proxy:%h:%p@${CLUSTER}`,
      `${LOGIN}@${node}`, command,
    ]);

  describe('a node behind NAT that can reach only the proxy', () => {
    it("GIVEN the node's namespace THEN it reaches the proxy's address and nothing else, and nothing on the proxy's side reaches it", async () => {
      // THEN from the node: the proxy's web port answers; another address of this same host has no route
      expect(await lab.probe(nodeNs, proxyHost(), cluster.proxyPorts!.web)).toBe('connected');
      expect(await lab.probe(nodeNs, otherHostAddress(lab), cluster.proxyPorts!.web)).toBe('ENETUNREACH');
      // AND from the proxy's host: no route to the node's address; the NAT router forwards nothing inbound
      expect(await lab.probe(undefined, lab.addr(6), nat.port)).toBe('EHOSTUNREACH');
      expect(await lab.probe(undefined, lab.addr(2), nat.port)).toBe('ECONNREFUSED');
      // AND the proxy saw the node's tunnel come from the router's address (masqueraded)
      expect(linesWith(cluster.daemon!, 'reverse tunnel established', natUUID).join('\n')).toContain(`${lab.addr(2)}:`);
    });

    it('GIVEN it joined with auth_servers = the proxy web address THEN it is a tunnel node, reachable with tsh ssh', async () => {
      expect(await cluster.tctlOk('nodes', 'ls')).toMatch(new RegExp(`^nat-node\\s+${natUUID}\\s+⟵ Tunnel\\s+env=nat$`, 'm'));
      const r = await alice.tsh(['ssh', 'nat-node', 'hostname -I']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      // (the command ran inside the node's namespace: its only address is the lab's)
      expect(r.stdout.trim().split(/\s+/)).toEqual([lab.addr(6)]);
    });

    it('GIVEN stock OpenSSH through the proxy subsystem THEN it reaches the node through the tunnel', async () => {
      const r = await openssh('nat-node', 'echo openssh-reached');
      expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 0, stdout: 'openssh-reached\n', stderr: '' });
    });

    it(`GIVEN the node's link drops for ${OUTAGE_MS / 1000} s WHEN it comes back THEN the tunnel reconnects without operator action and tsh ssh works again`, async () => {
      const established = () => linesWith(cluster.daemon!, 'reverse tunnel established', natUUID).length;
      const closed = () => linesWith(cluster.daemon!, 'reverse tunnel closed', natUUID).length;
      const [establishedBefore, closedBefore] = [established(), closed()];
      // WHEN the link between the node and its NAT router goes down
      const droppedAt = Date.now();
      lab.setLink(router, 'lan', 'down');
      try {
        // THEN the proxy notices (missed keepalives) and says it no longer reaches the node
        await waitFor('the proxy to drop the dead tunnel', () => closed() > closedBefore, 90_000);
        const during = await alice.tsh(['ssh', 'nat-node', 'echo unreachable']);
        expect(during.code).not.toBe(0);
        expect(during.stdout).toBe('');
        expect(during.stderr).toMatch(/none is connected to this proxy/);
        // (the deliberate outage: the link stays down for OUTAGE_MS in all)
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, OUTAGE_MS - (Date.now() - droppedAt))));
      } finally {
        lab.setLink(router, 'lan', 'up');
      }
      expect(Date.now() - droppedAt).toBeGreaterThanOrEqual(OUTAGE_MS);
      // THEN the node dials a new tunnel by itself
      await waitFor('a new tunnel from the node', () => established() > establishedBefore, 90_000);
      const r = await alice.tsh(['ssh', 'nat-node', 'echo back-again']);
      expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 0, stdout: 'back-again\n', stderr: '' });
      expect(output(nat.daemon!)).toMatch(/reverse tunnel to the proxy is down; reconnecting|cannot open a reverse tunnel to the proxy; retrying/);
    }, 240_000);
  });

  describe('a node whose only way out is an HTTP CONNECT proxy', () => {
    it('GIVEN its namespace THEN it cannot reach the cluster proxy directly, only tinyproxy', async () => {
      expect(await lab.probe(proxiedNs, proxyHost(), cluster.proxyPorts!.web)).toBe('ENETUNREACH');
      expect(await lab.probe(proxiedNs, lab.addr(9), Number(new URL(httpProxy.url).port))).toBe('connected');
    });

    it('GIVEN HTTPS_PROXY THEN it joined and holds its tunnel through CONNECTs to the proxy web and tunnel ports', () => {
      const { web, tunnel } = cluster.proxyPorts!;
      expect(new Set(httpProxy.connects())).toEqual(new Set([`${proxyHost()}:${web}`, `${proxyHost()}:${tunnel}`]));
      expect(output(proxied.daemon!)).toMatch(/auth_servers names a proxy/);
    });

    it('GIVEN alice THEN tsh ssh and OpenSSH reach it through its tunnel', async () => {
      const r = await alice.tsh(['ssh', 'proxied-node', 'echo via-connect']);
      expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 0, stdout: 'via-connect\n', stderr: '' });
      const o = await openssh('proxied-node', 'echo openssh-via-connect');
      expect({ code: o.code, stdout: o.stdout, stderr: o.stderr }).toEqual({ code: 0, stdout: 'openssh-via-connect\n', stderr: '' });
    });
  });
});

/**
 * Two limits of the NAT node, fixed (on loopback: the network plays no part): it waits for a proxy
 * that is not up yet instead of taking it for an auth server, and its start-up check leaves out
 * the SSH port it never binds.
 */
describe('a NAT node that starts before its proxy, or whose SSH port is taken', () => {
  let cluster: TestAuth;
  let caPin: string;
  let alice: TshUser | undefined;
  const nodes: TestNode[] = [];
  const blockers: net.Server[] = [];

  beforeAll(async () => {
    cluster = await startAuth({ tokens: [`node:${TOKEN}`], proxy: {} });
    caPin = await cluster.caPin();
  });
  afterAll(() =>
    cleanUp(
      ...nodes.map((n) => () => n.cleanup()),
      ...blockers.map((b) => () => new Promise((resolve) => b.close(resolve))),
      () => cluster?.cleanup(),
      () => alice?.cleanup(),
    ),
  );

  const newNode = async (nodeName: string, authServer?: string): Promise<TestNode> => {
    const node = await TestNode.create(cluster, { token: TOKEN, caPin, nodeName, ...(authServer ? { authServer } : {}) });
    nodes.push(node);
    return node;
  };
  /** Holds `port` on 127.0.0.1 until the end of the tests. */
  const takePort = async (port: number): Promise<void> => {
    const server = net.createServer((s) => s.destroy());
    blockers.push(server);
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
  };
  const aliceRuns = async (node: string, text: string): Promise<void> => {
    if (!alice) {
      alice = await TshUser.signUp(cluster, 'alice', [LOGIN]);
      await alice.login();
    }
    const r = await alice.tsh(['ssh', node, `echo ${text}`]);
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 0, stdout: `${text}\n`, stderr: '' });
  };
  const WAITING = 'no address in auth_servers answers yet (a proxy or an auth server); retrying';

  it('GIVEN the proxy is down when the NAT node starts THEN it keeps retrying, saying why, and joins as a NAT node once the proxy answers', async () => {
    const web = `127.0.0.1:${cluster.proxyPorts!.web}`;
    await cluster.stop();
    const node = await newNode('late-node', web);
    // WHEN the node starts while nothing answers at the proxy's address
    node.start();
    // THEN it retries (more than once), naming the address and why, and has made nothing yet
    await waitFor('two retries', () => linesWith(node.daemon!, WAITING).length >= 2);
    expect(output(node.daemon!)).toContain(`${web}: cannot connect to ${web}: connect ECONNREFUSED`);
    expect(fs.existsSync(node.dataDir)).toBe(false);
    // WHEN the proxy comes up
    cluster.start();
    await cluster.ready();
    // THEN the node joins through it as a NAT node and is reachable
    await node.daemon!.waitForOutput(TUNNEL_UP, 60_000);
    expect(output(node.daemon!)).toMatch(/auth_servers names a proxy: joining and serving through it/);
    expect(await cluster.tctlOk('nodes', 'ls')).toMatch(/^late-node\s+\S+\s+⟵ Tunnel/m);
    await aliceRuns('late-node', 'joined-late');
  }, 120_000);

  it.each(['SIGTERM', 'SIGQUIT'] as const)('GIVEN a node waiting for its auth_servers to answer WHEN it is told to stop (%s) THEN it stops at once, exit status 0', async (signal) => {
    const silent = await newNode(`never-node-${signal.toLowerCase()}`, `127.0.0.1:${await freePort()}`);
    silent.start();
    await waitFor('a retry', () => linesWith(silent.daemon!, WAITING).length > 0);
    expect(await silent.daemon!.stop(signal)).toBe(0);
    expect(output(silent.daemon!)).toMatch(/shutting down|graceful shutdown/);
  });

  it("GIVEN the NAT node's ssh_service.listen_addr port is taken THEN it starts anyway (it binds no port) and is reachable through its tunnel", async () => {
    const node = await newNode('busy-port-node', `127.0.0.1:${cluster.proxyPorts!.web}`);
    await takePort(node.port);
    node.start();
    await node.daemon!.waitForOutput(TUNNEL_UP, 60_000);
    await aliceRuns('busy-port-node', 'port-taken-but-fine');
  });

  it('GIVEN a node alone pointed at the auth server (not behind NAT) with its port taken THEN it exits naming the port at its line, before joining or making its data dir', async () => {
    const node = await newNode('direct-node');
    await takePort(node.port);
    const daemon = node.start();
    expect(await daemon.exited).toBe(1);
    const config = path.join(node.dir, 'teleport.yaml');
    expect(daemon.stderr).toContain(
      `ERROR: ${config}:2:16: the node service (SSH) cannot listen on 127.0.0.1:${node.port} (ssh_service.listen_addr): port ${node.port} is already in use`,
    );
    expect(fs.existsSync(node.dataDir)).toBe(false);
  });
});
