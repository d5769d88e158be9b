/**
 * A real OpenSSH server (Debian's openssh-server) on a loopback port, set up
 * by a test with the CA lines and host keys it should use, and the OpenSSH
 * client to talk to it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Daemon, freePort, run, RunResult, tempDir } from './proc';

export const SSHD = '/usr/sbin/sshd';

export interface SshdOptions {
  /** Lines for TrustedUserCAKeys (without the `cert-authority` marker). */
  trustedUserCAKeys?: string;
  /** Host private key file; a new ed25519 key when absent. */
  hostKey?: string;
  /** Host certificate file for HostCertificate. */
  hostCert?: string;
  /** More sshd_config lines, appended last (sshd keeps a keyword's first value, so only keywords not set above). */
  extraConfig?: string[];
}

export interface Sshd {
  port: number;
  dir: string;
  daemon: Daemon;
  close(): Promise<void>;
}

export async function startSshd(opts: SshdOptions): Promise<Sshd> {
  if (!fs.existsSync(SSHD)) throw new Error(`${SSHD} is missing: install openssh-server (.ci/run does)`);
  if (process.getuid?.() === 0) fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const dir = tempDir('sshd-');
  let hostKey = opts.hostKey;
  if (!hostKey) {
    hostKey = path.join(dir, 'ssh_host_ed25519_key');
    const r = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
    if (r.code !== 0) throw new Error(r.stderr);
  }
  const port = await freePort();
  const lines = [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${hostKey}`,
    ...(opts.hostCert ? [`HostCertificate ${opts.hostCert}`] : []),
    'AuthorizedKeysFile none',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    'UsePAM no',
    'StrictModes no',
    'PermitRootLogin prohibit-password',
    `PidFile ${path.join(dir, 'sshd.pid')}`,
    'LogLevel VERBOSE',
  ];
  if (opts.trustedUserCAKeys) {
    const caFile = path.join(dir, 'teleport_user_ca.pub');
    fs.writeFileSync(caFile, opts.trustedUserCAKeys);
    lines.push(`TrustedUserCAKeys ${caFile}`);
  }
  lines.push(...(opts.extraConfig ?? []));
  const config = path.join(dir, 'sshd_config');
  fs.writeFileSync(config, lines.join('\n') + '\n');
  const daemon = Daemon.spawn(SSHD, ['-D', '-e', '-f', config]);
  await daemon.waitForOutput(/Server listening on 127\.0\.0\.1 port/);
  return {
    port,
    dir,
    daemon,
    close: async () => {
      await daemon.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const LOGIN = os.userInfo().username;

/** Runs the OpenSSH client with no user configuration, non-interactively. */
export function ssh(port: number, args: string[], extraOptions: string[] = []): Promise<RunResult> {
  return run('ssh', [
    '-F', '/dev/null',
    '-p', String(port),
    '-o', 'BatchMode=yes',
    '-o', 'IdentitiesOnly=yes',
    '-o', 'ConnectTimeout=10',
    '-o', 'LogLevel=ERROR',
    ...extraOptions,
    ...args,
  ]);
}

/** The keys of `tctl auth export --type=user` output as a TrustedUserCAKeys file (without the `cert-authority` markers). */
export const trustedUserCAKeys = (exported: string): string =>
  exported
    .split('\n')
    .filter((l) => l.startsWith('cert-authority '))
    .map((l) => l.replace(/^cert-authority /, ''))
    .join('\n') + '\n';
