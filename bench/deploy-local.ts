/**
 * `deploy:local` timings (needs root): from the start (synthesis included) to every target
 * healthy, and from a node instance's launch to the node being listed by `tsh ls`, at the
 * template's own durations (`DEPLOY_TIME_SCALE`, default 1: health checks every 10-15 s with AWS's
 * thresholds). Runs `DEPLOY_RUNS` deployments (default 1) and prints min/median/max.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DEFAULT_CONTEXT } from '../sim/cli-context';
import { LocalDeployment } from '../sim/deploy';
import { waitFor } from '../sim/process';
import { synthesize } from '../sim/synth';
import { ClusterUser } from '../sim/user';
import { envNumber, formatTable, quantile } from './common';

const TIME_SCALE = envNumber('DEPLOY_TIME_SCALE', 1);
const RUNS = envNumber('DEPLOY_RUNS', 1);

async function once(): Promise<{ synthMs: number; healthyMs: number; nodeVisibleMs: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-deploy-'));
  let d: LocalDeployment | undefined;
  try {
    const start = Date.now();
    const cdkOut = await synthesize(path.join(dir, 'cdk.out'), DEFAULT_CONTEXT);
    const synthMs = Date.now() - start;
    d = await LocalDeployment.deploy({ cdkOut, dir: path.join(dir, 'deployment'), timeScale: TIME_SCALE });
    const healthyMs = await d.waitHealthy(30 * 60_000, start);
    const user = await ClusterUser.signUp(d, 'bench', ['root'], path.join(dir, 'bench'));
    await user.login();
    const nodes = d.asg.group('Nodes');
    const before = new Set(nodes.live().map((i) => i.id));
    d.asg.setDesired(nodes, nodes.desired + 1);
    const fresh = await waitFor('the new node instance', () => nodes.live().find((i) => !before.has(i.id)), 60_000);
    const nodeVisibleMs = await waitFor(
      'the new node in tsh ls',
      async () => ((await user.tsh(['ls'])).stdout.includes(fresh.instance.address) ? Date.now() - fresh.launchedAt : undefined),
      10 * 60_000,
      200,
    );
    return { synthMs, healthyMs, nodeVisibleMs };
  } finally {
    await d?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the deploy:local benchmark needs root (network and mount namespaces)');
  const runs = [];
  for (let i = 0; i < RUNS; i++) runs.push(await once());
  const row = (name: string, xs: number[]) => [name, ...[0, 0.5, 1].map((q) => `${(quantile(xs, q) / 1000).toFixed(1)} s`)];
  console.log(`deploy:local, 1 auth + 1 proxy + 2 nodes behind an ALB, time scale ${TIME_SCALE}, ${RUNS} run(s)`);
  console.log(
    formatTable([
      ['', 'min', 'median', 'max'],
      row('synthesis (cdk synth)', runs.map((r) => r.synthMs)),
      row('start → every target healthy', runs.map((r) => r.healthyMs)),
      row('node launch → listed by tsh ls', runs.map((r) => r.nodeVisibleMs)),
    ]),
  );
  process.stdout.write(JSON.stringify({ timeScale: TIME_SCALE, runs }) + '\n');
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
