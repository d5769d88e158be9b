/**
 * The teleport daemon's command line: configure, version, start, and what a
 * bad configuration does (a clear file:line error, a non-zero exit, and
 * nothing written).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cliPath, Daemon, freePort, runCli, tempDir } from '../helpers/proc';
import { startAuth } from '../helpers/cluster';
import { VERSION } from '../../runtime/version';

describe('teleport command line', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir('cli-');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('THEN version prints the package version', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'));
    expect(VERSION).toBe(pkg.version);
    // teleport, tctl and tsh alike, as Teleport's `version` subcommands
    for (const cli of ['teleport', 'tctl', 'tsh'] as const) {
      const r = await runCli(cli, ['version']);
      expect({ cli, code: r.code, out: r.stdout }).toEqual({ cli, code: 0, out: expect.stringMatching(new RegExp(`^Teleport v${VERSION.replace(/\./g, '\\.')} node v`)) });
    }
  });

  it('GIVEN the sample from configure WHEN started with it THEN the auth service runs', async () => {
    const sample = await runCli('teleport', ['configure']);
    expect(sample.code).toBe(0);
    const port = await freePort();
    const config = path.join(dir, 'teleport.yaml');
    fs.writeFileSync(config, sample.stdout.replace(/listen_addr: 0\.0\.0\.0:3025/, `listen_addr: 127.0.0.1:${port}`));
    expect(fs.readFileSync(config, 'utf8')).toContain(`127.0.0.1:${port}`);
    const d = Daemon.spawn(process.execPath, [cliPath('teleport'), 'start', '--roles=auth', '-c', config, '--data-dir', path.join(dir, 'data')]);
    try {
      await d.waitForOutput(/auth service is listening/);
      const status = await runCli('tctl', ['-c', config, '--data-dir', path.join(dir, 'data'), 'status']);
      expect(status.stdout).toMatch(/^Cluster\s+\S+/);
    } finally {
      expect(await d.stop()).toBe(0);
    }
  });

  it('GIVEN a config with an unknown key WHEN started THEN it names the file and line and creates nothing', async () => {
    const config = path.join(dir, 'bad.yaml');
    const dataDir = path.join(dir, 'data');
    fs.writeFileSync(config, `teleport:\n  data_dir: ${dataDir}\nauth_service:\n  enabled: yes\n  liste_addr: 0.0.0.0:3025\n`);
    const r = await runCli('teleport', ['start', '--roles=auth', '-c', config]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`${config.replace(/[/.]/g, '\\$&')}:5:3: .*liste_addr`));
    expect(fs.existsSync(dataDir)).toBe(false);
  });

  it('GIVEN malformed YAML WHEN started THEN the error has the line and nothing is created', async () => {
    const config = path.join(dir, 'broken.yaml');
    const dataDir = path.join(dir, 'data');
    fs.writeFileSync(config, `teleport:\n  data_dir: ${dataDir}\n  storage: [unclosed\n`);
    const r = await runCli('teleport', ['start', '--roles=auth', '-c', config]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/broken\.yaml:\d+:\d+: /);
    expect(fs.existsSync(dataDir)).toBe(false);
  });

  it('GIVEN a config path that does not exist THEN start refuses', async () => {
    const r = await runCli('teleport', ['start', '--roles=auth', '-c', path.join(dir, 'nope.yaml')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/nope\.yaml/);
  });

  it('GIVEN a running auth server THEN data_dir is 0700 and every key file is 0600', async () => {
    const auth = await startAuth();
    try {
      expect(fs.statSync(auth.dataDir).mode & 0o777).toBe(0o700);
      const files: string[] = [];
      const walk = (d: string) => {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
          const p = path.join(d, e.name);
          if (e.isDirectory()) {
            expect(fs.statSync(p).mode & 0o077).toBe(0);
            walk(p);
          } else files.push(p);
        }
      };
      walk(auth.dataDir);
      expect(files.map((f) => path.relative(auth.dataDir, f))).toEqual(expect.arrayContaining(['host_uuid', 'proc/sqlite.db', 'backend/sqlite.db']));
      for (const f of files) expect([f, fs.statSync(f).mode & 0o077]).toEqual([f, 0]);
    } finally {
      await auth.cleanup();
    }
  });
});
