/**
 * `deploy:local --scenario=faults`: what an HA cluster must survive, on the running deployment.
 *   1. An auth instance dies (every process killed) while a session runs: new sessions work again
 *      within 5 s, and the group replaces the instance.
 *   2. Nodes scale 2 → 4 → 1: the new ones join with the SSM token and CA pin; the removed ones
 *      leave `tctl nodes ls` through the lifecycle hook's function, not by heartbeat expiry.
 *   3. A new image for every group, as a stack update: the auth group is replaced first, the proxies
 *      and nodes only once it is done, and at no moment does the auth target group have zero
 *      healthy targets.
 *   4. A broken release (its `teleport start` fails, so the new auth instance never signals): the
 *      update fails after PauseTime and rolls back before any proxy or node is touched; every auth
 *      instance runs the previous image again, auth kept a healthy target throughout, sessions work.
 * Each step logs what it measured; a violated expectation throws a {@link ScenarioError}.
 */
import * as path from 'node:path';
import type { Group } from './asg';
import type { Image } from './instance';
import type { LocalDeployment } from './deploy';
import { waitFor } from './process';
import type { Log } from './types';
import { ClusterUser } from './user';

export class ScenarioError extends Error {
  override readonly name = 'ScenarioError';
}

export interface FaultsOptions {
  /** The OS login the user gets on the nodes. */
  readonly login: string;
  /** Where the user's HOME goes. */
  readonly dir: string;
  readonly log: Log;
}

export interface FaultsReport {
  /** From the auth instance's death to the first new session that worked. */
  readonly recoveryMs: number;
  /** From scaling to 4 until all 4 nodes were listed. */
  readonly scaleOutMs: number;
  /** From scaling to 1 until only 1 node was listed. */
  readonly scaleInMs: number;
  /** The fewest healthy auth targets seen during the upgrade and the failed release (step 3 and 4). */
  readonly minHealthyAuth: number;
  /** The order in which the upgrade started and completed the groups' updates. */
  readonly upgradeOrder: string[];
  /** Why the broken release's update failed (it was rolled back). */
  readonly rollbackReason: string;
}

const group = (d: LocalDeployment, prefix: string): Group => d.asg.group(prefix);

