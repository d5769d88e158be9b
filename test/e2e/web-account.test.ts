/**
 * The account page (issue 19 item 5), in real Chromium: alice changes her
 * password with her current password and a second-factor code, logs out, and
 * logs in with the new one; the old one no longer works. A wrong current
 * password changes nothing. Both attempts are audited. bob, from the user
 * menu (his name and roles), adds a second authenticator app, removes his
 * first, and logs in with the new one only.
 */
import { Browser, BrowserContext, Page } from 'playwright-core';
import { goto, launchChromium, newContext, openUserMenu } from '../helpers/browser';
import { startAuth, TestAuth } from '../helpers/cluster';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';

const SITE = 'example.com';
const NEW_PASSWORD = 'a new and longer password';

describe('account page', () => {
  let c: TestAuth;
  let browser: Browser;
  let context: BrowserContext;
  let alice: TshUser;
  let bob: TshUser;
  /** bob's second authenticator app (its codes, as a TshUser's). */
  let phone: TshUser | undefined;

  beforeAll(async () => {
    c = await startAuth({ proxy: {} });
    browser = await launchChromium();
    context = await newContext(browser);
    alice = await TshUser.signUp(c, 'alice', [LOGIN]);
    bob = await TshUser.signUp(c, 'bob', [LOGIN], { roles: ['admin'] });
  });
  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await c?.cleanup();
    alice?.cleanup();
    bob?.cleanup();
    phone?.cleanup();
  });

  const logIn = async (page: Page, password: string, code: string, user = 'alice') => {
    await goto(page, `${c.webUrl()}/web/login`);
    await page.fill('#username', user);
    await page.fill('#password', password);
    await page.fill('#otp', code);
    await page.click('#login');
  };

  it('GIVEN alice logged in WHEN she changes her password on the account page THEN the new one logs her in and the old one does not', async () => {
    const page = await context.newPage();
    await logIn(page, alice.password, await alice.freshCode());
    await page.waitForURL(`${c.webUrl()}/web/cluster/${SITE}/nodes`);
    // WHEN she opens the account page from the header
    await page.click('#account-link');
    await page.waitForURL(`${c.webUrl()}/web/account`);
    expect(await page.textContent('#whoami')).toBe('alice');

    // AND gives a wrong current password THEN nothing changes and she is told
    await page.fill('#old-password', 'not my password');
    await page.fill('#new-password', NEW_PASSWORD);
    await page.fill('#confirm-password', NEW_PASSWORD);
    await page.fill('#otp', '000000');
    await page.click('#change');
    await page.locator('#error', { hasText: 'invalid current password or second factor' }).waitFor();
    // AND gives the right password with a wrong code THEN nothing changes either
    await page.fill('#old-password', alice.password);
    await page.fill('#otp', '000000');
    await page.click('#change');
    await page.locator('#error', { hasText: 'invalid current password or second factor' }).waitFor();
    expect((await c.events(['user.password_change'])).filter((e) => e.success === false).map((e) => e.error)).toEqual(
      expect.arrayContaining(['invalid password', 'invalid second factor code']),
    );
    // AND mistyped confirmations are caught before anything is sent
    await page.fill('#old-password', alice.password);
    await page.fill('#confirm-password', 'something else');
    await page.click('#change');
    await page.locator('#error', { hasText: 'The new passwords do not match.' }).waitFor();

    // WHEN she gives her password and a code THEN it is changed
    await page.fill('#confirm-password', NEW_PASSWORD);
    await page.fill('#otp', await alice.freshCode());
    await page.click('#change');
    await page.locator('#done').waitFor();
    const changes = await c.events(['user.password_change']);
    expect(changes.filter((e) => e.method === 'change').map((e) => [e.user, e.success])).toEqual(expect.arrayContaining([['alice', false], ['alice', true]]));

    // WHEN she logs out and in again with the old password THEN refused; with the new one THEN in
    await goto(page, `${c.webUrl()}/web`);
    await openUserMenu(page);
    await page.click('#logout');
    await page.waitForURL(`${c.webUrl()}/web/login`);
    await logIn(page, alice.password, '000000');
    await page.locator('#error', { hasText: /invalid/ }).waitFor();
    await logIn(page, NEW_PASSWORD, await alice.freshCode());
    await page.waitForURL(`${c.webUrl()}/web/cluster/${SITE}/nodes`);
  }, 180_000);

  it('GIVEN bob logged in WHEN he adds a second authenticator app from the account page and removes the first THEN only the new one logs him in, and both changes are audited', async () => {
    const page = await context.newPage();
    await logIn(page, bob.password, await bob.freshCode(), 'bob');
    await page.waitForURL(`${c.webUrl()}/web/cluster/${SITE}/nodes`);

    // WHEN he opens the user menu THEN it names him and his roles; Escape closes it
    expect(await page.isVisible('#user-menu')).toBe(false);
    await page.click('#user-menu-button');
    await page.locator('#roles', { hasText: 'admin' }).waitFor();
    expect(await page.textContent('#menu-user')).toBe('bob');
    expect(await page.getAttribute('#user-menu-button', 'aria-expanded')).toBe('true');
    await page.keyboard.press('Escape');
    expect(await page.isVisible('#user-menu')).toBe(false);
    // WHEN he picks the account settings in it THEN the account page lists his sign-up device
    await openUserMenu(page);
    await page.click('#menu-account');
    await page.waitForURL(`${c.webUrl()}/web/account`);
    await page.locator('#devices tr', { hasText: 'otp' }).waitFor();

    // WHEN he asks for a new device with a wrong password THEN refused
    await page.fill('#offer-password', 'not my password');
    await page.fill('#offer-otp', '000000');
    await page.click('#offer');
    await page.locator('#error', { hasText: 'invalid current password or second factor' }).waitFor();
    // WHEN with his password and a code THEN a new secret is shown, as a QR code and as text
    await page.fill('#offer-password', bob.password);
    await page.fill('#offer-otp', await bob.freshCode());
    await page.click('#offer');
    await page.locator('#add-form').waitFor();
    expect(await page.getAttribute('#new-qr', 'src')).toMatch(/^data:image\/svg\+xml;base64,/);
    phone = TshUser.forAccount(c, 'bob', bob.password, (await page.textContent('#new-secret'))!);
    // AND he names it and confirms with a code from it THEN it is listed
    await page.fill('#device-name', 'phone 2');
    await page.fill('#new-otp', phone.nextCode());
    await page.click('#add');
    await page.locator('#devices tr', { hasText: 'phone 2' }).waitFor();
    await page.locator('#done', { hasText: 'The device has been added' }).waitFor();

    // WHEN he removes his sign-up device, proving it with the new one THEN only the new one is left
    await page.click('button[aria-label="Remove otp"]');
    await page.fill('#remove-password', bob.password);
    await page.fill('#remove-otp', await phone.freshCode());
    await page.click('#remove');
    await page.locator('#done', { hasText: 'The device has been removed' }).waitFor();
    expect(await page.locator('#devices tr').allTextContents()).toEqual([expect.stringContaining('phone 2')]);
    // AND the last one cannot go
    await page.click('button[aria-label="Remove phone 2"]');
    await page.fill('#remove-password', bob.password);
    await page.fill('#remove-otp', await phone.freshCode());
    await page.click('#remove');
    await page.locator('#error', { hasText: 'this is your only second-factor device' }).waitFor();

    // WHEN he logs out and in with a code of the removed device THEN refused; of the new one THEN in
    await openUserMenu(page);
    await page.click('#logout');
    await page.waitForURL(`${c.webUrl()}/web/login`);
    await logIn(page, bob.password, await bob.freshCode(), 'bob');
    await page.locator('#error', { hasText: /invalid/ }).waitFor();
    await logIn(page, bob.password, await phone.freshCode(), 'bob');
    await page.waitForURL(`${c.webUrl()}/web/cluster/${SITE}/nodes`);

    // THEN the audit log has the addition and the removal, and the refusals
    const mfa = (await c.events(['mfa.add', 'mfa.delete'])).filter((e) => e.user === 'bob');
    expect(mfa.map((e) => [e.event, e.success, e.mfa_device_name ?? null])).toEqual([
      ['mfa.add', false, null],
      ['mfa.add', true, 'phone 2'],
      ['mfa.delete', true, 'otp'],
      ['mfa.delete', false, 'phone 2'],
    ]);
  }, 240_000);
});
