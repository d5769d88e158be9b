/**
 * Host CA rotation on a real cluster (issue 20): auth, proxy and node `test-auth` in one process,
 * nodes `node-1` and `node-2` in their own, each following the host CA's phases on its own. What
 * each phase must do is seen from outside: the CA that signed the host certificate each SSH server
 * presents (`ssh-keyscan -c`), tsh sessions that stay open, tsh commands (which learn the new host
 * CA from the proxy), and OpenSSH with the exported CAs.
 */
import { ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startCluster, TestAuth, TestNode } from '../helpers/cluster';
import { presentedHostCA, signingCAOf, SshUser, sshTo } from '../helpers/openssh';
import { cliPath, tempDir, waitFor } from '../helpers/proc';
import { LOGIN, ssh, startSshd, Sshd, trustedUserCAKeys } from '../helpers/sshd';
import { TshUser } from '../helpers/users';

/** A tsh session on a node that answers each line it reads: it must live through a whole rotation. */
class OpenSession {
  private output = '';
  readonly proc: ChildProcessWithoutNullStreams;

  constructor(user: TshUser, node: string) {
    this.proc = spawn(process.execPath, [cliPath('tsh'), 'ssh', `${LOGIN}@${node}`, 'while read l; do echo "got $l"; done'], { env: { ...process.env, ...user.env } });
    this.proc.stdout.on('data', (d: Buffer) => (this.output += d.toString()));
  }

  async say(line: string): Promise<void> {
    this.proc.stdin.write(`${line}\n`);
    await waitFor(`the session to answer ${line}`, async () => this.output.includes(`got ${line}`));
  }

  async end(): Promise<number | null> {
    this.proc.stdin.end();
    return new Promise((resolve) => this.proc.on('exit', resolve));
  }
}

