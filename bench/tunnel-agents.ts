/**
 * Benchmark: 1,000 reverse tunnels (nodes behind NAT) on one proxy. Auth and
 * the proxy run as two real `teleport start` processes; the agents are real
 * TunnelAgents (runtime/node/tunnel.ts), each with its own host key and a
 * host certificate for `<uuid>.<cluster>` (role Node) that the auth API
 * issues to the admin (`tctl auth sign --host`'s call), spread over a few
 * child processes (tunnel-agent-host.ts). They dial the proxy all at once, as
 * after a proxy restart, against the proxy's default max_startups. Measured:
 *   1. the proxy's RSS and CPU (from /proc/<pid>/stat) over an idle window
 *      with no tunnel, then with all the tunnels up; the time from the first
 *      dial until 50%, 90% and all of the tunnels are up;
 *   2. `ssh <node> true` through the proxy with the stock OpenSSH client
 *      (ProxyCommand `ssh ... -s proxy:%h:%p@<cluster>`), p50 and p90 over N
 *      runs, interleaved: a direct node against a node behind NAT reached
 *      through its tunnel (both real `teleport start --roles=node`
 *      processes), while the other tunnels are up, and again once they are
 *      gone.
 * Prints two tables, then one JSON line with every figure.
 *
 *   npm run bench -- tunnel-agents
 *
 * Knobs (environment): BENCH_AGENTS (1000), BENCH_AGENT_PROCESSES (4),
 * BENCH_IDLE_SECONDS (60; at least 60 for the count of dropped connections,
 * which the proxy logs once a minute), BENCH_RUNS (30), BENCH_UP_TIMEOUT_SECONDS (600),
 * BENCH_MAX_STARTUPS (the proxy's `max_startups`, `start:rate:full`; default
 * its default, 10:30:100),
 * BENCH_LOGIN (the OS login on the nodes; default the current user, whose
 * shell start-up files run in every `ssh true`), BENCH_PROXY_NODE_ARGS
 * (Node.js flags for the proxy process, split at spaces: e.g.
 * `--cpu-prof --cpu-prof-dir=/tmp/prof` profiles it).
 */
import { ChildProcess, fork, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fetchHostCAKeys } from '../runtime/auth/hostcas';
import { formatAuthorizedKey, generateKeyPair, publicKeyBlob } from '../runtime/sshcert';
import { startAuth, TestAuth, TestNode } from '../test/helpers/cluster';
import { SshUser } from '../test/helpers/openssh';
import { tempDir, waitFor } from '../test/helpers/proc';
import { LOGIN as CURRENT_USER } from '../test/helpers/sshd';
import { envNumber, fmt, formatTable, killAll, quantile, ratio, timeSsh } from './common';
import { BenchProxy, CLUSTER, PROXY_NAME, PROXY_TOKEN, startProxy, userBlock } from './jump-rig';
import type { AgentHostInit, AgentHostReport, AgentIdentity } from './tunnel-agent-host';

const AGENTS = Math.max(1, Math.round(envNumber('BENCH_AGENTS', 1000)));
const PROCESSES = Math.max(1, Math.min(AGENTS, Math.round(envNumber('BENCH_AGENT_PROCESSES', 4))));
const IDLE_SECONDS = Math.max(1, envNumber('BENCH_IDLE_SECONDS', 60));
const RUNS = Math.max(1, Math.round(envNumber('BENCH_RUNS', 30)));
const UP_TIMEOUT_MS = envNumber('BENCH_UP_TIMEOUT_SECONDS', 600) * 1000;
const LOGIN = process.env.BENCH_LOGIN?.trim() || CURRENT_USER;
const MAX_STARTUPS = process.env.BENCH_MAX_STARTUPS?.trim();
const PROXY_NODE_ARGS = process.env.BENCH_PROXY_NODE_ARGS?.trim().split(/\s+/).filter(Boolean) ?? [];

