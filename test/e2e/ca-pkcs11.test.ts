/**
 * CA keys in a PKCS#11 token (SoftHSM2): the auth server generates the user
 * and host CA keys inside the token, keeps only public keys and key
 * references in the backend, and signs through the token. Stock OpenSSH
 * accepts what it issues; no CA private key exists on disk outside the token.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseAuthorizedKey, parseCertificate, verifyCertificate } from '../../runtime/sshcert';
import { caPrivateKeysUnder, caPublicKeys, privateKeysUnder, storedCAs } from '../helpers/cakeys';
import { createAuth, startAuth, startCluster, TestAuth } from '../helpers/cluster';
import { SshUser, sshTo } from '../helpers/openssh';
import { cliPath, Daemon, tempDir, waitFor } from '../helpers/proc';
import { createSoftHsmToken, SoftHsmToken, tokenPrivateKeys } from '../helpers/softhsm';
import { LOGIN, ssh, startSshd, Sshd, trustedUserCAKeys } from '../helpers/sshd';

const unb64 = (s: string) => Buffer.from(s, 'base64').toString();

describe('CA keys in a PKCS#11 token (SoftHSM2)', () => {
  let token: SoftHsmToken;
  let auth: TestAuth;
  let sshd: Sshd | undefined;
  let work: string;

  beforeAll(async () => {
    work = tempDir('pkcs11-e2e-');
    token = await createSoftHsmToken();
    auth = await startCluster({ authExtra: token.authConfig() }, token.env);
    await auth.tctlOk('users', 'add', 'alice', LOGIN);
  });

  afterAll(async () => {
    await sshd?.close();
    await auth?.cleanup();
    token?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('GIVEN a cluster whose CAs are in the token WHEN the backend is read THEN it holds key references to the token and ECDSA P-256 public keys', async () => {
    // WHEN
    const cas = await storedCAs(auth);
    // THEN
    const refs = cas.flatMap((ca) => [unb64(ca.spec.signing_keys[0]), unb64(ca.spec.tls_key_pairs[0].key)]);
    for (const ref of refs) expect(ref).toMatch(/^pkcs11:\{"token":"teleport-test","key_id":"[0-9a-f]{32}"\}$/);
    expect(new Set(refs).size).toBe(4);
    for (const ca of cas) expect(unb64(ca.spec.checking_keys[0])).toMatch(/^ecdsa-sha2-nistp256 /);
    // AND the token holds exactly those four keys, sensitive and not extractable
    const inToken = await tokenPrivateKeys(token);
    expect(inToken.map((k) => k.id).sort()).toEqual(refs.map((r) => JSON.parse(r.slice('pkcs11:'.length)).key_id).sort());
    for (const k of inToken) expect(k).toMatchObject({ extractable: false, sensitive: true });
  });

  it('GIVEN a user certificate from the token WHEN stock ssh logs in to the cluster node THEN the node accepts it and ssh trusts the node by its token-signed host certificate', async () => {
    // GIVEN
    const user = await SshUser.create(auth, work, 'alice', LOGIN);
    // WHEN: StrictHostKeyChecking with only the exported @cert-authority line
    const r = await sshTo(user, auth.nodePort!, 'test-auth', ['echo', 'signed-in-the-token']);
    // THEN
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('signed-in-the-token');
    expect(r.code).toBe(0);
  });

  it('GIVEN a stock sshd trusting the exported user CA and holding a host certificate from tctl auth sign WHEN ssh logs in THEN both certificates are accepted', async () => {
    // GIVEN
    const exported = await auth.tctlOk('auth', 'export', '--type=user');
    const userCA = trustedUserCAKeys(exported);
    const hostKey = path.join(work, 'sshd-host');
    await auth.tctlOk('auth', 'sign', '--host', 'node.example.com', '--format', 'openssh', '-o', hostKey, '--ttl', '1h');
    sshd = await startSshd({ trustedUserCAKeys: userCA, hostKey, hostCert: hostKey + '-cert.pub' });
    const key = path.join(work, 'alice-sshd');
    await auth.tctlOk('auth', 'sign', '--user', 'alice', '--format', 'openssh', '-o', key, '--ttl', '1h');
    const knownHosts = path.join(work, 'known_hosts_sshd');
    fs.writeFileSync(knownHosts, await auth.tctlOk('auth', 'export', '--type=host'));
    // WHEN
    const r = await ssh(sshd.port, ['-i', key, '-o', `CertificateFile=${key}-cert.pub`, `${LOGIN}@127.0.0.1`, 'echo', 'sshd-ok'], [
      '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'HostKeyAlias=node.example.com',
    ]);
    // THEN
    expect(r.stdout.trim()).toBe('sshd-ok');
    expect(r.code).toBe(0);
    expect(sshd.daemon.stderr).toMatch(/Accepted certificate ID "alice" \(serial \d+\) signed by ECDSA CA/);
  });

  it('GIVEN the cluster has issued certificates WHEN every file under the data dir is scanned THEN no private key there belongs to a CA', async () => {
    // GIVEN
    const caKeys = caPublicKeys(await storedCAs(auth));
    expect(caKeys.size).toBe(4);
    // WHEN
    const found = privateKeysUnder(auth.dataDir);
    // THEN: the scan does find keys (the node's own host keys), none of them a CA's
    expect(found.length).toBeGreaterThan(0);
    expect(caPrivateKeysUnder(auth.dataDir, caKeys)).toEqual([]);
  });
  it('GIVEN the running cluster WHEN HUP reloads it THEN it reopens the token and still issues certificates the node accepts', async () => {
    // GIVEN
    const before = auth.daemon!.stdout + auth.daemon!.stderr;
    const reloads = (before.match(/"reloaded"/g) ?? []).length;
    // WHEN
    auth.daemon!.child.kill('SIGHUP');
    await waitFor('the reload to finish', () => ((auth.daemon!.stdout + auth.daemon!.stderr).match(/"reloaded"/g) ?? []).length > reloads || auth.daemon!.child.exitCode !== null);
    // THEN
    expect(auth.daemon!.child.exitCode).toBeNull();
    const user = await SshUser.create(auth, path.join(work), 'alice', LOGIN);
    await waitFor('the node to serve again', async () => (await sshTo(user, auth.nodePort!, 'test-auth', ['true'])).code === 0);
    const r = await sshTo(user, auth.nodePort!, 'test-auth', ['echo', 'after-reload']);
    expect(r.stdout.trim()).toBe('after-reload');
  });

  it('GIVEN the user CA in the token WHEN it is rotated by hand to the end THEN its new keys are made in the token, its old ones are deleted from it, and the new key signs certificates the node accepts', async () => {
    /** The token key IDs of a CA's key references. */
    const keyIds = async (type: 'user' | 'host') => {
      const ca = (await storedCAs(auth)).find((c) => c.spec.type === type)!;
      return [...ca.spec.signing_keys, ...ca.spec.tls_key_pairs.map((p) => p.key)].map((r) => JSON.parse(unb64(r).slice('pkcs11:'.length)).key_id as string).sort();
    };
    const inToken = async () => (await tokenPrivateKeys(token)).map((k) => k.id).sort();
    const [oldUser, host] = [await keyIds('user'), await keyIds('host')];
    const rotate = (phase: string) => auth.tctlOk('auth', 'rotate', '--type=user', '--manual', `--phase=${phase}`);
    // WHEN the rotation starts THEN two new keys (SSH and TLS) are made in the token, sensitive and not extractable
    await rotate('init');
    const during = await keyIds('user');
    expect(during).toHaveLength(4);
    expect(await inToken()).toEqual([...host, ...during].sort());
    for (const k of await tokenPrivateKeys(token)) expect(k).toMatchObject({ extractable: false, sensitive: true });
    // WHEN it completes THEN only the new keys are left, in the backend and in the token
    for (const phase of ['update_clients', 'update_servers', 'standby']) await rotate(phase);
    const after = await keyIds('user');
    expect(after).toHaveLength(2);
    expect(after.filter((id) => oldUser.includes(id))).toEqual([]);
    expect(await inToken()).toEqual([...host, ...after].sort());
    // THEN certificates from the new key get in
    const user = await SshUser.create(auth, fs.mkdtempSync(path.join(work, 'rotated-')), 'alice', LOGIN);
    await waitFor('the node to take the new key', async () => (await sshTo(user, auth.nodePort!, 'test-auth', ['true'])).code === 0);
  });
});

