/**
 * A person using the deployed cluster from the internet (the client namespace): created as the
 * stack's FirstUserCommand says (`tctl users add` on an auth instance), signed up through the web
 * API behind the load balancer with a password and TOTP, logged in with `tsh login --proxy=<the
 * cluster's domain>:443`, then using `tsh` and OpenSSH (`tsh config`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { totp } from '../runtime/auth/totp';
import type { LocalDeployment } from './deploy';

/**
 * TOTP codes as a person types them: each for a step after the last one used (the server accepts
 * one step either side of now, and each code once).
 */
export class TotpCodes {
  private lastStep = -Infinity;

  constructor(private readonly secret: string) {}

  next(): string {
    const now = Math.floor(Date.now() / 30_000);
    const step = Math.max(now, this.lastStep + 1);
    if (step > now + 1) throw new Error('no unused TOTP step within the accepted window');
    this.lastStep = step;
    return totp(this.secret, { timeMs: step * 30_000 });
  }
}

export class ClusterUser {
  private readonly codes: TotpCodes;

  private constructor(
    private readonly d: LocalDeployment,
    readonly name: string,
    readonly home: string,
    readonly domain: string,
    private readonly password: string,
    secret: string,
  ) {
    this.codes = new TotpCodes(secret);
  }

  /** `tctl users add <name> <logins>` on an in-service auth instance, then sign-up through the cluster's domain. */
  static async signUp(d: LocalDeployment, name: string, logins: string[], home: string): Promise<ClusterUser> {
    const auth = d.asg.groups.find((g) => g.logicalId.startsWith('Auth'))?.live().find((i) => i.state === 'InService');
    if (!auth) throw new Error('no auth instance in service');
    const add = await auth.instance.exec(['tctl', 'users', 'add', name, logins.join(',')]);
    const token = /\/web\/newuser\/([0-9a-f]{32})/.exec(add.stdout)?.[1];
    if (add.code !== 0 || !token) throw new Error(`tctl users add ${name} failed: ${add.stderr}${add.stdout}`);
    const domain = new URL(d.deployment.resolvedOutputs().ProxyUrl?.value ?? '').hostname;
    const curl = (...args: string[]) => d.client(['curl', '-sS', '--fail-with-body', ...(d.publicWebCertificate ? ['--cacert', d.publicCaFile] : ['--insecure']), ...args]);
    const info = await curl(`https://${domain}/webapi/signuptokens/${token}`);
    if (info.code !== 0) throw new Error(`sign-up page: ${info.stderr}${info.stdout}`);
    fs.mkdirSync(home, { recursive: true, mode: 0o700 });
    const user = new ClusterUser(d, name, home, domain, `${name} has a long password`, JSON.parse(info.stdout).otp_secret);
    const done = await curl('-H', 'content-type: application/json', '--data', JSON.stringify({ password: user.password, otp_token: user.codes.next() }), `https://${domain}/webapi/signuptokens/${token}`);
    if (done.code !== 0) throw new Error(`sign-up: ${done.stderr}${done.stdout}`);
    return user;
  }

  /** The environment of the user's commands: their HOME, and the load balancer's certificate trusted as a public one. */
  get env(): Record<string, string> {
    return { HOME: this.home, NODE_EXTRA_CA_CERTS: this.d.publicCaFile };
  }

  /** Runs `tsh args...` as the user. */
  tsh(args: string[], input?: string): ReturnType<LocalDeployment['client']> {
    return this.d.client(['tsh', ...args], { env: this.env, ...(input !== undefined ? { input } : {}) });
  }

  /** `tsh login --proxy=<domain>:443`; fails with tsh's output when it does. */
  async login(): Promise<string> {
    // Without an ALB the proxy serves its own self-signed certificate: users pass --insecure, as it tells them.
    const insecure = this.d.publicWebCertificate ? [] : ['--insecure'];
    const r = await this.tsh(['login', `--proxy=${this.domain}:443`, `--user=${this.name}`, ...insecure], `${this.password}\n${this.codes.next()}\n`);
    if (r.code !== 0) throw new Error(`tsh login failed: ${r.stderr}${r.stdout}`);
    return r.stdout + r.stderr;
  }

  /** Writes `tsh config` to the user's ssh_config and runs stock `ssh -F` with it. */
  async ssh(target: string, command: string[]): ReturnType<LocalDeployment['client']> {
    const file = path.join(this.home, 'ssh_config');
    if (!fs.existsSync(file)) {
      const config = await this.tsh(['config']);
      if (config.code !== 0) throw new Error(`tsh config failed: ${config.stderr}`);
      fs.writeFileSync(file, config.stdout);
    }
    return this.d.client(['ssh', '-F', file, '-o', 'BatchMode=yes', target, ...command], { env: this.env });
  }
}
