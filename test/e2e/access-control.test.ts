/**
 * Roles decide where a connection lands: at the proxy before it dials and at
 * the node before any channel opens, from the current roles and users (a role
 * edited or a user deleted bites at the next connection, with the old
 * certificate), for stock OpenSSH and for tsh, with the reason shown and
 * audited. The proxy reaches registered nodes only, unless
 * `proxy_service.direct_dial_cidrs` allows an address.
 *
 * Cluster: auth + proxy + node "test-auth" (env=prod) in one process, and a
 * node "staging" (env=staging) in its own. Bob's only role allows env=prod and
 * denies env=staging; alice has the default admin role.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startCluster, TestAuth, TestNode } from '../helpers/cluster';
import { SshUser } from '../helpers/openssh';
import { run, RunResult, tempDir, waitFor } from '../helpers/proc';
import { LOGIN, Sshd, startSshd } from '../helpers/sshd';
import { TshUser } from '../helpers/users';

const CLUSTER = 'example.com';
const PROD = 'test-auth';
const STAGING = 'staging';
/** A login no role of bob's allows. */
const OTHER_LOGIN = LOGIN === 'daemon' ? 'nobody' : 'daemon';

function roleYaml(name: string, allow: string, deny: string): string {
  return `kind: role\nversion: v3\nmetadata:\n  name: ${name}\nspec:\n  allow:\n${allow}\n  deny:\n${deny}\n`;
}
const PROD_ONLY = roleYaml('prod-only', `    logins: [${LOGIN}]\n    node_labels:\n      env: prod`, `    node_labels:\n      env: staging`);
const DENY_ALL = roleYaml('prod-only', `    logins: [${LOGIN}]\n    node_labels:\n      env: prod`, `    node_labels:\n      '*': '*'`);

