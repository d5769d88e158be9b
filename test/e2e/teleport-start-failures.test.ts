/**
 * `teleport start` that cannot start: a port another cluster holds, a port
 * two services of one config want, a data directory or config file the user
 * cannot use. Each exits non-zero by itself with one line naming what failed
 * (the port and the service, the directory, the file), creates nothing, and
 * leaves no process behind.
 *
 * The services themselves (auth, node) are also started straight from the
 * library in a child process that never calls process.exit, on a port taken
 * after the start-up check: that child must end by itself, which it only does
 * when the failed start closed everything it had opened (storage and its poll
 * timer, the access feed, audit spool, clients).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { selfSignedServerCert } from '../../runtime/tlsca';
import { createAuth, startCluster, TestAuth } from '../helpers/cluster';
import { cliPath, Daemon, freePort, ROOT, run, RunResult, tempDir, waitFor } from '../helpers/proc';

/** How long a failed start may take before the test calls it hung (a bound, not a timing assertion). */
const EXIT_BOUND_MS = 20_000;
const NOBODY = { uid: 65534, gid: 65534 };
const isRoot = process.getuid?.() === 0;

/** Runs `teleport start` and waits, up to the bound, for it to exit; a process still running then fails the test and is killed. */
async function startExpectingExit(args: string[], opts: { asNobody?: boolean } = {}): Promise<RunResult> {
  const argv = [cliPath('teleport'), 'start', ...args];
  const d =
    opts.asNobody && isRoot
      ? Daemon.spawn('setpriv', ['--reuid', String(NOBODY.uid), '--regid', String(NOBODY.gid), '--clear-groups', '--', process.execPath, ...argv])
      : Daemon.spawn(process.execPath, argv);
  try {
    const code = await waitFor('teleport start to exit', () => d.child.exitCode ?? d.child.signalCode ?? undefined, EXIT_BOUND_MS);
    return { code: typeof code === 'number' ? code : null, stdout: d.stdout, stderr: d.stderr, stdoutBytes: Buffer.from(d.stdout) };
  } finally {
    await d.stop('SIGKILL');
  }
}

/**
 * `<file>:<line>:<col>` of the value of `key` in `section` of a config file (two-space indents), as
 * the start-up checks print it: the first `  key:` line after the `section:` line.
 */
function spotOf(configPath: string, section: string, key: string): string {
  const lines = fs.readFileSync(configPath, 'utf8').split('\n');
  const start = lines.indexOf(`${section}:`);
  const i = lines.findIndex((l, n) => n > start && l.startsWith(`  ${key}:`));
  if (start < 0 || i < 0) throw new Error(`${section}.${key} is not in ${configPath}`);
  return `${configPath}:${i + 1}:${lines[i].indexOf(':') + 3}`;
}

/**
 * `teleport start` expected to exit, while a server of the test's holds 127.0.0.1:`port`: a start
 * that bound its ports before checking the config would say that port is in use.
 */
async function startWhileHolding(port: number, args: string[]): Promise<RunResult> {
  const holder = net.createServer((sock) => sock.destroy());
  await new Promise<void>((resolve, reject) => {
    holder.once('error', reject);
    holder.listen(port, '127.0.0.1', () => resolve());
  });
  try {
    return await startExpectingExit(args);
  } finally {
    await new Promise((resolve) => holder.close(resolve));
  }
}

/** The processes whose command line mentions `marker` (pgrep -f), other than pgrep itself. */
async function processesWith(marker: string): Promise<string[]> {
  const r = await run('pgrep', ['-af', marker]);
  return r.stdout.split('\n').filter((l) => l.trim() !== '' && !/\bpgrep\b/.test(l));
}

