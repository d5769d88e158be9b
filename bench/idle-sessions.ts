/**
 * Benchmark: memory per idle interactive session, the node against OpenSSH's
 * sshd on the same machine. Both trust the cluster's user CA and present a host
 * certificate from its host CA; an ssh2 client in this process opens N PTY shells
 * on each (one connection each, as N users would) and leaves them idle. Memory is
 * PSS (proportional set size: shared pages split between the processes that map
 * them) from /proc/<pid>/smaps_rollup, summed over the server's process tree
 * (the node's process; sshd's listener and its per-connection processes), minus
 * the same sum before the sessions, over N. The node's connection workers
 * (started by three connections at once, before "before") are a fixed cost,
 * shown apart, as sshd's listener is. The session programs themselves (the
 * login shells, the same on both sides) are shown apart and left out of the goal.
 * Reports goal `idle-session-memory`.
 *
 *   npx tsc -p . && node dist/bench/idle-sessions.js
 *
 * Knobs (environment): BENCH_IDLE_SESSIONS (100), BENCH_OPEN_CONCURRENCY (10), BENCH_LOGIN (the OS
 * login on both servers; default the current user).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ClientChannel } from 'ssh2';
import { clientCertIdentity, loadPrivateKey } from '../runtime/sshcert';
import { startCluster } from '../test/helpers/cluster';
import { SshUser } from '../test/helpers/openssh';
import { tempDir, waitFor } from '../test/helpers/proc';
import { childrenRunning } from '../test/helpers/procfs';
import { autoWorkers } from '../runtime/config';
import { LOGIN as CURRENT_USER, startSshd } from '../test/helpers/sshd';
import { envNumber, fmt, formatTable, ratio } from './common';
import type { Dialed } from './echo';
import { reportGoal } from './goals';
import { CLUSTER, connect, hostCAsFrom, NODE, SSHD_EXTRA, STARTUPS, type Auth } from './jump-rig';

const SESSIONS = Math.max(1, Math.round(envNumber('BENCH_IDLE_SESSIONS', 100)));
const OPEN_CONCURRENCY = Math.max(1, Math.round(envNumber('BENCH_OPEN_CONCURRENCY', 10)));
/** Process names of the servers' own processes; anything else in their trees is a session program. */
const SERVER_COMMS = new Set(['node', 'sshd', 'setpriv', 'pam-launch', 'passwd-lookup']);
const MIB = 1024 * 1024;
/** The OS login on both servers (BENCH_LOGIN, default the current user). */
const LOGIN = process.env.BENCH_LOGIN?.trim() || CURRENT_USER;

interface Proc {
  pid: number;
  ppid: number;
  comm: string;
}

function processes(): Proc[] {
  const out: Proc[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      out.push({ pid: Number(e), ppid, comm });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** PSS (bytes) of one process, 0 if it is gone. */
function pss(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

interface TreeMemory {
  /** PSS of the server's own processes, bytes. */
  server: number;
  /** PSS of the session programs (shells) in its tree, bytes. */
  programs: number;
  processes: number;
}

/** PSS of `root` and all its descendants, split into the server's processes and the session programs. */
function treeMemory(root: number): TreeMemory {
  const all = processes();
  const children = new Map<number, Proc[]>();
  for (const p of all) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p]);
  const rootProc = all.find((p) => p.pid === root);
  if (!rootProc) throw new Error(`process ${root} is gone`);
  const m: TreeMemory = { server: 0, programs: 0, processes: 0 };
  const stack = [rootProc];
  while (stack.length) {
    const p = stack.pop()!;
    m.processes++;
    const bytes = pss(p.pid);
    // A session program's own children (anything under a shell) are the program's too.
    if (SERVER_COMMS.has(p.comm)) m.server += bytes;
    else m.programs += bytes;
    for (const c of children.get(p.pid) ?? []) stack.push(SERVER_COMMS.has(p.comm) ? c : { ...c, comm: `program:${c.comm}` });
  }
  return m;
}

/** Opens a PTY shell and resolves once the shell has printed something (it is up and idle). */
function openShell(d: Dialed): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    d.client.shell({ term: 'xterm', rows: 24, cols: 80 }, (err, ch) => {
      if (err) return reject(err);
      ch.stderr.resume();
      ch.once('data', () => resolve(ch));
      ch.once('close', () => reject(new Error('the shell closed before it printed anything')));
    });
  });
}

/** Opens `n` idle shells, `OPEN_CONCURRENCY` at a time; each stays open until closed. */
async function openSessions(n: number, dial: () => Promise<Dialed>): Promise<Dialed[]> {
  const open: Dialed[] = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      const d = await dial();
      open.push(d);
      const ch = await openShell(d);
      ch.on('data', () => undefined);
    }
  };
  await Promise.all(Array.from({ length: OPEN_CONCURRENCY }, worker));
  return open;
}

interface Figures {
  before: TreeMemory;
  after: TreeMemory;
}

