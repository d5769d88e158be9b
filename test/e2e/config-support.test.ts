/**
 * `teleport start` with settings this implementation does not do: a security
 * setting that would not take effect stops it with a file:line error and
 * creates nothing; any other is warned about once, through the service log
 * (here a file, `teleport.log.output`), and the rest runs. A node told to use
 * PAM where the PAM launcher was not built refuses to start (fail closed).
 * `https_keypairs` beyond the first are served by SNI.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { selfSignedServerCert } from '../../runtime/tlsca';
import { cliPath, Daemon, freePort, ROOT, tempDir, waitFor } from '../helpers/proc';

/** Whether `teleport start` exited or came up (so a test that expects a refusal fails, rather than hangs, when it runs). */
const exitOrRun = (d: Daemon) =>
  waitFor('teleport to exit or run', () => (d.child.exitCode !== null ? 'exited' : /teleport is running/.test(d.stdout + d.stderr) ? 'running' : false));

describe('teleport start: unsupported settings', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir('support-');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('GIVEN enhanced_recording enabled WHEN started THEN it exits 1 naming the line and what to use, and creates nothing', async () => {
    const config = path.join(dir, 'teleport.yaml');
    const dataDir = path.join(dir, 'data');
    fs.writeFileSync(config, `teleport:\n  data_dir: ${dataDir}\nauth_service:\n  listen_addr: 127.0.0.1:${await freePort()}\nssh_service:\n  enhanced_recording:\n    enabled: yes\n`);
    const d = Daemon.spawn(process.execPath, [cliPath('teleport'), 'start', '--roles=auth', '-c', config]);
    try {
      expect(await exitOrRun(d)).toBe('exited');
      expect(await d.exited).toBe(1);
      expect(d.stderr).toContain(`${config}:7:5: ssh_service.enhanced_recording.enabled: enhanced session recording (BPF) is not supported yet`);
      expect(fs.existsSync(dataDir)).toBe(false);
    } finally {
      await d.stop();
    }
  });

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

  it('GIVEN ignored settings, --insecure, a log file and two key pairs WHEN started THEN each warning is logged once to the file and SNI picks the pair', async () => {
    // GIVEN two web certificates: the default one and one for *.apps.example.com
    const files: Record<string, string> = {};
    for (const [id, names] of [
      ['main', ['proxy.example.com']],
      ['apps', ['*.apps.example.com']],
    ] as const) {
      const kp = await selfSignedServerCert([...names]);
      for (const part of ['key', 'cert'] as const) {
        files[`${id}-${part}`] = path.join(dir, `${id}-${part}.pem`);
        fs.writeFileSync(files[`${id}-${part}`], kp[part], { mode: 0o600 });
      }
    }
    const config = path.join(dir, 'teleport.yaml');
    const log = path.join(dir, 'teleport.log');
    const web = await freePort();
    const lines = [
      'teleport:', //                                     1
      `  data_dir: ${path.join(dir, 'data')}`, //         2
      '  log:', //                                        3
      `    output: ${log}`, //                            4
      '  ca_signature_algo: ssh-rsa', //                  5
      'auth_service:', //                                 6
      `  listen_addr: 127.0.0.1:${await freePort()}`, //  7
      '  license_file: /etc/teleport/license.pem', //     8
      'proxy_service:', //                                9
      `  listen_addr: 127.0.0.1:${await freePort()}`, // 10
      `  web_listen_addr: 127.0.0.1:${web}`, //          11
      '  tunnel_public_addr: proxy.example.com:3024', // 12
      '  https_keypairs:', //                            13
      `    - key_file: ${files['main-key']}`,
      `      cert_file: ${files['main-cert']}`,
      `    - key_file: ${files['apps-key']}`,
      `      cert_file: ${files['apps-cert']}`,
      `  tunnel_listen_addr: 127.0.0.1:${await freePort()}`,
    ];
    fs.writeFileSync(config, lines.join('\n') + '\n');
    // WHEN auth and proxy start with it and --insecure
    const d = Daemon.spawn(process.execPath, [cliPath('teleport'), 'start', '--roles=auth,proxy', '--insecure', '-c', config]);
    try {
      const logged = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '');
      await waitFor('teleport is running, in the log file', () => logged().includes('teleport is running'), 60_000);
      // THEN every warning is one JSON line of the log, at its file line, in file order
      const warnings = logged()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { level: string; component: string; msg: string })
        .filter((l) => l.level === 'warn' && l.component === 'teleport')
        .map((l) => l.msg);
      expect(warnings).toEqual([
        `${config}:5:3: teleport.ca_signature_algo: has no effect: the SSH CAs sign with the algorithm of their key type (auth_service.ca_key_type; RSA signs with rsa-sha2-512)`,
        `${config}:8:3: auth_service.license_file: has no effect: there are no licensed features (it is for Teleport Enterprise)`,
        expect.stringMatching(/^--insecure: trust with a root cluster is established without verifying/),
      ]);
      // AND nothing is logged to stderr
      expect(d.stderr).toBe('');
      // AND the web listener serves the pair whose name the client asks for, the first by default
      const presented = (servername: string) =>
        new Promise<string>((resolve, reject) => {
          const s = tls.connect({ host: '127.0.0.1', port: web, servername, rejectUnauthorized: false }, () => {
            resolve(s.getPeerX509Certificate()!.subjectAltName!);
            s.destroy();
          });
          s.on('error', reject);
        });
      expect(await presented('teleport.apps.example.com')).toBe('DNS:*.apps.example.com');
      expect(await presented('proxy.example.com')).toBe('DNS:proxy.example.com');
      expect(await presented('other.example.net')).toBe('DNS:proxy.example.com');
    } finally {
      expect(await d.stop()).toBe(0);
    }
  });
});
