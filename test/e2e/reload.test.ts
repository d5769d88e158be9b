/**
 * SIGHUP (systemd's `ExecReload`): teleport re-reads its config and restarts its services with
 * it; an invalid config is refused and the running services stay up.
 */
import * as fs from 'node:fs';
import { createAuth, startCluster, TestAuth } from '../helpers/cluster';
import { freePort, waitFor } from '../helpers/proc';

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

  it('GIVEN a running node WHEN the new config puts two services on one port and HUP is sent THEN the reload is refused at the line, before the services stop', async () => {
    const good = fs.readFileSync(c.configPath, 'utf8');
    const clash = good.replace(`  listen_addr: 127.0.0.1:${c.nodePort}`, `  listen_addr: 127.0.0.1:${c.port}`);
    expect(clash).not.toBe(good);
    fs.writeFileSync(c.configPath, clash);
    const line = clash.split('\n').findIndex((l, i) => i > clash.split('\n').indexOf('ssh_service:') && l.startsWith('  listen_addr:')) + 1;
    try {
      c.daemon!.child.kill('SIGHUP');
      await c.daemon!.waitForOutput(/reload refused: the configuration is invalid.*wants port/);
    } finally {
      fs.writeFileSync(c.configPath, good);
    }
    const out = c.daemon!.stdout + c.daemon!.stderr;
    expect(out).toContain(`${c.configPath}:${line}:16: the node service (SSH) cannot listen on 127.0.0.1:${c.port} (ssh_service.listen_addr): the auth service wants port ${c.port} too`);
    // THEN the old services never stopped and still answer.
    expect(out).not.toMatch(/"reloading"/);
    expect(c.daemon!.child.exitCode).toBeNull();
    expect(await c.tctlOk('nodes', 'ls')).toMatch(/env=before/);
  });

  it('GIVEN a running node WHEN its labels change in the file and HUP is sent THEN it serves with the new labels', async () => {
    fs.writeFileSync(c.configPath, fs.readFileSync(c.configPath, 'utf8').replace('env: "before"', 'env: "after"'));
    c.daemon!.child.kill('SIGHUP');
    await c.daemon!.waitForOutput(/"msg":"reloaded"/);
    await waitFor('the node to heartbeat its new label', async () => /env=after/.test(await c.tctlOk('nodes', 'ls')));
    expect(c.daemon!.child.exitCode).toBeNull();
  });

  describe('signals while teleport starts', () => {
    let starting: TestAuth | undefined;
    afterEach(async () => {
      await starting?.cleanup();
      starting = undefined;
    });

    /** Starts teleport and sends `signal` the moment its output first matches `when` (from the output handler, no polling). */
    const signalWhen = async (when: RegExp, signal: NodeJS.Signals) => {
      starting = await createAuth({ nodePort: await freePort() });
      const d = starting.start();
      let seen = '';
      let sent = false;
      const watch = (chunk: Buffer) => {
        seen += chunk;
        if (!sent && when.test(seen)) {
          sent = true;
          d.child.kill(signal);
        }
      };
      d.child.stdout!.on('data', watch);
      d.child.stderr!.on('data', watch);
      return d;
    };

    it('GIVEN teleport halfway through starting WHEN SIGHUP arrives THEN it finishes starting, then reloads, and keeps running', async () => {
      // GIVEN / WHEN the auth service is up but the node is not yet
      const d = await signalWhen(/auth service is listening/, 'SIGHUP');

      // THEN
      await d.waitForOutput(/"msg":"reloaded"/);
      const log = d.stderr;
      expect(log.indexOf('teleport is running')).toBeLessThan(log.indexOf('"msg":"reloading"'));
      expect(d.child.exitCode).toBeNull();
      expect(d.child.signalCode).toBeNull();
    });

    it('GIVEN teleport that has just said it is running WHEN SIGHUP arrives THEN it reloads and keeps running', async () => {
      const d = await signalWhen(/teleport is running/, 'SIGHUP');
      await d.waitForOutput(/"msg":"reloaded"/);
      expect(d.child.exitCode).toBeNull();
      expect(d.child.signalCode).toBeNull();
    });

    it('GIVEN teleport halfway through starting WHEN SIGTERM arrives THEN it finishes starting, shuts down cleanly and exits 0', async () => {
      const d = await signalWhen(/auth service is listening/, 'SIGTERM');
      expect(await d.exited).toBe(0);
      expect(d.stderr).toMatch(/"msg":"shutting down","signal":"SIGTERM"/);
    });
  });
});
