/**
 * `teleport start` with no flags and no config of its own, as an unprivileged
 * OS user with a fresh HOME: it runs auth, node and proxy, keeps its data under
 * that home, and prints next steps whose commands work exactly as printed —
 * `tctl users add`, then (after the web sign-up) `tsh login`, `tsh ls` and
 * `tsh ssh`, the session running as that OS user, and stock OpenSSH through
 * the `~/.ssh/config` block `tsh config` writes, host certificates checked.
 *
 * The tests run as root (as CI does), so the daemon and every printed command
 * run through setpriv as an unprivileged account. Only the ports come from a
 * file, named by TELEPORT_CONFIG (no flag), because the fixed default ports
 * 3022-3025/3080 may be taken by tests running in parallel. The root default
 * data dir (/var/lib/teleport) and the default roles are covered by the
 * config unit tests (test/runtime/config/config.test.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { totp } from '../../runtime/auth/totp';
import { webRequest, WebClientOptions } from '../../runtime/client/weblogin';
import { testOsAccount } from '../helpers/osusers';
import { cliPath, Daemon, freePort, run, RunResult, tempDir } from '../helpers/proc';

const PASSWORD = 'correct horse battery staple';
/** The unprivileged account everything runs as (created when the tests run as root, else the current user). */
const account = testOsAccount('start', { orCurrentUser: true });

