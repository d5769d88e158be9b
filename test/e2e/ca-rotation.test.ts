/**
 * User CA rotation (`tctl auth rotate --type=user`) on a real cluster: auth,
 * proxy and node `test-auth` in one process, node `node-1` in another, and a
 * stock sshd that trusts the exported user CA. alice has a session open on
 * node-1 the whole time; certificates issued before, during and after the
 * rotation are tried straight at the node, through the proxy (tsh) and at
 * sshd. Host CA rotation: host-ca-rotation.test.ts.
 */
import { ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startCluster, TestAuth, TestNode } from '../helpers/cluster';
import { signingCAOf, SshUser, sshTo } from '../helpers/openssh';
import { cliPath, tempDir, waitFor } from '../helpers/proc';
import { LOGIN, ssh, startSshd, Sshd, trustedUserCAKeys } from '../helpers/sshd';
import { TshUser } from '../helpers/users';

describe('user CA rotation', () => {
  let c: TestAuth;
  let node: TestNode;
  let work: string;
  let alice: TshUser;
  let bob: TshUser;
  const sshds: Sshd[] = [];
  let session: ChildProcessWithoutNullStreams | undefined;

  beforeAll(async () => {
    work = tempDir('rotation-');
    c = await startCluster({ proxy: {} });
    const token = /The invite token: ([0-9a-f]{32})/.exec(await c.tctlOk('tokens', 'add', '--type=node'))![1];
    node = await TestNode.create(c, { token, nodeName: 'node-1' });
    node.start();
    await node.ready();
    alice = await TshUser.signUp(c, 'alice', [LOGIN], { roles: ['admin'] });
    bob = await TshUser.signUp(c, 'bob', [LOGIN], { roles: ['admin'] });
  }, 120_000);

  afterAll(async () => {
    session?.kill('SIGKILL');
    for (const s of sshds) await s.close();
    await node?.cleanup();
    await c?.cleanup();
    alice?.cleanup();
    bob?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  const status = () => c.caStatus();
  const signed = async (name: string) => {
    const dir = path.join(work, name);
    fs.mkdirSync(dir);
    const user = await SshUser.create(c, dir, 'alice', LOGIN);
    return { user, ca: await signingCAOf(`${user.key}-cert.pub`) };
  };
  const atNode = async (u: SshUser) => (await sshTo(u, node.port, 'node-1', ['echo', 'in'])).code;
  const atSshd = async (sshd: Sshd, u: SshUser) =>
    (await ssh(sshd.port, ['-i', u.key, '-o', `CertificateFile=${u.key}-cert.pub`, `${LOGIN}@127.0.0.1`, 'echo', 'in'], ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null'])).code;
  const viaProxy = async (u: TshUser) => (await u.tsh(['ssh', `${LOGIN}@node-1`, 'echo', 'in'])).code;
  const sshdTrustingNow = async () => {
    const s = await startSshd({ trustedUserCAKeys: trustedUserCAKeys(await c.tctlOk('auth', 'export', '--type=user')) });
    sshds.push(s);
    return s;
  };

  it('GIVEN a session open on node-1 and certificates from the user CA WHEN an automatic rotation runs THEN new logins get the new CA, the session never drops, and afterwards the old CA is refused at the node, the proxy and a re-exported sshd', async () => {
    // GIVEN alice logged in with tsh, an OpenSSH certificate, and an sshd trusting the exported CA, all before the rotation
    await alice.login();
    const before = await status();
    expect(before.user).toEqual({ state: 'never updated', keys: [expect.stringMatching(/^SHA256:/)] });
    const old = await signed('old');
    expect(old.ca).toBe(before.user.keys[0]);
    const oldSshd = await sshdTrustingNow();
    // AND a session on node-1 that answers each line it reads
    session = spawn(process.execPath, [cliPath('tsh'), 'ssh', `${LOGIN}@node-1`, 'while read l; do echo "got $l"; done'], { env: { ...process.env, HOME: alice.home, TELEPORT_HOME: '' } });
    let output = '';
    session.stdout.on('data', (d: Buffer) => (output += d.toString()));
    const say = async (line: string) => {
      session!.stdin.write(`${line}\n`);
      await waitFor(`the session to answer ${line}`, async () => output.includes(`got ${line}`));
    };
    await say('before');

    // WHEN the user CA is rotated automatically over 18 s (each phase 6 s: time for tctl status under load)
    const started = await c.tctlOk('auth', 'rotate', '--type=user', '--grace-period=18s');
    expect(started).toContain('Initiated certificate authority rotation');
    // THEN in init both keys are trusted, the old one still signs
    const init = await status();
    expect(init.user.state).toMatch(/^initialized \(mode: auto, started: \S+, ending: \S+\)$/);
    expect(init.user.keys).toEqual([before.user.keys[0], expect.stringMatching(/^SHA256:/)]);
    const newCA = init.user.keys[1];
    expect(newCA).not.toBe(before.user.keys[0]);
    await say('init');

    // THEN in update_clients new certificates come from the new key, and both old and new are let in everywhere
    await waitFor('update_clients', async () => (await status()).user.state.startsWith('rotating clients'), 30_000);
    const fresh = await signed('fresh');
    expect(fresh.ca).toBe(newCA);
    await bob.login();
    expect(await atNode(fresh.user)).toBe(0);
    expect(await atNode(old.user)).toBe(0);
    expect(await viaProxy(bob)).toBe(0);
    expect(await viaProxy(alice)).toBe(0);
    await say('update_clients');

    // WHEN the grace period is over THEN the rotation is done: only the new key is left
    await waitFor('the rotation to complete', async () => (await status()).user.state.startsWith('rotated '), 30_000);
    expect((await status()).user.keys).toEqual([newCA]);
    // THEN what the old key signed is refused at the node (OpenSSH) and at the proxy (tsh); the new is let in
    await waitFor('node-1 to drop the old key', async () => (await atNode(old.user)) !== 0);
    expect(await atNode(fresh.user)).toBe(0);
    const refused = await alice.tsh(['ssh', `${LOGIN}@node-1`, 'echo', 'in']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/proxy \S+: the user certificate was refused/);
    expect(await viaProxy(bob)).toBe(0);
    // AND an sshd set up before trusts only the old key, until the CA is exported again
    expect(await atSshd(oldSshd, fresh.user)).not.toBe(0);
    const newSshd = await sshdTrustingNow();
    expect(await atSshd(newSshd, fresh.user)).toBe(0);
    expect(await atSshd(newSshd, old.user)).not.toBe(0);
    // AND alice logs in again and is back
    await alice.login();
    expect(await viaProxy(alice)).toBe(0);

    // THEN the session opened before the rotation is still there and ends normally
    await say('after');
    session.stdin.end();
    const code = await new Promise<number | null>((resolve) => session!.on('exit', resolve));
    expect(code).toBe(0);
    // AND each step is audited
    const steps = (await c.events(['ca.rotate'])).map((e) => [e.type, e.phase, e.mode]);
    expect(steps).toEqual([
      ['user', 'init', 'auto'],
      ['user', 'update_clients', 'auto'],
      ['user', 'update_servers', 'auto'],
      ['user', 'standby', 'auto'],
    ]);
  }, 180_000);

  it('GIVEN a manual rotation moved to update_servers WHEN it is rolled back THEN the old key signs again at once, and once in standby what the new key signed is refused and the old key is all there is', async () => {
    const before = await status();
    const oldKey = before.user.keys[0];
    const rotate = (phase: string) => c.tctl('auth', 'rotate', '--type=user', '--manual', `--phase=${phase}`);
    // a phase out of order is refused and says which are possible
    const wrong = await rotate('update_clients');
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain('the user CA is in phase standby: it can go to init, not to update_clients');
    const noManual = await c.tctl('auth', 'rotate', '--type=user', '--phase=init');
    expect(noManual.stderr).toContain('--phase needs --manual');

    expect((await rotate('init')).stdout).toContain('Updated rotation phase to "init"');
    const lateGrace = await c.tctl('auth', 'rotate', '--type=user', '--manual', '--phase=update_clients', '--grace-period=1h');
    expect(lateGrace.stderr).toContain('--grace-period is set when a rotation starts');
    expect((await rotate('update_clients')).code).toBe(0);
    const during = await signed('during');
    expect(during.ca).not.toBe(oldKey);
    expect((await rotate('update_servers')).code).toBe(0);
    expect((await status()).user.state).toMatch(/^rotating servers \(mode: manual/);

    // WHEN rolled back THEN the old key signs again, and both are still trusted
    expect((await rotate('rollback')).code).toBe(0);
    const back = await status();
    expect(back.user.state).toMatch(/^rolling back \(mode: manual/);
    expect(back.user.keys[0]).toBe(oldKey);
    const afterRollback = await signed('after-rollback');
    expect(afterRollback.ca).toBe(oldKey);
    expect(await atNode(during.user)).toBe(0);

    // WHEN the rollback completes THEN only the old key is left: what the new one signed is refused, no node needed anything
    expect((await rotate('standby')).code).toBe(0);
    expect((await status()).user.keys).toEqual([oldKey]);
    await waitFor('node-1 to drop the discarded key', async () => (await atNode(during.user)) !== 0);
    expect(await atNode(afterRollback.user)).toBe(0);
    expect((await c.events(['ca.rotate'])).slice(-5).map((e) => e.phase)).toEqual(['init', 'update_clients', 'update_servers', 'rollback', 'standby']);
  }, 120_000);
});
