/**
 * The daemon's signals, as Teleport documents them: USR1 writes a diagnostic report to the log;
 * QUIT stops accepting and exits once the open sessions have ended; USR2 starts a new process that
 * takes over the listening sockets (no moment in which a port refuses a connection) while the old
 * one finishes its sessions and exits.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EventSpool } from '../../runtime/events/spool';
import { startCluster, TestAuth } from '../helpers/cluster';
import { idle } from '../helpers/idle';
import { SshUser, sshTo } from '../helpers/openssh';
import { Daemon, freePort, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';

jest.setTimeout(180_000);

/** Room for the sessions the tests open at once (the default startups limit sheds some of 20 parallel logins). */
const ROOMY = ['max_startups: 100:30:200'];

/** An OpenSSH session that prints `ready`, then answers one line read from its stdin. */
function heldSession(user: SshUser, port: number): Daemon {
  return new Daemon(
    spawn('ssh', [...user.options('test-auth'), '-p', String(port), `${LOGIN}@127.0.0.1`, 'echo ready; read line; echo got $line'], { stdio: ['pipe', 'pipe', 'pipe'] }),
  );
}

/** Finishes a held session: sends a line, expects the answer and exit status 0. */
async function finish(s: Daemon, line: string): Promise<void> {
  s.child.stdin!.write(`${line}\n`);
  await s.waitForOutput(new RegExp(`got ${line}`));
  expect(await s.exited).toBe(0);
}