describe('host CA rotation', () => {
  let c: TestAuth;
  const nodes: TestNode[] = [];
  let work: string;
  let alice: TshUser;
  let bob: TshUser;
  const sshds: Sshd[] = [];
  const sessions: OpenSession[] = [];

  const nodeToken = async () => /The invite token: ([0-9a-f]{32})/.exec(await c.tctlOk('tokens', 'add', '--type=node'))![1];
  const addNode = async (nodeName: string, caPin?: string) => {
    const node = await TestNode.create(c, { token: await nodeToken(), nodeName, ...(caPin ? { caPin } : {}) });
    nodes.push(node);
    node.start();
    await node.ready();
    return node;
  };

  beforeAll(async () => {
    work = tempDir('host-rotation-');
    c = await startCluster({ proxy: {} });
    await addNode('node-1');
    await addNode('node-2');
    alice = await TshUser.signUp(c, 'alice', [LOGIN], { roles: ['admin'] });
    bob = await TshUser.signUp(c, 'bob', [LOGIN], { roles: ['admin'] });
  }, 120_000);

  afterAll(async () => {
    for (const s of sessions) s.proc.kill('SIGKILL');
    for (const s of sshds) await s.close();
    for (const n of nodes) await n.cleanup();
    await c?.cleanup();
    alice?.cleanup();
    bob?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  const status = () => c.caStatus();
  /** The host CA each SSH server presents a certificate from: the nodes, then the proxy. */
  const presented = async () => Promise.all([...nodes.map((n) => n.port), c.proxyPorts!.ssh].map((port) => presentedHostCA(port, work)));
  const viaProxy = async (u: TshUser, node: string) => u.tsh(['ssh', `${LOGIN}@${node}`, 'echo', 'in']);
  const openSsh = async (name: string) => {
    const dir = path.join(work, name);
    fs.mkdirSync(dir);
    return SshUser.create(c, dir, 'alice', LOGIN);
  };

  it('GIVEN two nodes with open sessions WHEN both CAs rotate automatically THEN nobody is cut off, new logins get the new CAs, every server ends up on the new host CA, and the old CAs are refused everywhere', async () => {
    // GIVEN alice logged in before the rotation (checking the proxy's HTTPS certificate), with a session open on each node, and OpenSSH users set up from the exports
    await alice.loginChecked();
    const before = await status();
    expect(await presented()).toEqual(nodes.map(() => before.host.keys[0]).concat(before.host.keys[0]));
    for (const n of ['node-1', 'node-2']) sessions.push(new OpenSession(alice, n));
    for (const s of sessions) await s.say('before');
    const oldOpenSsh = await openSsh('old');
    const oldSshd = await startSshd({ trustedUserCAKeys: trustedUserCAKeys(await c.tctlOk('auth', 'export', '--type=user')) });
    sshds.push(oldSshd);

    // WHEN both CAs rotate automatically over 30 s
    expect(await c.tctlOk('auth', 'rotate', '--grace-period=30s')).toContain('Initiated certificate authority rotation');
    const init = await status();
    expect(init.host.state).toMatch(/^initialized \(mode: auto/);
    expect(init.user.state).toMatch(/^initialized \(mode: auto/);
    const [newHost, newUser] = [init.host.keys[1], init.user.keys[1]];

    // THEN once clients move, bob logs in and gets a certificate from the new user CA
    await waitFor('update_clients', async () => !(await status()).user.state.startsWith('initialized'), 30_000);
    await bob.login();
    expect(await signingCAOf(bob.certFile())).toBe(newUser);
    // AND his commands work on both nodes through every later phase (tsh learns the new host CA when servers move to it)
    const failures: string[] = [];
    const rounds = async () => {
      for (const node of ['node-1', 'node-2']) {
        const r = await viaProxy(bob, node);
        if (r.code !== 0) failures.push(`${node}: ${r.stderr}`);
      }
    };
    while (!(await status()).host.state.startsWith('rotated ')) await rounds();
    await rounds();
    expect(failures).toEqual([]);

    // THEN the rotation is complete: one key per CA, the new ones, and every server presents a certificate from the new host CA
    const after = await status();
    expect(after.user.keys).toEqual([newUser]);
    expect(after.host.keys).toEqual([newHost]);
    await waitFor('every server to present the new host CA', async () => (await presented()).every((ca) => ca === newHost));

    // THEN the sessions opened before the rotation are still there and end normally
    for (const s of sessions) await s.say('after');
    for (const s of sessions.splice(0)) expect(await s.end()).toBe(0);

    // THEN the old user CA is refused everywhere: the proxy (tsh), a node (OpenSSH) and an sshd trusting the old export
    const refused = await viaProxy(alice, 'node-1');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/the user certificate was refused/);
    expect((await sshTo(oldOpenSsh, nodes[0].port, 'node-1', ['echo', 'in'])).code).not.toBe(0);
    const fresh = await openSsh('fresh');
    // AND OpenSSH known_hosts from the old host CA export no longer match the nodes; exported again, they do
    expect((await sshTo(SshUser.withKnownHosts(fresh, oldOpenSsh.knownHosts), nodes[0].port, 'node-1', ['echo', 'in'])).code).not.toBe(0);
    expect((await sshTo(fresh, nodes[0].port, 'node-1', ['echo', 'in'])).stdout).toBe('in\n');
    const newSshd = await startSshd({ trustedUserCAKeys: trustedUserCAKeys(await c.tctlOk('auth', 'export', '--type=user')) });
    sshds.push(newSshd);
    const atSshd = async (sshd: Sshd, u: SshUser) =>
      (await ssh(sshd.port, ['-i', u.key, '-o', `CertificateFile=${u.key}-cert.pub`, `${LOGIN}@127.0.0.1`, 'echo', 'in'], ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null'])).code;
    expect(await atSshd(oldSshd, fresh)).not.toBe(0);
    expect(await atSshd(newSshd, fresh)).toBe(0);
    expect(await atSshd(newSshd, oldOpenSsh)).not.toBe(0);
    // AND the auth server presents the new host CA too: tctl (its admin identity made again) still works
    expect((await c.tctl('status')).code).toBe(0);
    // AND every step of both CAs is audited
    const steps = (await c.events(['ca.rotate'])).filter((e) => e.type === 'host').map((e) => e.phase);
    expect(steps).toEqual(['init', 'update_clients', 'update_servers', 'standby']);
  }, 240_000);

  it('GIVEN a manual host CA rotation in update_servers WHEN it is rolled back THEN every server presents the old host CA again, tsh keeps working, and a node that joined during update_clients with the pins of tctl status follows along', async () => {
    const before = await status();
    const oldHost = before.host.keys[0];
    const rotate = (phase: string) => c.tctlOk('auth', 'rotate', '--type=host', '--manual', `--phase=${phase}`);
    // alice's login checked the proxy's HTTPS certificate, so tsh may learn new host CAs from it (an --insecure one may not)
    await alice.loginChecked();
    await bob.login();
    const session = new OpenSession(alice, 'node-1');
    sessions.push(session);
    await session.say('before');

    // WHEN init THEN both keys are trusted but every server still presents the old one
    await rotate('init');
    const newHost = (await status()).host.keys[1];
    expect(await presented()).toEqual([...nodes, c].map(() => oldHost));

    // WHEN update_clients THEN the servers still present the old host CA
    await rotate('update_clients');
    expect((await status()).host.state).toMatch(/^rotating clients/);
    // AND a node joining now, pinned to what tctl status shows (both CAs), joins
    const pins = /CA pin\s+(\S+)/.exec(await c.tctlOk('status'))![1];
    expect(pins.split(',')).toHaveLength(2);
    await addNode('node-3', pins);
    // AND it presents the new host CA (it never had the old one), which alice's tsh learns from the proxy
    expect(await presentedHostCA(nodes[2].port, work)).toBe(newHost);
    const learning = await viaProxy(alice, 'node-3');
    expect(learning.stderr).toContain('has new host CA keys (a CA rotation); now trusting those the proxy publishes');
    expect(learning.code).toBe(0);
    // AND bob, logged in with --insecure, is told to log in again rather than trusting keys nothing vouched for
    const unchecked = await viaProxy(bob, 'node-3');
    expect(unchecked.code).not.toBe(0);
    expect(unchecked.stderr).toMatch(/signed by an untrusted CA .*run "tsh login" again/);
    await bob.login();
    expect((await viaProxy(bob, 'node-3')).code).toBe(0);

    // WHEN update_servers THEN every server moves to a certificate from the new host CA
    await rotate('update_servers');
    await waitFor('every server to present the new host CA', async () => (await presented()).every((ca) => ca === newHost));
    for (const n of ['node-1', 'node-2', 'node-3']) expect((await viaProxy(alice, n)).code).toBe(0);

    // WHEN rolled back THEN every server presents the old host CA again, with nothing done on any node
    await rotate('rollback');
    await waitFor('every server to present the old host CA again', async () => (await presented()).every((ca) => ca === oldHost));
    for (const n of ['node-1', 'node-2', 'node-3']) expect((await viaProxy(alice, n)).code).toBe(0);

    // WHEN the rollback completes THEN only the old key is left, and everything still works
    await rotate('standby');
    expect((await status()).host.keys).toEqual([oldHost]);
    expect(await presented()).toEqual([...nodes, c].map(() => oldHost));
    for (const n of ['node-1', 'node-2', 'node-3']) expect((await viaProxy(alice, n)).code).toBe(0);
    await session.say('after');
    expect(await sessions.pop()!.end()).toBe(0);
    expect((await c.events(['ca.rotate'])).filter((e) => e.type === 'host').slice(-5).map((e) => e.phase)).toEqual(['init', 'update_clients', 'update_servers', 'rollback', 'standby']);
  }, 240_000);
});
