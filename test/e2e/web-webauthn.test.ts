/**
 * WebAuthn security keys (issue 21 item 3) in real Chromium with its virtual
 * authenticator (DevTools protocol: WebAuthn.enable, addVirtualAuthenticator):
 * with `second_factor: webauthn` alice registers a key at sign-up and logs in
 * with it; a login whose assertion comes from another credential (bob's key),
 * a replayed assertion and one whose sign counter went back are refused and
 * audited; a page on another origin than the proxy's public address gets no
 * ceremony. `tsh login` prints a page on the proxy where frank uses his key,
 * and gets certificates; the page's request is single use and only tsh's
 * secret collects its answer. On the account page gina's key is the second
 * factor of a password change, and her only key cannot go. With
 * `second_factor: on`, carol signs up with an authenticator app, adds a
 * security key on the account page, logs in with it, removes her app with the
 * key, and cannot remove the key, her last device; tsh login with no code
 * sends her to her key.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import type { Browser, BrowserContext, CDPSession, Page } from 'playwright-core';
import { axeViolations, failing, formatViolations } from '../helpers/axe';
import { goto, launchChromium, newContext } from '../helpers/browser';
import { startAuth, TestAuth } from '../helpers/cluster';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';
import { cliPath, Daemon, runCli, tempDir } from '../helpers/proc';

const SITE = 'example.com';
const PASSWORD = 'a long enough password';

interface VirtualCredential {
  credentialId: string;
  isResidentCredential: boolean;
  rpId?: string;
  privateKey: string;
  userHandle?: string;
  signCount: number;
}

/** A virtual authenticator in `page` (CTAP2 over USB, touched automatically, user verification passing). */
async function virtualKey(context: BrowserContext, page: Page): Promise<{ cdp: CDPSession; id: string; credentials: () => Promise<VirtualCredential[]> }> {
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'usb', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  const credentials = async () => (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials as VirtualCredential[];
  return { cdp, id: authenticatorId, credentials };
}

const base64url = (b64: string) => Buffer.from(b64, 'base64').toString('base64url');

/** Signs up `user` on the page with the sign-up link `tctl users add` printed (with `second_factor: webauthn`, registering a key). */
async function signUpInBrowser(c: TestAuth, page: Page, user: string): Promise<void> {
  const out = await c.tctlOk('users', 'add', user, LOGIN);
  const token = /\/web\/newuser\/([0-9a-f]{32})/.exec(out)![1];
  await goto(page, `${c.webUrl()}/web/newuser/${token}`);
  await page.locator('#signup').waitFor();
  await page.fill('#password', PASSWORD);
  await page.fill('#password-confirm', PASSWORD);
  await page.click('#submit');
  await page.locator('#success').waitFor();
}

/** The outcome of a login the page makes itself with the key: 'ok' or `<status> <message>`, and the key's answer; `allowCredential`: the only credential the challenge allows. */
function scriptedKeyLogin(page: Page, user: string, allowCredential?: string): Promise<{ result: string; assertion?: unknown }> {
  return page.evaluate(
    async ([user, pass, allow]) => {
      const ui = (globalThis as any).TeleportUi;
      const begin = await ui.api('POST', '/webapi/mfa/login/begin', { user, pass });
      if (allow) begin.publicKey.allowCredentials = [{ id: allow, type: 'public-key' }];
      const assertion = await ui.useKey(begin.publicKey);
      return ui.api('POST', '/webapi/sessions', { user, pass, webauthn_response: assertion }).then(
        () => ({ result: 'ok', assertion }),
        (e: any) => ({ result: `${e.status} ${e.message}`, assertion }),
      );
    },
    [user, PASSWORD, allowCredential ?? ''] as const,
  );
}

/** The page's accessibility violations of moderate impact or worse (test/e2e/web-a11y.test.ts), one line each. */
const a11yFailures = async (page: Page, name: string) => formatViolations(name, failing(await axeViolations(page)));

/** The page `tsh login` prints for the user's security key. */
const TSH_PAGE = /https:\/\/localhost:\d+\/web\/cli-mfa\/([0-9a-f]{32})/;

/** `tsh login` as `user`, in a HOME of its own, with `input` on stdin, running until it ends. */
function tshLogin(c: TestAuth, user: string, input: string): { tsh: Daemon; home: string } {
  const home = tempDir(`tsh-${user}-`);
  const args = ['login', '--proxy', `${c.webUrl()},${c.proxyPorts!.ssh}`, '--insecure', '--user', user];
  const child = spawn(process.execPath, [cliPath('tsh'), ...args], { env: { ...process.env, HOME: home, TELEPORT_HOME: '' }, stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.end(input);
  return { tsh: new Daemon(child), home };
}

async function failedLogins(c: TestAuth, user: string): Promise<string[]> {
  return (await c.events(['user.login'])).filter((e) => e.user === user && e.success === false).map((e) => String(e.error));
}

describe('security keys (second_factor: webauthn)', () => {
  let c: TestAuth;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let key: Awaited<ReturnType<typeof virtualKey>>;

  beforeAll(async () => {
    c = await startAuth({ proxy: { publicHost: 'localhost' }, authExtra: ['authentication:', '  type: local', '  second_factor: webauthn'] });
    browser = await launchChromium();
    context = await newContext(browser);
    page = await context.newPage();
    key = await virtualKey(context, page);
  });
  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await c?.cleanup();
  });

  it('GIVEN a sign-up link WHEN alice signs up with her security key THEN the key is registered and logs her in, and the login is audited', async () => {
    // WHEN she signs up: no authenticator app is offered, the browser asks for the key
    await signUpInBrowser(c, page, 'alice');
    expect(await page.isVisible('#otp-setup')).toBe(false);
    const creds = await key.credentials();
    expect(creds).toHaveLength(1);
    expect(creds[0].rpId).toBe('localhost');

    // THEN she logs in with her password and the key
    await goto(page, `${c.webUrl()}/web/login`);
    expect(await page.isVisible('#otp')).toBe(false);
    await page.fill('#username', 'alice');
    await page.fill('#password', PASSWORD);
    await page.click('#login');
    await page.waitForURL(`${c.webUrl()}/web/cluster/${SITE}/nodes`);
    const ok = (await c.events(['user.login'])).filter((e) => e.user === 'alice' && e.success === true);
    expect(ok).toHaveLength(1);
    // AND the key counted: its sign counter is stored
    expect((await key.credentials())[0].signCount).toBeGreaterThan(0);

    // AND the account page lists it as a security key
    await goto(page, `${c.webUrl()}/web/account`);
    await page.locator('#devices tr[data-type="WebAuthn"]').waitFor();
    expect(await page.locator('#devices tr').count()).toBe(1);
  });

  it('GIVEN alice with a key WHEN she gives the right password and no key, or a wrong password THEN she is not logged in', async () => {
    // WHEN the password alone is sent (no second factor)
    const noKey = await page.evaluate((pass) => (globalThis as any).TeleportUi.api('POST', '/webapi/sessions', { user: 'alice', pass }).then(() => 'ok', (e: any) => `${e.status} ${e.message}`), PASSWORD);
    expect(noKey).toBe('403 invalid username, password or second factor');
    // WHEN step one gets a wrong password THEN no challenge is given
    const wrong = await page.evaluate(() => (globalThis as any).TeleportUi.api('POST', '/webapi/mfa/login/begin', { user: 'alice', pass: 'not her password' }).then(() => 'ok', (e: any) => `${e.status} ${e.message}`));
    expect(wrong).toBe('403 invalid username, password or second factor');
    expect(await failedLogins(c, 'alice')).toEqual(expect.arrayContaining(['no second factor given', 'invalid password']));
  });

  /** Signs `user` up with a key of the authenticator; the key's credential. */
  const signUpWithKey = async (user: string): Promise<VirtualCredential> => {
    const before = new Set((await key.credentials()).map((k) => k.credentialId));
    await signUpInBrowser(c, page, user);
    const added = (await key.credentials()).filter((k) => !before.has(k.credentialId));
    expect(added).toHaveLength(1);
    return added[0];
  };

  // (A login with a key is two attempts against the per-user rate limit, password then key: each test has its own users.)
  it('GIVEN alice and bob with keys on one authenticator WHEN alice\'s login carries an assertion of bob\'s key THEN it is refused and audited', async () => {
    const bobs = await signUpWithKey('bob');

    // WHEN alice's challenge is signed with bob's credential
    const { result } = await scriptedKeyLogin(page, 'alice', base64url(bobs.credentialId));
    // THEN refused
    expect(result).toBe('403 invalid username, password or second factor');
    expect(await failedLogins(c, 'alice')).toContain('webauthn assertion from a security key not registered to this user');
    // AND alice's own key still logs her in (the refusal was about the credential)
    expect((await scriptedKeyLogin(page, 'alice')).result).toBe('ok');
  });

  it('GIVEN a login with dave\'s key WHEN its assertion is sent again THEN it is refused: the challenge is used up', async () => {
    await signUpWithKey('dave');
    const first = await scriptedKeyLogin(page, 'dave');
    expect(first.result).toBe('ok');
    // WHEN the same assertion goes again
    const again = await page.evaluate(
      ([pass, assertion]) => (globalThis as any).TeleportUi.api('POST', '/webapi/sessions', { user: 'dave', pass, webauthn_response: assertion }).then(() => 'ok', (e: any) => `${e.status} ${e.message}`),
      [PASSWORD, first.assertion] as const,
    );
    // THEN refused and audited
    expect(again).toBe('403 invalid username, password or second factor');
    expect(await failedLogins(c, 'dave')).toEqual(['webauthn challenge unknown, expired or already used']);
  });

  it('GIVEN erin\'s key WHEN its sign counter goes back (a cloned key) THEN the login is refused and audited; a counter past the stored one logs in again', async () => {
    const erins = await signUpWithKey('erin');
    expect((await scriptedKeyLogin(page, 'erin')).result).toBe('ok');
    const reset = async (signCount: number) => {
      await key.cdp.send('WebAuthn.removeCredential', { authenticatorId: key.id, credentialId: erins.credentialId });
      await key.cdp.send('WebAuthn.addCredential', { authenticatorId: key.id, credential: { ...erins, signCount } });
    };
    // WHEN the key's counter is set back to 0 (the server stored a higher one)
    await reset(0);
    await goto(page, `${c.webUrl()}/web/login`);
    await page.fill('#username', 'erin');
    await page.fill('#password', PASSWORD);
    await page.click('#login');
    // THEN refused, and the audit log says why
    await page.locator('#error', { hasText: 'invalid username, password or second factor' }).waitFor();
    expect(await failedLogins(c, 'erin')).toEqual([expect.stringMatching(/^security key "webauthn" sign counter did not increase \(stored [1-9]\d*, got 1\): possibly a cloned key$/)]);

    // WHEN the counter is past the stored one again THEN the same key logs in
    await reset(1000);
    expect((await scriptedKeyLogin(page, 'erin')).result).toBe('ok');
  });

  it('GIVEN frank with a key WHEN he runs tsh login THEN tsh prints a page on the proxy where he uses his key, and he gets certificates', async () => {
    await signUpWithKey('frank');
    const { tsh, home } = tshLogin(c, 'frank', `${PASSWORD}\n`);
    try {
      // WHEN tsh has checked the password THEN it prints the page on the proxy's public address
      await tsh.waitForOutput(TSH_PAGE);
      const [url, id] = TSH_PAGE.exec(tsh.stderr + tsh.stdout)!;
      await goto(page, url);
      await page.locator('#ask').waitFor();
      expect(await page.textContent('#user')).toBe('frank');
      expect(await page.textContent('#from')).toBe('127.0.0.1');
      expect(await a11yFailures(page, 'cli-mfa')).toBe('');
      // AND the page's answer is not for anyone without tsh's secret
      const stolen = await page.evaluate(
        (id) => (globalThis as any).TeleportUi.api('POST', `/webapi/mfa/cli/${id}/collect`, { secret: '0'.repeat(64) }).then(() => 'ok', (e: any) => `${e.status} ${e.message}`),
        id,
      );
      expect(stolen).toBe('403 wrong secret for this security key request');

      // WHEN he uses his key on the page THEN tsh logs in
      await page.click('#use-key');
      await page.locator('#done').waitFor();
      expect(await tsh.exited).toBe(0);
      const status = await runCli('tsh', ['status'], { env: { HOME: home, TELEPORT_HOME: '' } });
      expect(status.stdout).toContain('frank');
      expect((await c.events(['user.login'])).filter((e) => e.user === 'frank' && e.success === true)).toHaveLength(1);

      // AND the request is used up: the page cannot be answered again
      await goto(page, url);
      await page.locator('#error', { hasText: 'no such security key request' }).waitFor();
    } finally {
      await tsh.stop();
      fs.rmSync(home, { recursive: true, force: true });
    }
  });

  it('GIVEN gina logged in with her key WHEN she changes her password on the account page THEN her key is the second factor, and her only key cannot go', async () => {
    await signUpWithKey('gina');
    await goto(page, `${c.webUrl()}/web/login`);
    await page.fill('#username', 'gina');
    await page.fill('#password', PASSWORD);
    await page.click('#login');
    await page.waitForURL(`${c.webUrl()}/web/cluster/${SITE}/nodes`);
    await goto(page, `${c.webUrl()}/web/account`);
    await page.locator('#devices tr[data-type="WebAuthn"]').waitFor();
    // THEN no code field is offered (security keys only) and no authenticator app can be added
    expect(await page.isVisible('#otp')).toBe(false);
    expect(await page.isVisible('#offer-form')).toBe(false);
    expect(await page.isVisible('#key-form')).toBe(true);

    // WHEN she changes her password: the page asks her key
    const NEW = 'an even longer new password';
    await page.fill('#old-password', PASSWORD);
    await page.fill('#new-password', NEW);
    await page.fill('#confirm-password', NEW);
    await page.click('#change');
    await page.locator('#done', { hasText: 'Your password has been changed' }).waitFor();
    expect((await c.events(['user.password_change'])).filter((e) => e.user === 'gina' && e.method === 'change').map((e) => e.success)).toEqual([true]);

    // WHEN she removes her only key THEN refused, as the cluster requires one
    await page.click('button[aria-label="Remove webauthn"]');
    await page.fill('#remove-password', NEW);
    await page.click('#remove');
    await page.locator('#error', { hasText: 'this is your only second-factor device' }).waitFor();
  });

  it('GIVEN the proxy\'s public address is localhost WHEN a page on another origin (its IP address) asks for a challenge THEN no ceremony runs', async () => {
    const other = await context.newPage();
    try {
      await goto(other, `https://127.0.0.1:${c.proxyPorts!.web}/web/login`);
      await other.fill('#username', 'alice');
      await other.fill('#password', PASSWORD);
      await other.click('#login');
      await other.locator('#error', { hasText: "security keys are used on the proxy's public address" }).waitFor();
    } finally {
      await other.close();
    }
  });
});

describe('security keys beside authenticator apps (second_factor: on)', () => {
  let c: TestAuth;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let key: Awaited<ReturnType<typeof virtualKey>>;
  let carol: TshUser | undefined;

  beforeAll(async () => {
    c = await startAuth({ proxy: { publicHost: 'localhost' }, authExtra: ['authentication:', '  type: local', '  second_factor: on'] });
    browser = await launchChromium();
    context = await newContext(browser);
    page = await context.newPage();
    key = await virtualKey(context, page);
  });
  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await c?.cleanup();
    carol?.cleanup();
  });

  it('GIVEN carol signed up with an authenticator app WHEN she adds a security key on the account page THEN it logs her in, removes the app, and cannot remove itself', async () => {
    // GIVEN carol signs up choosing the authenticator app (on: she may choose, neither is not offered)
    const out = await c.tctlOk('users', 'add', 'carol', LOGIN);
    await goto(page, `${c.webUrl()}/web/newuser/${/\/web\/newuser\/([0-9a-f]{32})/.exec(out)![1]}`);
    await page.locator('#signup').waitFor();
    expect(await page.isVisible('#factor-choice')).toBe(true);
    expect(await page.isVisible('#factor-none')).toBe(false);
    expect(await a11yFailures(page, 'newuser (on)')).toBe('');
    await page.check('#factor-otp');
    carol = TshUser.forAccount(c, 'carol', PASSWORD, (await page.textContent('#otp-secret'))!);
    await page.fill('#password', PASSWORD);
    await page.fill('#password-confirm', PASSWORD);
    await page.fill('#otp', carol.nextCode());
    await page.click('#submit');
    await page.locator('#success').waitFor();
    expect(await key.credentials()).toHaveLength(0);
    await goto(page, `${c.webUrl()}/web/login`);
    await page.fill('#username', 'carol');
    await page.fill('#password', PASSWORD);
    await page.fill('#otp', await carol.freshCode());
    await page.click('#login');
    await page.waitForURL(`${c.webUrl()}/web/cluster/${SITE}/nodes`);

    // WHEN she adds a security key, proving herself with a code
    await goto(page, `${c.webUrl()}/web/account`);
    await page.locator('#devices tr[data-type="TOTP"]').waitFor();
    expect(await a11yFailures(page, 'account (on)')).toBe('');
    await page.fill('#key-name', 'yubikey');
    await page.fill('#key-password', PASSWORD);
    await page.fill('#key-otp', await carol.freshCode());
    await page.click('#add-key');
    await page.locator('#done', { hasText: 'The security key has been added' }).waitFor();
    await page.locator('#devices tr[data-type="WebAuthn"]').waitFor();
    expect(await key.credentials()).toHaveLength(1);
    const added = (await c.events(['mfa.add'])).filter((e) => e.success === true && e.mfa_device_type === 'WebAuthn');
    expect(added).toMatchObject([{ user: 'carol', mfa_device_name: 'yubikey' }]);

    // THEN the key logs her in (the second button; the code field stays empty)
    await goto(page, `${c.webUrl()}/web/login`);
    await page.locator('#login-key').waitFor();
    expect(await a11yFailures(page, 'login (on)')).toBe('');
    await page.fill('#username', 'carol');
    await page.fill('#password', PASSWORD);
    await page.click('#login-key');
    await page.waitForURL(`${c.webUrl()}/web/cluster/${SITE}/nodes`);

    // AND with the key (no code typed) she removes her authenticator app
    await goto(page, `${c.webUrl()}/web/account`);
    await page.locator('#devices tr[data-type="WebAuthn"]').waitFor();
    await page.click('button[aria-label="Remove otp"]');
    await page.fill('#remove-password', PASSWORD);
    await page.click('#remove');
    await page.locator('#done', { hasText: 'The device has been removed' }).waitFor();
    await page.locator('#devices tr[data-type="TOTP"]').waitFor({ state: 'detached' });
    expect((await c.events(['mfa.delete'])).filter((e) => e.success === true)).toMatchObject([{ user: 'carol', mfa_device_name: 'otp', mfa_device_type: 'TOTP' }]);

    // AND the key, now her only device, cannot go
    await page.click('button[aria-label="Remove yubikey"]');
    await page.fill('#remove-password', PASSWORD);
    await page.click('#remove');
    await page.locator('#error', { hasText: 'this is your only second-factor device' }).waitFor();
    expect(await page.locator('#devices tr[data-type="WebAuthn"]').count()).toBe(1);
  });

  it('GIVEN carol with a key WHEN tsh login gets no code THEN it sends her to the proxy page for her key, and she is logged in', async () => {
    // GIVEN (the previous test) carol's only device is her key
    const { tsh, home } = tshLogin(c, 'carol', `${PASSWORD}\n\n`);
    try {
      await tsh.waitForOutput(TSH_PAGE);
      expect(tsh.stderr).toContain('Enter your OTP token (or press Enter to use a security key):');
      await goto(page, TSH_PAGE.exec(tsh.stderr + tsh.stdout)![0]);
      await page.click('#use-key');
      await page.locator('#done').waitFor();
      expect(await tsh.exited).toBe(0);
      expect((await runCli('tsh', ['status'], { env: { HOME: home, TELEPORT_HOME: '' } })).stdout).toContain('carol');
    } finally {
      await tsh.stop();
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
});
