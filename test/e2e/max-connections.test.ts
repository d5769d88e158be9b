/**
 * `teleport.connection_limits.max_connections` on the node's and the proxy's
 * SSH ports: once that many connections are open, the next is refused with
 * an SSH disconnect that OpenSSH shows ("too many connections"), while the
 * open sessions carry on; a connection is accepted again once one closes.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { startCluster, TestAuth } from '../helpers/cluster';
import { admitted, Idle } from '../helpers/idle';
import { SshUser, sshTo } from '../helpers/openssh';
import { Daemon, run, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';

const REFUSED = /Received disconnect from 127\.0\.0\.1 port \d+:12: too many connections/;

describe('connection_limits.max_connections', () => {
  let cluster: TestAuth;
  let alice: SshUser;
  const work = tempDir('maxconn-');
  // No grace limit, so the idle connection that fills a slot stays until the test closes it.
  const noGrace = ['login_grace_time: 0s'];
  beforeAll(async () => {
    cluster = await startCluster({
      proxy: { insecureNoTls: true, extra: noGrace },
      sshExtra: noGrace,
      teleportExtra: ['connection_limits:', '  max_connections: 2'],
    });
    await cluster.tctlOk('users', 'add', 'alice', LOGIN);
    alice = await SshUser.create(cluster, work, 'alice', LOGIN);
  });
  afterAll(async () => {
    await cluster?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  /** A session that prints `ready`, then echoes back one line from stdin. */
  const holdSession = (args: string[]) =>
    new Daemon(spawn('ssh', [...alice.options('test-auth'), ...args, 'echo ready; read line; echo got $line'], { stdio: ['pipe', 'pipe', 'pipe'] }));

  it('GIVEN the node at max_connections THEN the next OpenSSH login is refused with a message while the open session carries on', async () => {
    const nodePort = cluster.nodePort!;
    // GIVEN an interactive session and an idle connection: 2 of 2
    const held = holdSession(['-p', String(nodePort), `${LOGIN}@127.0.0.1`]);
    let slot: Idle | undefined;
    try {
      await held.waitForOutput(/ready/);
      slot = await admitted(nodePort);
      // WHEN OpenSSH connects
      const refused = await sshTo(alice, nodePort, 'test-auth', ['echo no']);
      // THEN it is refused with the reason
      expect(refused.code).toBe(255);
      expect(refused.stdout).toBe('');
      expect(refused.stderr).toMatch(REFUSED);
      await cluster.daemon!.waitForOutput(/connection limit reached, refusing a connection/);
      // AND the open session still works, and the idle connection is still open
      held.child.stdin!.write('still-here\n');
      await held.waitForOutput(/got still-here/);
      expect(slot.sock.destroyed).toBe(false);
    } finally {
      slot?.sock.destroy();
      await held.stop();
    }
    // AND once a connection closes, a login is served again
    await waitFor('a login to be served', async () => (await sshTo(alice, nodePort, 'test-auth', ['echo yes'])).stdout === 'yes\n');
  });

  it('GIVEN the proxy at max_connections THEN the next OpenSSH login is refused with a message while the open session carries on', async () => {
    const proxyPort = String(cluster.proxyPorts!.ssh);
    const subsystem = `proxy:test-auth:${cluster.nodePort}`;
    const hop = `ProxyCommand=ssh ${alice.options('test-auth').join(' ')} -p ${proxyPort} %r@127.0.0.1 -s ${subsystem}`;
    // GIVEN an interactive session on the node through the proxy, and an idle connection to the proxy: 2 of 2
    const held = holdSession(['-o', hop, `${LOGIN}@test-auth`]);
    let slot: Idle | undefined;
    try {
      await held.waitForOutput(/ready/);
      slot = await admitted(Number(proxyPort));
      // WHEN OpenSSH connects to the proxy
      const refused = await run('ssh', [...alice.options('test-auth'), '-p', proxyPort, `${LOGIN}@127.0.0.1`, '-s', subsystem], { input: '' });
      // THEN it is refused with the reason
      expect(refused.code).toBe(255);
      expect(refused.stdout).toBe('');
      expect(refused.stderr).toMatch(REFUSED);
      // AND the session through the proxy still works, and the idle connection is still open
      held.child.stdin!.write('still-here\n');
      await held.waitForOutput(/got still-here/);
      expect(slot.sock.destroyed).toBe(false);
    } finally {
      slot?.sock.destroy();
      await held.stop();
    }
    // AND once a connection closes, the proxy serves a login again
    await waitFor('a login through the proxy', async () => (await run('ssh', [...alice.options('test-auth'), '-o', hop, `${LOGIN}@test-auth`, 'echo yes'])).stdout === 'yes\n');
  });
});
