/** connection_limits.max_users: the node and the proxy admit at most that many distinct cluster users at once. */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { startCluster, TestAuth } from '../helpers/cluster';
import { SshUser, sshTo } from '../helpers/openssh';
import { Daemon, run, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';

describe('connection limits', () => {
  let cluster: TestAuth;
  let work: string;
  beforeAll(async () => {
    work = tempDir('limits-');
    cluster = await startCluster({ proxy: { insecureNoTls: true }, teleportExtra: ['connection_limits:', '  max_connections: 100', '  max_users: 1'] });
    await cluster.tctlOk('users', 'add', 'alice', LOGIN);
    await cluster.tctlOk('users', 'add', 'bob', LOGIN);
  });
  afterAll(async () => {
    await cluster?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('GIVEN max_users 1 and alice connected THEN bob is refused until alice leaves, while alice may open more', async () => {
    const alice = await SshUser.create(cluster, work, 'alice', LOGIN);
    const bob = await SshUser.create(cluster, work, 'bob', LOGIN);
    const held = Daemon.spawn('ssh', [...alice.options('test-auth'), '-p', String(cluster.nodePort), `${LOGIN}@127.0.0.1`, 'echo holding; exec sleep 60']);
    try {
      await held.waitForOutput(/holding/);
      const refused = await sshTo(bob, cluster.nodePort!, 'test-auth', ['echo bob']);
      expect(refused.code).toBe(255);
      expect(refused.stderr).toMatch(/Permission denied/);
      expect((await sshTo(alice, cluster.nodePort!, 'test-auth', ['echo alice-again'])).stdout).toBe('alice-again\n');
      await waitFor('the auth event for the limit', async () => (await cluster.events(['auth'])).some((e) => e.error === 'too many users connected'));
    } finally {
      await held.stop();
    }
    await waitFor('bob to be admitted', async () => (await sshTo(bob, cluster.nodePort!, 'test-auth', ['echo bob'])).stdout === 'bob\n');
  });

  it('GIVEN max_users 1 and alice connected through the proxy THEN the proxy refuses bob itself until alice leaves', async () => {
    const alice = await SshUser.create(cluster, work, 'alice', LOGIN);
    const bob = await SshUser.create(cluster, work, 'bob', LOGIN);
    const proxyPort = String(cluster.proxyPorts!.ssh);
    const subsystem = `proxy:test-auth:${cluster.nodePort}`;
    // Straight to the proxy's subsystem, as a ProxyCommand runs it: once the proxy admits the user, the node's version line comes through.
    const toProxy = (u: SshUser) => run('ssh', [...u.options('test-auth'), '-p', proxyPort, `${LOGIN}@127.0.0.1`, '-s', subsystem], { input: '' });
    // stdin stays open, so the connection is held until the test ends it.
    const held = new Daemon(spawn('ssh', [...alice.options('test-auth'), '-p', proxyPort, `${LOGIN}@127.0.0.1`, '-s', subsystem], { stdio: ['pipe', 'pipe', 'pipe'] }));
    try {
      await held.waitForOutput(/^SSH-2\.0-/m);
      const refused = await toProxy(bob);
      expect(refused.code).toBe(255);
      expect(refused.stdout).toBe('');
      expect(refused.stderr).toMatch(/Permission denied/);
      expect((await toProxy(alice)).stdout).toMatch(/^SSH-2\.0-/);
    } finally {
      await held.stop();
    }
    await waitFor('bob to be admitted by the proxy', async () => /^SSH-2\.0-/.test((await toProxy(bob)).stdout));
  });
});
