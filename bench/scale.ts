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
 * Prints a table, then one JSON line with every figure, then the goal row
 * `nodes-one-auth` (bench/goals.ts): the nodes one core carries at this cost
 * against Teleport's published ≈ 625 nodes per auth vCPU (10,000 nodes on two
 * 8-vCPU auth servers), met when N ≥ 10,000 ran under 50% of one core with
 * every heartbeat through and the join took ≤ 10 minutes.
 *
 *   npm run bench -- scale --nodes=1000
 *   npm run bench -- scale --nodes=10000    # the goal's size (about 25 minutes)
 *
 * The rig itself is bench/scale-rig.ts; bench/scale-out.ts runs it on DynamoDB
 * Local with one and two auth servers.
 *
 * Knobs (environment): BENCH_NODES (1000; `--nodes=N` wins), BENCH_SCALE_PROCESSES
 * (3 load generators), BENCH_JOIN_CONCURRENCY (joins in flight per load
 * generator, 16), BENCH_JOIN_ADDRESSES (1: every join from 127.0.0.1, a fleet
 * behind one NAT address; n: from 127.0.0.1 … 127.0.0.n in turn),
 * BENCH_WINDOW_SECONDS (the steady-state window; default one heartbeat
 * period, half of TELEPORT_ANNOUNCE_TTL, 300 s), BENCH_JOIN_TIMEOUT_SECONDS (1800),
 * BENCH_CPU_PROF (a directory for the auth server's CPU profile).
 */
import { fmt, formatTable } from './common';
import { reportGoal } from './goals';
import { note, printProfile, rigOptions, runPhase } from './scale-rig';

/** Teleport's published scale: 10,000 nodes on two 8-vCPU auth servers. */
const TELEPORT_NODES_PER_VCPU = 625;
const GOAL_NODES = 10_000;
const GOAL_JOIN_S = 600;

async function main(): Promise<void> {
  const o = rigOptions(1000);
  note(`${o.nodes} nodes in ${o.processes} load generators; one auth server on SQLite; window ${o.windowS}s`);
  const f = await runPhase(o, 1);
  const a = f.auths[0];
  const coreShare = a.steadyCpuSPerMin / 60;
  console.log(
    formatTable([
      ['figure', 'value'],
      ['nodes', String(o.nodes)],
      ['join time (s)', fmt(f.joinS)],
      ['joins refused over the rate limit', String(f.joinRefused)],
      ['auth CPU per join (ms)', fmt(f.joinCpuMsPerNode, 2)],
      ['auth CPU idle (s/min)', fmt(a.idleCpuSPerMin, 2)],
      ['auth CPU steady (s/min)', fmt(a.steadyCpuSPerMin, 2)],
      ['auth CPU steady (% of one core)', fmt(coreShare * 100, 1)],
      ['auth CPU per node (ms/min)', fmt(a.cpuMsPerNodePerMin, 3)],
      ['auth RSS idle (MiB)', fmt(a.rssIdleMiB)],
      ['auth RSS steady, mean (MiB)', fmt(a.rssMiB)],
      ['auth RSS steady, max (MiB)', fmt(a.rssMaxMiB)],
      ['heartbeats failing at the end', String(f.heartbeatsFailingAtEnd)],
    ]),
  );
  if (o.profDir) printProfile(o.profDir, f.windowUs);
  console.log(JSON.stringify({ bench: 'scale', processes: o.processes, joinAddresses: o.joinAddresses, ...f }));
  // (A few dozen nodes cost less than the idle measurement's noise: no per-core figure then.)
  const perCore = a.cpuMsPerNodePerMin > 0 ? 60_000 / a.cpuMsPerNodePerMin : NaN;
  const met = o.nodes >= GOAL_NODES && coreShare < 0.5 && f.heartbeatsFailingAtEnd === 0 && f.joinS <= GOAL_JOIN_S;
  reportGoal({
    id: 'nodes-one-auth',
    value: `${o.nodes} nodes: ${fmt(coreShare * 100, 1)}% of a core, join ${fmt(f.joinS, 0)} s; ${Number.isFinite(perCore) ? fmt(perCore, 0) : '-'} nodes/core`,
    anchor: `Teleport ≈ ${TELEPORT_NODES_PER_VCPU} nodes/vCPU`,
    ratio: Number.isFinite(perCore) ? perCore / TELEPORT_NODES_PER_VCPU : null,
    met,
    ...(o.nodes < GOAL_NODES ? { note: `run with --nodes=${GOAL_NODES} for the goal` } : {}),
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
