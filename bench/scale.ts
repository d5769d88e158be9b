/**
 * Benchmark: how many nodes one auth server carries. One auth server runs as
 * a real `teleport start --roles=auth`; N simulated nodes run in a few
 * load-generator processes (scale-node-host.ts), each node doing what a node
 * does with the auth service, with the node's own code: it joins with a
 * token, then reads the cluster configuration, keeps the access data (users,
 * roles, CA keys) current and heartbeats at the real period. Measured:
 *   1. join time: from the first join until all N have joined, and how many
 *      join attempts the auth server refused over its rate limit;
 *   2. steady state: over a window of one heartbeat period (every node
 *      heartbeats once in it), the auth server's CPU time per node per
 *      minute (minus its idle CPU with no node, measured first) and its RSS;
 *   3. with BENCH_CPU_PROF=<dir>: the functions the auth server spent its
 *      CPU in during the window (V8's --cpu-prof, cut to the window; the
 *      profiler's own thread is left out of the CPU figures).
 * Prints a table, then one JSON line with every figure.
 *
 *   npm run bench -- scale --nodes=1000
 *
 * Knobs (environment): BENCH_NODES (1000; `--nodes=N` wins), BENCH_SCALE_PROCESSES
 * (3 load generators), BENCH_JOIN_CONCURRENCY (joins in flight per load
 * generator, 16), BENCH_JOIN_ADDRESSES (1: every join from 127.0.0.1, a fleet
 * behind one NAT address; n: from 127.0.0.1 … 127.0.0.n in turn),
 * BENCH_WINDOW_SECONDS (the steady-state window; default one heartbeat
 * period, half of TELEPORT_ANNOUNCE_TTL, 300 s), BENCH_JOIN_TIMEOUT_SECONDS (1800),
 * BENCH_CPU_PROF (a directory for the auth server's CPU profile).
 */
