/**
 * Benchmark: do auth servers scale out? The node-scale rig (bench/scale-rig.ts,
 * the simulated nodes of bench/scale.ts) on DynamoDB Local, twice: one auth
 * server carrying N nodes (the anchor), then two auth servers on one fresh
 * table with the N nodes spread evenly over them (each node talks to one, as a
 * node behind a load balancer does). Each auth server sees every heartbeat
 * through the table's stream (its read cache follows the whole cluster), so
 * two do not simply halve the work.
 *
 * "Carries N nodes": the auth servers' CPU per node per minute (the sum over
 * them of steady minus idle, over a heartbeat period, divided by N) gives the
 * nodes they would carry at 50% of one core each: servers × 30,000 ms/min ÷
 * that cost. (With the nodes spread evenly, that is what a node costs on
 * average, its own server's work and the other's share of following its
 * heartbeats included.) Reported as the goal row `auth-scale-out` (bench/goals.ts):
 * two servers' figure over one's, goal ≥ 1.8×.
 *
 *   npm run bench -- scale-out --nodes=1000
 *
 * Knobs: those of bench/scale.ts (BENCH_WINDOW_SECONDS, BENCH_SCALE_PROCESSES, …).
 */
import { fmt, formatTable } from './common';
import { reportGoal } from './goals';
import { note, rigOptions, runPhase } from './scale-rig';
import { DynamoDbLocal, dynamoDbStorage } from '../test/helpers/dynamodb';

const GOAL_RATIO = 1.8;

async function main(): Promise<void> {
  const o = { ...rigOptions(1000), profDir: undefined };
  const ddb = await DynamoDbLocal.start();
  try {
    note(`${o.nodes} nodes on one auth server on DynamoDB Local`);
    const one = await runPhase(o, 1, dynamoDbStorage(ddb, { table: 'scale-one', pollStreamPeriod: '1s' }));
    note(`${o.nodes} nodes on two auth servers on DynamoDB Local`);
    const two = await runPhase(o, 2, dynamoDbStorage(ddb, { table: 'scale-two', pollStreamPeriod: '1s' }));
    const rows = [['figure', 'one auth server', 'two: A', 'two: B']];
    const per = (f: (a: (typeof one.auths)[number]) => string) => [f(one.auths[0]), f(two.auths[0]), f(two.auths[1])];
    rows.push(['nodes', ...per((a) => String(a.nodes))]);
    rows.push(['auth CPU idle (s/min)', ...per((a) => fmt(a.idleCpuSPerMin, 2))]);
    rows.push(['auth CPU steady (s/min)', ...per((a) => fmt(a.steadyCpuSPerMin, 2))]);
    rows.push(['auth CPU per node (ms/min)', ...per((a) => fmt(a.cpuMsPerNodePerMin, 3))]);
    rows.push(['all auth servers: CPU per node (ms/min)', fmt(one.clusterCpuMsPerNodePerMin, 3), fmt(two.clusterCpuMsPerNodePerMin, 3), '']);
    rows.push(['nodes carried at 50% of a core each', fmt(one.nodesAt50Pct, 0), fmt(two.nodesAt50Pct, 0), '']);
    rows.push(['auth RSS steady, mean (MiB)', ...per((a) => fmt(a.rssMiB))]);
    rows.push(['join time (s)', fmt(one.joinS), fmt(two.joinS), '']);
    rows.push(['heartbeats failing at the end', String(one.heartbeatsFailingAtEnd), String(two.heartbeatsFailingAtEnd), '']);
    console.log(formatTable(rows));
    console.log(JSON.stringify({ bench: 'scale-out', one, two }));
    const ratio = two.nodesAt50Pct / one.nodesAt50Pct;
    if (!Number.isFinite(ratio)) throw new Error('the auth servers\' steady CPU was not above their idle CPU: too few nodes to measure');
    reportGoal({
      id: 'auth-scale-out',
      value: `2 auth: ${fmt(two.nodesAt50Pct, 0)} nodes at 50% of a core each (${fmt(two.clusterCpuMsPerNodePerMin, 3)} ms/min per node)`,
      anchor: `1 auth: ${fmt(one.nodesAt50Pct, 0)} nodes (${fmt(one.clusterCpuMsPerNodePerMin, 3)} ms/min per node)`,
      ratio,
      met: ratio >= GOAL_RATIO && one.heartbeatsFailingAtEnd === 0 && two.heartbeatsFailingAtEnd === 0,
      note: `${o.nodes} nodes, DynamoDB Local`,
    });
  } finally {
    await ddb.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
