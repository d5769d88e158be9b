/**
 * The node's spawn server (runtime/node/spawnserver.ts): non-PTY session programs are started by a
 * forked child of the node that hands their pipes back, and they behave as the node's own children
 * did; a spawn server that dies is replaced and takes its programs with it; none outlives the node.
 */
import * as fs from 'node:fs';
import { startCluster, TestAuth } from '../helpers/cluster';
import { SshUser, sshTo } from '../helpers/openssh';
import { Daemon, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { alive, childrenRunning, parentOf } from '../helpers/procfs';

const NODE = 'test-auth';

/** The live spawn servers among the children of `pid`. */
const spawnServersOf = (pid: number) => childrenRunning(pid, 'spawnworker');

describe('node spawn server', () => {
  let cluster: TestAuth;
  let work: string;
  let alice: SshUser;
  const daemons: Daemon[] = [];
  const programs: number[] = [];

  beforeAll(async () => {
    work = tempDir('node-spawn-');
    cluster = await startCluster();
    await cluster.tctlOk('users', 'add', 'alice', LOGIN);
    alice = await SshUser.create(cluster, work, 'alice', LOGIN);
  });
  afterEach(async () => {
    await Promise.all(daemons.splice(0).map((d) => d.stop('SIGKILL')));
    for (const pid of programs.splice(0)) if (alive(pid)) process.kill(pid, 'SIGKILL');
  });
  afterAll(async () => {
    await cluster?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  const ssh = (remote: string[], input?: string) => sshTo(alice, cluster.nodePort!, NODE, remote, [], input);
  const nodePid = () => cluster.daemon!.child.pid!;

  /** A long session (`sleep`) over OpenSSH; resolves with the ssh client and the program's pid once it runs. */
  async function longSession(): Promise<{ client: Daemon; pid: number }> {
    const client = Daemon.spawn('ssh', [...alice.options(NODE), '-p', String(cluster.nodePort), `${LOGIN}@127.0.0.1`, 'echo pid=$$; exec sleep 300']);
    daemons.push(client);
    await client.waitForOutput(/pid=\d+\n/);
    const pid = Number(/pid=(\d+)/.exec(client.stdout)![1]);
    programs.push(pid);
    return { client, pid };
  }

  it('GIVEN a node WHEN a command runs without a pty THEN its parent is the spawn server, a child of the node', async () => {
    const r = await ssh(['echo parent=$PPID']);
    expect(r.code).toBe(0);
    const parent = Number(/parent=(\d+)/.exec(r.stdout)![1]);
    expect(parent).not.toBe(nodePid());
    expect(spawnServersOf(nodePid())).toEqual([parent]);
  });

  it('GIVEN the spawn server WHEN programs read stdin, write both streams, exit or die by a signal THEN the client sees what it saw before', async () => {
    // stdin to EOF, a large output back, unchanged
    const input = Array.from({ length: 20_000 }, (_, i) => `line ${i}`).join('\n') + '\n';
    const cat = await ssh(['cat'], input);
    expect(cat.code).toBe(0);
    expect(cat.stdout).toBe(input);
    // stderr apart from stdout, and the exit status
    const both = await ssh(['echo out; echo err >&2; exit 5']);
    expect([both.stdout, both.stderr, both.code]).toEqual(['out\n', 'err\n', 5]);
    // an empty stdin ends at once (no hang), and the program sees EOF
    expect((await ssh(['wc -c'], '')).stdout.trim()).toBe('0');
    // a program killed by a signal: OpenSSH's client exits 255 when the session ends by a signal
    const killed = await ssh(['kill -TERM $$']);
    expect(killed.code).toBe(255);
    // a program that cannot be run: the shell's own exit status
    expect((await ssh(['/nonexistent/program'])).code).toBe(127);
  });

  it('GIVEN a session program WHEN its descriptors are listed THEN the spawn server channel is not among them', async () => {
    // Only the three pipes are sockets: the spawn server's IPC channel is not inherited.
    const r = await ssh(['ls -l /proc/$$/fd']);
    const sockets = r.stdout
      .split('\n')
      .filter((l) => / -> socket:/.test(l))
      .map((l) => Number(/ (\d+) -> socket:/.exec(l)![1]));
    expect(sockets.sort()).toEqual([0, 1, 2]);
  });

  it('GIVEN a running session WHEN the spawn server is killed THEN that session ends with a message, its program is gone, and the next session gets a new spawn server', async () => {
    const { client, pid } = await longSession();
    const [server] = spawnServersOf(nodePid());
    expect(parentOf(pid)).toBe(server);

    process.kill(server, 'SIGKILL');

    expect(await client.exited).not.toBe(0);
    expect(client.stderr).toContain("the node's spawn server stopped");
    await waitFor('the lost session program to end', () => !alive(pid));
    const r = await ssh(['echo parent=$PPID']);
    expect(r.code).toBe(0);
    const replacement = Number(/parent=(\d+)/.exec(r.stdout)![1]);
    expect(replacement).not.toBe(server);
    expect(spawnServersOf(nodePid())).toEqual([replacement]);
  });

  it('GIVEN a running session WHEN the node process dies THEN its spawn server and the session program end too', async () => {
    const other = await startCluster();
    const dir = tempDir('node-spawn-other-');
    try {
      await other.tctlOk('users', 'add', 'bob', LOGIN);
      const bob = await SshUser.create(other, dir, 'bob', LOGIN);
      const client = Daemon.spawn('ssh', [...bob.options(NODE), '-p', String(other.nodePort), `${LOGIN}@127.0.0.1`, 'echo pid=$$; exec sleep 300']);
      daemons.push(client);
      await client.waitForOutput(/pid=\d+\n/);
      const pid = Number(/pid=(\d+)/.exec(client.stdout)![1]);
      programs.push(pid);
      const [server] = spawnServersOf(other.daemon!.child.pid!);
      expect(parentOf(pid)).toBe(server);

      await other.daemon!.stop('SIGKILL');

      await waitFor('the spawn server to exit', () => !alive(server));
      await waitFor('the session program to end', () => !alive(pid));
    } finally {
      await other.cleanup();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
