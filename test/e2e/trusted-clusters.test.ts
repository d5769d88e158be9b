/**
 * Trusted clusters (issue 18 item 2), two real clusters on one machine: a root
 * ("root.example", auth + proxy) and a leaf ("leaf.example", auth + proxy +
 * node "test-auth" in one process). The leaf's admin creates a
 * `trusted_cluster` with a root join token of type trusted_cluster; the CAs
 * are exchanged over the root's HTTPS (verified: the leaf trusts the root
 * proxy's certificate through NODE_EXTRA_CA_CERTS), the leaf's proxy dials the
 * root's tunnel port, and root users reach leaf nodes through the root proxy
 * with their root certificates, their roles mapped by `role_map` and access
 * decided by the leaf. Sessions and audit stay in the leaf. Disabling or
 * removing trust cuts it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { currentLogin, withCluster } from '../../runtime/client/cluster';
import { createAuth, startAuth, TestAuth } from '../helpers/cluster';
import { SshUser } from '../helpers/openssh';
import { cliPath, Daemon, freePort, run, tempDir, waitFor } from '../helpers/proc';
import { roundRobinRelay, TcpRelay } from '../helpers/tcprelay';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';
import { directToLeafNode, LEAF, LEAF_ROLE, NODE, ROOT, startLeaf, TOKEN, trustedCluster } from '../helpers/trusted';

/** A root role no mapping names. */
const DEV_ROLE = `kind: role\nversion: v3\nmetadata:\n  name: dev\nspec:\n  allow:\n    logins: [${LOGIN}]\n    node_labels:\n      '*': '*'\n`;

