/**
 * `auth_service.disconnect_expired_cert`: an interactive session is cut when
 * the certificate it logged in with expires, and the disconnect is audited
 * (`client.disconnect` with the reason), where the connection lands: on the
 * node (directly or through the proxy) and on the proxy's SSH port.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { startCluster, TestAuth, writeUserCert } from '../helpers/cluster';
import { SshUser } from '../helpers/openssh';
import { Daemon, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';

/** The certificate's life left at login: long enough for OpenSSH to log in on a slow machine, short enough to wait out. */
const LIFE_MS = 10_000;
const REASON = 'client certificate has expired';

describe('disconnect_expired_cert', () => {
  let cluster: TestAuth;
  let work: string;
  beforeAll(async () => {
    work = tempDir('expired-cert-');
    // No login grace time on the node: a relayed connection that never logs into it stays until the proxy ends it.
    cluster = await startCluster({ authExtra: ['disconnect_expired_cert: yes'], sshExtra: ['login_grace_time: 0s'], proxy: { insecureNoTls: true } });
    await cluster.tctlOk('users', 'add', 'alice', LOGIN);
  });
  afterAll(async () => {
    await cluster?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  /** The `client.disconnect` events for an expired certificate reported by the listener on `port`. */
  const expiryEvents = async (port: number) => (await cluster.events(['client.disconnect'])).filter((e) => e.reason === REASON && e['addr.local'] === `127.0.0.1:${port}`);

  /** OpenSSH as alice with a fresh certificate that expires in a few seconds; stdin stays open, so only the server ends it. */
  async function sshWithShortCert(args: (user: SshUser) => string[]): Promise<Daemon> {
    const key = await writeUserCert(cluster, fs.mkdtempSync(`${work}/u-`), 'alice-key', 'alice', [LOGIN], new Date(Date.now() + LIFE_MS));
    const user = await SshUser.withKey(cluster, key, LOGIN);
    return new Daemon(spawn('ssh', [...user.options('test-auth'), ...args(user)], { stdio: ['pipe', 'pipe', 'pipe'] }));
  }

  /** Waits for the audit event of `port`'s listener after `before` of them, and returns it. */
  async function nextExpiryEvent(port: number, before: number): Promise<Record<string, unknown>> {
    await waitFor('the client.disconnect event', async () => (await expiryEvents(port)).length > before);
    return (await expiryEvents(port))[before];
  }

  it.each<[string, (user: SshUser) => string[]]>([
    ['directly', () => ['-p', String(cluster.nodePort), `${LOGIN}@127.0.0.1`]],
    ['through the proxy', (user) => ['-o', `ProxyCommand=ssh ${user.options('test-auth').join(' ')} -p ${cluster.proxyPorts!.ssh} %r@127.0.0.1 -s proxy:%h:%p`, '-p', String(cluster.nodePort), `${LOGIN}@test-auth`]],
  ])('GIVEN an interactive session on the node %s WHEN its certificate expires THEN the node ends it and audits why', async (_how, target) => {
    const nodePort = cluster.nodePort!;
    const before = (await expiryEvents(nodePort)).length;
    // GIVEN an interactive shell (with a terminal) logged in with a certificate that expires in a few seconds
    const ssh = await sshWithShortCert((user) => ['-tt', ...target(user)]);
    try {
      ssh.child.stdin!.write("echo lo''gged-in\n");
      await ssh.waitForOutput(/^logged-in/m);
      // WHEN the certificate expires THEN the connection is closed (OpenSSH exits with 255)
      expect(await ssh.exited).toBe(255);
      // AND the node audits the disconnect with the reason
      expect(await nextExpiryEvent(nodePort, before)).toMatchObject({ user: 'alice', login: LOGIN, reason: REASON });
    } finally {
      await ssh.stop('SIGKILL');
    }
  });

  it("GIVEN a connection to the proxy's SSH port WHEN its certificate expires THEN the proxy ends it and audits why", async () => {
    const proxyPort = cluster.proxyPorts!.ssh;
    const before = (await expiryEvents(proxyPort)).length;
    // GIVEN OpenSSH on the proxy's subsystem for the node, as a ProxyCommand runs it: the node is never logged
    // into and has no login grace time, so only the proxy can end this connection
    const ssh = await sshWithShortCert(() => ['-p', String(proxyPort), `${LOGIN}@127.0.0.1`, '-s', `proxy:test-auth:${cluster.nodePort}`]);
    try {
      await ssh.waitForOutput(/^SSH-2\.0-Teleport/m);
      // WHEN the certificate expires THEN the proxy closes the connection
      expect(await ssh.exited).toBe(255);
      // AND audits the disconnect with the reason
      expect(await nextExpiryEvent(proxyPort, before)).toMatchObject({ user: 'alice', login: LOGIN, reason: REASON });
    } finally {
      await ssh.stop('SIGKILL');
    }
  });
});