const NODE_TOKEN = 'bench-node-join-token';
/** The proxy's warning for a connection dropped over max_startups (service/preauth.ts). */
const DROPPED = 'too many unauthenticated connections, dropping a connection';
const DIRECT = 'direct-node';
const NAT = 'nat-node';
/** Host certificates at a time from the auth API. */
const ISSUE_CONCURRENCY = 8;
const HOST_CERT_TTL_NS = 12 * 3600 * 1e9;

const started = performance.now();
/** Progress on stderr, so that a long run shows where it is; the figures go to stdout. */
function note(what: string): void {
  process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(1)}s] ${what}\n`);
}

// ---- /proc/<pid>/stat

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
const PAGE_BYTES = Number(spawnSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).stdout.trim()) || 4096;

interface ProcSample {
  /** user + system CPU time so far, seconds */
  cpuS: number;
  rssBytes: number;
  atMs: number;
}

/** utime + stime (fields 14, 15) and rss (field 24) of /proc/<pid>/stat; the fields after the command name, which may hold spaces. */
function sample(pid: number): ProcSample {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const field = (n: number) => Number(f[n - 3]);
  return { cpuS: (field(14) + field(15)) / CLOCK_TICKS, rssBytes: field(24) * PAGE_BYTES, atMs: performance.now() };
}

interface IdleFigures {
  /** Mean RSS over the window (sampled every second), MiB. */
  rssMiB: number;
  /** CPU seconds per minute of wall time over the window. */
  cpuSPerMin: number;
}

/** Watches `pid` for `seconds` of idle time: its mean RSS and its CPU use. */
async function idleWindow(pid: number, seconds: number): Promise<IdleFigures> {
  const first = sample(pid);
  const rss: number[] = [first.rssBytes];
  for (let i = 0; i < seconds; i++) {
    await new Promise((r) => setTimeout(r, 1000)); // the measurement window itself, not a wait for something
    rss.push(sample(pid).rssBytes);
  }
  const last = sample(pid);
  return {
    rssMiB: rss.reduce((a, b) => a + b, 0) / rss.length / 1024 ** 2,
    cpuSPerMin: ((last.cpuS - first.cpuS) / ((last.atMs - first.atMs) / 1000)) * 60,
  };
}

// ---- the agents

/** `n` host identities (`<uuid>.<cluster>`, role Node) from the auth API as the admin, as `tctl auth sign --host` gets them. */
async function issueIdentities(cluster: TestAuth, n: number): Promise<AgentIdentity[]> {
  const client = await cluster.adminClient();
  try {
    const out: AgentIdentity[] = [];
    let next = 0;
    const worker = async () => {
      while (next < n) {
        const i = next++;
        const pair = generateKeyPair('ed25519');
        const username = `${randomUUID()}.${CLUSTER}`;
        const publicKey = Buffer.from(formatAuthorizedKey(publicKeyBlob(pair.publicKey))).toString('base64');
        const res = await client.post<{ cert: string }>('/v1/hosts/certs', { public_key: publicKey, host_names: [username], ttl: HOST_CERT_TTL_NS });
        out[i] = {
          username,
          clusterName: CLUSTER,
          sshKey: pair.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
          sshCert: Buffer.from(res.cert, 'base64').toString(),
        };
      }
    };
    await Promise.all(Array.from({ length: Math.min(ISSUE_CONCURRENCY, n) }, worker));
    return out;
  } finally {
    client.close();
  }
}

interface AgentHosts {
  children: ChildProcess[];
  /** Tunnels up now, over all children. */
  up(): number;
  /** Sends every child its share of `identities`; they all start dialling at once. */
  start(init: Omit<AgentHostInit, 'identities'>, identities: AgentIdentity[]): void;
  /** Every child's RSS, summed, MiB. */
  rssMiB(): number;
  stop(): Promise<void>;
}

/** Forks `n` agent host processes and waits until each has loaded. */
async function forkAgentHosts(n: number): Promise<AgentHosts> {
  const children: ChildProcess[] = [];
  const up: number[] = [];
  const loaded = new Set<number>();
  const stderr: string[] = [];
  for (let i = 0; i < n; i++) {
    const child = fork(path.join(__dirname, 'tunnel-agent-host.js'), [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    child.stderr!.on('data', (d) => (stderr[i] = ((stderr[i] ?? '') + d).slice(-4000)));
    child.on('message', (m: AgentHostReport) => {
      up[i] = m.up;
      loaded.add(i);
    });
    children.push(child);
  }
  const hosts: AgentHosts = {
    children,
    up: () => up.reduce((a, b) => a + (b ?? 0), 0),
    start: (init, identities) =>
      children.forEach((c, i) => c.send({ ...init, identities: identities.filter((_, k) => k % n === i) } satisfies AgentHostInit)),
    rssMiB: () => children.reduce((sum, c) => sum + (c.exitCode === null ? sample(c.pid!).rssBytes : 0), 0) / 1024 ** 2,
    stop: () => killAll(children),
  };
  try {
    await waitFor('the agent host processes to load', () => {
      const dead = children.findIndex((c) => c.exitCode !== null);
      if (dead >= 0) throw new Error(`agent host ${dead} exited ${children[dead].exitCode}: ${stderr[dead] ?? ''}`);
      return loaded.size === n;
    }, 60_000);
  } catch (err) {
    await hosts.stop();
    throw err;
  }
  return hosts;
}

// ---- sessions

interface Nodes {
  direct: TestNode;
  nat: TestNode;
  /** OpenSSH arguments that run `true` on `node` through the proxy. */
  sshArgs(node: string): string[];
}

/** An OpenSSH client config: each node through the proxy's `proxy` subsystem, as the cluster user whose key is `user`. */
function writeSshConfig(file: string, user: SshUser, proxy: BenchProxy, directPort: number): void {
  /** A node behind NAT matches on any port: OpenSSH's default (22) does. */
  const node = (name: string, port?: number) => [
    `Host ${name}`,
    ...(port ? [`    Port ${port}`] : []),
    `    HostKeyAlias ${name}.${CLUSTER}`,
    `    ProxyCommand ssh -F ${file} %r@${PROXY_NAME} -s proxy:%h:%p@${CLUSTER}`,
  ];
  fs.writeFileSync(
    file,
    [
      `Host ${PROXY_NAME}`,
      '    HostName 127.0.0.1',
      `    Port ${proxy.ports.ssh}`,
      `    HostKeyAlias ${PROXY_NAME}.${CLUSTER}`,
      ...node(DIRECT, directPort),
      ...node(NAT),
      ...userBlock(user, LOGIN),
      '',
    ].join('\n'),
  );
}

/** Starts a direct node and a node behind NAT (auth_servers: the proxy's web port), both reachable through the proxy. */
async function startNodes(cluster: TestAuth, proxy: BenchProxy, work: string, onNode: (n: TestNode) => void): Promise<Nodes> {
  const caPin = await cluster.caPin();
  const direct = await TestNode.create(cluster, { token: NODE_TOKEN, caPin, nodeName: DIRECT });
  onNode(direct);
  direct.start();
  const nat = await TestNode.create(cluster, { token: NODE_TOKEN, caPin, nodeName: NAT, authServer: `127.0.0.1:${proxy.ports.web}` });
  onNode(nat);
  nat.start();
  await direct.ready();
  await nat.daemon!.waitForOutput(/reverse tunnel to the proxy is up/, 60_000);
  await cluster.tctlOk('users', 'add', 'bench', LOGIN);
  const user = await SshUser.create(cluster, work, 'bench', LOGIN);
  const config = path.join(work, 'ssh_config');
  writeSshConfig(config, user, proxy, direct.port);
  const nodes: Nodes = { direct, nat, sshArgs: (node) => ['-F', config, node, 'true'] };
  for (const node of [DIRECT, NAT]) {
    // Until the proxy has the node's heartbeat; then once more to warm up.
    await waitFor(`${node} reachable through the proxy`, () => timeSsh(nodes.sshArgs(node)).then(() => true), 60_000, 500);
    await timeSsh(nodes.sshArgs(node));
  }
  return nodes;
}

interface SetupFigures {
  direct: number[];
  nat: number[];
}

/** RUNS of `ssh <node> true` on each node, interleaved, so that background load hits both alike. */
async function sessionSetup(nodes: Nodes): Promise<SetupFigures> {
  const f: SetupFigures = { direct: [], nat: [] };
  for (let i = 0; i < RUNS; i++) {
    f.direct.push((await timeSsh(nodes.sshArgs(DIRECT))).ms);
    f.nat.push((await timeSsh(nodes.sshArgs(NAT))).ms);
  }
  return f;
}

// ---- the run

interface Figures {
  idleNone: IdleFigures;
  idleAll: IdleFigures;
  /** RSS once the agents are gone again, MiB. */
  rssAfterMiB: number;
  issueS: number;
  /** Seconds from the first dial until the first, 50%, 90% and all of the tunnels are up. */
  upS: { first: number; half: number; p90: number; all: number };
  /** Connections the proxy dropped over its max_startups while they came up. */
  dropped: number;
  /** The proxy's CPU time from the first dial until all were up, per tunnel, ms. */
  upCpuMsPerTunnel: number;
  agentHostsRssMiB: number;
  setupWithTunnels: SetupFigures;
  setupWithout: SetupFigures;
}

/** How many lines of `text` match `re`. */
function count(text: string, re: RegExp): number {
  return text.match(new RegExp(re.source, 'g'))?.length ?? 0;
}

/**
 * How many times the proxy logged `msg`, a warning: the first of a burst is written at once, the rest
 * as `<msg> (repeated N times in the last 60s)` at the end of the interval (utils/logrepeats.ts).
 */
function warnings(text: string, msg: string): number {
  let n = 0;
  for (const line of text.split('\n')) {
    if (!line.includes(msg)) continue;
    n += Number(/\(repeated (\d+) times? in the last/.exec(line)?.[1] ?? 1);
  }
  return n;
}

async function measure(cluster: TestAuth, proxy: BenchProxy, work: string, cleanup: (c: () => Promise<void>) => void): Promise<Figures> {
  const pid = proxy.daemon.child.pid!;
  const proxyLog = () => proxy.daemon.stdout + proxy.daemon.stderr;

  note(`${AGENTS} host certificates from the auth API`);
  const t0 = performance.now();
  const identities = await issueIdentities(cluster, AGENTS);
  const issueS = (performance.now() - t0) / 1000;
  const client = await cluster.adminClient();
  const hostCAs = await fetchHostCAKeys(client).finally(() => client.close());

  note(`idle window, no tunnel: ${IDLE_SECONDS}s`);
  const idleNone = await idleWindow(pid, IDLE_SECONDS);

  note(`${PROCESSES} agent host processes`);
  const hosts = await forkAgentHosts(PROCESSES);
  cleanup(() => hosts.stop());
  note(`${AGENTS} agents dial the proxy`);
  const dialledAt = performance.now();
  const cpuAtDial = sample(pid).cpuS;
  const at: Partial<Figures['upS']> = {};
  hosts.start({ proxy: { host: '127.0.0.1', port: proxy.ports.tunnel }, hostCAs: hostCAs.map((k) => k.toString('base64')) }, identities);
  await waitFor(
    `all ${AGENTS} tunnels up`,
    () => {
      const up = hosts.up();
      const s = (performance.now() - dialledAt) / 1000;
      if (up >= 1) at.first ??= s;
      if (up >= AGENTS / 2) at.half ??= s;
      if (up >= AGENTS * 0.9) at.p90 ??= s;
      if (up < AGENTS) return false;
      at.all = s;
      return true;
    },
    UP_TIMEOUT_MS,
    20,
  ).catch((err: Error) => {
    throw new Error(`${err.message} (${hosts.up()} are)`);
  });
  const upS = at as Figures['upS'];
  const upCpuMsPerTunnel = ((sample(pid).cpuS - cpuAtDial) * 1000) / AGENTS;
  note(`all up in ${upS.all.toFixed(1)}s; idle window, ${AGENTS} tunnels: ${IDLE_SECONDS}s`);
  const idleAll = await idleWindow(pid, IDLE_SECONDS);
  if (hosts.up() !== AGENTS) throw new Error(`only ${hosts.up()} of ${AGENTS} tunnels stayed up through the idle window`);
  // (by now the proxy has written the count of the drops it held back: the window outlasts its 60 s)
  const dropped = warnings(proxyLog(), DROPPED);
  const agentHostsRssMiB = hosts.rssMiB();

  note('a direct node and a node behind NAT');
  const nodes = await startNodes(cluster, proxy, work, (n) => cleanup(() => n.cleanup()));
  note(`session setup, ${AGENTS} other tunnels up: ${RUNS} runs on each node`);
  const setupWithTunnels = await sessionSetup(nodes);

  note('the agents go away');
  const closedBefore = count(proxyLog(), /reverse tunnel closed/);
  await hosts.stop();
  await waitFor('the proxy to see every agent tunnel closed', () => count(proxyLog(), /reverse tunnel closed/) - closedBefore >= AGENTS, 120_000, 200);
  const rssAfterMiB = sample(pid).rssBytes / 1024 ** 2;
  note(`session setup, no other tunnel: ${RUNS} runs on each node`);
  const setupWithout = await sessionSetup(nodes);
  return { idleNone, idleAll, rssAfterMiB, issueS, upS, dropped, upCpuMsPerTunnel, agentHostsRssMiB, setupWithTunnels, setupWithout };
}

function report(f: Figures, load: [number, number]): void {
  const q = quantile;
  const n = AGENTS.toLocaleString('en-US');
  const proxyRows = [
    ['proxy process', 'no tunnel', `${n} tunnels`, 'per tunnel'],
    ['RSS, mean over the idle window (MiB)', fmt(f.idleNone.rssMiB), fmt(f.idleAll.rssMiB), `${fmt(((f.idleAll.rssMiB - f.idleNone.rssMiB) * 1024) / AGENTS)} KiB`],
    [`CPU at idle (CPU s per minute, ${IDLE_SECONDS}s window)`, fmt(f.idleNone.cpuSPerMin, 2), fmt(f.idleAll.cpuSPerMin, 2), `${fmt((((f.idleAll.cpuSPerMin - f.idleNone.cpuSPerMin) / 60) * 1000 * 1000) / AGENTS, 1)} µs/s`],
    ['time until the first / 50% / 90% / all tunnels are up (s)', '', `${fmt(f.upS.first, 2)} / ${fmt(f.upS.half)} / ${fmt(f.upS.p90)} / ${fmt(f.upS.all)}`, ''],
    ['proxy CPU while they came up, per tunnel (ms)', '', fmt(f.upCpuMsPerTunnel), ''],
    ['connections dropped over max_startups meanwhile', '', String(f.dropped), ''],
    ['RSS after the agents left (MiB)', '', fmt(f.rssAfterMiB), ''],
  ];
  const setupRow = (label: string, s: SetupFigures, at: number) => [label, fmt(q(s.direct, at)), fmt(q(s.nat, at)), ratio(q(s.nat, at), q(s.direct, at))];
  const setupRows = [
    ['ssh true through the proxy', 'direct node', 'node behind NAT', 'ratio NAT/direct'],
    setupRow(`p50 (ms, ${RUNS} runs), ${n} other tunnels up`, f.setupWithTunnels, 0.5),
    setupRow(`p90 (ms, ${RUNS} runs), ${n} other tunnels up`, f.setupWithTunnels, 0.9),
    setupRow(`p50 (ms, ${RUNS} runs), no other tunnel`, f.setupWithout, 0.5),
    setupRow(`p90 (ms, ${RUNS} runs), no other tunnel`, f.setupWithout, 0.9),
  ];
  const sshVersion = spawnSync('ssh', ['-V'], { encoding: 'utf8' }).stderr.trim();
  console.log(`${n} reverse tunnels on one proxy (${PROCESSES} agent processes), loopback; auth, proxy and each node in their own process; proxy max_startups ${MAX_STARTUPS ?? 'default (10:30:100)'}`);
  console.log(
    `node ${process.version}; ${sshVersion}; ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'unknown CPU'}; load average ${load[0].toFixed(2)} before, ${load[1].toFixed(2)} after; login ${LOGIN}`,
  );
  console.log(`host certificates issued in ${fmt(f.issueS)}s; agent processes' RSS with all tunnels up: ${fmt(f.agentHostsRssMiB)} MiB in all\n`);
  console.log(formatTable(proxyRows));
  console.log('');
  console.log(formatTable(setupRows));
  const r = (x: number | undefined, d = 1) => (x === undefined || !Number.isFinite(x) ? null : +x.toFixed(d));
  const setup = (s: SetupFigures) => ({
    direct_p50_ms: r(q(s.direct, 0.5)),
    direct_p90_ms: r(q(s.direct, 0.9)),
    nat_p50_ms: r(q(s.nat, 0.5)),
    nat_p90_ms: r(q(s.nat, 0.9)),
  });
  console.log(
    JSON.stringify({
      bench: 'tunnel-agents',
      agents: AGENTS,
      agent_processes: PROCESSES,
      max_startups: MAX_STARTUPS ?? null,
      idle_seconds: IDLE_SECONDS,
      runs: RUNS,
      login: LOGIN,
      cpus: os.cpus().length,
      loadavg_before: r(load[0], 2),
      loadavg_after: r(load[1], 2),
      issue_s: r(f.issueS, 2),
      proxy_rss_mib: { no_tunnel: r(f.idleNone.rssMiB), all_tunnels: r(f.idleAll.rssMiB), after: r(f.rssAfterMiB) },
      proxy_cpu_s_per_min: { no_tunnel: r(f.idleNone.cpuSPerMin, 3), all_tunnels: r(f.idleAll.cpuSPerMin, 3) },
      up_s: { first: r(f.upS.first, 2), half: r(f.upS.half, 2), p90: r(f.upS.p90, 2), all: r(f.upS.all, 2) },
      up_cpu_ms_per_tunnel: r(f.upCpuMsPerTunnel, 2),
      dropped_over_max_startups: f.dropped,
      agent_processes_rss_mib: r(f.agentHostsRssMiB),
      setup_with_tunnels: setup(f.setupWithTunnels),
      setup_without: setup(f.setupWithout),
    }),
  );
}

async function main(): Promise<void> {
  const load0 = os.loadavg()[0];
  const work = tempDir('bench-tunnels-');
  /** Undone in reverse order: agents and nodes before the proxy and the cluster. */
  const undo: (() => Promise<void>)[] = [async () => fs.rmSync(work, { recursive: true, force: true })];
  const cleanup = async () => {
    for (const u of undo.splice(0).reverse()) await u().catch((err: Error) => note(`cleanup: ${err.message}`));
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void cleanup().finally(() => process.exit(130)));
  try {
    const cluster = await startAuth({ tokens: [`proxy:${PROXY_TOKEN}`, `node:${NODE_TOKEN}`] });
    undo.push(() => cluster.cleanup());
    const proxy = await startProxy(cluster, work, { nodeArgs: PROXY_NODE_ARGS, extra: MAX_STARTUPS ? [`max_startups: ${MAX_STARTUPS}`] : [] });
    undo.push(async () => void (await proxy.daemon.stop()));
    note(`auth and proxy are up (proxy pid ${proxy.daemon.child.pid})`);
    const figures = await measure(cluster, proxy, work, (c) => undo.push(c));
    report(figures, [load0, os.loadavg()[0]]);
  } finally {
    await cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
