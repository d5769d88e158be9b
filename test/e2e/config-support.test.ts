/**
 * `teleport start` with settings this implementation does not do: a node told
 * to use PAM where the PAM launcher was not built refuses to start (fail
 * closed) and creates nothing.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Daemon, freePort, ROOT, tempDir, waitFor } from '../helpers/proc';

/** Whether `teleport start` exited or came up (so a test that expects a refusal fails, rather than hangs, when it runs). */
const exitOrRun = (d: Daemon) =>
  waitFor('teleport to exit or run', () => (d.child.exitCode !== null ? 'exited' : /teleport is running/.test(d.stdout + d.stderr) ? 'running' : false));

describe('teleport start: unsupported settings', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir('support-');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('GIVEN PAM enabled and an installation without the PAM launcher WHEN started THEN it refuses before anything runs or is created', async () => {
    // GIVEN a copy of the installed package without build/pam-launch (what an install without libpam0g-dev leaves)
    const pkg = path.join(dir, 'pkg');
    fs.mkdirSync(pkg);
    fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(pkg, 'package.json'));
    fs.cpSync(path.join(ROOT, 'dist', 'runtime'), path.join(pkg, 'dist', 'runtime'), { recursive: true });
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'));
    expect(fs.existsSync(path.join(pkg, 'build', 'pam-launch'))).toBe(false);
    const config = path.join(dir, 'teleport.yaml');
    const dataDir = path.join(dir, 'data');
    fs.writeFileSync(
      config,
      [
        'teleport:',
        `  data_dir: ${dataDir}`,
        'auth_service:',
        `  listen_addr: 127.0.0.1:${await freePort()}`,
        'ssh_service:',
        `  listen_addr: 127.0.0.1:${await freePort()}`,
        '  pam:',
        '    enabled: yes',
        '',
      ].join('\n'),
    );
    // WHEN auth and node start from it (the node would otherwise come up and run sessions without PAM)
    const d = Daemon.spawn(process.execPath, [path.join(pkg, 'dist', 'runtime', 'cli', 'teleport.js'), 'start', '--roles=auth,node', '-c', config]);
    try {
      // THEN it exits 1 saying how to get PAM, before creating its data directory
      expect(await exitOrRun(d)).toBe('exited');
      expect(await d.exited).toBe(1);
      expect(d.stderr).toContain(`ssh_service.pam.enabled is on, but this installation has no PAM launcher (${path.join(pkg, 'build', 'pam-launch')})`);
      expect(d.stderr).toContain('libpam0g-dev');
      expect(fs.existsSync(dataDir)).toBe(false);
    } finally {
      await d.stop();
    }
  });
});
