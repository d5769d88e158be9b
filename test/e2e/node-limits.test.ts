/** connection_limits.max_users: the node admits at most that many distinct cluster users at once. */
import * as fs from 'node:fs';
import { startCluster, TestAuth } from '../helpers/cluster';
import { SshUser, sshTo } from '../helpers/openssh';
import { Daemon, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';

describe('node connection limits', () => {
  let cluster: TestAuth;
  let work: string;
  beforeAll(async () => {
    work = tempDir('limits-');
    cluster = await startCluster({ teleportExtra: ['connection_limits:', '  max_connections: 100', '  max_users: 1'] });
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
});
