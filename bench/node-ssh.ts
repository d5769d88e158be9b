/**
 * Benchmark: the node service against OpenSSH's sshd on the same machine, both
 * reached by the stock OpenSSH client with the same cluster user certificate:
 *   - throughput of one 1 GiB stream into `cat > /dev/null` in one session;
 *   - session setup: `ssh host true`, median and p90 over N runs;
 *   - session setup under load: 200 × `ssh host true`, 20 at once, both pinned
 *     to curve25519-sha256, three rounds interleaved (the median round's time),
 *     with the server's CPU per session (its process and its children, live or reaped:
 *     sshd's forks, the node's spawn server and passwd helper, the session shells) and,
 *     for the node, its main thread's busy time per session (the implied cap in new
 *     sessions per second of one node thread), and, when the node started connection workers
 *     (`ssh_service.workers`, `--workers`; default auto), their main threads' busy time per session
 *     and their memory. One unmeasured burst on each first: the node's workers start in it.
 *     Reports goal `node-setup`.
 * The node runs in its own `teleport start --roles=node` process that joined an auth server
 * running in another (`--roles=auth`), as deployed: the node's figures hold none of auth's work.
 * Prints an aligned table with ratios (node / sshd; lower is better for times).
 *
 *   npx tsc -p . && node dist/bench/node-ssh.js [--mib 1024] [--runs 20] [--sessions 200] [--concurrency 20] [--workers auto|N]
 *
 * BENCH_LOGIN picks the OS login at both ends (default the current user): its shell start-up files run in
 * every `ssh true` on both, so pick one with a stock ~/.bashrc and an unlocked account (sshd runs without PAM).
 * BENCH_CPU_PROF=<dir> runs the node process under V8's --cpu-prof, profile written there.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startAuth, TestNode } from '../test/helpers/cluster';
import { SshUser } from '../test/helpers/openssh';
import { tempDir } from '../test/helpers/proc';
import { childrenRunning } from '../test/helpers/procfs';
import { LOGIN as CURRENT_USER, startSshd } from '../test/helpers/sshd';
import { burst, liveTreeCpuMs, processTreeCpuMs, threadCpuMs } from './common';
import { reportGoal } from './goals';
import { SSHD_EXTRA, STARTUPS } from './jump-rig';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const MIB = arg('mib', 1024);
const RUNS = arg('runs', 20);
const BURST = arg('sessions', 200);
const CONCURRENCY = arg('concurrency', 20);
const BURST_ROUNDS = 3;
/** The node's `ssh_service.workers`. */
const WORKERS = (() => {
  const i = process.argv.indexOf('--workers');
  return i >= 0 ? process.argv[i + 1] : 'auto';
})();
const SAME_KEX = ['-o', 'KexAlgorithms=curve25519-sha256'];
const PROF_DIR = process.env.BENCH_CPU_PROF;
/** The OS login on both servers (BENCH_LOGIN, default the current user): its shell start-up files run in every session on both. */
const LOGIN = process.env.BENCH_LOGIN?.trim() || CURRENT_USER;

/** Runs ssh feeding it `mib` MiB of zeros on stdin; resolves with the elapsed ms. */
function timeSsh(args: string[], mib = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn('ssh', args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`ssh exited ${code}: ${err}`));
      else resolve(Number(process.hrtime.bigint() - t0) / 1e6);
    });
    const chunk = Buffer.alloc(1024 * 1024);
    let left = mib;
    const pump = () => {
      while (left > 0) {
        left--;
        if (!child.stdin.write(chunk)) return void child.stdin.once('drain', pump);
      }
      child.stdin.end();
    };
    pump();
  });
}

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