/** The daemon's (JSON) log line with this message. */
function logLine(d: Daemon, msg: string): Record<string, any> {
  const line = (d.stdout + d.stderr).split('\n').find((l) => l.startsWith('{') && JSON.parse(l).msg === msg);
  if (!line) throw new Error(`no log line "${msg}"`);
  return JSON.parse(line);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('daemon signals', () => {
  let cluster: TestAuth;
  let work: string;
  let alice: SshUser;
  /** Processes a test started by USR2, stopped after it. */
  const successors: number[] = [];

  beforeEach(async () => {
    work = tempDir('signals-');
    // Not as a systemd service, even when the tests run under one (USR2 is refused there).
    cluster = await startCluster({ sshExtra: ROOMY }, { INVOCATION_ID: undefined });
    await cluster.tctlOk('users', 'add', 'alice', LOGIN);
    alice = await SshUser.create(cluster, work, 'alice', LOGIN);
  });

  afterEach(async () => {
    for (const pid of successors.splice(0)) {
      if (!alive(pid)) continue;
      process.kill(pid, 'SIGTERM');
      await waitFor(`process ${pid} to end`, () => !alive(pid), 30_000);
    }
    await cluster?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('GIVEN an open session WHEN USR1 THEN the log has a diagnostic report with the sessions, connections per listener, handles and memory', async () => {
    const s = heldSession(alice, cluster.nodePort!);
    try {
      await s.waitForOutput(/ready/);
      // WHEN
      cluster.daemon!.child.kill('SIGUSR1');
      // THEN
      await cluster.daemon!.waitForOutput(/"msg":"diagnostic report".*\n/);
      const report = logLine(cluster.daemon!, 'diagnostic report');
      expect(report.sessions).toEqual({ node: 1, proxy: 0 });
      expect(report.connections.node).toBe(1);
      expect(report.handles.TCPServerWrap).toBeGreaterThanOrEqual(2);
      expect(report.memory_mb.rss).toBeGreaterThan(0);
      // AND the daemon serves on
      await finish(s, 'after-report');
    } finally {
      await s.stop();
    }
  });

  test('GIVEN an open session WHEN QUIT THEN new connections are refused, the session finishes, and the daemon exits 0 after it', async () => {
    const s = heldSession(alice, cluster.nodePort!);
    try {
      await s.waitForOutput(/ready/);
      // WHEN
      cluster.daemon!.child.kill('SIGQUIT');
      await cluster.daemon!.waitForOutput(/no longer accepting connections/);
      // THEN a new connection is refused
      await expect(idle(cluster.nodePort!)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      // AND the daemon waits for the session
      expect(cluster.daemon!.child.exitCode).toBeNull();
      await finish(s, 'still-served');
      // AND exits 0 once it has ended
      expect(await cluster.daemon!.exited).toBe(0);
      expect(cluster.daemon!.stdout + cluster.daemon!.stderr).toMatch(/the last connection ended; shutting down/);
    } finally {
      await s.stop();
    }
  });

  test('GIVEN 20 open sessions and a client connecting in a loop WHEN USR2 THEN a new process serves, no connection is refused, the 20 sessions finish normally and the old process exits 0', async () => {
    const port = cluster.nodePort!;
    // GIVEN 20 sessions
    const sessions: Daemon[] = [];
    try {
      for (let i = 0; i < 20; i += 5) {
        const batch = Array.from({ length: 5 }, () => heldSession(alice, port));
        sessions.push(...batch);
        await Promise.all(batch.map((s) => s.waitForOutput(/ready/)));
      }
      // AND a client that connects again and again, each time until the server's version line
      let looping = true;
      let greeted = 0;
      const refused: string[] = [];
      const loop = (async () => {
        while (looping) {
          try {
            const c = await idle(port);
            await Promise.race([c.greeted, c.closed]);
            if (c.received().startsWith('SSH-2.0-')) greeted++;
            c.sock.destroy();
            await c.closed;
          } catch (err) {
            refused.push((err as Error).message);
          }
        }
      })();
      try {
        await waitFor('the loop to be served', () => greeted >= 5);
        // WHEN
        const oldPid = cluster.daemon!.child.pid!;
        cluster.daemon!.child.kill('SIGUSR2');
        // THEN a new process runs and the old one stops accepting
        await cluster.daemon!.waitForOutput(/the new process serves new connections/);
        const newPid = logLine(cluster.daemon!, 'the new process serves new connections; this one finishes its sessions').new_pid as number;
        successors.push(newPid);
        expect(newPid).not.toBe(oldPid);
        await cluster.daemon!.waitForOutput(/no longer accepting connections/);
        // AND new logins are served (by the new process: the old one no longer accepts)
        const greetedBefore = greeted;
        const r = await sshTo(alice, port, 'test-auth', ['echo served']);
        expect(r.stdout).toBe('served\n');
        await waitFor('the loop to be served by the new process', () => greeted >= greetedBefore + 5);
        // AND the old process still runs for its sessions
        expect(cluster.daemon!.child.exitCode).toBeNull();
        // WHEN the 20 sessions finish THEN each ends normally
        await Promise.all(sessions.map((s, i) => finish(s, `s${i}`)));
        // AND the old process exits 0; the new one runs on
        expect(await cluster.daemon!.exited).toBe(0);
        expect(alive(newPid)).toBe(true);
        expect((await sshTo(alice, port, 'test-auth', ['echo again'])).stdout).toBe('again\n');
      } finally {
        looping = false;
        await loop;
      }
      // AND throughout, no connection was refused
      expect(refused).toEqual([]);
    } finally {
      await Promise.all(sessions.map((s) => s.stop()));
    }
  });

  test('GIVEN the audit spool of a process that is gone, beside the node\'s (a USR2 successor\'s) WHEN the node starts THEN its events are delivered and the spool removed', async () => {
    // GIVEN a stopped node whose data dir holds the spool a gone successor left, with an event never delivered
    const hostId = fs.readFileSync(path.join(cluster.dataDir, 'host_uuid'), 'utf8').trim();
    await cluster.stop();
    const gone = spawnSync('true').pid!;
    const dir = path.join(cluster.dataDir, 'log', 'upload', `events.${gone}`);
    const left = new EventSpool({ dir, send: () => Promise.reject(new Error('auth is unreachable')), backoff: { initialMs: 60_000 } });
    await left.start();
    await left.emit({ event: 'exec', user: 'alice', login: LOGIN, command: 'echo left-behind', server_id: hostId });
    await left.close();
    fs.writeFileSync(path.join(dir, 'owner.pid'), `${gone}\n`);
    // WHEN the node starts again
    cluster.start();
    await cluster.ready();
    // THEN the event reaches the auth server and the spool is gone
    await waitFor('the left event to be delivered', async () => (await cluster.events(['exec'])).some((e) => e.command === 'echo left-behind'));
    await waitFor('the left spool to be removed', () => !fs.existsSync(dir));
  });

  test('GIVEN teleport under systemd (INVOCATION_ID set) WHEN USR2 THEN it refuses with the reason and serves on', async () => {
    // GIVEN the cluster restarted as systemd would start it
    await cluster.stop();
    cluster.start({ ...process.env, INVOCATION_ID: '0123456789abcdef0123456789abcdef' });
    await cluster.ready();
    // WHEN
    cluster.daemon!.child.kill('SIGUSR2');
    // THEN
    await cluster.daemon!.waitForOutput(/USR2 ignored: under systemd/);
    expect((await sshTo(alice, cluster.nodePort!, 'test-auth', ['echo still'])).stdout).toBe('still\n');
    expect(cluster.daemon!.stdout + cluster.daemon!.stderr).not.toMatch(/started a new process/);
  });

  test('GIVEN a config that no longer has a listener WHEN USR2 THEN the new process closes the socket it was handed for it: the port refuses, not hangs', async () => {
    // GIVEN a process with a diagnostics endpoint, whose config then drops it
    await cluster.stop();
    const diagPort = await freePort();
    const config = fs.readFileSync(cluster.configPath, 'utf8');
    fs.writeFileSync(cluster.configPath, config.replace('teleport:\n', `teleport:\n  diag_addr: 127.0.0.1:${diagPort}\n`));
    cluster.start({ INVOCATION_ID: undefined });
    await cluster.ready();
    expect((await fetch(`http://127.0.0.1:${diagPort}/healthz`)).status).toBe(200);
    fs.writeFileSync(cluster.configPath, config);
    // WHEN
    cluster.daemon!.child.kill('SIGUSR2');
    await cluster.daemon!.waitForOutput(/the new process serves new connections/);
    successors.push(logLine(cluster.daemon!, 'the new process serves new connections; this one finishes its sessions').new_pid as number);
    expect(await cluster.daemon!.exited).toBe(0);
    // THEN nothing serves the dropped port and a connection is refused at once
    await expect(idle(diagPort)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    // AND the node is served by the new process
    expect((await sshTo(alice, cluster.nodePort!, 'test-auth', ['echo new'])).stdout).toBe('new\n');
  });
});
