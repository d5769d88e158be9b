/**
 * `npm run deploy:local -- --scenario=faults` as a test: the HA stack with two auth instances
 * survives an auth instance's death during sessions, nodes scaling 2 → 4 → 1, an upgrade of every
 * group (auth first) and a broken release that is rolled back (sim/faults.ts says what each step
 * expects).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FAULTS_CONTEXT, DEFAULT_CONTEXT } from '../../sim/cli-context';
import { LocalDeployment } from '../../sim/deploy';
import { runFaults } from '../../sim/faults';
import { synthesize } from '../../sim/synth';
import { testOsAccount } from '../helpers/osusers';

const TIME_SCALE = 10;
jest.setTimeout(600_000);

const login = testOsAccount('faults');

describe('deploy:local --scenario=faults', () => {
  let dir: string;
  let d: LocalDeployment | undefined;
  const lines: string[] = [];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deploy-faults-'));
    const cdkOut = await synthesize(path.join(dir, 'cdk.out'), { ...DEFAULT_CONTEXT, ...FAULTS_CONTEXT });
    d = await LocalDeployment.deploy({ cdkOut, dir: path.join(dir, 'deployment'), timeScale: TIME_SCALE, log: (l) => lines.push(l) });
  });

  afterAll(async () => {
    await d?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('an auth instance dies, nodes scale 2 → 4 → 1, a new image rolls out auth first, a broken release rolls back: the cluster holds', async () => {
    // WHEN the scenario runs against the healthy deployment
    const report = await runFaults(d!, { login: login.name, dir, log: (l) => lines.push(l) }).catch((err: Error) => {
      throw new Error(`${err.message}\n--- deployment log ---\n${lines.slice(-80).join('\n')}\n${d!.consoles(15)}`);
    });
    // THEN new sessions worked again within 5 s, scaling settled, and auth always had a healthy target
    expect(report.recoveryMs).toBeLessThanOrEqual(5000);
    expect(report.minHealthyAuth).toBeGreaterThanOrEqual(1);
    // AND the upgrade completed the auth group before the proxies and nodes started
    const auth = d!.asg.group('Auth').logicalId;
    expect(report.upgradeOrder.slice(0, 2)).toEqual([`UPDATE_IN_PROGRESS ${auth}`, `UPDATE_COMPLETE ${auth}`]);
    expect(report.upgradeOrder.filter((e) => e.startsWith('UPDATE_COMPLETE'))).toHaveLength(3);
    // AND the broken release failed on the auth group for want of a success signal, and was rolled back
    expect(report.rollbackReason).toMatch(new RegExp(`^${auth}: rolling update failed: no success signal from i-[0-9a-f]+ within PauseTime 1500 s$`));
    // AND every AWS call of all that was allowed by the template's policies
    expect(d!.audit.denied().map((e) => `${e.call.caller.name} ${e.call.action} ${e.call.resource}`)).toEqual([]);
  });
});
