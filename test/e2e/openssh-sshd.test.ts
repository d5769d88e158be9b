/**
 * A stock OpenSSH server trusts what the cluster issues: user certificates
 * through TrustedUserCAKeys from `tctl auth export --type=user`, and its host
 * certificate from `tctl auth sign --host` through the `@cert-authority`
 * line of `tctl auth export --type=host`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startAuth, TestAuth, writeExpiredUserCert } from '../helpers/cluster';
import { LOGIN, ssh, startSshd, Sshd, trustedUserCAKeys } from '../helpers/sshd';
import { tempDir } from '../helpers/proc';

describe('OpenSSH sshd trusts the cluster CAs', () => {
  let auth: TestAuth;
  let other: TestAuth;
  let sshd: Sshd;
  let work: string;

  const keyOpts = (key: string) => ['-i', key, '-o', `CertificateFile=${key}-cert.pub`];
  const userLogin = (key: string, login = LOGIN) =>
    ssh(sshd.port, [...keyOpts(key), `${login}@127.0.0.1`, 'echo', 'logged-in'], ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null']);

  beforeAll(async () => {
    work = tempDir('sshd-e2e-');
    [auth, other] = await Promise.all([startAuth({ clusterName: 'example.com' }), startAuth({ clusterName: 'other.test', caKeyType: 'rsa' })]);
    await auth.tctlOk('users', 'add', 'alice', LOGIN);
    await auth.tctlOk('users', 'add', 'bob', 'not-a-login-here');
    await other.tctlOk('users', 'add', 'alice', LOGIN);
    const hostKey = path.join(work, 'host');
    await auth.tctlOk('auth', 'sign', '--host', 'node.example.com', '--format', 'openssh', '-o', hostKey, '--ttl', '1h');
    sshd = await startSshd({ trustedUserCAKeys: trustedUserCAKeys(await auth.tctlOk('auth', 'export', '--type=user')), hostKey, hostCert: hostKey + '-cert.pub' });
  });

  afterAll(async () => {
    await sshd?.close();
    await Promise.all([auth?.cleanup(), other?.cleanup()]);
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('GIVEN a user cert from tctl auth sign WHEN ssh logs in with it THEN the command runs', async () => {
    const key = path.join(work, 'alice');
    await auth.tctlOk('auth', 'sign', '--user', 'alice', '--format', 'openssh', '-o', key, '--ttl', '1h');
    expect(fs.statSync(key).mode & 0o777).toBe(0o600);
    const r = await userLogin(key);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('logged-in');
    expect(r.code).toBe(0);
    expect(sshd.daemon.stderr).toMatch(/Accepted certificate ID "alice"/);
  });

  it('GIVEN a cert for another principal THEN sshd refuses it', async () => {
    const key = path.join(work, 'bob');
    await auth.tctlOk('auth', 'sign', '--user', 'bob', '--format', 'openssh', '-o', key);
    const r = await userLogin(key);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Permission denied/);
    expect(sshd.daemon.stderr).toMatch(/name is not a listed principal/);
  });

  it('GIVEN a cert from another cluster CA THEN sshd refuses it', async () => {
    const key = path.join(work, 'alice-other');
    await other.tctlOk('auth', 'sign', '--user', 'alice', '--format', 'openssh', '-o', key);
    const r = await userLogin(key);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Permission denied/);
  });

  it('GIVEN an expired cert signed by the right CA THEN sshd refuses it', async () => {
    const key = await writeExpiredUserCert(auth, work, 'expired', 'alice', [LOGIN]);
    const r = await userLogin(key);
    expect(r.code).toBe(255);
    expect(sshd.daemon.stderr).toMatch(/Certificate invalid: expired/);
  });

  it('GIVEN a host cert offered as a user cert THEN the login is refused', async () => {
    const key = path.join(work, 'hostcert-as-user');
    await auth.tctlOk('auth', 'sign', '--host', LOGIN, '--format', 'openssh', '-o', key);
    const before = sshd.daemon.stderr.length;
    const r = await userLogin(key);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Permission denied/);
    expect(sshd.daemon.stderr.slice(before)).not.toMatch(/Accepted/);
  });

  it('GIVEN known_hosts with only the exported @cert-authority line WHEN ssh checks the host strictly THEN it trusts the host cert', async () => {
    const key = path.join(work, 'alice2');
    await auth.tctlOk('auth', 'sign', '--user', 'alice', '--format', 'openssh', '-o', key);
    const knownHosts = path.join(work, 'known_hosts');
    fs.writeFileSync(knownHosts, await auth.tctlOk('auth', 'export', '--type=host'));
    const strict = (kh: string) =>
      ssh(sshd.port, [...keyOpts(key), `${LOGIN}@127.0.0.1`, 'echo', 'trusted-host'], [
        '-o', `UserKnownHostsFile=${kh}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'HostKeyAlias=node.example.com',
      ]);
    const ok = await strict(knownHosts);
    expect(ok.stdout.trim()).toBe('trusted-host');
    expect(ok.code).toBe(0);

    // THEN the same check fails when known_hosts trusts another cluster's host CA instead.
    const otherKh = path.join(work, 'known_hosts_other');
    fs.writeFileSync(otherKh, (await other.tctlOk('auth', 'export', '--type=host')).replace(/other\.test/g, 'example.com'));
    const bad = await strict(otherKh);
    expect(bad.code).toBe(255);
    expect(bad.stderr).toMatch(/Host key verification failed/);
  });
});
