/**
 * Headless Chromium for browser tests: Debian's /usr/bin/chromium (installed
 * by .ci/run) driven by playwright-core, which ships no browser of its own.
 */
import * as fs from 'node:fs';
import { Browser, BrowserContext, chromium, Page } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Starts Chromium; fails with a hint when it is not installed. */
export async function launchChromium(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium), as .ci/run does`);
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

/** A fresh profile (own cookies and sessionStorage) that accepts the proxy's self-signed certificate. */
export function newContext(browser: Browser): Promise<BrowserContext> {
  return browser.newContext({ ignoreHTTPSErrors: true });
}

/**
 * `page.goto(url)`, again when Chromium aborted it with ERR_NETWORK_CHANGED: Chromium watches the
 * host's addresses and aborts requests in flight when they change, which the local deployment's
 * tests do (each instance gets a network namespace and a veth pair) while other suites run.
 */
export async function goto(page: Page, url: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await page.goto(url);
      return;
    } catch (err) {
      if (attempt >= 5 || !/net::ERR_NETWORK_CHANGED/.test((err as Error).message)) throw err;
    }
  }
}

/** Records the Content-Security-Policy violations of a page, or of every page of a context (read them with `cspViolations`). */
export const recordCspViolations = (target: Page | BrowserContext) =>
  target.addInitScript(
    "window.cspViolations = []; document.addEventListener('securitypolicyviolation', (e) => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));",
  );

/** The violations `recordCspViolations` saw in the page so far (read them before leaving the page). */
export const cspViolations = (page: Page) => page.evaluate<string[]>('window.cspViolations');

/** The text on an xterm.js screen (a terminal or the player), one line per row, trailing blanks trimmed. */
export const terminalScreen = async (page: Page) =>
  (await page.locator('.xterm-rows > div').allTextContents()).map((l) => l.replace(/\u00a0/g, ' ').trimEnd()).join('\n');

/**
 * Opens the user menu of a logged-in page once its header is set up (the page's script fills in
 * `#whoami` when it wires the menu: a click before that does nothing), and waits until it shows.
 */
export async function openUserMenu(page: Page): Promise<void> {
  await page.locator('#whoami', { hasText: /\S/ }).waitFor();
  await page.click('#user-menu-button');
  await page.locator('#user-menu').waitFor({ state: 'visible' });
}
