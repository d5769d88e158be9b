/**
 * Pre-authentication limits on the node's and the proxy's SSH listeners
 * (`login_grace_time`, `max_startups`, `per_source_max_startups`): idle
 * connections are closed after the grace time, excess unauthenticated ones
 * are dropped before the version line, and authenticated sessions carry on.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { startCluster, TestAuth } from '../helpers/cluster';
import { SshUser, sshTo } from '../helpers/openssh';
import { admitted, Idle, idle } from '../helpers/idle';
import { Daemon, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';

/** The soft limit on open files of process `pid` (`ulimit -n`), from /proc. */
function openFilesLimit(pid: number): number {
  const line = fs.readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
  const soft = line?.split(/\s{2,}/)[1];
  return soft === 'unlimited' ? Infinity : Number(soft);
}

describe('pre-authentication limits', () => {
  const work = tempDir('preauth-');
  const open: net.Socket[] = [];
  afterAll(() => {
    open.forEach((s) => s.destroy());
    fs.rmSync(work, { recursive: true, force: true });
  });
  const track = async (p: Promise<Idle>) => {
    const c = await p;
    open.push(c.sock);
    return c;
  };

  describe('login_grace_time', () => {
    let cluster: TestAuth;
    /** The acceptance: this many idle connections to the node, all closed by the grace timeout. */
    const IDLE = 500;
    // Room for every idle connection and the logins; a grace time well above an OpenSSH login on a slow machine.
    const roomy = ['login_grace_time: 10s', 'max_startups: 700:30:800', 'per_source_max_startups: 700:30:800'];
    beforeAll(async () => {
      cluster = await startCluster({ sshExtra: roomy, proxy: { insecureNoTls: true, extra: roomy } });
      await cluster.tctlOk('users', 'add', 'alice', LOGIN);
    });
    afterAll(async () => {
      await cluster?.cleanup();
    });

    it(`GIVEN ${IDLE} idle connections to the node THEN each is closed by the server after the grace time while OpenSSH is served`, async () => {
      // GIVEN the test and the daemon may each hold the idle connections and their other files open (Node raises its
      // soft limit to the hard one at startup, as sshd does, so only a low hard limit stops this)
      for (const [who, pid] of [['the test', process.pid], ['teleport', cluster.daemon!.child.pid!]] as const) {
        const limit = openFilesLimit(pid);
        if (limit < IDLE + 200) throw new Error(`${who} (pid ${pid}) may open only ${limit} files (ulimit -n); this test needs ${IDLE + 200}`);
      }
      const alice = await SshUser.create(cluster, work, 'alice', LOGIN);
      // GIVEN the connections that never log in, half of them after sending a version line
      const conns = await Promise.all(
        Array.from({ length: IDLE }, (_, i) => track(idle(cluster.nodePort!, '127.0.0.1', i % 2 ? 'SSH-2.0-OpenSSH_9.2\r\n' : undefined))),
      );
      await Promise.all(conns.map((c) => c.greeted));
      // WHEN a real OpenSSH client logs in meanwhile
      const r = await sshTo(alice, cluster.nodePort!, 'test-auth', ['echo served']);
      // THEN it is served, while the idle connections are all still open
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('served\n');
      expect(conns.filter((c) => c.sock.readyState !== 'open')).toHaveLength(0);
      // AND every idle connection is closed by the server, after it was admitted (it got the version line)
      const got = await Promise.all(conns.map((c) => c.closed));
      for (const g of got) expect(g).toMatch(/^SSH-2\.0-Teleport\r\n/);
      await cluster.daemon!.waitForOutput(/not authenticated within the login grace time/);
      // AND a login afterwards still works
      expect((await sshTo(alice, cluster.nodePort!, 'test-auth', ['echo again'])).stdout).toBe('again\n');
    });

    it("GIVEN proxy_service.login_grace_time THEN an idle connection to the proxy's SSH port is closed", async () => {
      // GIVEN / WHEN a connection to the proxy that never logs in
      const c = await track(idle(cluster.proxyPorts!.ssh));
      // THEN the proxy greets it, then closes it
      expect(await c.closed).toMatch(/^SSH-2\.0-Teleport\r\n/);
    });
  });

  describe('max_startups and per_source_max_startups', () => {
    let cluster: TestAuth;
    // No grace limit: the pending connections stay until the test closes them.
    const strict = ['login_grace_time: 0s', 'max_startups: "4"', 'per_source_max_startups: "2"'];
    beforeAll(async () => {
      cluster = await startCluster({ sshExtra: strict, proxy: { insecureNoTls: true, extra: strict } });
      await cluster.tctlOk('users', 'add', 'alice', LOGIN);
    });
    afterAll(async () => {
      await cluster?.cleanup();
    });
    const dir = () => fs.mkdtempSync(`${work}/strict-`);

    it.each([['node'], ['proxy']])('GIVEN the %s at its limits THEN new unauthenticated connections are dropped before the version line', async (which) => {
      const port = which === 'node' ? cluster.nodePort! : cluster.proxyPorts!.ssh;
      const mine: Idle[] = [];
      try {
        // GIVEN two pending connections from 127.0.0.1 (the per-source limit)
        for (let i = 0; i < 2; i++) mine.push(await track(admitted(port)));
        // WHEN a third comes from the same source THEN it is closed without a byte
        expect(await (await track(idle(port))).closed).toBe('');
        // WHEN two come from another source THEN they are admitted (4 pending in all, the total limit)
        for (let i = 0; i < 2; i++) mine.push(await track(admitted(port, '127.0.0.2')));
        // WHEN one more comes from a third source THEN the total limit drops it
        expect(await (await track(idle(port, '127.0.0.3'))).closed).toBe('');
        await cluster.daemon!.waitForOutput(/too many unauthenticated connections/);
      } finally {
        mine.forEach((c) => c.sock.destroy());
        await Promise.all(mine.map((c) => c.closed));
      }
      // THEN once they are gone, new connections are admitted again
      const again = await track(admitted(port));
      again.sock.destroy();
      await again.closed;
    });

    it('GIVEN an authenticated session WHEN the node is flooded past its limits THEN OpenSSH logins are dropped but the session carries on', async () => {
      const alice = await SshUser.create(cluster, dir(), 'alice', LOGIN);
      // GIVEN a session that reads a line after logging in
      const held = new Daemon(
        spawn('ssh', [...alice.options('test-auth'), '-p', String(cluster.nodePort), `${LOGIN}@127.0.0.1`, 'echo ready; read line; echo got $line'], {
          stdio: ['pipe', 'pipe', 'pipe'],
        }),
      );
      const flood: Idle[] = [];
      try {
        await held.waitForOutput(/ready/);
        // WHEN two idle connections fill the per-source limit (the authenticated session does not count)
        for (let i = 0; i < 2; i++) flood.push(await track(admitted(cluster.nodePort!)));
        // THEN a new OpenSSH login from the same source is dropped before the version exchange
        const dropped = await sshTo(alice, cluster.nodePort!, 'test-auth', ['echo no']);
        expect(dropped.code).toBe(255);
        expect(dropped.stdout).toBe('');
        expect(dropped.stderr).toMatch(/Connection closed|kex_exchange_identification|Connection reset/);
        // AND the authenticated session still works
        held.child.stdin!.write('still-here\n');
        await held.waitForOutput(/got still-here/);
      } finally {
        flood.forEach((c) => c.sock.destroy());
        await held.stop();
      }
      // AND once the flood is gone, logins work again
      await Promise.all(flood.map((c) => c.closed));
      await waitFor('a login to be admitted', async () => (await sshTo(alice, cluster.nodePort!, 'test-auth', ['echo yes'])).stdout === 'yes\n');
    });
  });
});
