/**
 * The whole story of the proxy issue in one test, as a person lives it:
 * an admin starts auth + proxy + node and runs `tctl users add`; the user
 * signs up in a browser (headless Chromium) with a password and TOTP, logs in
 * with `tsh`, lists nodes, runs a command, reaches the node with stock
 * OpenSSH through the proxy using the certificate tsh saved, and plays back
 * what they typed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Browser } from 'playwright-core';
import { goto, launchChromium, newContext } from '../helpers/browser';
import { startCluster, TestAuth } from '../helpers/cluster';
import { cliPath, run, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';

describe('the proxy story: sign-up in a browser, tsh, OpenSSH, playback', () => {
  let c: TestAuth;
  let browser: Browser;
  let alice: TshUser | undefined;

  beforeAll(async () => {
    c = await startCluster({ proxy: {}, labels: { env: 'staging' }, commands: [{ name: 'kernel', command: ['uname', '-s'], period: '1h' }] });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await c?.cleanup();
    alice?.cleanup();
  });

  it('GIVEN a new cluster WHEN a user signs up, logs in and works THEN every step does what the docs say', async () => {
    // GIVEN the admin adds a user: tctl prints the sign-up URL on the proxy
    const added = await c.tctlOk('users', 'add', 'alice', LOGIN);
    const url = /https:\/\/\S+\/web\/newuser\/[0-9a-f]{32}/.exec(added)![0];

    // WHEN the user opens it in a browser, scans the code (reads the secret) and chooses a password
    const page = await (await newContext(browser)).newPage();
    await goto(page, url.replace(/^https:\/\/[^/]+/, c.webUrl()));
    await page.locator('#otp-secret').waitFor();
    const secret = (await page.locator('#otp-secret').textContent())!.trim();
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    alice = TshUser.forAccount(c, 'alice', 'a very long passphrase', secret);
    await page.fill('#password', alice.password);
    await page.fill('#password-confirm', alice.password);
    await page.fill('#otp', alice.nextCode());
    await page.click('#submit');
    await page.waitForSelector('#success:not([hidden]), #error:not([hidden])');
    expect(await page.locator('#error').isVisible() ? await page.textContent('#error') : 'ok').toBe('ok');

    // THEN tsh logs in with the password and a fresh code, and saves keys and the host CA
    const p = c.proxyPorts!;
    const login = await alice.tsh(['login', '--insecure', `--proxy=127.0.0.1:${p.web},${p.ssh}`, '--user=alice'], `${alice.password}\n${alice.nextCode()}\n`);
    expect(login.code).toBe(0);
    expect(login.stdout).toMatch(/Logged in as:\s+alice/);

    // AND tsh ls shows the node with its labels
    const ls = await alice.tsh(['ls']);
    expect(ls.stdout).toMatch(new RegExp(`^test-auth\\s+127\\.0\\.0\\.1:${c.nodePort}\\s+env=staging,kernel=Linux$`, 'm'));

    // AND tsh ssh runs a command and returns its exit code
    const ssh = await alice.tsh(['ssh', 'test-auth', 'echo "hello from $(hostname -s >/dev/null && echo the node)"; exit 42']);
    expect(ssh.stdout).toBe('hello from the node\n');
    expect(ssh.code).toBe(42);

    // AND stock OpenSSH reaches the node through the proxy's 3023 with what tsh saved
    const tshDir = path.join(alice.home, '.tsh');
    const key = path.join(tshDir, 'keys', '127.0.0.1', 'alice');
    const common = ['-F', '/dev/null', '-i', key, '-o', `CertificateFile=${key}-cert.pub`, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${path.join(tshDir, 'known_hosts')}`, '-o', 'StrictHostKeyChecking=yes'];
    const hop = `ssh ${common.join(' ')} -o HostKeyAlias=test-auth.example.com -p ${p.ssh} %r@127.0.0.1 -s proxy:%h:%p`;
    const openssh = await run('ssh', [...common, '-o', `ProxyCommand=${hop}`, '-p', String(c.nodePort), `${LOGIN}@test-auth.example.com`, 'echo openssh-through-proxy']);
    expect(openssh.stderr).toBe('');
    expect(openssh.stdout).toBe('openssh-through-proxy\n');

    // AND an interactive session (a terminal from script(1)) is recorded and tsh play shows what was typed
    const typed = await run('script', ['-qec', `${process.execPath} ${cliPath('tsh')} ssh test-auth`, '/dev/null'], {
      env: { HOME: alice.home, TELEPORT_HOME: '' },
      input: 'echo "sid=$TELEPORT_SESSION"; echo the-user-typed-$((20+3)); exit\r',
    });
    const sid = /sid=([0-9a-f-]{36})/.exec(typed.stdout)![1];
    const played = await waitFor('the uploaded recording', async () => {
      const r = await alice!.tsh(['play', sid]);
      return r.code === 0 ? r.stdout : undefined;
    });
    expect(played).toContain('echo the-user-typed-$((20+3))');
    expect(played).toContain('the-user-typed-23');
    expect(fs.existsSync(path.join(tshDir, 'known_hosts'))).toBe(true);
  });
});
