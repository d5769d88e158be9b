/**
 * The node service with the stock OpenSSH client: shells, commands and their
 * exit codes, forwarding, agent forwarding, and the refusals.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { startCluster, TestAuth } from '../helpers/cluster';
import { answerAfterEof, readThenSend, speaksFirst } from '../helpers/halfclose';
import { SshUser, sshTo } from '../helpers/openssh';
import { Daemon, freePort, run, tempDir, waitFor } from '../helpers/proc';
import { scratchDir } from '../helpers/scratch';
import { LOGIN } from '../helpers/sshd';

const NODE = 'test-auth';

function echoServer(): Promise<{ port: number; close(): void }> {
  return new Promise((resolve) => {
    const srv = net.createServer((s) => s.pipe(s));
    srv.listen(0, '127.0.0.1', () => resolve({ port: (srv.address() as net.AddressInfo).port, close: () => srv.close() }));
  });
}

function echoThrough(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.end(text));
    let out = '';
    s.on('data', (d) => (out += d));
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
}

describe('node service with OpenSSH', () => {
  let cluster: TestAuth;
  let other: TestAuth;
  let work: string;
  let alice: SshUser;

  beforeAll(async () => {
    work = tempDir('node-ssh-');
    [cluster, other] = await Promise.all([startCluster(), startCluster({ clusterName: 'other.test' })]);
    await cluster.tctlOk('users', 'add', 'alice', LOGIN);
    alice = await SshUser.create(cluster, work, 'alice', LOGIN);
  });
  afterAll(async () => {
    await Promise.all([cluster?.cleanup(), other?.cleanup()]);
    fs.rmSync(work, { recursive: true, force: true });
  });

  const ssh = (remote: string[], extra: string[] = [], input?: string, user = alice) => sshTo(user, cluster.nodePort!, NODE, remote, extra, input);

  it('GIVEN a user cert WHEN running commands THEN output and exit codes come back', async () => {
    const ok = await ssh(['echo', 'hello', '$USER']);
    expect(ok.stderr).toBe('');
    expect(ok.stdout).toBe(`hello ${LOGIN}\n`);
    expect(ok.code).toBe(0);
    expect((await ssh(['exit 7'])).code).toBe(7);
    const err = await ssh(['echo oops >&2; false']);
    expect(err.stderr).toBe('oops\n');
    expect(err.code).toBe(1);
    // stdin reaches the command and EOF ends it
    expect((await ssh(['wc', '-c'], [], 'x'.repeat(100_000))).stdout.trim()).toBe('100000');
  });

  it('GIVEN a shell without a pty WHEN commands are piped in THEN the shell runs them', async () => {
    const r = await ssh([], ['-T'], 'echo from-shell\nexit 3\n');
    expect(r.stdout).toContain('from-shell');
    expect(r.code).toBe(3);
  });

  it('GIVEN a pty WHEN typing in an interactive shell THEN the terminal echoes and sizes are right', async () => {
    const r = await ssh([], ['-tt'], 'stty size; echo $((6*7)); exit 0\n');
    expect(r.stdout).toContain('42');
    expect(r.code).toBe(0);
    const tty = await ssh(['tty; echo TERM=$TERM'], ['-tt'], '');
    expect(tty.stdout).toMatch(/\/dev\/pts\/\d+/);
  });

  it('GIVEN a command killed by a signal THEN ssh exits 255 and the exit signal is audited', async () => {
    const r = await ssh(['echo before-signal; kill -TERM $$']);
    expect(r.stdout).toBe('before-signal\n');
    expect(r.code).toBe(255);
    await waitFor('the exec event with the signal', async () =>
      (await cluster.events(['exec'])).some((e) => e.command === 'echo before-signal; kill -TERM $$' && e.exitError === 'signal TERM' && e.code === 'T3002E'),
    );
  });

  it('GIVEN -L and -R forwarding THEN bytes flow both ways', async () => {
    const echo = await echoServer();
    const local = await freePort();
    const fwd = Daemon.spawn('ssh', [...alice.options(NODE), '-p', String(cluster.nodePort), '-N', '-o', 'ExitOnForwardFailure=yes', '-L', `${local}:127.0.0.1:${echo.port}`, '-R', `0:127.0.0.1:${echo.port}`, '-v', `${LOGIN}@127.0.0.1`]);
    try {
      await fwd.waitForOutput(/Allocated port (\d+) for remote forward/);
      expect(await waitFor('the -L forward', () => echoThrough(local, 'via-L').then((o) => o === 'via-L' || undefined))).toBe(true);
      const remotePort = Number(/Allocated port (\d+) for remote forward/.exec(fwd.stderr)![1]);
      expect(await echoThrough(remotePort, 'via-R')).toBe('via-R');
    } finally {
      await fwd.stop();
      echo.close();
    }
    const ports = await cluster.events(['port']);
    expect(ports.filter((e) => e.success === true).length).toBeGreaterThanOrEqual(2);
  });

  it('GIVEN -R and -L forwarding to a server that answers after the request is half-closed THEN the answer comes back', async () => {
    // GIVEN a local server that replies only once its peer has sent EOF, reached through both -R and -L
    const answer = await answerAfterEof();
    const local = await freePort();
    const fwd = Daemon.spawn('ssh', [...alice.options(NODE), '-p', String(cluster.nodePort), '-N', '-o', 'ExitOnForwardFailure=yes', '-L', `${local}:127.0.0.1:${answer.port}`, '-R', `0:127.0.0.1:${answer.port}`, '-v', `${LOGIN}@127.0.0.1`]);
    try {
      await fwd.waitForOutput(/Allocated port (\d+) for remote forward/);
      const remotePort = Number(/Allocated port (\d+) for remote forward/.exec(fwd.stderr)![1]);
      // WHEN a client sends its request and half-closes at once, before the forwarded channel is open
      // THEN the node forwards the EOF but keeps the channel open for the answer, which comes back whole
      expect(await echoThrough(remotePort, 'request-R')).toBe('R-tseuqer');
      expect(await waitFor('the -L forward', () => echoThrough(local, 'request-L').then((o) => o === 'L-tseuqer' || undefined))).toBe(true);
    } finally {
      await fwd.stop();
      answer.close();
    }
  });

  it('GIVEN -L forwarding to a server that speaks first and half-closes THEN what the client sends afterwards still reaches it', async () => {
    // GIVEN a server that sends a greeting and its EOF at once, reached through -L
    const server = await speaksFirst('greeting');
    const local = await freePort();
    const fwd = Daemon.spawn('ssh', [...alice.options(NODE), '-p', String(cluster.nodePort), '-N', '-o', 'ExitOnForwardFailure=yes', '-L', `${local}:127.0.0.1:${server.port}`, '-v', `${LOGIN}@127.0.0.1`]);
    try {
      await fwd.waitForOutput(/Local forwarding listening on 127\.0\.0\.1 port/);
      // WHEN a client reads the greeting to its EOF and only then sends its own bytes and EOF
      const greeting = await readThenSend(local, 'after-eof');
      // THEN the greeting came whole and the node kept the channel open for the client's bytes, which reach the server
      expect(greeting).toBe('greeting');
      expect(await server.received).toBe('after-eof');
    } finally {
      await fwd.stop();
      server.close();
    }
  });

  it('GIVEN -A agent forwarding THEN the remote side lists the agent key', async () => {
    const agentSock = path.join(work, 'agent.sock');
    const agent = Daemon.spawn('ssh-agent', ['-D', '-a', agentSock]);
    try {
      await waitFor('ssh-agent', () => fs.existsSync(agentSock));
      const k = path.join(work, 'agent-key');
      await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'agent-test-key', '-f', k]);
      expect((await run('ssh-add', [k], { env: { SSH_AUTH_SOCK: agentSock } })).code).toBe(0);
      const r = await run('ssh', [...alice.options(NODE), '-p', String(cluster.nodePort), '-A', `${LOGIN}@127.0.0.1`, 'ssh-add -l'], { env: { SSH_AUTH_SOCK: agentSock } });
      expect(r.stdout).toContain('agent-test-key');
      expect(r.code).toBe(0);
    } finally {
      await agent.stop();
    }
  });

  describe('refusals', () => {
    it('GIVEN a cert from another cluster THEN login is refused and audited', async () => {
      await other.tctlOk('users', 'add', 'alice', LOGIN);
      const dir = scratchDir('other-');
      const otherAlice = await SshUser.create(other, dir, 'alice', LOGIN);
      // The other cluster's user, but this cluster's known_hosts, so only user authentication differs.
      fs.copyFileSync(alice.knownHosts, otherAlice.knownHosts);
      const r = await ssh(['true'], [], undefined, otherAlice);
      expect(r.code).toBe(255);
      expect(r.stderr).toMatch(/Permission denied/);
      await waitFor('the auth failure event', async () =>
        (await cluster.events(['auth'])).some((e) => e.code === 'T3007W' && e.user === LOGIN && /not one of the trusted CAs|trusted/i.test(e.error)),
      );
    });

    it('GIVEN a login that is not a principal THEN it is refused', async () => {
      const r = await run('ssh', [...alice.options(NODE), '-p', String(cluster.nodePort), 'daemon@127.0.0.1', 'true']);
      expect(r.code).toBe(255);
      expect(r.stderr).toMatch(/Permission denied/);
    });

    it('GIVEN a role without permit-pty and port forwarding THEN a pty and -W are refused but commands run', async () => {
      const role = path.join(work, 'restricted.yaml');
      fs.writeFileSync(role, `kind: role\nversion: v3\nmetadata:\n  name: restricted\nspec:\n  options:\n    permit_pty: false\n    port_forwarding: false\n  allow:\n    logins: [${LOGIN}]\n    node_labels:\n      '*': '*'\n`);
      await cluster.tctlOk('create', role);
      const user = path.join(work, 'bob.yaml');
      fs.writeFileSync(user, `kind: user\nversion: v2\nmetadata:\n  name: bob\nspec:\n  roles: [restricted]\n`);
      await cluster.tctlOk('create', user);
      const bob = await SshUser.create(cluster, work, 'bob', LOGIN);
      // As with sshd's PermitTTY no: a forced tty that is refused ends the session.
      const pty = await sshTo(bob, cluster.nodePort!, NODE, ['echo with-pty'], ['-tt']);
      expect(pty.stderr).toMatch(/PTY allocation request failed/);
      expect(pty.stdout).not.toContain('with-pty');
      const plain = await sshTo(bob, cluster.nodePort!, NODE, ['echo no-pty-but-ran']);
      expect(plain.stdout).toBe('no-pty-but-ran\n');
      const echo = await echoServer();
      try {
        const l = await sshTo(bob, cluster.nodePort!, NODE, [], ['-W', `127.0.0.1:${echo.port}`], 'hello');
        expect(l.code).toBe(255);
        expect(l.stderr).toMatch(/stdio forwarding failed|administratively prohibited/);
        await waitFor('the refused port event', async () => (await cluster.events(['port'])).some((e) => e.success === false && e.user === 'bob'));
      } finally {
        echo.close();
      }
    });

    it('GIVEN a host cert used as a user cert THEN it is refused', async () => {
      const key = path.join(work, 'host-as-user');
      await cluster.tctlOk('auth', 'sign', '--host', LOGIN, '--format', 'openssh', '-o', key);
      const r = await run('ssh', [...alice.options(NODE).map((o) => o.replace(alice.key, key)), '-p', String(cluster.nodePort), `${LOGIN}@127.0.0.1`, 'true']);
      expect(r.code).toBe(255);
      expect(r.stderr).toMatch(/Permission denied/);
    });
  });

  it('THEN commands and sessions are in the audit log', async () => {
    await ssh(['echo audited'], ['-tt'], '');
    const events = await waitFor('exec and session events', async () => {
      const e = await cluster.events(['exec', 'session.start', 'session.end']);
      return e.some((x) => x.event === 'session.end') && e.some((x) => x.command === 'echo audited') ? e : undefined;
    });
    const exec = events.find((e) => e.command === 'echo hello $USER')!;
    expect(exec).toMatchObject({ event: 'exec', code: 'T3002I', user: 'alice', login: LOGIN, exitCode: '0' });
    const start = events.find((e) => e.event === 'session.start')!;
    expect(start).toMatchObject({ user: 'alice', login: LOGIN, namespace: 'default', server_hostname: NODE, sid: expect.stringMatching(/^[0-9a-f-]{36}$/), size: expect.stringMatching(/^\d+:\d+$/) });
  });
});
