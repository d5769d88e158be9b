/**
 * The node's connection workers (runtime/node/workerpool.ts): a busy node
 * starts worker processes and hands them new connections; what is one per
 * node stays one per node (max_users, the login grace time, audit, joins
 * across processes); a worker that dies takes only its own connections; none
 * outlives the node.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { fetchRecording } from '../../runtime/recordings/playback';
import { startCluster, TestAuth, TestNode } from '../helpers/cluster';
import { SshUser, sshTo } from '../helpers/openssh';
import { Daemon, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { alive, childrenRunning, parentOf, socketInodes, tcpSockets } from '../helpers/procfs';

const NODE = 'test-auth';
/** Short enough to watch a pending connection closed, long enough for a login on a loaded machine. */
const GRACE = ['workers: 2', 'login_grace_time: 8s'];

/** The connection worker a session program runs under (program → spawn server or pty → worker), if any. */
function workerOf(program: number, workers: number[]): number | undefined {
  for (let p: number | undefined = program; p && p > 1; p = parentOf(p)) if (workers.includes(p)) return p;
  return undefined;
}

/** Which of `servers` holds the server side of the TCP connection the client process `client` made to `port`. */
function servingProcess(client: number, port: number, servers: number[]): number | undefined {
  const mine = socketInodes(client);
  const out = tcpSockets().find((t) => mine.has(t.inode) && t.remote === port);
  return out ? servingProcessOf(out.local, port, servers) : undefined;
}

/** Which of `servers` holds the server side of the connection from local port `clientPort` to `port`. */
function servingProcessOf(clientPort: number, port: number, servers: number[]): number | undefined {
  const peer = tcpSockets().find((t) => t.local === port && t.remote === clientPort && t.inode !== '0');
  return peer ? servers.find((s) => socketInodes(s).has(peer.inode)) : undefined;
}

/** A TCP connection that sends nothing: it counts as a connection setting up until the grace time. */
function pendingConnection(port: number): Promise<net.Socket & { banner: Promise<string>; ended: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1') as net.Socket & { banner: Promise<string>; ended: Promise<void> };
    sock.banner = new Promise((ok) => sock.once('data', (d) => ok(d.toString())));
    sock.ended = new Promise((ok) => sock.once('close', () => ok()));
    sock.on('error', () => undefined);
    sock.once('connect', () => resolve(sock));
    sock.once('error', reject);
  });
}

/**
 * Makes the node on `port` busy (three connections setting up at once, kept in `held`) and resolves
 * with its two connection workers once both are ready (`daemon` runs the node, as process `pid`).
 */
async function twoWorkers(port: number, daemon: Daemon, pid: number, held: net.Socket[]): Promise<number[]> {
  for (let i = 0; i < 3; i++) held.push(await pendingConnection(port));
  return waitFor('two connection workers ready', () => {
    const ready = (daemon.stderr.match(/connection worker ready/g) ?? []).length;
    const ws = childrenRunning(pid, 'connworker');
    return ready >= 2 && ws.length === 2 ? ws : undefined;
  });
}