import { ChildProcess, fork, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { announceTtlMs } from '../runtime/auth/presence';
import { createAuth, TestAuth } from '../test/helpers/cluster';
import { waitFor } from '../test/helpers/proc';
import { envNumber, fmt, formatTable, killAll } from './common';
import type { ScaleHostInit, ScaleHostReport } from './scale-node-host';

const flag = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const NODES = Math.max(1, Math.round(Number(flag('nodes') ?? envNumber('BENCH_NODES', 1000))));
if (!Number.isFinite(NODES)) {
  console.error(`--nodes=${flag('nodes')} is not a number`);
  process.exit(2);
}
const PROCESSES = Math.max(1, Math.min(NODES, Math.round(envNumber('BENCH_SCALE_PROCESSES', 3))));
const JOIN_CONCURRENCY = Math.max(1, Math.round(envNumber('BENCH_JOIN_CONCURRENCY', 16)));
const JOIN_ADDRESSES = Math.max(1, Math.min(250, Math.round(envNumber('BENCH_JOIN_ADDRESSES', 1))));
const WINDOW_S = Math.max(10, envNumber('BENCH_WINDOW_SECONDS', announceTtlMs() / 2000));
const JOIN_TIMEOUT_MS = envNumber('BENCH_JOIN_TIMEOUT_SECONDS', 1800) * 1000;
const IDLE_S = 20;
/** No join for this long: the run has failed. */
const STALL_MS = 120_000;
const PROF_DIR = process.env.BENCH_CPU_PROF?.trim();
const TOKEN = 'bench-scale-join-token';

const started = performance.now();
/** Progress on stderr; the figures go to stdout. */
function note(what: string): void {
  process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(1)}s] ${what}\n`);
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
const PAGE_BYTES = Number(spawnSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).stdout.trim()) || 4096;

/** The fields after the command name of a /proc stat file (the name may hold spaces), by their 1-based number. */
function statFields(file: string): (n: number) => number {
  const stat = fs.readFileSync(file, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (n) => Number(f[n - 3]);
}

/** V8's CPU profiler thread (with BENCH_CPU_PROF): its CPU is the measurement's, not the auth server's. */
const PROFILER_THREAD = 'v8:ProfEvntProc';

/**
 * The user + system CPU seconds (fields 14, 15) of the threads of `pid` but the profiler's, and its
 * RSS (field 24). (A thread that ended took its CPU time with it: Node's threads live as long as the process.)
 */
function sample(pid: number): { cpuS: number; rssBytes: number; atMs: number } {
  let ticks = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      if (fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() === PROFILER_THREAD) continue;
      const field = statFields(`/proc/${pid}/task/${tid}/stat`);
      ticks += field(14) + field(15);
    } catch {
      // the thread ended meanwhile
    }
  }
  return { cpuS: ticks / CLOCK_TICKS, rssBytes: statFields(`/proc/${pid}/stat`)(24) * PAGE_BYTES, atMs: performance.now() };
}

/** CPU seconds per minute and mean/max RSS (MiB) of `pid` over `seconds`, sampled each second. */
async function window(pid: number, seconds: number): Promise<{ cpuSPerMin: number; rssMiB: number; rssMaxMiB: number }> {
  const first = sample(pid);
  const rss = [first.rssBytes];
  for (let i = 0; i < seconds; i++) {
    await new Promise((r) => setTimeout(r, 1000)); // the measurement window itself
    rss.push(sample(pid).rssBytes);
  }
  const last = sample(pid);
  return {
    cpuSPerMin: ((last.cpuS - first.cpuS) / ((last.atMs - first.atMs) / 1000)) * 60,
    rssMiB: rss.reduce((a, b) => a + b, 0) / rss.length / 1024 ** 2,
    rssMaxMiB: Math.max(...rss) / 1024 ** 2,
  };
}

/** Microseconds on the monotonic clock V8's CPU profiles use. */
const monoUs = () => Number(process.hrtime.bigint() / 1000n);

interface Hosts {
  children: ChildProcess[];
  total(): ScaleHostReport;
  stop(): Promise<void>;
}

async function forkHosts(n: number): Promise<Hosts> {
  const children: ChildProcess[] = [];
  const reports: ScaleHostReport[] = [];
  const stderr: string[] = [];
  for (let i = 0; i < n; i++) {
    const child = fork(path.join(__dirname, 'scale-node-host.js'), [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    child.stderr!.on('data', (d) => (stderr[i] = ((stderr[i] ?? '') + d).slice(-4000)));
    child.on('message', (m: ScaleHostReport) => (reports[i] = m));
    children.push(child);
  }
  const hosts: Hosts = {
    children,
    total: () => {
      const dead = children.findIndex((c) => c.exitCode !== null);
      if (dead >= 0) throw new Error(`load generator ${dead} exited ${children[dead].exitCode}: ${stderr[dead] ?? ''}`);
      return reports.reduce<ScaleHostReport>(
        (t, r) => ({ joined: t.joined + (r?.joined ?? 0), refused: t.refused + (r?.refused ?? 0), failing: t.failing + (r?.failing ?? 0), errors: [...t.errors, ...(r?.errors ?? [])] }),
        { joined: 0, refused: 0, failing: 0, errors: [] },
      );
    },
    stop: () => killAll(children),
  };
  try {
    await waitFor('the load generators to load', () => {
      hosts.total();
      return reports.filter((r) => r?.loaded).length === n;
    }, 60_000);
  } catch (err) {
    await hosts.stop();
    throw err;
  }
  return hosts;
}

/** The functions with the most self time in the samples of `profile` between `fromUs` and `toUs`. */
function profileTop(file: string, fromUs: number, toUs: number, top = 20): { fn: string; pct: number }[] {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as {
    nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
    samples: number[];
    timeDeltas: number[];
    startTime: number;
  };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const counts = new Map<string, number>();
  let t = p.startTime;
  let total = 0;
  p.samples.forEach((id, i) => {
    t += p.timeDeltas[i];
    if (t < fromUs || t > toUs) return;
    const cf = byId.get(id)!.callFrame;
    if (cf.functionName === '(idle)') return;
    const key = `${cf.functionName || '(anonymous)'} ${cf.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${cf.lineNumber + 1}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    total++;
  });
  return [...counts.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([fn, n]) => ({ fn, pct: (n / total) * 100 }));
}

