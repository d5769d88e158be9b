/**
 * An OpenID provider for single sign-on tests: the `oidc-provider` package (certified by the
 * OpenID Foundation) in its own process on a free loopback port (oidc-provider-main.mjs), with
 * one client and the accounts a test names. `login(page)` goes through its login and consent
 * forms in Chromium as the named account.
 */
import * as path from 'node:path';
import type { Page } from 'playwright-core';
import { Daemon, freePort } from './proc';

export interface OidcAccount {
  email: string;
  groups?: string[];
}

export class TestOidcProvider {
  private constructor(
    readonly daemon: Daemon,
    readonly port: number,
    readonly issuer: string,
  ) {}

  static async start(opts: { client: { client_id: string; client_secret: string; redirect_uri: string }; accounts: Record<string, OidcAccount> }): Promise<TestOidcProvider> {
    const port = await freePort();
    const issuer = `http://127.0.0.1:${port}`;
    const daemon = Daemon.spawn(process.execPath, [path.join(__dirname, 'oidc-provider-main.mjs'), JSON.stringify({ port, issuer, ...opts })]);
    try {
      await daemon.waitForOutput(/oidc provider listening/);
    } catch (err) {
      await daemon.stop();
      throw err;
    }
    return new TestOidcProvider(daemon, port, issuer);
  }

  /** Signs in as `login` on the provider's page the browser is on, and consents. */
  async login(page: Page, login: string): Promise<void> {
    await page.locator('input[name="login"]').fill(login);
    await page.locator('input[name="password"]').fill('any password');
    await page.locator('button[type="submit"]').click();
    await page.locator('button:has-text("Continue")').click();
  }

  async stop(): Promise<void> {
    await this.daemon.stop();
  }
}