/** Runs `test` against a cluster of its own (its node's ssh_service with `sshExtra`) and user `name`, removed after. */
async function withCluster(sshExtra: string[], name: string, test: (c: TestAuth, user: SshUser) => Promise<void>): Promise<void> {
  const c = await startCluster({ sshExtra });
  const dir = tempDir(`node-workers-${name}-`);
  try {
    await c.tctlOk('users', 'add', name, LOGIN);
    await test(c, await SshUser.create(c, dir, name, LOGIN));
  } finally {
    await c.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('node connection workers', () => {
  let cluster: TestAuth;
  let work: string;
  let alice: SshUser;
  let bob: SshUser;
  let carol: SshUser;
  const daemons: Daemon[] = [];
  const sockets: net.Socket[] = [];

  const nodePid = () => cluster.daemon!.child.pid!;
  const workers = () => childrenRunning(nodePid(), 'connworker');

  /** Makes the node busy (three connections setting up at once) and waits for its two workers. */
  const busy = () => twoWorkers(cluster.nodePort!, cluster.daemon!, nodePid(), sockets);

  /** OpenSSH's client with its stdin open (what is written there is typed). */
  function interactive(args: string[]): Daemon {
    const d = new Daemon(spawn('ssh', args, { stdio: ['pipe', 'pipe', 'pipe'] }));
    daemons.push(d);
    return d;
  }

  /** Session `sid`'s recording as the auth server has it, or undefined while it has none. */
  async function recordingOf(sid: string) {
    const client = await cluster.adminClient();
    try {
      return await fetchRecording(client, sid).catch(() => undefined);
    } finally {
      client.close();
    }
  }

  /** A long session over OpenSSH, as `user`; resolves with the client and its program's pid once it runs. */
  async function longSession(user: SshUser, extra: string[] = []): Promise<{ client: Daemon; pid: number }> {
    const client = Daemon.spawn('ssh', [...user.options(NODE), '-p', String(cluster.nodePort), ...extra, `${LOGIN}@127.0.0.1`, 'echo pid=$$; exec sleep 300']);
    daemons.push(client);
    await client.waitForOutput(/pid=\d+\n/);
    return { client, pid: Number(/pid=(\d+)/.exec(client.stdout)![1]) };
  }

  beforeAll(async () => {
    work = tempDir('node-workers-');
    cluster = await startCluster({ sshExtra: GRACE, teleportExtra: ['connection_limits:', '  max_connections: 100', '  max_users: 2'] });
    for (const u of ['alice', 'bob', 'carol']) await cluster.tctlOk('users', 'add', u, LOGIN);
    [alice, bob, carol] = await Promise.all(['alice', 'bob', 'carol'].map((u) => SshUser.create(cluster, work, u, LOGIN)));
  });
  afterEach(async () => {
    await Promise.all(daemons.splice(0).map((d) => d.stop('SIGKILL')));
    for (const s of sockets.splice(0)) s.destroy();
    // Each test starts with no connection open in any worker: where the next ones go is then known.
    // (a server-side socket in any state but LISTEN with an inode is still open in some process; TIME_WAIT has none)
    await waitFor('the node to close every connection', () => !tcpSockets().some((t) => t.local === cluster.nodePort && t.state !== '0A' && t.inode !== '0'));
  });
  afterAll(async () => {
    await cluster?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('GIVEN an idle node THEN it runs no worker; WHEN it is busy THEN two workers start and sessions run in them, one each, audited by the node', async () => {
    const first = await sshTo(alice, cluster.nodePort!, NODE, ['echo one']);
    expect(first.stdout).toBe('one\n');
    expect(workers()).toEqual([]);

    const ws = await busy();

    const a = await longSession(alice);
    const b = await longSession(alice);
    const wa = workerOf(a.pid, ws);
    const wb = workerOf(b.pid, ws);
    expect(wa).toBeDefined();
    expect(wb).toBeDefined();
    expect(wa).not.toBe(wb);
    // Each worker's parent is the node: it was forked by the node's primary process.
    expect(ws.map(parentOf)).toEqual([nodePid(), nodePid()]);
    // The audit events of sessions in workers reach the node's spool and the auth server.
    const marker = `from-a-worker-${Date.now()}`;
    expect((await sshTo(alice, cluster.nodePort!, NODE, [`echo ${marker}`])).stdout).toBe(`${marker}\n`);
    await waitFor('the exec event', async () => (await cluster.events(['exec'])).some((e) => String(e.command).includes(marker)));
  });

  it('GIVEN max_users 2 and alice and bob connected to different workers THEN carol is refused in a third connection until one leaves', async () => {
    const ws = await busy();
    const a = await longSession(alice);
    const b = await longSession(bob);
    expect(workerOf(a.pid, ws)).not.toBe(workerOf(b.pid, ws));

    const refused = await sshTo(carol, cluster.nodePort!, NODE, ['echo carol']);
    expect(refused.code).toBe(255);
    expect(refused.stderr).toMatch(/Permission denied/);

    await b.client.stop('SIGKILL');
    await waitFor('carol to be admitted', async () => (await sshTo(carol, cluster.nodePort!, NODE, ['echo carol'])).stdout === 'carol\n');
  });

  it('GIVEN a connection handed to a worker that does not log in THEN the login grace time closes it', async () => {
    const ws = await busy();
    const idle = await pendingConnection(cluster.nodePort!);
    sockets.push(idle);
    expect(await idle.banner).toMatch(/^SSH-2\.0-Teleport/);
    expect(ws).toContain(servingProcessOf(idle.localPort!, cluster.nodePort!, ws));
    // Closed by the primary's grace timer through the worker that holds it (the primary's copy alone would not close it).
    await idle.ended;
  });

  it("GIVEN alice's recorded session in a worker WHEN another recording completes and is uploaded meanwhile THEN hers is uploaded whole, once it ends", async () => {
    await busy();
    const owner = interactive([...alice.options(NODE), '-tt', '-p', String(cluster.nodePort), `${LOGIN}@127.0.0.1`]);
    const type = (text: string) => owner.child.stdin!.write(text);
    type('echo part-$((1+1))\n');
    await owner.waitForOutput(/part-2/);
    const s = await waitFor('her session listed', async () => (await cluster.activeSessions()).find((x) => x.parties.some((p) => p.user === 'alice')));
    // WHEN another recorded session ends (its upload wakes the node's uploader while hers runs)
    const other = await sshTo(bob, cluster.nodePort!, NODE, ['echo other-session'], ['-tt']);
    expect(other.code).toBe(0);
    const otherEnd = await waitFor('the other session.end', async () => (await cluster.events(['session.end'])).find((e) => e.user === 'bob' && e.sid !== s.id));
    await waitFor('the other recording uploaded', () => recordingOf(otherEnd.sid));
    // THEN hers goes on being recorded, and is uploaded whole when it ends
    type('echo part-$((2+1))\nexit\n');
    expect(await owner.exited).toBe(0);
    const rec = await waitFor('her recording', () => recordingOf(s.id));
    const text = rec.bytes.toString();
    expect(text).toContain('part-2');
    expect(text).toContain('part-3');
    expect(rec.events.map((e) => e.event)).toEqual(expect.arrayContaining(['session.start', 'session.end']));
  });

  it("GIVEN alice's interactive session in one worker WHEN bob joins it from the other THEN both see what either types, and his join is audited", async () => {
    const ws = await busy();
    const owner = interactive([...alice.options(NODE), '-tt', '-p', String(cluster.nodePort), `${LOGIN}@127.0.0.1`]);
    const type = (d: Daemon, text: string) => d.child.stdin!.write(text);
    type(owner, 'echo ready-$((40+2))\n');
    await owner.waitForOutput(/ready-42/);
    const s = await waitFor('the session listed as active', async () => (await cluster.activeSessions()).find((x) => x.parties.some((p) => p.user === 'alice')));
    const ownerShell = Number((await (async () => (type(owner, 'echo shell=$$\n'), owner.waitForOutput(/shell=\d+/)))(), /shell=(\d+)/.exec(owner.stdout)![1]));

    const joiner = interactive([...bob.options(NODE), '-tt', '-o', `SetEnv=TELEPORT_SESSION=${s.id}`, '-p', String(cluster.nodePort), `${LOGIN}@127.0.0.1`]);
    await waitFor('bob among the parties', async () => (await cluster.activeSessions()).find((x) => x.id === s.id)?.parties.some((p) => p.user === 'bob'));
    // alice's session and bob's connection are in different workers: the join crossed processes.
    const alicesWorker = workerOf(ownerShell, ws);
    expect(alicesWorker).toBeDefined();
    expect(ws).toContain(servingProcess(joiner.child.pid!, cluster.nodePort!, ws));
    expect(servingProcess(joiner.child.pid!, cluster.nodePort!, ws)).not.toBe(alicesWorker);

    type(owner, 'echo from-alice-$((1+1))\n');
    await joiner.waitForOutput(/from-alice-2/);
    type(joiner, 'echo from-bob-$((2+3))\n');
    await owner.waitForOutput(/from-bob-5/);
    await joiner.stop('SIGKILL');
    await waitFor('session.leave', async () => (await cluster.events(['session.leave'])).some((e) => e.user === 'bob' && e.sid === s.id));
    expect((await cluster.events(['session.join'])).filter((e) => e.sid === s.id).map((e) => e.user)).toEqual(['bob']);
    type(owner, 'exit\n');
    expect(await owner.exited).toBe(0);
  });

  it('GIVEN sessions in two workers WHEN one worker is killed THEN only its session ends, and the node serves on', async () => {
    const ws = await busy();
    const a = await longSession(alice);
    const b = await longSession(bob);
    const wa = workerOf(a.pid, ws)!;
    expect(workerOf(b.pid, ws)).not.toBe(wa);

    process.kill(wa, 'SIGKILL');

    expect(await a.client.exited).toBe(255);
    await waitFor('the lost worker reported', () => /a connection worker stopped/.test(cluster.daemon!.stderr));
    expect([b.client.child.exitCode, alive(b.pid)]).toEqual([null, true]);
    // alice's max_users slot was released with her connection: carol gets in beside bob.
    expect((await sshTo(carol, cluster.nodePort!, NODE, ['echo carol'])).stdout).toBe('carol\n');
  });

  it('GIVEN a node with workers WHEN the node process dies THEN its workers and their sessions end', async () => {
    await withCluster(GRACE, 'dave', async (other, dave) => {
      const ws = await twoWorkers(other.nodePort!, other.daemon!, other.daemon!.child.pid!, sockets);
      const client = Daemon.spawn('ssh', [...dave.options(NODE), '-p', String(other.nodePort), `${LOGIN}@127.0.0.1`, 'echo pid=$$; exec sleep 300']);
      daemons.push(client);
      await client.waitForOutput(/pid=\d+\n/);
      const program = Number(/pid=(\d+)/.exec(client.stdout)![1]);
      expect(workerOf(program, ws)).toBeDefined();

      await other.daemon!.stop('SIGKILL');

      await waitFor('the workers to exit', () => ws.every((w) => !alive(w)));
      await waitFor('the session program to end', () => !alive(program));
      expect(await client.exited).toBe(255);
    });
  });

  it('GIVEN workers: 0 WHEN the node is busy THEN it starts no worker and serves every connection itself', async () => {
    await withCluster(['workers: 0'], 'erin', async (none, erin) => {
      for (let i = 0; i < 3; i++) sockets.push(await pendingConnection(none.nodePort!));
      const r = await sshTo(erin, none.nodePort!, NODE, ['echo parent=$PPID']);
      const spawner = Number(/parent=(\d+)/.exec(r.stdout)![1]);
      // The program's spawn server is the node's own child: no worker in between.
      expect(parentOf(spawner)).toBe(none.daemon!.child.pid);
      expect(childrenRunning(none.daemon!.child.pid!, 'connworker')).toEqual([]);
      expect(none.daemon!.stderr).not.toMatch(/starting a connection worker/);
    });
  });

  it('GIVEN sessions the primary serves and sessions workers serve WHEN QUIT THEN the node waits for every one of them', async () => {
    await withCluster(GRACE, 'frank', async (other, frank) => {
      const pid = other.daemon!.child.pid!;
      const held = (): Daemon => {
        const d = new Daemon(spawn('ssh', [...frank.options(NODE), '-p', String(other.nodePort), `${LOGIN}@127.0.0.1`, 'echo ready pid=$$; read line; echo got $line'], { stdio: ['pipe', 'pipe', 'pipe'] }));
        daemons.push(d);
        return d;
      };
      const finish = async (d: Daemon, line: string) => {
        d.child.stdin!.write(`${line}\n`);
        await d.waitForOutput(new RegExp(`got ${line}`));
        expect(await d.exited).toBe(0);
      };
      const programOf = (d: Daemon) => Number(/pid=(\d+)/.exec(d.stdout)![1]);
      // GIVEN a session served by the node's primary process (no worker yet)
      const primary = held();
      await primary.waitForOutput(/ready/);
      expect(childrenRunning(pid, 'connworker')).toEqual([]);
      // AND, once busy, two served by workers
      const busySockets: net.Socket[] = [];
      const ws = await twoWorkers(other.nodePort!, other.daemon!, pid, busySockets);
      for (const b of busySockets) b.destroy();
      const [first, second] = [held(), held()];
      await Promise.all([first.waitForOutput(/ready/), second.waitForOutput(/ready/)]);
      expect([first, second].map((d) => ws.includes(workerOf(programOf(d), ws)!))).toEqual([true, true]);
      expect(workerOf(programOf(primary), ws)).toBeUndefined();
      // WHEN QUIT
      other.daemon!.child.kill('SIGQUIT');
      await other.daemon!.waitForOutput(/no longer accepting connections/);
      // THEN a worker's session ends normally, and the primary's is still served after it (not drained with the workers')
      await finish(first, 'worker-session');
      await finish(primary, 'primary-session');
      // AND the other worker's is still served after the primary's own have all ended
      await finish(second, 'last-worker-session');
      // AND the node exits once all have ended
      expect(await other.daemon!.exited).toBe(0);
    });
  });

  it("GIVEN a recorded session in a node's worker WHEN the node stops (SIGTERM) THEN the session's end is audited and its recording is whole", async () => {
    // GIVEN a node in its own process (the cluster's auth server stays up), busy enough to run its workers
    await cluster.tctlOk('tokens', 'add', '--type=node', '--value=stopping-node-token');
    const node = await TestNode.create(cluster, { token: 'stopping-node-token', caPin: await cluster.caPin(), nodeName: 'stopping-node', sshExtra: GRACE });
    try {
      node.start();
      await node.ready();
      const ws = await twoWorkers(node.port, node.daemon!, node.daemon!.child.pid!, sockets);
      for (const sock of sockets.splice(0)) sock.destroy();
      const owner = interactive([...alice.options('stopping-node'), '-tt', '-p', String(node.port), `${LOGIN}@127.0.0.1`]);
      owner.child.stdin!.write('echo before-stop-$((3+4)) shell=$$\n');
      await owner.waitForOutput(/before-stop-7 shell=\d+/);
      expect(workerOf(Number(/before-stop-7 shell=(\d+)/.exec(owner.stdout)![1]), ws)).toBeDefined();
      const s = await waitFor('the session listed', async () => (await cluster.activeSessions()).find((x) => x.server_hostname === 'stopping-node'));
      // WHEN the node stops, and starts again (what it had not shipped yet goes then)
      node.daemon!.child.kill('SIGTERM');
      expect(await node.daemon!.exited).toBe(0);
      await owner.exited;
      node.start();
      await node.ready();
      // THEN the session's end is in the audit log, and its recording is complete
      await waitFor('session.end', async () => (await cluster.events(['session.end'])).some((e) => e.sid === s.id));
      const rec = await waitFor('the recording', () => recordingOf(s.id));
      expect(rec.bytes.toString()).toContain('before-stop-7');
      expect(rec.events.map((e) => e.event)).toEqual(expect.arrayContaining(['session.start', 'session.end']));
    } finally {
      await node.cleanup();
    }
  });
});