async function main(): Promise<void> {
  const work = tempDir('bench-node-');
  const cluster = await startAuth({ tokens: [`node:${NODE_TOKEN}`] });
  let node: TestNode | undefined;
  try {
    node = await startNode(cluster);
    await cluster.tctlOk('users', 'add', 'bench', LOGIN);
    const user = await SshUser.create(cluster, work, 'bench', LOGIN);
    const caLine = (await cluster.tctlOk('auth', 'export', '--type=user')).replace(/^cert-authority /, '');
    const hostKey = path.join(work, 'sshd-host');
    await cluster.tctlOk('auth', 'sign', '--host', 'test-auth.example.com', '--format', 'openssh', '-o', hostKey);
    const sshd = await startSshd({ trustedUserCAKeys: caLine, hostKey, hostCert: hostKey + '-cert.pub', extraConfig: SSHD_EXTRA });
    try {
      const targets = { node: node.port, sshd: sshd.port };
      const argsFor = (port: number, cmd: string) => [...user.options(port === node!.port ? NODE_NAME : 'test-auth'), '-p', String(port), `${LOGIN}@127.0.0.1`, cmd];
      const rows: string[][] = [];
      const results: Record<string, { mbps: number; p50: number; p90: number }> = {};
      for (const [name, port] of Object.entries(targets)) {
        await timeSsh(argsFor(port, 'true')); // warm up
        const ms = await timeSsh(argsFor(port, 'cat > /dev/null'), MIB);
        const setups: number[] = [];
        for (let i = 0; i < RUNS; i++) setups.push(await timeSsh(argsFor(port, 'true')));
        results[name] = { mbps: MIB / (ms / 1000), p50: quantile(setups, 0.5), p90: quantile(setups, 0.9) };
      }
      const u = await setupUnderLoad(targets, (port) => [...SAME_KEX, ...argsFor(port, 'true')], { node: node.daemon!.child.pid!, sshd: sshd.daemon.child.pid! });
      const n = results.node;
      const s = results.sshd;
      rows.push([`throughput, ${MIB} MiB stream (MiB/s)`, n.mbps.toFixed(1), s.mbps.toFixed(1), (n.mbps / s.mbps).toFixed(2)]);
      // issue 22's data-path goal: 1 GiB to a node at ≥ 0.95× sshd's throughput (same client, same default cipher)
      reportGoal({ id: 'node-throughput', value: `${n.mbps.toFixed(1)} MiB/s`, anchor: `sshd ${s.mbps.toFixed(1)} MiB/s`, ratio: n.mbps / s.mbps, met: n.mbps / s.mbps >= 0.95, ...(MIB !== 1024 ? { note: `${MIB} MiB, not 1 GiB` } : {}) });
      rows.push([`session setup p50 (ms, ${RUNS} runs)`, n.p50.toFixed(1), s.p50.toFixed(1), (n.p50 / s.p50).toFixed(2)]);
      rows.push([`session setup p90 (ms, ${RUNS} runs)`, n.p90.toFixed(1), s.p90.toFixed(1), (n.p90 / s.p90).toFixed(2)]);
      rows.push([`${BURST} × ssh true, ${CONCURRENCY} at once, curve25519 (s)`, (u.node.ms / 1000).toFixed(2), (u.sshd.ms / 1000).toFixed(2), (u.node.ms / u.sshd.ms).toFixed(2)]);
      rows.push([`  server CPU per session (ms)`, u.node.cpuMs.toFixed(1), u.sshd.cpuMs.toFixed(1), (u.node.cpuMs / u.sshd.cpuMs).toFixed(2)]);
      rows.push([`  node main thread per session (ms)`, u.node.threadMs!.toFixed(1), '', '']);
      rows.push([`  implied new sessions/s of one node thread`, (1000 / u.node.threadMs!).toFixed(0), '', '']);
      rows.push([`  connection workers' main threads per session (ms, ${u.node.workers} workers)`, u.node.workerThreadMs!.toFixed(1), '', '']);
      rows.push([`  connection worker's resident memory after the bursts (MiB each)`, u.node.workerRssMiB!.toFixed(1), '', '']);
      const head = ['measure', 'teleport node', 'OpenSSH sshd', 'ratio node/sshd'];
      const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
      const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('   ');
      console.log('node service vs OpenSSH sshd, loopback, same client certificate, OpenSSH client');
      console.log(line(head));
      rows.forEach((r) => console.log(line(r)));
      reportGoal({
        id: 'node-setup',
        value: `${(u.node.ms / 1000).toFixed(2)} s`,
        anchor: `sshd ${(u.sshd.ms / 1000).toFixed(2)} s`,
        ratio: u.node.ms / u.sshd.ms,
        met: u.node.ms <= u.sshd.ms,
        note: `server CPU per session ${u.node.cpuMs.toFixed(1)} vs ${u.sshd.cpuMs.toFixed(1)} ms; node main thread ${u.node.threadMs!.toFixed(1)} ms per session (≈ ${(1000 / u.node.threadMs!).toFixed(0)} sessions/s), ${u.node.workers} connection workers ${u.node.workerThreadMs!.toFixed(1)} ms`,
      });
    } finally {
      await sshd.close();
    }
  } finally {
    // A graceful stop first: V8 writes the profile at exit.
    if (PROF_DIR) await node?.daemon?.stop('SIGTERM');
    await node?.cleanup();
    await cluster.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

const NODE_TOKEN = 'bench-node-token';
const NODE_NAME = 'bench-node';

/** The node in its own process, joined to `auth`; under V8's profiler when BENCH_CPU_PROF names a directory. */
async function startNode(auth: Awaited<ReturnType<typeof startAuth>>): Promise<TestNode> {
  // The same startups limits as the reference sshd's (SSHD_EXTRA), so that neither turns a burst's connection away.
  const nodeArgs = PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROF_DIR}`] : [];
  const node = await TestNode.create(auth, { token: NODE_TOKEN, caPin: await auth.caPin(), nodeName: NODE_NAME, sshExtra: [...STARTUPS, `workers: ${WORKERS}`], nodeArgs });
  node.start();
  try {
    await node.ready();
  } catch (err) {
    await node.cleanup();
    throw err;
  }
  return node;
}

/**
 * BURST × `ssh true` on each target, CONCURRENCY at once, in BURST_ROUNDS rounds that alternate the
 * targets (so that background load hits both alike): per target, the median round's wall time and
 * the server's CPU per session over all rounds.
 */
async function setupUnderLoad(
  targets: Record<'node' | 'sshd', number>,
  args: (port: number) => string[],
  pids: Record<'node' | 'sshd', number>,
): Promise<Record<'node' | 'sshd', { ms: number; cpuMs: number; threadMs?: number; workers?: number; workerThreadMs?: number; workerRssMiB?: number }>> {
  const walls: Record<'node' | 'sshd', number[]> = { node: [], sshd: [] };
  const cpu = { node: 0, sshd: 0 };
  let nodeThread = 0;
  // sshd's per-connection processes and shells are reaped by the listener; the node's session programs by its spawn server, a live child.
  const treeCpu = { node: liveTreeCpuMs, sshd: processTreeCpuMs };
  // One burst each, not measured, first: a node's connection workers start in the first busy moment (and stay).
  for (const name of ['node', 'sshd'] as const) await burst(CONCURRENCY, CONCURRENCY, () => timeSsh(args(targets[name])));
  const workers = childrenRunning(pids.node, 'connworker');
  const workersCpu = () => workers.reduce((sum, w) => sum + threadCpuMs(w), 0);
  const workerThread0 = workersCpu();
  for (let round = 0; round < BURST_ROUNDS; round++) {
    for (const name of ['node', 'sshd'] as const) {
      const cpu0 = treeCpu[name](pids[name]);
      const thread0 = name === 'node' ? threadCpuMs(pids.node) : 0;
      walls[name].push(await burst(BURST, CONCURRENCY, () => timeSsh(args(targets[name]))));
      cpu[name] += treeCpu[name](pids[name]) - cpu0;
      if (name === 'node') nodeThread += threadCpuMs(pids.node) - thread0;
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const per = (name: 'node' | 'sshd') => ({ ms: median(walls[name]), cpuMs: cpu[name] / (BURST * BURST_ROUNDS) });
  const workerThread = workersCpu() - workerThread0;
  const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  return {
    node: {
      ...per('node'),
      threadMs: nodeThread / (BURST * BURST_ROUNDS),
      workers: workers.length,
      workerThreadMs: workerThread / (BURST * BURST_ROUNDS),
      workerRssMiB: workers.length ? workers.reduce((sum, w) => sum + rssMiB(w), 0) / workers.length : 0,
    },
    sshd: per('sshd'),
  };
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