/** Memory of a server's tree before and with SESSIONS idle sessions (each open once its shell has printed: its processes are all there). */
async function measure(root: number, dial: () => Promise<Dialed>): Promise<Figures> {
  const before = treeMemory(root);
  const sessions = await openSessions(SESSIONS, dial);
  try {
    return { before, after: treeMemory(root) };
  } finally {
    for (const s of sessions) s.close();
  }
}

/**
 * Makes the node busy (three connections setting up at once) and resolves with its connection
 * workers' pids once as many as `ssh_service.workers: auto` gives here are ready.
 */
async function startWorkers(port: number, nodePid: number, log: () => string): Promise<number[]> {
  const want = autoWorkers();
  if (want === 0) return [];
  const open = () =>
    new Promise<net.Socket>((resolve, reject) => {
      const sock = net.connect(port, '127.0.0.1');
      sock.once('connect', () => resolve(sock));
      sock.once('error', reject);
    });
  const socks = await Promise.all([open(), open(), open()]);
  try {
    return await waitFor('the node\'s connection workers', () => {
      const ready = (log().match(/connection worker ready/g) ?? []).length;
      const pids = childrenRunning(nodePid, 'connworker');
      return ready >= want && pids.length === want ? pids : undefined;
    });
  } finally {
    for (const sock of socks) sock.destroy();
  }
}

async function main(): Promise<void> {
  const load0 = os.loadavg()[0];
  const work = tempDir('bench-idle-');
  const cluster = await startCluster({ sshExtra: STARTUPS });
  try {
    await cluster.tctlOk('users', 'add', 'bench', LOGIN);
    const user = await SshUser.create(cluster, work, 'bench', LOGIN);
    const userCA = (await cluster.tctlOk('auth', 'export', '--type=user')).replace(/^cert-authority /, '');
    const hostKey = path.join(work, 'sshd-host');
    await cluster.tctlOk('auth', 'sign', '--host', `idle.${CLUSTER}`, '--format', 'openssh', '-o', hostKey);
    const sshd = await startSshd({ trustedUserCAKeys: userCA, hostKey, hostCert: hostKey + '-cert.pub', extraConfig: SSHD_EXTRA });
    try {
      const privateKey = loadPrivateKey(fs.readFileSync(user.key, 'utf8'));
      const certLine = fs.readFileSync(`${user.key}-cert.pub`, 'utf8').trim();
      const auth: Auth = { login: LOGIN, agent: clientCertIdentity(privateKey, certLine), hostCAs: hostCAsFrom(user.knownHosts) };
      const dialer = (port: number, name: string) => async (): Promise<Dialed> => {
        const client = await connect({ host: '127.0.0.1', port }, name, auth);
        return { client, close: () => client.end() };
      };
      const nodePid = cluster.daemon!.child.pid!;
      // The node's connection workers are a fixed cost, as sshd's listener is: started (by a busy moment) before "before".
      const workers = await startWorkers(cluster.nodePort!, nodePid, () => cluster.daemon!.stderr);
      const workersMiB = workers.reduce((sum, w) => sum + pss(w), 0) / MIB;
      const node = await measure(nodePid, dialer(cluster.nodePort!, NODE));
      const ref = await measure(sshd.daemon.child.pid!, dialer(sshd.port, 'idle'));
      const per = (f: Figures, k: 'server' | 'programs') => (f.after[k] - f.before[k]) / SESSIONS / MIB;
      const n = per(node, 'server');
      const s = per(ref, 'server');
      console.log(`memory per idle PTY session (PSS), ${SESSIONS} sessions, node vs OpenSSH sshd, loopback, same user certificate`);
      console.log(`node ${process.version}; ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'unknown CPU'}; load average ${load0.toFixed(2)} before, ${os.loadavg()[0].toFixed(2)} after; login ${LOGIN}\n`);
      console.log(
        formatTable([
          ['measure', 'teleport node', 'OpenSSH sshd', 'ratio node/sshd'],
          ['server processes, MiB per session', fmt(n, 2), fmt(s, 2), ratio(n, s)],
          ['session programs (shells), MiB per session', fmt(per(node, 'programs'), 2), fmt(per(ref, 'programs'), 2), ratio(per(node, 'programs'), per(ref, 'programs'))],
          ['server processes before, MiB', fmt(node.before.server / MIB), fmt(ref.before.server / MIB), ''],
          [`  of which the node's ${workers.length} connection workers, MiB`, fmt(workersMiB), '', ''],
          [`server processes with ${SESSIONS} sessions, MiB`, fmt(node.after.server / MIB), fmt(ref.after.server / MIB), ''],
          ['processes in the tree with the sessions', String(node.after.processes), String(ref.after.processes), ''],
        ]),
      );
      reportGoal({ id: 'idle-session-memory', value: `${fmt(n, 2)} MiB`, anchor: `sshd ${fmt(s, 2)} MiB`, ratio: n / s, met: n / s <= 0.5, note: `PSS, ${SESSIONS} idle PTY sessions` });
    } finally {
      await sshd.close();
    }
  } finally {
    await cluster.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