describe('trusted clusters: a root cluster reaches a leaf cluster through reverse tunnels', () => {
  let root: TestAuth;
  let leaf: TestAuth;
  let work: string;
  let alice: TshUser;
  let bob: TshUser;

  /** Writes `text` to a file in the work dir and runs `tctl create [-f]` on the leaf. */
  const createOnLeaf = async (name: string, text: string, force = false) => {
    const file = path.join(work, name);
    fs.writeFileSync(file, text);
    return leaf.tctl('create', ...(force ? ['-f'] : []), file);
  };
  /** Stock ssh straight to the leaf node's port (no proxy in front: the node decides alone) with a root user's tsh key. */
  const direct = (user: TshUser, command: string) => directToLeafNode(leaf, user, command);
  const remoteStatus = async () => JSON.parse(await root.tctlOk('get', 'rc', '--format=json')) as { metadata: { name: string }; status: { connection: string } }[];

  beforeAll(async () => {
    work = tempDir('trusted-');
    root = await startAuth({ clusterName: ROOT, proxy: {} });
    leaf = await startLeaf(root, work);
    fs.writeFileSync(path.join(work, 'dev.yaml'), DEV_ROLE);
    await root.tctlOk('create', path.join(work, 'dev.yaml'));
    await root.tctlOk('tokens', 'add', '--type=trusted_cluster', `--value=${TOKEN}`);
    alice = await TshUser.signUp(root, 'alice', [LOGIN]);
    bob = await TshUser.signUp(root, 'bob', [LOGIN], { roles: ['dev'] });
  });
  afterAll(async () => {
    await leaf?.cleanup();
    await root?.cleanup();
    alice?.cleanup();
    bob?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('GIVEN a wrong token or a resource not named after the root WHEN the leaf creates the trusted cluster THEN it is refused and nothing is kept', async () => {
    const wrongToken = await createOnLeaf('wrong-token.yaml', trustedCluster(root, { token: 'not-the-token-at-all' }));
    expect(wrongToken.code).not.toBe(0);
    expect(wrongToken.stderr).toMatch(/refused to establish trust: .*invalid token/);
    const wrongName = await createOnLeaf('wrong-name.yaml', trustedCluster(root, { name: 'main' }));
    expect(wrongName.code).not.toBe(0);
    expect(wrongName.stderr).toContain(`the cluster is named "${ROOT}", not "main"`);
    expect(JSON.parse(await leaf.tctlOk('get', 'tc', '--format=json'))).toEqual([]);
  });

  it('GIVEN the root token WHEN the leaf creates the trusted cluster THEN trust is established and the leaf shows online at the root', async () => {
    const r = await createOnLeaf('tc.yaml', trustedCluster(root));
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`trusted cluster "${ROOT}" has been created\n`);
    // THEN the leaf keeps it without the token
    const tcs = JSON.parse(await leaf.tctlOk('get', 'tc', '--format=json')) as { metadata: { name: string }; spec: Record<string, unknown> }[];
    expect(tcs).toEqual([expect.objectContaining({ kind: 'trusted_cluster', metadata: { name: ROOT }, spec: expect.objectContaining({ enabled: true, token: '' }) })]);
    expect(fs.readFileSync(path.join(leaf.dataDir, 'backend', 'sqlite.db')).includes(Buffer.from(TOKEN))).toBe(false);
    // AND the root lists the leaf, online once the leaf's proxy holds its tunnel
    await waitFor('the leaf online at the root', async () => (await remoteStatus()).find((c) => c.metadata.name === LEAF && c.status.connection === 'online'));
    // AND both sides audited it
    expect((await leaf.events(['trusted_cluster.create'])).some((e) => e.name === ROOT)).toBe(true);
    expect((await root.events(['trusted_cluster.create'])).some((e) => e.name === LEAF && e.success === true)).toBe(true);
  });

  it('GIVEN alice (root role admin, mapped to leaf-access) WHEN she uses tsh THEN she lists and reaches the leaf node through the root proxy', async () => {
    await alice.login();
    const clusters = await alice.tsh(['clusters']);
    expect(clusters.stdout).toMatch(new RegExp(`^${ROOT.replace('.', '\\.')}\\s+online$`, 'm'));
    expect(clusters.stdout).toMatch(new RegExp(`^${LEAF.replace('.', '\\.')}\\s+online$`, 'm'));
    const ls = await alice.tsh(['ls', `--cluster=${LEAF}`]);
    expect(ls.stderr).toBe('');
    expect(ls.stdout).toMatch(new RegExp(`^${NODE}\\s+127\\.0\\.0\\.1:${leaf.nodePort}`, 'm'));
    const r = await alice.tsh(['ssh', `--cluster=${LEAF}`, NODE, 'echo in-leaf $USER']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`in-leaf ${LOGIN}\n`);
    expect(r.code).toBe(0);
    // AND the global flag form works the same
    expect((await alice.tsh([`--cluster=${LEAF}`, 'ssh', NODE, 'echo global'])).stdout).toBe('global\n');
    // AND at the leaf's auth server she is a root user, not a leaf user: she lists nodes, and nothing only leaf users may do
    const me = currentLogin({ home: path.join(alice.home, '.tsh'), cluster: LEAF });
    await withCluster(me, async (c) => {
      expect((await c.auth.get<{ spec: { hostname: string } }[]>('/v1/namespaces/default/nodes')).map((n) => n.spec.hostname)).toEqual([NODE]);
      await expect(c.auth.get('/v1/remoteclusters')).rejects.toThrow('access denied to GET /v1/remoteclusters');
      await expect(c.auth.get('/v1/namespaces/default/sessions/0b7d6a4e-1111-4a4a-8888-222233334444/events')).rejects.toThrow(/access denied/);
    });
    // AND the leaf node itself accepts her root certificate (its own decision, no proxy in front)
    expect((await direct(alice, 'echo direct')).stdout).toBe('direct\n');
  });

  it('GIVEN tsh config WHEN stock OpenSSH reaches <node>.<leaf> THEN it goes through proxy:%h:%p@leaf and checks the leaf host CA', async () => {
    const cfg = path.join(work, 'ssh_config');
    fs.writeFileSync(cfg, (await alice.tsh(['config'])).stdout);
    // (-p: the test node listens on a free port, not 3022)
    const r = await run('ssh', ['-F', cfg, '-p', String(leaf.nodePort), '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', `${LOGIN}@${NODE}.${LEAF}`, 'echo openssh-in-leaf']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('openssh-in-leaf\n');
    // AND the sessions (this command, and tsh's before) were audited in the leaf, not in the root
    const exec = await waitFor('the exec event of the leaf node', async () => (await leaf.events(['exec'])).find((e) => e.command === 'echo openssh-in-leaf'));
    expect(exec).toMatchObject({ user: 'alice', login: LOGIN });
    expect((await leaf.events(['exec'])).some((e) => e.user === 'alice' && e.command === 'echo in-leaf $USER')).toBe(true);
    expect((await root.events(['exec', 'session.start'])).filter((e) => e.user === 'alice')).toEqual([]);
  });

  it('GIVEN bob, whose root role no role_map entry names WHEN he asks for the leaf node THEN the leaf refuses him and sees no nodes for him', async () => {
    await bob.login();
    const r = await bob.tsh(['ssh', `--cluster=${LEAF}`, NODE, 'echo no']);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`access denied: user "bob" of cluster "${ROOT}" has no roles here: role_map maps none of their roles (dev)`);
    const ls = await bob.tsh(['ls', `--cluster=${LEAF}`]);
    expect(ls.stdout).not.toContain(NODE);
    // AND the node refuses him on its own too
    const d = await direct(bob, 'echo no');
    expect(d.code).toBe(255);
    expect(d.stdout).toBe('');
    // AND the refusal is in the leaf's audit log
    await waitFor('the refusal in the leaf audit log', async () => (await leaf.events(['auth'])).some((e) => e.user === 'bob' && /role_map maps none/.test(e.error)));
  });

  it('GIVEN trust disabled on the leaf THEN the next connection is refused within 10 s, the root shows it offline, and enabling it again restores access', async () => {
    const off = await createOnLeaf('tc-off.yaml', trustedCluster(root, { enabled: false }), true);
    expect(off.stderr).toBe('');
    await waitFor('alice refused after disabling', async () => (await alice.tsh(['ssh', `--cluster=${LEAF}`, NODE, 'echo still'])).code !== 0, 10_000);
    await waitFor('the leaf offline at the root', async () => (await remoteStatus()).find((c) => c.metadata.name === LEAF && c.status.connection === 'offline'));
    // AND the leaf node no longer accepts the root's certificates at all
    await waitFor('the node refusing alice', async () => (await direct(alice, 'echo still')).code === 255, 10_000);
    // WHEN enabled again THEN alice is back in
    await createOnLeaf('tc-on.yaml', trustedCluster(root), true);
    await waitFor('alice back in after enabling', async () => (await alice.tsh(['ssh', `--cluster=${LEAF}`, NODE, 'echo back'])).stdout === 'back\n');
  });

  it('GIVEN the root removes the remote cluster THEN the leaf tunnels are refused; the leaf removes its trust with tctl rm tc/<root>', async () => {
    expect(await root.tctlOk('rm', `rc/${LEAF}`)).toBe(`remote cluster "${LEAF}" has been deleted\n`);
    await root.daemon!.waitForOutput(new RegExp(`refused a reverse tunnel agent.*is neither this cluster \\(${ROOT.replace('.', '\\.')}\\) nor a leaf cluster of it`));
    const r = await alice.tsh(['ssh', `--cluster=${LEAF}`, NODE, 'echo gone']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`cluster ${LEAF} not found: it is neither ${ROOT} nor a leaf cluster of it`);
    expect(await leaf.tctlOk('rm', `tc/${ROOT}`)).toBe(`trusted cluster "${ROOT}" has been deleted\n`);
    expect(JSON.parse(await leaf.tctlOk('get', 'tc', '--format=json'))).toEqual([]);
    expect((await leaf.events(['trusted_cluster.delete'])).some((e) => e.name === ROOT)).toBe(true);
  });
});

describe('establishing trust checks the root proxy HTTPS certificate', () => {
  it('GIVEN a leaf that does not trust the root proxy certificate (no --insecure) WHEN it creates the trusted cluster THEN it is refused before the token is sent', async () => {
    const root = await startAuth({ clusterName: ROOT, proxy: {} });
    const leaf = await startAuth({ clusterName: LEAF });
    const work = tempDir('trusted-tls-');
    try {
      const file = path.join(work, 'tc.yaml');
      fs.writeFileSync(file, trustedCluster(root));
      const r = await leaf.tctl('create', file);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('the trusted cluster uses misconfigured HTTP/TLS certificate');
      expect(await root.events(['trusted_cluster.create'])).toEqual([]);
    } finally {
      await leaf.cleanup();
      await root.cleanup();
      fs.rmSync(work, { recursive: true, force: true });
    }
  });
});

describe('trusted clusters with two root proxies behind one tunnel address', () => {
  let root: TestAuth;
  let leaf: TestAuth;
  let proxy2: Daemon | undefined;
  let proxy2Ports: { ssh: number; web: number; tunnel: number };
  let lb: TcpRelay;
  let work: string;
  let aliceSsh: SshUser;

  beforeAll(async () => {
    work = tempDir('trusted-two-');
    // GIVEN a root with a static trusted_cluster token and a second proxy, both tunnel ports behind one relay
    root = await startAuth({ clusterName: ROOT, tokens: ['proxy:proxy-join-token', `trusted_cluster:${TOKEN}`], proxy: {} });
    proxy2Ports = { ssh: await freePort(), web: await freePort(), tunnel: await freePort() };
    const config = path.join(work, 'proxy2.yaml');
    fs.writeFileSync(
      config,
      ['auth_service:', '  enabled: no', 'ssh_service:', '  enabled: no', 'proxy_service:', `  listen_addr: 127.0.0.1:${proxy2Ports.ssh}`,
        `  web_listen_addr: 127.0.0.1:${proxy2Ports.web}`, `  tunnel_listen_addr: 127.0.0.1:${proxy2Ports.tunnel}`, ''].join('\n'),
    );
    proxy2 = Daemon.spawn(process.execPath, [
      cliPath('teleport'), 'start', '--roles=proxy', '-c', config, `--data-dir=${path.join(work, 'proxy2-data')}`, '--nodename=proxy-two',
      `--auth-server=${root.addr}`, '--token=proxy-join-token', `--ca-pin=${await root.caPin()}`,
    ]);
    await proxy2.waitForOutput(/teleport is running/);
    lb = await roundRobinRelay([root.proxyPorts!.tunnel, proxy2Ports.tunnel]);
    // AND a leaf (started with --insecure: the root proxy's certificate is self-signed) trusting it through the relay
    leaf = await createAuth({ clusterName: LEAF, proxy: {}, nodePort: await freePort() });
    leaf.startArgs.push('--insecure');
    leaf.start();
    await leaf.ready();
    fs.writeFileSync(path.join(work, 'roles.yaml'), LEAF_ROLE);
    await leaf.tctlOk('create', path.join(work, 'roles.yaml'));
    const tc = trustedCluster(root).replace(`tunnel_addr: 127.0.0.1:${root.proxyPorts!.tunnel}`, `tunnel_addr: 127.0.0.1:${lb.port}`);
    fs.writeFileSync(path.join(work, 'tc.yaml'), tc);
    await leaf.tctlOk('create', path.join(work, 'tc.yaml'));
    await root.tctlOk('users', 'add', 'alice', LOGIN);
    aliceSsh = await SshUser.create(root, work, 'alice', LOGIN);
    fs.appendFileSync(path.join(work, 'known_hosts'), await leaf.tctlOk('auth', 'export', '--type=host'));
  });
  afterAll(async () => {
    await leaf?.cleanup();
    await lb?.close();
    await proxy2?.stop('SIGKILL');
    await root?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  /** OpenSSH to the leaf node through the root proxy whose SSH port is `port` (its certificate names it `alias`). */
  const through = (port: number, alias: string) =>
    run('ssh', [
      ...aliceSsh.options(NODE, LEAF),
      '-o', `ProxyCommand=ssh ${aliceSsh.options(alias, ROOT).join(' ')} -p ${port} %r@127.0.0.1 -s proxy:%h:%p@${LEAF}`,
      '-p', String(leaf.nodePort), `${LOGIN}@${NODE}`, 'echo reached',
    ]);
  const established = (d: Daemon) => (d.stdout + d.stderr).split('\n').some((l) => l.includes('reverse tunnel from a leaf cluster established') && l.includes(LEAF));

  it('GIVEN the root tells the leaf it has two proxies THEN the leaf holds a tunnel to each, and each reaches the leaf node', async () => {
    // (a proxy counts the others by their heartbeats, re-read every 30 s, and tells the leaf when the count changes)
    await waitFor('a leaf tunnel on each root proxy', () => established(root.daemon!) && established(proxy2!), 75_000);
    expect(await through(root.proxyPorts!.ssh, NODE)).toMatchObject({ code: 0, stdout: 'reached\n' });
    expect(await through(proxy2Ports.ssh, 'proxy-two')).toMatchObject({ code: 0, stdout: 'reached\n' });
  }, 120_000);

  it('GIVEN one root proxy stops THEN the leaf node stays reachable through the other', async () => {
    await proxy2!.stop();
    expect(await through(root.proxyPorts!.ssh, NODE)).toMatchObject({ code: 0, stdout: 'reached\n' });
  });
});