describe('teleport start with no flags', () => {
  let home: string;
  let configPath: string;
  let ports: { auth: number; node: number; proxySsh: number; web: number; tunnel: number };
  let daemon: Daemon | undefined;
  /** `tsh` as a command on PATH (a small script running the compiled CLI). */
  let binDir: string;
  const nodeName = os.hostname();

  /** Runs `file args` as the unprivileged account (directly when the tests already run as it). */
  const asAccount = (file: string, args: string[]): [string, string[]] =>
    process.getuid?.() === account.uid
      ? [file, args]
      : ['setpriv', ['--reuid', String(account.uid), '--regid', String(account.gid), '--init-groups', '--', file, ...args]];
  /** A login shell's environment in a fresh terminal: HOME and PATH, no TELEPORT_CONFIG, not started from npm. */
  const freshEnv = (): NodeJS.ProcessEnv => ({ HOME: home, TELEPORT_CONFIG: undefined, TELEPORT_HOME: undefined, npm_lifecycle_event: undefined });
  /** Runs a printed command line (`tctl ...` / `tsh ...`) word for word as the account. */
  const runPrinted = (line: string, input?: string, extra: string[] = []): Promise<RunResult> => {
    expect(line).not.toMatch(/['"\\$`]/); // nothing here needs quoting, so a split on spaces is what a shell does
    const [tool, ...args] = line.split(' ');
    expect(['tctl', 'tsh']).toContain(tool);
    const [file, argv] = asAccount(process.execPath, [cliPath(tool as 'tctl' | 'tsh'), ...args, ...extra]);
    return run(file, argv, { env: freshEnv(), input, cwd: home });
  };
  /** Runs a printed shell line (`mkdir ... && tsh config >> ...`) as the account, with the tools on PATH as an installation has them. */
  const runShellLine = (line: string): Promise<RunResult> => {
    const [file, argv] = asAccount('/bin/sh', ['-c', line]);
    return run(file, argv, { env: { ...freshEnv(), PATH: `${binDir}:/usr/bin:/bin` }, cwd: home });
  };
  const printed = (out: string, re: RegExp): string => {
    const m = re.exec(out);
    if (!m) throw new Error(`no line matching ${re} in:\n${out}`);
    return m[1];
  };
  const startTeleport = async (): Promise<Daemon> => {
    // WHEN `teleport start` runs with no arguments beyond the command.
    const [file, argv] = asAccount(process.execPath, [cliPath('teleport'), 'start']);
    const d = Daemon.spawn(file, argv, { ...freshEnv(), TELEPORT_CONFIG: configPath });
    daemon = d;
    await d.waitForOutput(/teleport is running/);
    await d.waitForOutput(new RegExp(`tsh ssh \\S+@${nodeName}\\n`));
    return d;
  };
  const web = (): WebClientOptions => ({ scheme: 'https', host: '127.0.0.1', port: ports.web, insecure: true });

  beforeAll(async () => {
    // GIVEN a fresh HOME owned by the account and a file that sets only the listen ports.
    home = tempDir('start-defaults-');
    fs.chownSync(home, account.uid, account.gid);
    binDir = path.join(home, 'bin');
    fs.mkdirSync(binDir, { mode: 0o755 });
    fs.writeFileSync(path.join(binDir, 'tsh'), `#!/bin/sh\nexec ${process.execPath} ${cliPath('tsh')} "$@"\n`, { mode: 0o755 });
    ports = { auth: await freePort(), node: await freePort(), proxySsh: await freePort(), web: await freePort(), tunnel: await freePort() };
    configPath = path.join(home, 'ports.yaml');
    fs.writeFileSync(
      configPath,
      [
        'auth_service:',
        `  listen_addr: 127.0.0.1:${ports.auth}`,
        'ssh_service:',
        `  listen_addr: 127.0.0.1:${ports.node}`,
        'proxy_service:',
        `  listen_addr: 127.0.0.1:${ports.proxySsh}`,
        `  web_listen_addr: 127.0.0.1:${ports.web}`,
        `  tunnel_listen_addr: 127.0.0.1:${ports.tunnel}`,
        '',
      ].join('\n'),
      { mode: 0o644 },
    );
  });
  afterAll(async () => {
    await daemon?.stop();
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  it('GIVEN a new cluster THEN all three services run as the user, and the printed steps take a new user to a shell on the node', async () => {
    const d = await startTeleport();

    // THEN its state is under the account's home, private to it.
    const dataDir = path.join(home, '.local', 'share', 'teleport');
    const st = fs.statSync(dataDir);
    expect({ uid: st.uid, mode: st.mode & 0o777 }).toEqual({ uid: account.uid, mode: 0o700 });
    expect(fs.existsSync(path.join(dataDir, 'backend', 'sqlite.db'))).toBe(true);

    // THEN stdout says where things are, with the real ports.
    // THEN the cluster is named after the host, as Teleport names it.
    expect(d.stdout).toContain(`Teleport is up: cluster "${nodeName}".\n`);
    expect(d.stdout).toContain(`Data directory:  ${dataDir}\n`);
    expect(d.stdout).toContain(`Proxy:           https://localhost:${ports.web} (web, self-signed certificate), SSH on port ${ports.proxySsh}\n`);
    expect(d.stdout.match(/Next steps:/g)).toHaveLength(1);
    expect(d.stdout).not.toMatch(/token|secret|BEGIN/i);

    // WHEN the printed tctl command runs, from a terminal without TELEPORT_CONFIG.
    const tctlLine = printed(d.stdout, /^ {7}(tctl .*)$/m);
    expect(tctlLine).toBe(`tctl -c ${configPath} users add ${account.name} ${account.name}`);
    const added = await runPrinted(tctlLine);
    // THEN it creates the user and prints a sign-up URL on this proxy.
    expect({ code: added.code, stderr: added.stderr }).toEqual({ code: 0, stderr: '' });
    const token = printed(added.stdout, new RegExp(`^https://[^/\\s]+:${ports.web}/web/newuser/([0-9a-f]{32})$`, 'm'));

    // THEN the node service runs (its heartbeat is listed) and the proxy answers ping.
    const tctl = (...args: string[]) => runPrinted(`tctl -c ${configPath}`, undefined, args);
    const nodes = await tctl('nodes', 'ls');
    expect(nodes.stdout).toMatch(new RegExp(`^${nodeName}\\s+[0-9a-f-]{36}\\s+127\\.0\\.0\\.1:${ports.node}\\b`, 'm'));
    const ping = await webRequest<{ proxy: { ssh: { listen_addr: string } } }>(web(), 'GET', '/webapi/ping');
    expect(ping.proxy.ssh.listen_addr).toBe(`127.0.0.1:${ports.proxySsh}`);

    // WHEN the user signs up at that URL (password and TOTP, through the web API the page uses).
    const info = await webRequest<{ user: string; otp_secret: string }>(web(), 'GET', `/webapi/signuptokens/${token}`);
    expect(info.user).toBe(account.name);
    await webRequest(web(), 'POST', `/webapi/signuptokens/${token}`, { password: PASSWORD, otp_token: totp(info.otp_secret) });

    // AND runs the printed tsh login (password and the next TOTP code on stdin).
    const loginLine = printed(d.stdout, /^ {7}(tsh login .*)$/m);
    expect(loginLine).toBe(`tsh login --proxy=localhost:${ports.web} --insecure --user=${account.name}`);
    // (The step also names the self-signed certificate for those who would rather have tsh check it.)
    expect(d.stdout).toContain(`     and put NODE_EXTRA_CA_CERTS=${dataDir}/webproxy_cert.pem in front of the command):\n`);
    expect(fs.existsSync(path.join(dataDir, 'webproxy_cert.pem'))).toBe(true);
    const login = await runPrinted(loginLine, `${PASSWORD}\n${totp(info.otp_secret, { timeMs: Date.now() + 30_000 })}\n`);
    expect({ code: login.code, stdout: login.stdout }).toEqual({ code: 0, stdout: expect.stringContaining(`Logged in as: ${account.name}`) });

    // THEN tsh ls lists this node, and the printed tsh ssh opens a session as the OS user.
    expect(d.stdout).toMatch(/^ {7}tsh ls$/m);
    const ls = await runPrinted('tsh ls');
    expect(ls.stdout).toMatch(new RegExp(`^${nodeName}\\s`, 'm'));
    const sshLine = printed(d.stdout, /^ {7}(tsh ssh .*)$/m);
    expect(sshLine).toBe(`tsh ssh ${account.name}@${nodeName}`);
    const who = await runPrinted(sshLine, undefined, ['id', '-un']);
    expect({ code: who.code, stdout: who.stdout, stderr: who.stderr }).toEqual({ code: 0, stdout: `${account.name}\n`, stderr: '' });

    // WHEN the printed OpenSSH step adds the cluster to ~/.ssh/config, in a shell as the account.
    const configLine = printed(d.stdout, /^ {7}(mkdir -p .*)$/m);
    expect(configLine).toBe('mkdir -p ~/.ssh && tsh config >> ~/.ssh/config');
    const configured = await runShellLine(configLine);
    expect({ code: configured.code, stderr: configured.stderr }).toEqual({ code: 0, stderr: '' });
    const sshConfig = path.join(home, '.ssh', 'config');
    expect(fs.readFileSync(sshConfig, 'utf8')).toContain(`Host *.${nodeName} !localhost\n`);
    // AND the printed ssh line runs: stock OpenSSH reaches the node as <node>.<cluster>, checking both host certificates.
    // (ssh reads ~/.ssh/config from the account's passwd entry, not from $HOME, so the test names the file the step wrote.)
    const opensshLine = printed(d.stdout, /^ {7}(ssh .*)$/m);
    expect(opensshLine).toBe(`ssh -p ${ports.node} ${account.name}@${nodeName}.${nodeName}`);
    const [, ...opensshArgs] = opensshLine.split(' ');
    const [sshFile, sshArgv] = asAccount('ssh', ['-F', sshConfig, '-o', 'BatchMode=yes', ...opensshArgs, 'id', '-un']);
    const viaOpenssh = await run(sshFile, sshArgv, { env: freshEnv(), cwd: home });
    expect({ code: viaOpenssh.code, stdout: viaOpenssh.stdout, stderr: viaOpenssh.stderr }).toEqual({ code: 0, stdout: `${account.name}\n`, stderr: '' });

    // WHEN teleport is started again on this cluster, which now has a user.
    expect(await d.stop()).toBe(0);
    const again = await startTeleport();
    // THEN it prints only how to log in and connect.
    expect(again.stdout).not.toContain('Next steps');
    expect(again.stdout).not.toMatch(/^\s+tctl /m);
    expect(again.stdout).toContain(`  tsh login --proxy=localhost:${ports.web} --insecure --user=${account.name}\n`);
    expect(again.stdout).toContain(`  tsh ssh ${account.name}@${nodeName}\n`);
  });
});
