/**
 * The next steps `teleport start` prints: which commands, for which state of
 * the cluster, and the tctl flags needed to reach a non-default auth server.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { defaultDataDir } from '../../../runtime/config';
import { formatNextSteps, NextStepsFacts, tctlFlagsFor } from '../../../runtime/service/nextsteps';
import { shellQuote } from '../../../runtime/utils/shell';

/** What a plain `teleport start` as joe on host "box" looks like on a new cluster. */
const fresh = (over: Partial<NextStepsFacts> = {}): NextStepsFacts => ({
  clusterName: 'box',
  dataDir: '/home/joe/.local/share/teleport',
  auth: { addr: { host: '127.0.0.1', port: 3025 }, userCount: 0, osUserExists: false, secondFactor: 'otp' },
  node: { name: 'box', listen: { host: '0.0.0.0', port: 3022 } },
  proxy: { webUrl: 'https://localhost:3080', tshProxy: 'localhost:3080', sshPort: 3023, selfSigned: true, certFile: '/home/joe/.local/share/teleport/webproxy_cert.pem' },
  osUser: 'joe',
  tctlFlags: [],
  commandPrefix: '',
  ...over,
});

const commands = (lines: string[]) => lines.filter((l) => /^\s+(npx )?(tctl|tsh) /.test(l)).map((l) => l.trim());
/** The OpenSSH lines: `tsh config` into ~/.ssh/config, then ssh. */
const openssh = (lines: string[]) => lines.filter((l) => /^\s+(mkdir|ssh) /.test(l)).map((l) => l.trim());

describe('formatNextSteps', () => {
  test('GIVEN a new cluster with all three services THEN it shows the addresses and the quickstart commands in order', () => {
    const lines = formatNextSteps(fresh());
    expect(lines[0]).toBe('Teleport is up: cluster "box".');
    expect(lines).toEqual(
      expect.arrayContaining([
        '  Data directory:  /home/joe/.local/share/teleport',
        '  Auth service:    127.0.0.1:3025',
        '  Node:            box (SSH on 0.0.0.0:3022)',
        '  Proxy:           https://localhost:3080 (web, self-signed certificate), SSH on port 3023',
        'Next steps:',
      ]),
    );
    expect(commands(lines)).toEqual(['tctl users add joe joe', 'tsh login --proxy=localhost:3080 --insecure --user=joe', 'tsh ls', 'tsh ssh joe@box']);
    expect(lines.join('\n')).toMatch(/open it, choose a password and scan the QR code/);
    // THEN the self-signed certificate's file is named for those who would rather have tsh check it.
    expect(lines).toContain('     and put NODE_EXTRA_CA_CERTS=/home/joe/.local/share/teleport/webproxy_cert.pem in front of the command):');
    // THEN step 4 is stock OpenSSH through tsh config, the node named <node>.<cluster> (its certificate's principal).
    expect(lines).toContain('  4. Or use OpenSSH: add the cluster to ~/.ssh/config once; then ssh, scp and sftp reach its nodes as <node>.box, host certificates checked:');
    expect(openssh(lines)).toEqual(['mkdir -p ~/.ssh && tsh config >> ~/.ssh/config', 'ssh joe@box.box']);
  });

  test('GIVEN the node on another port than 3022 THEN the OpenSSH command names the port', () => {
    const lines = formatNextSteps(fresh({ node: { name: 'box', listen: { host: '127.0.0.1', port: 14022 } } }));
    expect(openssh(lines)).toEqual(['mkdir -p ~/.ssh && tsh config >> ~/.ssh/config', 'ssh -p 14022 joe@box.box']);
  });

  test('GIVEN it was started from npm with a config file THEN the commands go through npx and tctl gets -c', () => {
    const lines = formatNextSteps(fresh({ commandPrefix: 'npx ', tctlFlags: ['-c', '/srv/my teleport.yaml'] }));
    expect(commands(lines)).toEqual([
      "npx tctl -c '/srv/my teleport.yaml' users add joe joe",
      'npx tsh login --proxy=localhost:3080 --insecure --user=joe',
      'npx tsh ls',
      'npx tsh ssh joe@box',
    ]);
    expect(openssh(lines)).toEqual(['mkdir -p ~/.ssh && npx tsh config >> ~/.ssh/config', 'ssh joe@box.box']);
  });

  test('GIVEN the cluster has users THEN only the login hint is printed, named after the OS user only if that user exists', () => {
    const withJoe = formatNextSteps(fresh({ auth: { ...fresh().auth!, userCount: 2, osUserExists: true } }));
    expect(withJoe).not.toContain('Next steps:');
    expect(commands(withJoe)).toEqual(['tsh login --proxy=localhost:3080 --insecure --user=joe', 'tsh ls', 'tsh ssh joe@box']);
    expect(openssh(withJoe)).toEqual(['mkdir -p ~/.ssh && tsh config >> ~/.ssh/config', 'ssh joe@box.box']);
    const others = formatNextSteps(fresh({ auth: { ...fresh().auth!, userCount: 1, osUserExists: false } }));
    expect(commands(others)).toEqual(['tsh login --proxy=localhost:3080 --insecure --user=<user>', 'tsh ls', 'tsh ssh <login>@box']);
    expect(openssh(others)).toEqual(['mkdir -p ~/.ssh && tsh config >> ~/.ssh/config', 'ssh <login>@box.box']);
  });

  test('GIVEN a proxy without TLS and no second factor THEN login uses http:// without --insecure and sign-up asks only for a password', () => {
    const lines = formatNextSteps(
      fresh({
        auth: { ...fresh().auth!, secondFactor: 'off' },
        proxy: { webUrl: 'http://localhost:3080', tshProxy: 'http://localhost:3080', sshPort: 3023, selfSigned: false },
      }),
    );
    expect(commands(lines)).toContain('tsh login --proxy=http://localhost:3080 --user=joe');
    expect(lines).toContain('  2. Log in:');
    expect(lines.join('\n')).not.toContain('NODE_EXTRA_CA_CERTS');
    expect(lines).toContain('     It prints a sign-up URL: open it, choose a password.');
  });

  test.each([
    ['webauthn', 'choose a password and register a security key (WebAuthn; security keys are required)'],
    ['on', 'choose a password and set up an authenticator app or a security key'],
    ['optional', 'choose a password and set up an authenticator app or a security key'],
  ] as const)('GIVEN second_factor %s THEN sign-up says what to set up', (secondFactor, says) => {
    const lines = formatNextSteps(fresh({ auth: { ...fresh().auth!, secondFactor } }));
    expect(lines.join('\n')).toContain(`open it, ${says}`);
  });

  test('GIVEN auth and node but no proxy THEN the login step says a proxy is needed', () => {
    const { proxy: _none, ...facts } = fresh();
    const lines = formatNextSteps(facts);
    expect(lines.join('\n')).toMatch(/this process runs none: start one with --roles=proxy/);
    expect(commands(lines)).toContain('tsh login --proxy=<proxy host>:3080 --user=joe');
  });

  test('GIVEN only a node that joined another cluster THEN there is nothing to print', () => {
    const { auth: _a, proxy: _p, ...facts } = fresh();
    expect(formatNextSteps(facts)).toEqual([]);
  });
});