describe('access control where the connection lands', () => {
  let cluster: TestAuth;
  let staging: TestNode;
  let work: string;
  let bob: SshUser;
  let bobTsh: TshUser;
  let alice: SshUser;
  let sshd: Sshd | undefined;
  let uuids: Record<string, string>;

  beforeAll(async () => {
    work = tempDir('access-');
    cluster = await startCluster({ proxy: { insecureNoTls: true }, labels: { env: 'prod' }, tokens: ['node:node-join-token'] });
    staging = await TestNode.create(cluster, { token: 'node-join-token', caPin: await cluster.caPin(), nodeName: STAGING, labels: 'env=staging' });
    staging.start();
    await staging.ready();
    fs.writeFileSync(path.join(work, 'role.yaml'), PROD_ONLY);
    await cluster.tctlOk('create', path.join(work, 'role.yaml'));
    bobTsh = await TshUser.signUp(cluster, 'bob', [LOGIN], { roles: ['prod-only'] });
    await bobTsh.login();
    bob = await SshUser.create(cluster, work, 'bob', LOGIN);
    await cluster.tctlOk('users', 'add', 'alice', LOGIN);
    alice = await SshUser.create(cluster, work, 'alice', LOGIN);
    const ls = await cluster.tctlOk('nodes', 'ls', '--format=json');
    uuids = Object.fromEntries((JSON.parse(ls) as { metadata: { name: string }; spec: { hostname: string } }[]).map((n) => [n.spec.hostname, n.metadata.name]));
  });
  afterAll(async () => {
    await sshd?.close();
    await staging?.cleanup();
    await cluster?.cleanup();
    bobTsh?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  /** OpenSSH options that show the server's banner (the reason of a refusal), host certificate checked under `alias`. */
  const verbose = (user: SshUser, alias: string) => ['-o', 'LogLevel=INFO', ...user.options(alias, CLUSTER)];
  /** `ssh` through the proxy with `-s proxy:<target>` to a node known as `alias`. */
  const viaProxy = (user: SshUser, alias: string, target: string, login = LOGIN): Promise<RunResult> =>
    run('ssh', [
      ...verbose(user, alias),
      '-o', `ProxyCommand=ssh ${user.options(PROD, CLUSTER).join(' ')} -p ${cluster.proxyPorts!.ssh} %r@127.0.0.1 -s proxy:${target}`,
      `${login}@${alias}`, 'echo reached $(hostname)',
    ]);
  /** `ssh` straight to a node's port. */
  const direct = (user: SshUser, alias: string, port: number, login = LOGIN): Promise<RunResult> =>
    run('ssh', [...verbose(user, alias), '-p', String(port), `${login}@127.0.0.1`, 'echo reached']);

  const nodeDenied = (node: string) => `access denied: user "bob" is not allowed on node "${node}"`;

  it('GIVEN bob (env=prod allowed, env=staging denied) WHEN OpenSSH goes through the proxy by name, UUID or address THEN only prod is reached', async () => {
    for (const target of [`${PROD}:0`, `${uuids[PROD]}:0`, `127.0.0.1:${cluster.nodePort}`]) {
      const r = await viaProxy(bob, PROD, target);
      expect({ target, code: r.code, out: r.stdout }).toEqual({ target, code: 0, out: expect.stringMatching(/^reached /) });
    }
    for (const target of [`${STAGING}:0`, `${uuids[STAGING]}:0`, `127.0.0.1:${staging.port}`]) {
      const r = await viaProxy(bob, STAGING, target);
      expect({ target, code: r.code }).toEqual({ target, code: 255 });
      expect(r.stderr).toContain(nodeDenied(STAGING));
      expect(r.stdout).toBe('');
    }
  });

  it('GIVEN bob WHEN OpenSSH connects straight to each node port THEN prod serves him and staging refuses with the reason', async () => {
    const prod = await direct(bob, PROD, cluster.nodePort!);
    expect(prod).toMatchObject({ code: 0, stdout: 'reached\n' });
    const stage = await direct(bob, STAGING, staging.port);
    expect(stage.code).toBe(255);
    expect(stage.stderr).toContain(nodeDenied(STAGING));
    expect(stage.stderr).not.toContain('env');
    // The node audited the refusal with its reason.
    await waitFor('the node refusal in the audit log', async () => (await cluster.events(['auth'])).some((e) => e.user === 'bob' && e.error === nodeDenied(STAGING) && e.server_id === uuids[STAGING]));
  });

  it('GIVEN bob with tsh THEN prod works, staging is denied, and a login outside his roles is refused with the reason', async () => {
    const ok = await bobTsh.tsh(['ssh', PROD, 'echo tsh-reached']);
    expect(ok).toMatchObject({ code: 0, stdout: 'tsh-reached\n' });
    const stage = await bobTsh.tsh(['ssh', STAGING, 'echo no']);
    expect(stage.code).not.toBe(0);
    expect(stage.stderr).toBe(`ERROR: ${nodeDenied(STAGING)}\n`);
    const other = await bobTsh.tsh(['ssh', `${OTHER_LOGIN}@${PROD}`, 'echo no']);
    expect(other.code).not.toBe(0);
    expect(other.stderr).toBe(`ERROR: access denied: login "${OTHER_LOGIN}" is not allowed for user "bob"\n`);
  });

  it('GIVEN a login outside the certificate THEN the proxy and the node say why, and audit it', async () => {
    const reason = `access denied: login "${OTHER_LOGIN}" is not allowed for user "bob"`;
    const viaNode = await direct(bob, PROD, cluster.nodePort!, OTHER_LOGIN);
    expect(viaNode.code).toBe(255);
    expect(viaNode.stderr).toContain(reason);
    const viaProxyHop = await run('ssh', [...verbose(bob, PROD), '-p', String(cluster.proxyPorts!.ssh), `${OTHER_LOGIN}@127.0.0.1`, '-s', `proxy:${PROD}:0`]);
    expect(viaProxyHop.code).toBe(255);
    expect(viaProxyHop.stderr).toContain(reason);
    await waitFor('the refusal in the audit log', async () => (await cluster.events(['auth'])).some((e) => e.login === OTHER_LOGIN && e.error === reason));
  });

  it('GIVEN bob\'s role edited to deny every node WHEN he connects with his old certificate THEN he is refused everywhere, and allowed again once it is restored', async () => {
    fs.writeFileSync(path.join(work, 'deny.yaml'), DENY_ALL);
    await cluster.tctlOk('create', '-f', path.join(work, 'deny.yaml'));
    // The change reaches the proxy and both nodes through their watch; no new certificate is involved.
    await waitFor('the proxy to refuse', async () => (await viaProxy(bob, PROD, `${PROD}:0`)).stderr.includes(nodeDenied(PROD)), 10_000);
    await waitFor('the prod node to refuse', async () => (await direct(bob, PROD, cluster.nodePort!)).stderr.includes(nodeDenied(PROD)), 10_000);
    expect((await bobTsh.tsh(['ssh', PROD, 'true'])).stderr).toBe(`ERROR: ${nodeDenied(PROD)}\n`);
    // Listings use the same decision.
    expect((await bobTsh.tsh(['ls'])).stdout).not.toContain(PROD);

    await cluster.tctlOk('create', '-f', path.join(work, 'role.yaml'));
    await waitFor('prod to take bob again', async () => (await direct(bob, PROD, cluster.nodePort!)).code === 0, 10_000);
    expect((await bobTsh.tsh(['ls'])).stdout).toContain(PROD);
  });

  it('GIVEN a deleted user WHEN their certificate is used THEN the proxy and the node refuse it', async () => {
    await cluster.tctlOk('users', 'add', 'carol', LOGIN, '--roles=prod-only');
    const carol = await SshUser.create(cluster, work, 'carol', LOGIN);
    expect((await direct(carol, PROD, cluster.nodePort!)).code).toBe(0);
    await cluster.tctlOk('users', 'rm', 'carol');
    await waitFor('the node to refuse carol', async () => (await direct(carol, PROD, cluster.nodePort!)).stderr.includes('access denied: user "carol" does not exist'), 10_000);
    const r = await viaProxy(carol, PROD, `${PROD}:0`);
    expect(r.code).toBe(255);
    expect(r.stderr).toContain('access denied: user "carol" does not exist');
  });

  it('GIVEN the auth service is down THEN a node decides from its last copy of the roles', async () => {
    await cluster.stop();
    const aliceOnStaging = await direct(alice, STAGING, staging.port);
    expect(aliceOnStaging).toMatchObject({ code: 0, stdout: 'reached\n' });
    const bobOnStaging = await direct(bob, STAGING, staging.port);
    expect(bobOnStaging.code).toBe(255);
    expect(bobOnStaging.stderr).toContain(nodeDenied(STAGING));
    cluster.start();
    await cluster.ready();
  });

  it('GIVEN a stock sshd that is no cluster member THEN the proxy refuses to dial it until proxy_service.direct_dial_cidrs allows its address', async () => {
    sshd = await startSshd({ trustedUserCAKeys: await cluster.tctlOk('auth', 'export', '--type=user').then((l) => l.replace(/^cert-authority /gm, '')) });
    const toSshd = (user: SshUser) =>
      run('ssh', [
        '-o', 'LogLevel=INFO', '-F', '/dev/null', '-i', user.key, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
        '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
        '-o', `ProxyCommand=ssh ${user.options(PROD, CLUSTER).join(' ')} -p ${cluster.proxyPorts!.ssh} %r@127.0.0.1 -s proxy:%h:%p`,
        '-p', String(sshd!.port), `${LOGIN}@127.0.0.1`, 'echo openssh-reached',
      ]);
    const refused = await toSshd(alice);
    expect(refused.code).toBe(255);
    expect(refused.stderr).toContain(`access denied: "127.0.0.1" is not a node of cluster ${CLUSTER}`);

    await cluster.stop();
    fs.appendFileSync(cluster.configPath, '  direct_dial_cidrs: ["127.0.0.1/32"]\n');
    cluster.start();
    await cluster.ready();
    // alice's admin role reaches every node ('*': '*'), this address included; bob's env=prod role does not.
    await waitFor('the proxy to dial sshd for alice', async () => (await toSshd(alice)).stdout === 'openssh-reached\n');
    const bobToSshd = await toSshd(bob);
    expect(bobToSshd.code).toBe(255);
    expect(bobToSshd.stderr).toContain(nodeDenied('127.0.0.1'));
  });
});
