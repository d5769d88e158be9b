/**
 * The account page (issue 19 item 5), in real Chromium: alice changes her
 * password with her current password and a second-factor code, logs out, and
 * logs in with the new one; the old one no longer works. A wrong current
 * password changes nothing. Both attempts are audited.
 */
import { Browser, BrowserContext, Page } from 'playwright-core';
import { goto, launchChromium, newContext } from '../helpers/browser';
import { startAuth, TestAuth } from '../helpers/cluster';
import { waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';

const SITE = 'example.com';
const NEW_PASSWORD = 'a new and longer password';

describe('account page', () => {
  let c: TestAuth;
  let browser: Browser;
  let context: BrowserContext;
  let alice: TshUser;

  beforeAll(async () => {
    c = await startAuth({ proxy: {} });
    browser = await launchChromium();
    context = await newContext(browser);
    alice = await TshUser.signUp(c, 'alice', [LOGIN]);
  });
  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await c?.cleanup();
    alice?.cleanup();
  });

  /** A TOTP code of a step not used yet (waits for the next 30 s step when both in the accepted window are used). */
  const freshCode = () =>
    waitFor(
      'an unused TOTP step',
      () => {
        try {
          return alice.nextCode();
        } catch {
          return undefined;
        }
      },
      70_000,
      500,
    );

  const logIn = async (page: Page, password: string, code: string) => {
    await goto(page, `${c.webUrl()}/web/login`);
    await page.fill('#username', 'alice');
    await page.fill('#password', password);
    await page.fill('#otp', code);
    await page.click('#login');
  };

  it('GIVEN alice logged in WHEN she changes her password on the account page THEN the new one logs her in and the old one does not', async () => {
    const page = await context.newPage();
    await logIn(page, alice.password, await freshCode());
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
    await page.fill('#otp', await freshCode());
    await page.click('#change');
    await page.locator('#done').waitFor();
    const changes = await c.events(['user.password_change']);
    expect(changes.filter((e) => e.method === 'change').map((e) => [e.user, e.success])).toEqual(expect.arrayContaining([['alice', false], ['alice', true]]));

    // WHEN she logs out and in again with the old password THEN refused; with the new one THEN in
    await goto(page, `${c.webUrl()}/web`);
    await page.click('#logout');
    await page.waitForURL(`${c.webUrl()}/web/login`);
    await logIn(page, alice.password, '000000');
    await page.locator('#error', { hasText: /invalid/ }).waitFor();
    await logIn(page, NEW_PASSWORD, await freshCode());
    await page.waitForURL(`${c.webUrl()}/web/cluster/${SITE}/nodes`);
  }, 180_000);
});