describe('shellQuote', () => {
  test('THEN plain words stay as they are and others are single-quoted so a shell reads them back', () => {
    expect(shellQuote('--proxy=localhost:3080')).toBe('--proxy=localhost:3080');
    expect(shellQuote('/tmp/a b')).toBe("'/tmp/a b'");
    expect(shellQuote("it's")).toBe("'it'\\''s'");
  });
});

describe('tctlFlagsFor', () => {
  const env = { HOME: '/home/joe' };
  const home = defaultDataDir(env);

  test('GIVEN the defaults (no config file, default data dir, auth on all interfaces) THEN tctl needs no flags', () => {
    expect(tctlFlagsFor({ env, dataDir: home, authAddr: { host: '0.0.0.0', port: 3025 } })).toEqual([]);
  });

  test('GIVEN --data-dir or --listen-ip THEN tctl is told the data dir or the auth address', () => {
    expect(tctlFlagsFor({ env, dataDir: '/srv/tp', authAddr: { host: '127.0.0.1', port: 3025 } })).toEqual(['--data-dir', '/srv/tp']);
    expect(tctlFlagsFor({ env, dataDir: home, authAddr: { host: '10.1.2.3', port: 3025 } })).toEqual(['--auth-server=10.1.2.3:3025']);
  });

  test('GIVEN a config file (even one named by TELEPORT_CONFIG) THEN tctl gets -c and nothing the file already says', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nextsteps-'));
    try {
      const file = path.join(dir, 'teleport.yaml');
      fs.writeFileSync(file, `teleport:\n  data_dir: ${dir}/data\nauth_service:\n  listen_addr: 127.0.0.1:4025\n`);
      const flags = tctlFlagsFor({ configPath: file, env: { ...env, TELEPORT_CONFIG: file }, dataDir: `${dir}/data`, authAddr: { host: '127.0.0.1', port: 4025 } });
      expect(flags).toEqual(['-c', file]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