async function main(): Promise<void> {
  note(`${NODES} nodes in ${PROCESSES} load generators; window ${WINDOW_S}s`);
  const auth: TestAuth = await createAuth({ tokens: [`node:${TOKEN}`] });
  if (PROF_DIR) {
    fs.mkdirSync(PROF_DIR, { recursive: true });
    auth.nodeArgs = ['--cpu-prof', `--cpu-prof-dir=${PROF_DIR}`];
  }
  let hosts: Hosts | undefined;
  try {
    auth.start();
    await auth.ready();
    const pid = auth.daemon!.child.pid!;
    const caPin = await auth.caPin();
    note(`auth is up (pid ${pid}); measuring it idle for ${IDLE_S}s after ${IDLE_S / 2}s to settle`);
    await window(pid, IDLE_S / 2);
    const idle = await window(pid, IDLE_S);
    hosts = await forkHosts(PROCESSES);
    const h = hosts;
    const joinFrom = Array.from({ length: JOIN_ADDRESSES }, (_, i) => `127.0.0.${i + 1}`);
    const share = (i: number) => Math.floor(NODES / PROCESSES) + (i < NODES % PROCESSES ? 1 : 0);
    const beforeJoin = sample(pid);
    h.children.forEach((c, i) =>
      c.send({ auth: { host: '127.0.0.1', port: auth.port }, token: TOKEN, caPin, nodes: share(i), prefix: `n${i}`, joinConcurrency: JOIN_CONCURRENCY, joinFrom } satisfies ScaleHostInit),
    );
    // Polled by hand, not with waitFor (which retries through errors): a failed or stuck join ends the run.
    let lastNote = 0;
    let progress = { joined: -1, atMs: performance.now() };
    for (;;) {
      const t = h.total();
      if (t.errors.length) throw new Error(`joins failed: ${t.errors.join('; ')}`);
      if (t.joined === NODES) break;
      const now = performance.now();
      if (t.joined !== progress.joined) progress = { joined: t.joined, atMs: now };
      else if (now - progress.atMs > STALL_MS) throw new Error(`no node joined for ${STALL_MS / 1000}s (${t.joined}/${NODES} joined): a load generator is stuck`);
      if (now - beforeJoin.atMs > JOIN_TIMEOUT_MS) throw new Error(`not every node joined within ${JOIN_TIMEOUT_MS / 1000}s (${t.joined}/${NODES})`);
      if (now - lastNote > 10_000) {
        lastNote = now;
        note(`${t.joined}/${NODES} joined, ${t.refused} refused`);
      }
      await new Promise((r) => setTimeout(r, 200)); // the poll interval of the loop above
    }
    const joined = sample(pid);
    const joinS = (joined.atMs - beforeJoin.atMs) / 1000;
    note(`all joined in ${joinS.toFixed(1)}s; waiting for every first heartbeat`);
    await waitFor('every node to heartbeat', () => h.total().failing === 0 || undefined, 300_000, 500);
    note(`steady state: measuring the auth server for ${WINDOW_S}s`);
    const fromUs = monoUs();
    const steady = await window(pid, WINDOW_S);
    const toUs = monoUs();
    const end = h.total();
    const cpuMsPerNodeMin = (((steady.cpuSPerMin - idle.cpuSPerMin) * 1000) / NODES);
    const figures = {
      nodes: NODES,
      processes: PROCESSES,
      joinAddresses: JOIN_ADDRESSES,
      joinS,
      joinRefused: end.refused,
      joinCpuMsPerNode: ((joined.cpuS - beforeJoin.cpuS) * 1000) / NODES,
      idleCpuSPerMin: idle.cpuSPerMin,
      steadyCpuSPerMin: steady.cpuSPerMin,
      cpuMsPerNodePerMin: cpuMsPerNodeMin,
      rssIdleMiB: idle.rssMiB,
      rssMiB: steady.rssMiB,
      rssMaxMiB: steady.rssMaxMiB,
      heartbeatsFailingAtEnd: end.failing,
      windowS: WINDOW_S,
      /** The window on the monotonic clock of V8's CPU profiles, µs. */
      windowUs: [fromUs, toUs],
    };
    await h.stop();
    hosts = undefined;
    await auth.stop();
    console.log(
      formatTable([
        ['figure', 'value'],
        ['nodes', String(NODES)],
        ['join time (s)', fmt(joinS)],
        ['joins refused over the rate limit', String(end.refused)],
        ['auth CPU per join (ms)', fmt(figures.joinCpuMsPerNode, 2)],
        ['auth CPU idle (s/min)', fmt(idle.cpuSPerMin, 2)],
        ['auth CPU steady (s/min)', fmt(steady.cpuSPerMin, 2)],
        ['auth CPU per node (ms/min)', fmt(cpuMsPerNodeMin, 3)],
        ['auth RSS idle (MiB)', fmt(idle.rssMiB)],
        ['auth RSS steady, mean (MiB)', fmt(steady.rssMiB)],
        ['auth RSS steady, max (MiB)', fmt(steady.rssMaxMiB)],
        ['heartbeats failing at the end', String(end.failing)],
      ]),
    );
    if (PROF_DIR) {
      const file = fs
        .readdirSync(PROF_DIR)
        .filter((f) => f.endsWith('.cpuprofile'))
        .map((f) => path.join(PROF_DIR, f))
        .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
      if (file) {
        console.log(`\nauth CPU profile in the window (${file}), self time:`);
        for (const r of profileTop(file, fromUs, toUs)) console.log(`${r.pct.toFixed(1).padStart(5)}%  ${r.fn}`);
      }
    }
    console.log(JSON.stringify({ bench: 'scale', ...figures }));
  } finally {
    await hosts?.stop();
    await auth.cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
