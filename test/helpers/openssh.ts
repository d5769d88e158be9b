/**
 * A cluster user as the stock OpenSSH client sees it: a key and certificate
 * from `tctl auth sign`, known_hosts holding only the cluster's
 * `@cert-authority` line, and `ssh`/`scp`/`sftp` that use them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TestAuth } from './cluster';
import { run, RunResult } from './proc';

export class SshUser {
  private constructor(
    readonly key: string,
    readonly knownHosts: string,
    readonly login: string,
  ) {}

  /** Signs a certificate for cluster user `user` (who must exist) and writes known_hosts. */
  static async create(auth: TestAuth, dir: string, user: string, login: string, ttl = '1h'): Promise<SshUser> {
    const key = path.join(dir, `${user}-key`);
    await auth.tctlOk('auth', 'sign', '--user', user, '--format', 'openssh', '-o', key, '--ttl', ttl);
    return SshUser.withKey(auth, key, login);
  }

  /** Uses the key at `key` and its certificate at `key-cert.pub`; writes known_hosts next to them. */
  static async withKey(auth: TestAuth, key: string, login: string): Promise<SshUser> {
    const knownHosts = path.join(path.dirname(key), 'known_hosts');
    if (!fs.existsSync(knownHosts)) fs.writeFileSync(knownHosts, await auth.tctlOk('auth', 'export', '--type=host'));
    return new SshUser(key, knownHosts, login);
  }

  /** The same key and certificate with other known_hosts (e.g. an older export of the host CA). */
  static withKnownHosts(user: SshUser, knownHosts: string): SshUser {
    return new SshUser(user.key, knownHosts, user.login);
  }

  /** Options that make OpenSSH use this identity and check the node's host certificate strictly. */
  options(nodeName: string, cluster = 'example.com'): string[] {
    return [
      '-F', '/dev/null',
      '-i', this.key,
      '-o', `CertificateFile=${this.key}-cert.pub`,
      '-o', 'IdentitiesOnly=yes',
      '-o', 'BatchMode=yes',
      '-o', `UserKnownHostsFile=${this.knownHosts}`,
      '-o', 'StrictHostKeyChecking=yes',
      '-o', `HostKeyAlias=${nodeName}.${cluster}`,
      '-o', 'ConnectTimeout=10',
      '-o', 'LogLevel=ERROR',
    ];
  }
}

/** `ssh [opts] -p port login@127.0.0.1 cmd...` as `user`. */
export function sshTo(user: SshUser, port: number, nodeName: string, remote: string[], extra: string[] = [], input?: string): Promise<RunResult> {
  return run('ssh', [...user.options(nodeName), '-p', String(port), ...extra, `${user.login}@127.0.0.1`, ...remote], input === undefined ? {} : { input });
}

/** The fingerprint (SHA256:…) of the CA key that signed an OpenSSH certificate file, as `ssh-keygen -L` shows it. */
export async function signingCAOf(certFile: string): Promise<string> {
  return /Signing CA: \S+ (SHA256:\S+)/.exec((await run('ssh-keygen', ['-L', '-f', certFile])).stdout)![1];
}

/** The fingerprint of the CA that signed the host certificate the SSH server on `port` presents (`ssh-keyscan -c`). */
export async function presentedHostCA(port: number, dir: string): Promise<string> {
  const r = await run('ssh-keyscan', ['-c', '-p', String(port), '127.0.0.1']);
  // `-c` prints the certificate without the host name in front (and without a newline after it)
  const cert = /(\S+-cert-v01@openssh\.com) ([A-Za-z0-9+/]+=*)/.exec(r.stdout);
  if (!cert) throw new Error(`no host certificate from port ${port}: ${r.stdout} ${r.stderr}`);
  const file = path.join(dir, `keyscan-${port}-cert.pub`);
  fs.writeFileSync(file, `${cert[1]} ${cert[2]}\n`);
  return signingCAOf(file);
}
