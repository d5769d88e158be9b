/**
 * A node joins with a token and CA pin, announces itself with static and
 * dynamic labels, keeps its identity across restarts, and disappears from
 * `tctl nodes ls` once it stops announcing.
 */
import * as fs from 'node:fs';
import { startAuth, TestAuth, TestNode } from '../helpers/cluster';
import { runCli, waitFor } from '../helpers/proc';

describe('node presence', () => {
  let auth: TestAuth;
  let node: TestNode;

  beforeAll(async () => {
    auth = await startAuth({ tokens: ['node:presence-token-1'] });
  });
  afterAll(async () => {
    await node?.cleanup();
    await auth?.cleanup();
  });

  it('GIVEN a wrong CA pin THEN the node refuses to join and keeps no identity', async () => {
    const bad = await TestNode.create(auth, { token: 'presence-token-1', caPin: 'sha256:' + 'a'.repeat(64) });
    try {
      const d = bad.start();
      expect(await d.exited).toBe(1);
      expect(d.stderr).toMatch(/does not match the CA pin/);
      const r = await runCli('tctl', ['-c', auth.configPath, 'nodes', 'ls']);
      expect(r.stdout).not.toMatch(/node-1/);
    } finally {
      await bad.cleanup();
    }
  });

  it('GIVEN a joined node with labels THEN nodes ls shows them; after SIGKILL it disappears when its TTL runs out', async () => {
    node = await TestNode.create(auth, {
      token: 'presence-token-1',
      caPin: await auth.caPin(),
      nodeName: 'web-7',
      labels: 'env=staging,greeting=[1s:"echo hello"]',
      env: { TELEPORT_ANNOUNCE_TTL: '3' },
    });
    node.start();
    await node.ready();
    let out = '';
    const row = await waitFor('the node with both labels', async () => {
      out = await auth.tctlOk('nodes', 'ls');
      return /^web-7\s+[0-9a-f-]{36}\s+127\.0\.0\.1:\d+\s+env=staging,greeting=hello$/m.exec(out)?.[0];
    }).catch((err: Error) => {
      throw new Error(`${err.message}; last listing:\n${out}\nnode output:\n${node.daemon!.stderr}`);
    });
    expect(row).toContain(`127.0.0.1:${node.port}`);
    expect(fs.existsSync(`${node.dataDir}/host_uuid`)).toBe(true);

    await node.daemon!.stop('SIGKILL');
    await waitFor('the node to expire', async () => !/web-7/.test(await auth.tctlOk('nodes', 'ls')), 30_000);

    // THEN it comes back with the same identity and no token.
    const uuid = fs.readFileSync(`${node.dataDir}/host_uuid`, 'utf8').trim();
    node.start();
    await node.ready();
    await waitFor('the node again', async () => new RegExp(`web-7\\s+${uuid}`).test(await auth.tctlOk('nodes', 'ls')));
  });
});