describe('the private-key scan itself', () => {
  let auth: TestAuth;
  afterAll(async () => auth?.cleanup());

  it('GIVEN a cluster with in-process CA keys (the default) WHEN its data dir is scanned THEN all four CA private keys are found', async () => {
    // GIVEN
    auth = await startAuth();
    const caKeys = caPublicKeys(await storedCAs(auth));
    // WHEN
    const found = caPrivateKeysUnder(auth.dataDir, caKeys);
    // THEN
    expect(new Set(found).size).toBe(4);
  });
});

describe('PKCS#11 settings that cannot work', () => {
  let token: SoftHsmToken;
  const dirs: string[] = [];
  beforeAll(async () => {
    token = await createSoftHsmToken('bad-settings');
  });
  afterAll(() => {
    token?.cleanup();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  /** `teleport start` with these auth_service lines: it must exit by itself, non-zero; returns its output. */
  async function failedStart(authExtra: string[]): Promise<{ code: number | null; output: string; dataDir: string }> {
    const a = await createAuth({ authExtra });
    dirs.push(a.dir);
    const d = Daemon.spawn(process.execPath, [cliPath('teleport'), 'start', '--roles=auth', '-c', a.configPath], token.env);
    try {
      const code = await waitFor('teleport start to exit', () => d.child.exitCode ?? undefined, 20_000);
      return { code, output: d.stdout + d.stderr, dataDir: a.dataDir };
    } finally {
      await d.stop('SIGKILL');
    }
  }

  it('GIVEN a wrong PIN WHEN teleport starts THEN it exits non-zero naming the pin setting and its line, and the token stays empty', async () => {
    // GIVEN / WHEN
    const r = await failedStart(token.authConfig({ pin: '0000' }));
    // THEN
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/teleport\.yaml:\d+:\d+: auth_service\.ca_key_params\.pkcs11\.pin: wrong PIN for PKCS#11 token "bad-settings"/);
    expect(r.output).not.toContain('0000');
    expect(await tokenPrivateKeys(token)).toEqual([]);
  });

  it('GIVEN a token label the module does not have WHEN teleport starts THEN it exits non-zero listing the tokens there are', async () => {
    const r = await failedStart(token.authConfig({ label: 'no-such-token' }));
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/auth_service\.ca_key_params\.pkcs11\.token_label: the PKCS#11 module has no initialized token "no-such-token" \(tokens: slot \d+ "bad-settings"/);
  });

  it('GIVEN a module path that does not exist WHEN teleport starts THEN the config error names the file and line', async () => {
    const r = await failedStart(token.authConfig({ modulePath: '/nonexistent/libpkcs11.so' }));
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/teleport\.yaml:\d+:\d+: auth_service\.ca_key_params\.pkcs11\.module_path: no such file: "\/nonexistent\/libpkcs11\.so"/);
  });

  it('GIVEN a module path that is not a PKCS#11 library WHEN teleport starts THEN it exits non-zero saying it cannot load the module', async () => {
    const notAModule = path.join(token.dir, 'not-a-module.so');
    fs.writeFileSync(notAModule, 'not ELF');
    const r = await failedStart(token.authConfig({ modulePath: notAModule }));
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/auth_service\.ca_key_params\.pkcs11\.module_path: cannot load the PKCS#11 module/);
  });
});

describe('two auth servers sharing one storage and one token', () => {
  let token: SoftHsmToken;
  let storage: string;
  let a: TestAuth;
  let b: TestAuth;

  beforeAll(async () => {
    token = await createSoftHsmToken('shared');
    storage = tempDir('pkcs11-shared-');
    [a, b] = await Promise.all([createAuth({ storagePath: storage, authExtra: token.authConfig() }), createAuth({ storagePath: storage, authExtra: token.authConfig() })]);
  });
  afterAll(async () => {
    await Promise.all([a?.cleanup(), b?.cleanup()]);
    token?.cleanup();
    fs.rmSync(storage, { recursive: true, force: true });
  });

  it('GIVEN a second auth server started on the storage and token of the first WHEN both are up THEN they share one set of CA keys in the token and both issue certificates of that CA', async () => {
    // GIVEN / WHEN
    a.start(token.env);
    await a.ready();
    b.start(token.env);
    await b.ready();
    // THEN
    const exported = await a.tctlOk('auth', 'export');
    expect(await b.tctlOk('auth', 'export')).toBe(exported);
    expect((await tokenPrivateKeys(token)).length).toBe(4);
    await a.tctlOk('users', 'add', 'alice', LOGIN);
    const userCA = parseAuthorizedKey(exported.split('\n').find((l) => l.startsWith('cert-authority '))!.replace(/^cert-authority /, '')).blob;
    for (const [i, server] of [a, b].entries()) {
      const key = path.join(storage, `alice-${i}`);
      await waitFor('the user to reach both servers', async () => (await server.tctl('auth', 'sign', '--user', 'alice', '--format', 'openssh', '-o', key)).code === 0);
      const cert = parseCertificate(parseAuthorizedKey(fs.readFileSync(key + '-cert.pub', 'utf8')).blob);
      expect(cert.signatureKey.equals(userCA)).toBe(true);
      expect(() => verifyCertificate(cert, { trustedCAs: [userCA], certType: 'user', principal: LOGIN })).not.toThrow();
    }
  });
});
