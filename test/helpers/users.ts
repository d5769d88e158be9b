/**
 * A cluster user as a person would be one: created with `tctl users add`,
 * signed up through the proxy's web API with a password and TOTP, and
 * logged in with `tsh login` into their own HOME. `tsh(...)` then runs tsh
 * as that person.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { keyPaths } from '../../runtime/client/keystore';
import { webRequest } from '../../runtime/client/weblogin';
import { TotpCodes } from '../../sim/user';
import { TestAuth } from './cluster';
import { runCli, RunResult, tempDir, waitFor } from './proc';

export class TshUser {
  private readonly codes: TotpCodes;
  private checked = false;

  private constructor(
    readonly name: string,
    readonly home: string,
    readonly password: string,
    readonly otpSecret: string,
    private readonly cluster: TestAuth,
  ) {
    this.codes = new TotpCodes(otpSecret);
  }

  /** A user who signs up some other way (a browser): `signUpCode()` gives the code to enter there. */
  static forAccount(c: TestAuth, name: string, password: string, otpSecret: string): TshUser {
    return new TshUser(name, tempDir(`tsh-${name}-`), password, otpSecret, c);
  }

  /** `tctl users add <name> <logins> [--roles]`, then sign-up with a password and TOTP code. */
  static async signUp(c: TestAuth, name: string, logins: string[], opts: { roles?: string[] } = {}): Promise<TshUser> {
    const out = await c.tctlOk('users', 'add', name, logins.join(','), ...(opts.roles ? [`--roles=${opts.roles.join(',')}`] : []));
    return TshUser.fromSignupLink(c, name, out);
  }

  /** Signs up through the proxy's web API with the link in `tctlOutput` (`tctl users add` or `users reset`). */
  static async fromSignupLink(c: TestAuth, name: string, tctlOutput: string, password = `${name} has a long password`): Promise<TshUser> {
    const token = /\/web\/newuser\/([0-9a-f]{32})/.exec(tctlOutput)![1];
    const url = new URL(c.webUrl());
    const web = { scheme: url.protocol === 'http:' ? ('http' as const) : ('https' as const), host: url.hostname, port: Number(url.port), insecure: true };
    const info = await webRequest<{ otp_secret: string }>(web, 'GET', `/webapi/signuptokens/${token}`);
    const user = new TshUser(name, tempDir(`tsh-${name}-`), password, info.otp_secret, c);
    await webRequest(web, 'POST', `/webapi/signuptokens/${token}`, { password: user.password, otp_token: user.nextCode() });
    return user;
  }

  /** A TOTP code for a step after the last one used. */
  nextCode(): string {
    return this.codes.next();
  }

  /** A TOTP code of a step not used yet, waiting for the next 30 s step when both in the accepted window are used. */
  freshCode(): Promise<string> {
    const unused = () => {
      try {
        return this.codes.next();
      } catch {
        return undefined;
      }
    };
    return waitFor(`an unused TOTP step for ${this.name}`, unused, 70_000, 500);
  }

  /** What tsh runs with: this user's home, and after `loginChecked()` the proxy's certificate trusted. */
  get env(): NodeJS.ProcessEnv {
    return { HOME: this.home, TELEPORT_HOME: '', ...(this.checked ? { NODE_EXTRA_CA_CERTS: path.join(this.cluster.dataDir, 'webproxy_cert.pem') } : {}) };
  }

  tsh(args: string[], input?: string, env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
    return runCli('tsh', args, { env: { ...this.env, ...env }, input });
  }

  /**
   * `tsh login` that checks the proxy's HTTPS certificate instead of --insecure: the test proxy's
   * self-signed one, trusted through NODE_EXTRA_CA_CERTS, by the name it has (localhost); later
   * tsh calls trust it too.
   */
  async loginChecked(): Promise<void> {
    this.checked = true;
    const p = this.cluster.proxyPorts!;
    const r = await this.tsh(['login', '--proxy', `localhost:${p.web},${p.ssh}`, '--user', this.name], `${this.password}\n${await this.freshCode()}\n`);
    if (r.code !== 0) throw new Error(`tsh login failed: ${r.stderr}`);
  }

  /** `tsh login` through the proxy (plain HTTP test proxies: http://), failing the test when it fails. */
  async login(): Promise<void> {
    this.checked = false;
    const p = this.cluster.proxyPorts!;
    const r = await this.tsh(['login', '--proxy', `${this.cluster.webUrl()},${p.ssh}`, '--insecure', '--user', this.name], `${this.password}\n${await this.freshCode()}\n`);
    if (r.code !== 0) throw new Error(`tsh login failed: ${r.stderr}`);
  }

  /** The SSH certificate of the last `login()`. */
  certFile(): string {
    return keyPaths(this.checked ? 'localhost' : new URL(this.cluster.webUrl()).hostname, this.name, path.join(this.home, '.tsh')).sshCert;
  }

  cleanup(): void {
    fs.rmSync(this.home, { recursive: true, force: true });
  }
}
