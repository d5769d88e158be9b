/**
 * The node-scale rig shared by bench/scale.ts (one auth server on SQLite) and
 * bench/scale-out.ts (one and two auth servers on DynamoDB Local): it starts
 * the auth servers, forks the load generators (scale-node-host.ts), joins N
 * simulated nodes spread over the auth servers, and measures each auth
 * server idle, during the join, and over a steady-state window. See
 * scale.ts for what the simulated nodes do and the knobs.
 */
import { ChildProcess, fork, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { announceTtlMs } from '../runtime/auth/presence';
import { createAuth, TestAuth } from '../test/helpers/cluster';
import { waitFor } from '../test/helpers/proc';
import { envNumber, killAll } from './common';
import type { ScaleHostInit, ScaleHostReport } from './scale-node-host';

const flag = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);

/** The rig's knobs (environment; `--nodes=N` wins over BENCH_NODES). */
export function rigOptions(defaultNodes: number) {
  const nodes = Math.round(Number(flag('nodes') ?? envNumber('BENCH_NODES', defaultNodes)));
  if (!Number.isFinite(nodes) || nodes < 1) {
    console.error(`--nodes=${flag('nodes')} is not a positive number`);
    process.exit(2);
  }
  return {
    nodes,
    processes: Math.max(1, Math.min(nodes, Math.round(envNumber('BENCH_SCALE_PROCESSES', 3)))),
    joinConcurrency: Math.max(1, Math.round(envNumber('BENCH_JOIN_CONCURRENCY', 16))),
    joinAddresses: Math.max(1, Math.min(250, Math.round(envNumber('BENCH_JOIN_ADDRESSES', 1)))),
    windowS: Math.max(10, envNumber('BENCH_WINDOW_SECONDS', announceTtlMs() / 2000)),
    joinTimeoutMs: envNumber('BENCH_JOIN_TIMEOUT_SECONDS', 1800) * 1000,
    profDir: process.env.BENCH_CPU_PROF?.trim() || undefined,
  };
}
export type RigOptions = ReturnType<typeof rigOptions>;

const IDLE_S = 20;
/** No join for this long: the run has failed. */
const STALL_MS = 120_000;
const TOKEN = 'bench-scale-join-token';
/** Open files the auth server may hold: two connections per node and then some (production units set LimitNOFILE=524288). */
const AUTH_NOFILE = 262_144;