describe('teleport start that cannot start', () => {
  let first: TestAuth;
  let dir: string;

  beforeAll(async () => {
    // GIVEN a running cluster: auth, node and proxy (SSH and web) on their own ports.
    first = await startCluster({ proxy: {} });
  });
  afterAll(async () => {
    await first?.cleanup();
  });
  beforeEach(() => {
    dir = tempDir('start-fail-');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** The running cluster's config with another data dir (a second cluster on the same ports). */
  const secondClusterConfig = (): { configPath: string; dataDir: string } => {
    const dataDir = path.join(dir, 'data');
    const text = fs.readFileSync(first.configPath, 'utf8').replace(/^ {2}data_dir: .*$/m, `  data_dir: ${dataDir}`);
    const configPath = path.join(dir, 'second.yaml');
    fs.writeFileSync(configPath, text);
    return { configPath, dataDir };
  };

  it('GIVEN a second cluster on the same ports WHEN it starts THEN it exits non-zero naming the port and the service, creates nothing and leaves no process', async () => {
    const { configPath, dataDir } = secondClusterConfig();

    // WHEN the second cluster starts with every role.
    const r = await startExpectingExit(['-c', configPath]);

    // THEN it exits non-zero naming, at the setting's line, the auth service's port and the setting.
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `ERROR: ${spotOf(configPath, 'auth_service', 'listen_addr')}: the auth service cannot listen on 127.0.0.1:${first.port} (auth_service.listen_addr): port ${first.port} is already in use`,
    );
    // THEN every taken port is named, not only the first.
    expect(r.stderr).toContain(
      `${spotOf(configPath, 'proxy_service', 'web_listen_addr')}: the proxy's web service cannot listen on 127.0.0.1:${first.proxyPorts!.web} (proxy_service.web_listen_addr): port ${first.proxyPorts!.web} is already in use`,
    );
    // THEN nothing was created and no process of it is left.
    expect(fs.existsSync(dataDir)).toBe(false);
    expect(await processesWith(configPath)).toEqual([]);

    // WHEN only the proxy would start there (to join with a token) THEN the proxy's port is the one named.
    const proxyOnly = await startExpectingExit(['-c', configPath, '--roles=proxy', '--token=join-me']);
    expect(proxyOnly.code).toBe(1);
    expect(proxyOnly.stderr).toContain(
      `ERROR: ${spotOf(configPath, 'proxy_service', 'listen_addr')}: the proxy's SSH service cannot listen on 127.0.0.1:${first.proxyPorts!.ssh} (proxy_service.listen_addr): port ${first.proxyPorts!.ssh} is already in use`,
    );
    expect(await processesWith(configPath)).toEqual([]);

    // THEN the running cluster is untouched and still answers.
    expect(await first.tctlOk('status')).toMatch(/^Cluster\s+example\.com$/m);
  });

  it('GIVEN the very same config and data dir (a second `npm start`) WHEN it starts THEN it exits naming the port, and the first keeps its identity', async () => {
    const proc = path.join(first.dataDir, 'proc', 'sqlite.db');
    const before = fs.readFileSync(proc);

    // WHEN the same command starts again.
    const r = await startExpectingExit(['--roles=auth,node,proxy', '-c', first.configPath]);

    // THEN it fails on the first port before it touches the data dir.
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`ERROR: ${spotOf(first.configPath, 'auth_service', 'listen_addr')}: the auth service cannot listen on 127.0.0.1:${first.port} `);
    expect(fs.readFileSync(proc).equals(before)).toBe(true);
    expect((await processesWith(first.configPath)).length).toBe(1); // only the first cluster
    expect(await first.tctlOk('status')).toMatch(/^Cluster\s+example\.com$/m);
  });

  it('GIVEN two services of one config on one port WHEN it starts THEN the error names both settings and nothing is created', async () => {
    const port = await freePort();
    const dataDir = path.join(dir, 'data');
    const configPath = path.join(dir, 'twice.yaml');
    fs.writeFileSync(
      configPath,
      [
        'teleport:',
        `  data_dir: ${dataDir}`,
        'auth_service:',
        `  listen_addr: 127.0.0.1:${port}`,
        'ssh_service:',
        `  listen_addr: 0.0.0.0:${port}`,
        'proxy_service:',
        '  enabled: no',
        '',
      ].join('\n'),
    );
    // GIVEN another server holds the port: a start that bound before checking the config would say so.
    const r = await startWhileHolding(port, ['-c', configPath]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `ERROR: ${configPath}:6:16: the node service (SSH) cannot listen on 0.0.0.0:${port} (ssh_service.listen_addr): the auth service wants port ${port} too (auth_service.listen_addr)`,
    );
    expect(fs.existsSync(dataDir)).toBe(false);
    // THEN the port was not even bound to find out: a config that is wrong in itself fails before any listener opens.
    expect(r.stderr).not.toContain('already in use');
  });

  describe('a config naming files that are not there or do not belong together', () => {
    /** A key pair written to `dir`: `<name>-key.pem`, `<name>-cert.pem`. */
    const writePair = async (name: string): Promise<{ keyFile: string; certFile: string }> => {
      const kp = await selfSignedServerCert(['proxy.example.com']);
      const pair = { keyFile: path.join(dir, `${name}-key.pem`), certFile: path.join(dir, `${name}-cert.pem`) };
      fs.writeFileSync(pair.keyFile, kp.key, { mode: 0o600 });
      fs.writeFileSync(pair.certFile, kp.cert);
      return pair;
    };

    it('GIVEN auth and proxy with a missing key file and a key that is not its certificate\'s WHEN it starts THEN both are named at their lines, before any port is bound or the data dir made', async () => {
      const [a, b] = [await writePair('a'), await writePair('b')];
      const missing = path.join(dir, 'missing-key.pem');
      const [authPort, sshPort, webPort] = [await freePort(), await freePort(), await freePort()];
      const dataDir = path.join(dir, 'data');
      const configPath = path.join(dir, 'keypairs.yaml');
      fs.writeFileSync(
        configPath,
        [
          'teleport:',
          `  data_dir: ${dataDir}`,
          'auth_service:',
          `  listen_addr: 127.0.0.1:${authPort}`,
          'ssh_service:',
          '  enabled: no',
          'proxy_service:',
          `  listen_addr: 127.0.0.1:${sshPort}`,
          `  web_listen_addr: 127.0.0.1:${webPort}`,
          '  https_keypairs:',
          `  - key_file: ${missing}`, //   11
          `    cert_file: ${a.certFile}`,
          `  - key_file: ${a.keyFile}`, // 13
          `    cert_file: ${b.certFile}`,
          '',
        ].join('\n'),
      );
      // GIVEN another server holds the auth port: a start that bound before checking the files would say so.
      const r = await startWhileHolding(authPort, ['-c', configPath]);

      // THEN it exits non-zero naming each file at its line and key.
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`ERROR: ${configPath}:11:15: proxy_service.https_keypairs[0].key_file: cannot read the key_file "${missing}": no such file\n`);
      expect(r.stderr).toContain(
        `${configPath}:13:15: proxy_service.https_keypairs[1].key_file: the key_file "${a.keyFile}" does not match the cert_file "${b.certFile}" (the certificate is for another key)\n`,
      );
      expect(r.stderr).not.toContain('ENOENT');
      // THEN no port was bound, nothing was created and no process is left.
      expect(r.stderr).not.toContain('already in use');
      expect(fs.existsSync(dataDir)).toBe(false);
      expect(await processesWith(configPath)).toEqual([]);
    });

    it('GIVEN a proxy alone (auth disabled) whose certificate file is missing WHEN it starts THEN the file is named at its line, not "has not joined"', async () => {
      const a = await writePair('a');
      const missing = path.join(dir, 'missing-cert.pem');
      const dataDir = path.join(dir, 'data');
      const configPath = path.join(dir, 'proxy.yaml');
      fs.writeFileSync(
        configPath,
        [
          'teleport:',
          `  data_dir: ${dataDir}`,
          `  auth_servers: [127.0.0.1:${await freePort()}]`,
          '  auth_token: join-me',
          `  ca_pin: sha256:${'0'.repeat(64)}`,
          'auth_service:',
          '  enabled: no',
          'ssh_service:',
          '  enabled: no',
          'proxy_service:',
          `  listen_addr: 127.0.0.1:${await freePort()}`,
          `  web_listen_addr: 127.0.0.1:${await freePort()}`,
          `  https_key_file: ${a.keyFile}`,
          `  https_cert_file: ${missing}`, // 14
          '',
        ].join('\n'),
      );

      const r = await startExpectingExit(['-c', configPath]);

      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`ERROR: ${configPath}:14:20: proxy_service.https_cert_file: cannot read the cert_file "${missing}": no such file\n`);
      expect(r.stderr).not.toContain('has not joined');
      expect(fs.existsSync(dataDir)).toBe(false);
      expect(await processesWith(configPath)).toEqual([]);
    });

    it('GIVEN a log file in a directory that does not exist WHEN it starts THEN it is named at its line and the data dir is not made', async () => {
      const dataDir = path.join(dir, 'data');
      const logFile = path.join(dir, 'no-such-dir', 'teleport.log');
      const configPath = path.join(dir, 'log.yaml');
      fs.writeFileSync(
        configPath,
        ['teleport:', `  data_dir: ${dataDir}`, '  log:', `    output: ${logFile}`, 'auth_service:', `  listen_addr: 127.0.0.1:${await freePort()}`, 'ssh_service:', '  enabled: no', 'proxy_service:', '  enabled: no', ''].join('\n'),
      );

      const r = await startExpectingExit(['-c', configPath]);

      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`ERROR: ${configPath}:4:13: teleport.log.output: cannot open "${logFile}" to append the log to: ENOENT`);
      expect(fs.existsSync(dataDir)).toBe(false);
    });

    it('GIVEN a node alone (auth disabled) with no join token and no identity WHEN it starts THEN it says how to join and creates no data dir', async () => {
      const dataDir = path.join(dir, 'data');
      const configPath = path.join(dir, 'node.yaml');
      fs.writeFileSync(
        configPath,
        [
          'teleport:',
          `  data_dir: ${dataDir}`,
          `  auth_servers: [127.0.0.1:${await freePort()}]`,
          'auth_service:',
          '  enabled: no',
          'ssh_service:',
          `  listen_addr: 127.0.0.1:${await freePort()}`,
          'proxy_service:',
          '  enabled: no',
          '',
        ].join('\n'),
      );

      const r = await startExpectingExit(['-c', configPath]);

      expect(r.code).toBe(1);
      expect(r.stderr).toContain('ERROR: this node has not joined a cluster yet: start it with --token (see `tctl nodes add`) and --ca-pin\n');
      expect(fs.existsSync(dataDir)).toBe(false);
    });
  });

  it('GIVEN a data dir the user may not create WHEN it starts THEN it names the directory and the way out', async () => {
    // GIVEN a parent directory nobody else may write (as root, teleport runs as nobody; else the parent is read-only to its owner).
    const parent = path.join(dir, 'locked');
    fs.mkdirSync(parent, { mode: isRoot ? 0o700 : 0o500 });
    const dataDir = path.join(parent, 'data');
    const configPath = path.join(dir, 'teleport.yaml');
    fs.writeFileSync(configPath, `teleport:\n  data_dir: ${dataDir}\nauth_service:\n  listen_addr: 127.0.0.1:${await freePort()}\nssh_service:\n  enabled: no\nproxy_service:\n  enabled: no\n`, { mode: 0o644 });
    fs.chmodSync(dir, 0o755);

    const r = await startExpectingExit(['-c', configPath], { asNobody: true });

    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`ERROR: cannot use the data directory ${dataDir}: permission denied (mkdir ${dataDir}); run teleport as the user who owns it, or choose another directory with --data-dir`);
    expect(fs.existsSync(dataDir)).toBe(false);
    expect(await processesWith(configPath)).toEqual([]);
  });

  it('GIVEN a config file the user may not read WHEN it starts THEN it names the file', async () => {
    const configPath = path.join(dir, 'secret.yaml');
    fs.writeFileSync(configPath, `auth_service:\n  listen_addr: 127.0.0.1:${await freePort()}\n`, { mode: 0o600 });
    if (!isRoot) fs.chmodSync(configPath, 0o000);
    fs.chmodSync(dir, 0o755);

    const r = await startExpectingExit(['-c', configPath], { asNobody: true });

    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`ERROR: ${configPath}: permission denied reading the config file`);
  });
});