export async function runFaults(d: LocalDeployment, opts: FaultsOptions): Promise<FaultsReport> {
  const { log } = opts;
  const auth = group(d, 'Auth');
  const nodes = group(d, 'Nodes');
  if (auth.desired < 2) throw new ScenarioError(`the faults scenario needs two auth instances (-c authMinCapacity=2), the group has ${auth.desired}`);
  if (nodes.min > 1) throw new ScenarioError(`the faults scenario scales nodes down to 1: -c nodeMinCapacity=1 (the group's minimum is ${nodes.min})`);
  const nodeList = async (): Promise<string> => {
    const a = auth.live().find((i) => i.state === 'InService' && i.instance.running);
    if (!a) return '';
    return (await a.instance.exec(['tctl', 'nodes', 'ls'])).stdout;
  };
  const listed = async () => (await nodeList()).split('\n').filter((l) => /aws\/instance-id/.test(l)).length;

  d.asg.setDesired(nodes, 2);
  await d.waitHealthy(120_000);
  await waitFor('2 nodes listed', async () => (await listed()) === 2, 60_000, 250);
  const user = await ClusterUser.signUp(d, 'faults', [opts.login], path.join(opts.dir, 'faults-user'));
  await user.login();
  const node = () => nodes.live()[0].instance.address;
  const session = async () => (await user.tsh(['ssh', `${opts.login}@${node()}`, 'echo', 'ok'])).stdout.trim() === 'ok';
  if (!(await session())) throw new ScenarioError('no session works before any fault');

  // 1. An auth instance dies during a session.
  const running = user.tsh(['ssh', '-t', `${opts.login}@${node()}`, 'sleep 3; echo survived']);
  const victim = auth.live()[0];
  const killedAt = Date.now();
  await victim.instance.terminate(0);
  log(`faults: killed auth instance ${victim.id} (every process) during a session`);
  await waitFor('a new session after the auth instance died', session, 60_000, 100);
  const recoveryMs = Date.now() - killedAt;
  log(`faults: new sessions work again ${recoveryMs} ms after the auth instance died`);
  if (recoveryMs > 5000) throw new ScenarioError(`new sessions worked again only ${recoveryMs} ms after an auth instance died (at most 5000)`);
  const ongoing = await running;
  log(`faults: the session that ran meanwhile ${ongoing.stdout.includes('survived') ? 'survived' : `ended: ${ongoing.stderr.trim()}`}`);
  await waitFor(`a replacement of ${victim.id}`, () => d.asg.history.some((h) => h.group === auth.logicalId && h.event === 'launch' && h.time > killedAt), 60_000, 100);
  await d.waitHealthy(180_000);
  log('faults: the auth group replaced the instance; every target is healthy');

  // 2. Nodes 2 -> 4 -> 1.
  const outAt = Date.now();
  d.asg.setDesired(nodes, 4);
  await waitFor('4 nodes listed', async () => (await listed()) === 4, 120_000, 250);
  const scaleOutMs = Date.now() - outAt;
  log(`faults: 4 nodes listed ${scaleOutMs} ms after scaling out`);
  const inAt = Date.now();
  d.asg.setDesired(nodes, 1);
  await waitFor('1 node listed', async () => (await listed()) === 1, 120_000, 250);
  const scaleInMs = Date.now() - inAt;
  const hookRuns = d.functions.invocations.filter((i) => /Lifecycle/.test(i.function) && Date.parse(i.startedAt) >= inAt && i.outcome === 'success').length;
  log(`faults: 1 node listed ${scaleInMs} ms after scaling in; the lifecycle function ran ${hookRuns} times`);
  if (hookRuns < 3) throw new ScenarioError(`the lifecycle function completed ${hookRuns} times for 3 terminated nodes`);
  if (!(await session())) throw new ScenarioError('no session works on the remaining node');

  // 3. and 4. A new image for every group, then a broken release; the auth target group is watched throughout.
  const authGroupArns = auth.targetGroups;
  let minHealthyAuth = Infinity;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      for (const arn of authGroupArns) {
        const healthy = [...(await d.loadBalancers.health(arn)).values()].filter((h) => h === 'healthy').length;
        minHealthyAuth = Math.min(minHealthyAuth, healthy);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const everyGroup = (image: Image) => Object.fromEntries(d.asg.groups.map((g) => [g.logicalId, { image }]));
  let upgradeOrder: string[];
  let rollbackReason: string;
  try {
    const upgrade = await d.updateStack(everyGroup({ id: 'ami-next' }));
    if (upgrade.status !== 'UPDATE_COMPLETE') throw new ScenarioError(`the upgrade failed: ${upgrade.reason}`);
    upgradeOrder = upgrade.events.map((e) => `${e.status} ${e.logicalId}`);
    const authDone = upgrade.events.find((e) => e.logicalId === auth.logicalId && e.status === 'UPDATE_COMPLETE')!.time;
    const early = upgrade.events.filter((e) => e.logicalId !== auth.logicalId && e.status === 'UPDATE_IN_PROGRESS' && e.time < authDone);
    if (early.length > 0) throw new ScenarioError(`${early.map((e) => e.logicalId).join(', ')} started updating before the auth group was done`);
    await d.waitHealthy(180_000);
    await waitFor('a session after the upgrade', session, 60_000, 250);
    log(`faults: upgrade done in this order: ${upgradeOrder.join(', ')}`);

    const release = await d.updateStack(everyGroup({ id: 'ami-broken', brokenStart: true }));
    if (release.status !== 'UPDATE_ROLLBACK_COMPLETE') throw new ScenarioError('the broken release was not rolled back');
    rollbackReason = release.reason!;
    const touched = new Set(release.events.filter((e) => e.status === 'UPDATE_IN_PROGRESS').map((e) => e.logicalId));
    if (touched.size !== 1 || !touched.has(auth.logicalId)) throw new ScenarioError(`the broken release reached ${[...touched].join(', ')}, not only the auth group`);
    const stale = d.asg.groups.flatMap((g) => g.live().filter((i) => g.versions[i.version - 1].image.id !== 'ami-next').map((i) => `${i.id} (${g.logicalId})`));
    if (stale.length > 0) throw new ScenarioError(`after the rollback ${stale.join(', ')} do not run the previous image`);
    await d.waitHealthy(180_000);
    await waitFor('a session after the rollback', session, 60_000, 250);
    log(`faults: the broken release was rolled back (${rollbackReason})`);
  } finally {
    sampling = false;
    await sampler;
  }
  log(`faults: fewest healthy auth targets during the upgrade and the rollback: ${minHealthyAuth}`);
  if (minHealthyAuth < 1) throw new ScenarioError('the auth target group had no healthy target during an update');
  return { recoveryMs, scaleOutMs, scaleInMs, minHealthyAuth, upgradeOrder, rollbackReason };
}