const started = performance.now();
/** Progress on stderr; the figures go to stdout. */
export function note(what: string): void {
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
export function sample(pid: number): { cpuS: number; rssBytes: number; atMs: number } {
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
export async function window(pid: number, seconds: number): Promise<{ cpuSPerMin: number; rssMiB: number; rssMaxMiB: number }> {
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
export const monoUs = () => Number(process.hrtime.bigint() / 1000n);

export interface Hosts {
  children: ChildProcess[];
  total(): ScaleHostReport;
  stop(): Promise<void>;
}

export async function forkHosts(n: number): Promise<Hosts> {
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
export function profileTop(file: string, fromUs: number, toUs: number, top = 20): { fn: string; pct: number }[] {
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

/** One auth server's figures in a phase. */
export interface AuthFigures {
  pid: number;
  /** The nodes that joined and heartbeat through it. */
  nodes: number;
  idleCpuSPerMin: number;
  steadyCpuSPerMin: number;
  /** (steady − idle) CPU per node of its own per minute, ms. */
  cpuMsPerNodePerMin: number;
  rssIdleMiB: number;
  rssMiB: number;
  rssMaxMiB: number;
  joinCpuS: number;
}

export interface PhaseFigures {
  nodes: number;
  auths: AuthFigures[];
  joinS: number;
  joinRefused: number;
  joinCpuMsPerNode: number;
  heartbeatsFailingAtEnd: number;
  windowS: number;
  /**
   * The nodes the auth servers would carry at 50% of one core each: (number of servers) × 30,000 ÷ their
   * combined CPU per node per minute (Σ (steady − idle) ÷ N; with the nodes spread evenly, each node costs
   * that on average on the server it talks to, the others' shares of following its heartbeats included). A
   * sum of each server's own 30,000 ÷ cost would be inflated by the noise of a small difference.
   */
  nodesAt50Pct: number;
  /** Σ over the auth servers of (steady − idle) CPU, per node, ms/min. */
  clusterCpuMsPerNodePerMin: number;
  /** The window on the monotonic clock of V8's CPU profiles, µs. */
  windowUs: [number, number];
}

/**
 * Runs one phase: `auths` auth servers (each with `teleportExtra` config lines, e.g. a shared DynamoDB
 * storage), N nodes joined round-robin over them from the load generators, then the steady-state window.
 */
export async function runPhase(o: RigOptions, auths: number, teleportExtra: string[] = []): Promise<PhaseFigures> {
  const servers: TestAuth[] = [];
  let hosts: Hosts | undefined;
  try {
    for (let i = 0; i < auths; i++) {
      const auth = await createAuth({ tokens: [`node:${TOKEN}`], teleportExtra });
      if (o.profDir && i === 0) {
        fs.mkdirSync(o.profDir, { recursive: true });
        auth.nodeArgs = ['--cpu-prof', `--cpu-prof-dir=${o.profDir}`];
      }
      servers.push(auth);
      // One at a time: the first creates the cluster's CAs in a shared storage, the others find them.
      auth.start();
      await auth.ready();
      const pid = auth.daemon!.child.pid!;
      const raised = spawnSync('prlimit', ['--pid', String(pid), `--nofile=${AUTH_NOFILE}:${AUTH_NOFILE}`], { encoding: 'utf8' });
      if (raised.status !== 0) note(`could not raise the auth server's open-file limit (${(raised.stderr || raised.error?.message || '').trim()}); thousands of nodes may hit it`);
    }
    const pids = servers.map((s) => s.daemon!.child.pid!);
    const caPin = await servers[0].caPin();
    note(`${auths} auth server(s) up (pid ${pids.join(', ')}); measuring idle for ${IDLE_S}s after ${IDLE_S / 2}s to settle`);
    await Promise.all(pids.map((pid) => window(pid, IDLE_S / 2)));
    const idle = await Promise.all(pids.map((pid) => window(pid, IDLE_S)));
    hosts = await forkHosts(o.processes);
    const h = hosts;
    const joinFrom = Array.from({ length: o.joinAddresses }, (_, i) => `127.0.0.${i + 1}`);
    const share = (i: number) => Math.floor(o.nodes / o.processes) + (i < o.nodes % o.processes ? 1 : 0);
    const beforeJoin = pids.map(sample);
    const joinStart = performance.now();
    let offset = 0;
    h.children.forEach((c, i) => {
      c.send({ auths: servers.map((s) => ({ host: '127.0.0.1', port: s.port })), authOffset: offset, token: TOKEN, caPin, nodes: share(i), prefix: `n${i}`, joinConcurrency: o.joinConcurrency, joinFrom } satisfies ScaleHostInit);
      offset += share(i);
    });
    // Polled by hand, not with waitFor (which retries through errors): a failed or stuck join ends the run.
    let lastNote = 0;
    let progress = { joined: -1, atMs: performance.now() };
    for (;;) {
      const t = h.total();
      if (t.errors.length) throw new Error(`joins failed: ${t.errors.join('; ')}`);
      if (t.joined === o.nodes) break;
      const now = performance.now();
      if (t.joined !== progress.joined) progress = { joined: t.joined, atMs: now };
      else if (now - progress.atMs > STALL_MS) throw new Error(`no node joined for ${STALL_MS / 1000}s (${t.joined}/${o.nodes} joined): a load generator is stuck`);
      if (now - joinStart > o.joinTimeoutMs) throw new Error(`not every node joined within ${o.joinTimeoutMs / 1000}s (${t.joined}/${o.nodes})`);
      if (now - lastNote > 10_000) {
        lastNote = now;
        note(`${t.joined}/${o.nodes} joined, ${t.refused} refused`);
      }
      await new Promise((r) => setTimeout(r, 200)); // the poll interval of the loop above
    }
    const joined = pids.map(sample);
    const joinS = (performance.now() - joinStart) / 1000;
    note(`all joined in ${joinS.toFixed(1)}s; waiting for every first heartbeat`);
    await waitFor('every node to heartbeat', () => h.total().failing === 0 || undefined, 300_000, 500);
    note(`steady state: measuring the auth server(s) for ${o.windowS}s`);
    const fromUs = monoUs();
    const steady = await Promise.all(pids.map((pid) => window(pid, o.windowS)));
    const toUs = monoUs();
    const end = h.total();
    const figures = servers.map((_, i): AuthFigures => {
      const nodes = Math.floor(o.nodes / auths) + (i < o.nodes % auths ? 1 : 0);
      return {
        pid: pids[i],
        nodes,
        idleCpuSPerMin: idle[i].cpuSPerMin,
        steadyCpuSPerMin: steady[i].cpuSPerMin,
        cpuMsPerNodePerMin: ((steady[i].cpuSPerMin - idle[i].cpuSPerMin) * 1000) / nodes,
        rssIdleMiB: idle[i].rssMiB,
        rssMiB: steady[i].rssMiB,
        rssMaxMiB: steady[i].rssMaxMiB,
        joinCpuS: joined[i].cpuS - beforeJoin[i].cpuS,
      };
    });
    const cluster = (figures.reduce((t, a) => t + (a.steadyCpuSPerMin - a.idleCpuSPerMin), 0) * 1000) / o.nodes;
    return {
      nodes: o.nodes,
      auths: figures,
      joinS,
      joinRefused: end.refused,
      joinCpuMsPerNode: (figures.reduce((t, a) => t + a.joinCpuS, 0) * 1000) / o.nodes,
      heartbeatsFailingAtEnd: end.failing,
      windowS: o.windowS,
      clusterCpuMsPerNodePerMin: cluster,
      nodesAt50Pct: cluster > 0 ? (auths * 30_000) / cluster : NaN,
      windowUs: [fromUs, toUs],
    };
  } finally {
    await hosts?.stop();
    for (const s of servers) await s.cleanup();
  }
}

/** Prints the profile of the newest CPU profile in `dir`, cut to the window. */
export function printProfile(dir: string, windowUs: [number, number]): void {
  const file = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => path.join(dir, f))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
  if (!file) return;
  console.log(`\nauth CPU profile in the window (${file}), self time:`);
  for (const r of profileTop(file, windowUs[0], windowUs[1])) console.log(`${r.pct.toFixed(1).padStart(5)}%  ${r.fn}`);
}