describe('a service whose port is taken after the start-up check', () => {
  let auth: TestAuth | undefined;
  let dir: string;
  beforeAll(() => {
    dir = tempDir('start-cleanup-');
  });
  afterAll(async () => {
    await auth?.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Runs `body` (JavaScript, with `lib(module)` loading the compiled runtime, `config` from the
   * test's YAML and `busy(port)` holding a port) in a child that never calls process.exit, and
   * waits, up to the bound, for it to end by itself.
   */
  const runChild = async (configPath: string, body: string): Promise<RunResult> => {
    const script = `
      const path = require('node:path');
      const net = require('node:net');
      const lib = (m) => require(path.join(${JSON.stringify(path.join(ROOT, 'dist', 'runtime'))}, m));
      const { buildConfig, loadConfigFile } = lib('config');
      const config = buildConfig(loadConfigFile(${JSON.stringify(configPath)}), {}, {});
      const busy = (port) => new Promise((resolve) => { const s = net.createServer(); s.listen(port, '127.0.0.1', () => resolve(s)); });
      (async () => { ${body} })().catch((err) => { console.log('UNEXPECTED: ' + err.stack); process.exitCode = 2; });
    `;
    const d = Daemon.spawn(process.execPath, ['-e', script]);
    try {
      const code = await waitFor('the child to end by itself', () => d.child.exitCode ?? d.child.signalCode ?? undefined, EXIT_BOUND_MS).catch((err: Error) => {
        throw new Error(`${err.message}: a failed start left something running\n${d.stdout}${d.stderr}`);
      });
      return { code: typeof code === 'number' ? code : null, stdout: d.stdout, stderr: d.stderr, stdoutBytes: Buffer.from(d.stdout) };
    } finally {
      await d.stop('SIGKILL');
    }
  };

  it('GIVEN the auth port taken WHEN the auth service starts THEN it fails naming the port and closes its storage', async () => {
    auth = await createAuth({ nodePort: await freePort() });
    fs.mkdirSync(auth.dataDir, { recursive: true });
    // WHEN the auth service starts from the library on a port another server holds.
    const r = await runChild(
      auth.configPath,
      `
      const { startAuthService } = lib('auth/service');
      const { IdentityStore } = lib('auth/identity');
      const { openBackend } = lib('backend');
      const { logger, setLogLevel } = lib('utils/logger');
      setLogLevel('error');
      const taken = await busy(config.auth.listenAddr.port);
      const proc = await openBackend({ type: 'memory' });
      try {
        await startAuthService({ config, hostUUID: '00000000-0000-4000-8000-000000000001', procStore: new IdentityStore(proc), log: logger('auth') });
        console.log('STARTED');
      } catch (err) {
        console.log('FAILED: ' + err.message);
      } finally {
        taken.close();
        await proc.close();
      }
      `,
    );
    // THEN it fails with the port and the service, and the child ends by itself.
    expect(r.stdout).toContain(`FAILED: the auth service cannot listen on 127.0.0.1:${auth.port} (auth_service.listen_addr): port ${auth.port} is already in use`);
    expect(r.code).toBe(0);
  });

  it('GIVEN the node port taken WHEN the node service starts THEN it fails naming the port and closes its connections to the auth server', async () => {
    auth ??= await createAuth({ nodePort: await freePort() });
    fs.mkdirSync(auth.dataDir, { recursive: true });
    // WHEN the auth service runs and the node service starts from the library on a port another server holds.
    const r = await runChild(
      auth.configPath,
      `
      const { startAuthService } = lib('auth/service');
      const { startNodeService } = lib('node/service');
      const { IdentityStore } = lib('auth/identity');
      const { openBackend } = lib('backend');
      const { logger, setLogLevel } = lib('utils/logger');
      setLogLevel('error');
      const proc = await openBackend({ type: 'memory' });
      const hostUUID = '00000000-0000-4000-8000-000000000002';
      const auth = await startAuthService({ config, hostUUID, procStore: new IdentityStore(proc), log: logger('auth') });
      const taken = await busy(config.ssh.listenAddr.port);
      try {
        const identity = await auth.auth.localIdentity('Node', [], []);
        const nodeConfig = { ...config, authServers: [{ host: '127.0.0.1', port: auth.address.port }] };
        await startNodeService({ config: nodeConfig, identity, store: new IdentityStore(proc), hostUUID, log: logger('node') });
        console.log('STARTED');
      } catch (err) {
        console.log('FAILED: ' + err.message);
      }
      try {
        // The node's clients (its access feed's long poll among them) hold connections to the auth
        // server until they are closed: wait, up to a bound, for none to be left.
        const toAuth = () => process._getActiveHandles().filter((h) => h.remotePort === auth.address.port).length;
        const deadline = Date.now() + 10000;
        while (toAuth() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        console.log('connections to the auth server left: ' + toAuth());
      } finally {
        taken.close();
        await auth.close();
        await proc.close();
      }
      `,
    );
    // THEN it fails with the port and the service, and closed every connection it had opened.
    expect(r.stdout).toContain(`FAILED: the node service (SSH) cannot listen on 127.0.0.1:${auth.nodePort} (ssh_service.listen_addr): port ${auth.nodePort} is already in use`);
    expect(r.stdout).toContain('connections to the auth server left: 0\n');
    expect(r.code).toBe(0);
  });
});
