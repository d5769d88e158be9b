/**
 * `tctl users reset`: the user's password, second factor, browser sessions
 * and pending sign-up links stop working at once; the new link printed
 * signs them up again through the proxy's web sign-up page with a new
 * password and a new second factor. It also rescues a user whose first
 * sign-up link expired before they used it.
 */
import { totp } from '../../runtime/auth/totp';
import { tokenId } from '../../runtime/utils/secrets';
import { startAuth, TestAuth } from '../helpers/cluster';
import { waitFor } from '../helpers/proc';
import { TshUser } from '../helpers/users';

const LINK_RE = /\/web\/newuser\/([0-9a-f]{32})/;

describe('tctl users reset', () => {
  let c: TestAuth;
  const users: TshUser[] = [];

  beforeAll(async () => {
    c = await startAuth({ proxy: { insecureNoTls: true } });
  });
  afterAll(async () => {
    for (const u of users) u.cleanup();
    await c?.cleanup();
  });

  /** `tsh login` with exactly this password and code. */
  const tshLogin = (u: TshUser, password: string, code: string) =>
    u.tsh(['login', '--proxy', `${c.webUrl()},${c.proxyPorts!.ssh}`, '--insecure', '--user', u.name], `${password}\n${code}\n`);

  /** A browser session's bearer token, from the web login. */
  const webLogin = async (u: TshUser): Promise<string> => {
    const res = await fetch(`${c.webUrl()}/webapi/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: u.name, pass: u.password, second_factor_token: u.nextCode() }),
    });
    expect(res.status).toBe(200);
    return ((await res.json()) as { token: string }).token;
  };
  /** Runs a login that must fail, and returns why it failed, as the audit log has it. */
  const failedLogin = async (u: TshUser, password: string, code: string): Promise<string> => {
    const failures = async () => (await c.events(['user.login'])).filter((e) => e.user === u.name && e.success === false);
    const before = new Set((await failures()).map((e) => e.uid));
    const r = await tshLogin(u, password, code);
    expect(r.code).not.toBe(0);
    const added = (await failures()).filter((e) => !before.has(e.uid));
    expect(added).toHaveLength(1);
    return added[0].error;
  };
  /** A code of this TOTP secret that is valid now. */
  const codeNow = (secret: string) => totp(secret, { timeMs: Date.now() });
  const sitesStatus = async (bearer: string) => (await fetch(`${c.webUrl()}/webapi/sites`, { headers: { authorization: `Bearer ${bearer}` } })).status;
  const signupStatus = async (token: string) => (await fetch(`${c.webUrl()}/webapi/signuptokens/${token}`)).status;

  it('GIVEN a signed-up user with a browser session WHEN reset THEN the old credentials stop at once, and the new link sets a new password and second factor', async () => {
    // GIVEN
    const old = await TshUser.signUp(c, 'alice', ['alice']);
    users.push(old);
    const bearer = await webLogin(old);
    expect(await sitesStatus(bearer)).toBe(200);

    // WHEN
    const out = await c.tctlOk('users', 'reset', 'alice', '--ttl=2h');

    // THEN tctl prints the new sign-up link
    expect(out).toMatch(
      /^User "alice" has been reset\. Share this URL with the user to set a new password and second factor; it is valid for 2h0m0s:\nhttps:\/\/[^/]+:\d+\/web\/newuser\/[0-9a-f]{32}\n\nNOTE: /,
    );
    const token = LINK_RE.exec(out)![1];
    expect(await c.tctlOk('tokens', 'ls')).toMatch(new RegExp(`^${tokenId(token)}\\s+Signup\\s`, 'm'));
    // AND the browser session has ended, and the old password no longer logs in: it is gone
    expect(await sitesStatus(bearer)).toBe(403);
    expect(await failedLogin(old, old.password, codeNow(old.otpSecret))).toBe('the user has not completed sign-up');
    // AND the reset is audited, naming who did it
    const [event] = (await c.events(['reset_password_token.create'])).filter((e) => e.name === 'alice' && e.reset === true);
    expect(event).toMatchObject({ code: 'T6000I', user: 'builtin-Admin', ttl: expect.any(String) });
    expect(JSON.stringify(event)).not.toContain(token);

    // WHEN alice signs up again through the link, on the web sign-up API
    const renewed = await TshUser.fromSignupLink(c, 'alice', out, 'alice has a brand new password');
    users.push(renewed);
    expect(renewed.otpSecret).not.toBe(old.otpSecret);

    // THEN the new password and second factor log in, and neither old one does with the other new one
    await renewed.login();
    expect(await failedLogin(renewed, old.password, codeNow(renewed.otpSecret))).toBe('invalid password');
    expect(await failedLogin(renewed, renewed.password, codeNow(old.otpSecret))).toBe('invalid second factor code');
    // AND the link was single use
    expect(await signupStatus(token)).toBe(404);
  });

  it('GIVEN a pending reset link WHEN the user is reset again THEN only the newest link works', async () => {
    // GIVEN
    const u = await TshUser.signUp(c, 'carl', ['carl']);
    users.push(u);
    const first = LINK_RE.exec(await c.tctlOk('users', 'reset', 'carl'))![1];
    expect(await signupStatus(first)).toBe(200);
    // WHEN
    const second = LINK_RE.exec(await c.tctlOk('users', 'reset', 'carl'))![1];
    // THEN
    expect(await signupStatus(first)).toBe(404);
    expect(await signupStatus(second)).toBe(200);
    const signups = (await c.tctlOk('tokens', 'ls')).split('\n').filter((l) => /\sSignup\s/.test(l));
    expect(signups.filter((l) => l.startsWith(tokenId(first)))).toEqual([]);
    expect(signups.filter((l) => l.startsWith(tokenId(second)))).toHaveLength(1);
  });

  it('GIVEN a user whose first sign-up link expired unused THEN users add is refused with a hint, and reset gives a link that signs them up', async () => {
    // GIVEN
    const first = LINK_RE.exec(await c.tctlOk('users', 'add', 'bob', 'bob', '--ttl=1s'))![1];
    await waitFor('the first sign-up link to expire', async () => (await signupStatus(first)) === 404);
    // THEN the sign-up API (what the page shows, and what a completed form gets) says how to get a new link
    const gone = 'sign-up token not found or expired (or already used): ask an administrator for a new sign-up link (tctl users reset <user>)';
    const shown = await fetch(`${c.webUrl()}/webapi/signuptokens/${first}`);
    expect({ status: shown.status, body: await shown.json() }).toEqual({ status: 404, body: { error: { reason: 'not_found', message: gone } } });
    const posted = await fetch(`${c.webUrl()}/webapi/signuptokens/${first}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ password: 'bob has a long password', otp_token: '123456' }),
    });
    expect({ status: posted.status, body: await posted.json() }).toEqual({ status: 404, body: { error: { reason: 'not_found', message: gone } } });
    const again = await c.tctl('users', 'add', 'bob', 'bob');
    expect(again.code).toBe(1);
    expect(again.stderr).toBe('ERROR: user "bob" already exists; `tctl users reset bob` gives them a new sign-up link\n');
    // WHEN
    const out = await c.tctlOk('users', 'reset', 'bob');
    // THEN
    expect(out).toMatch(/it is valid for 1h0m0s:\n/);
    const bob = await TshUser.fromSignupLink(c, 'bob', out);
    users.push(bob);
    await bob.login();
  });

  it('GIVEN bad input THEN users reset and users add fail with a clear error and change nothing', async () => {
    // GIVEN a user with a pending sign-up link
    const pending = LINK_RE.exec(await c.tctlOk('users', 'add', 'dave', 'dave'))![1];
    // WHEN resetting an unknown user, or with a TTL over the limit
    const ghost = await c.tctl('users', 'reset', 'ghost');
    const long = await c.tctl('users', 'reset', 'dave', '--ttl=49h');
    // THEN both fail, and dave's link still works
    expect([ghost.code, ghost.stderr]).toEqual([1, 'ERROR: user "ghost" not found\n']);
    expect([long.code, long.stderr]).toEqual([1, 'ERROR: sign-up token TTL must be between 1s and 48h\n']);
    expect(await signupStatus(pending)).toBe(200);
    // AND users add with a TTL over the limit creates no user
    const add = await c.tctl('users', 'add', 'erin', 'erin', '--ttl=49h');
    expect([add.code, add.stderr]).toEqual([1, 'ERROR: sign-up token TTL must be between 1s and 48h\n']);
    expect(await c.tctlOk('users', 'ls')).not.toMatch(/^erin\s/m);
  });
});
