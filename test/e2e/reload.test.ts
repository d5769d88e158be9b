/**
 * SIGHUP (systemd's `ExecReload`): teleport re-reads its config and restarts its services with
 * it; an invalid config is refused and the running services stay up.
 */
import * as fs from 'node:fs';
import { startCluster, TestAuth } from '../helpers/cluster';
import { waitFor } from '../helpers/proc';

describe('teleport start: reload on SIGHUP', () => {
  let c: TestAuth;
  beforeAll(async () => {
    c = await startCluster({ labels: { env: 'before' } });
  });
  afterAll(() => c?.cleanup());

  it('GIVEN a running node WHEN its config is broken and HUP is sent THEN the reload is refused and it keeps serving', async () => {
    const good = fs.readFileSync(c.configPath, 'utf8');
    fs.writeFileSync(c.configPath, good.replace('ssh_service:', 'ssh_service:\n  no_such_key: 1'));
    c.daemon!.child.kill('SIGHUP');
    await c.daemon!.waitForOutput(/reload refused: the configuration is invalid/);
    expect(c.daemon!.child.exitCode).toBeNull();
    // (tctl reads the same file, so it is put back before asking)
    fs.writeFileSync(c.configPath, good);
    expect(await c.tctlOk('nodes', 'ls')).toMatch(/env=before/);
    expect(c.daemon!.stdout + c.daemon!.stderr).not.toMatch(/"reloading"/);
  });

  it('GIVEN a running node WHEN its labels change in the file and HUP is sent THEN it serves with the new labels', async () => {
    fs.writeFileSync(c.configPath, fs.readFileSync(c.configPath, 'utf8').replace('env: "before"', 'env: "after"'));
    c.daemon!.child.kill('SIGHUP');
    await c.daemon!.waitForOutput(/"msg":"reloaded"/);
    await waitFor('the node to heartbeat its new label', async () => /env=after/.test(await c.tctlOk('nodes', 'ls')));
    expect(c.daemon!.child.exitCode).toBeNull();
  });
});
