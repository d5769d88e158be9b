/**
 * SsoLogins (runtime/auth/sso/logins.ts) on a real auth server (memory backend, file audit log) with a
 * GitHub connector whose endpoints are the stand-in of test/helpers/github.ts, and a clock the tests
 * move: a login request works once, only in the browser that began it, only for 10 minutes; a local
 * user, or one of another connector, is never taken over; tsh's answer is sealed with its key and goes
 * only to a loopback callback.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Connector } from '../../../runtime/auth/sso/connectors';
import { BEGIN_LIMIT, SSO_REQUEST_TTL_MS, SsoLogins } from '../../../runtime/auth/sso/logins';
import { LocalLogins } from '../../../runtime/auth/login';
import { AuthServer } from '../../../runtime/auth/server';
import { WebSessions } from '../../../runtime/auth/websessions';
import { Clock } from '../../../runtime/backend/clock';
import { MemoryBackend } from '../../../runtime/backend/memory';
import { FileAuditLog } from '../../../runtime/events/filelog';
import { openSealed } from '../../../runtime/client/sso';
import { formatAuthorizedKey, generateKeyPair, publicKeyBlob } from '../../../runtime/sshcert';
import { tokenDigest } from '../../../runtime/utils/secrets';
import { initTestAuthServer } from '../../helpers/authserver';
import { FakeGithub } from '../../helpers/github';

const REDIRECT = 'https://proxy.example.com:3080/v1/webapi/github/callback';

class TestClock implements Clock {
  ms = Date.now();
  now(): Date {
    return new Date(this.ms);
  }
}

describe('single sign-on login requests', () => {
  let dir: string;
  let backend: MemoryBackend;
  let audit: FileAuditLog;
  let auth: AuthServer;
  let gh: FakeGithub;
  let clock: TestClock;
  let sso: SsoLogins;

  const connector = (name: string): Connector => ({
    kind: 'github',
    version: 'v3',
    metadata: { name },
    spec: {
      client_id: 'app',
      client_secret: 'app-secret',
      redirect_url: REDIRECT,
      endpoint_url: gh.url,
      api_endpoint_url: gh.url,
      teams_to_logins: [{ organization: 'octocats', team: 'admins', logins: ['ubuntu'], roles: ['admin'] }],
    },
  });

  /** The browser's trip to GitHub and back: the code and state the proxy's callback gets. */
  async function authorize(redirectUrl: string, user: string): Promise<{ code: string; state: string }> {
    gh.signIn = user;
    const res = await fetch(redirectUrl, { redirect: 'manual' });
    const back = new URL(res.headers.get('location')!);
    return { code: back.searchParams.get('code')!, state: back.searchParams.get('state')! };
  }

  const webBegin = (binding: string, name = 'github') => sso.begin('github', { type: 'web', connector: name, binding: tokenDigest(binding) }, '198.51.100.7');

  const refusal = (p: Promise<unknown>) =>
    p.then(
      () => 'completed',
      (err: Error) => err.message,
    );

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sso-logins-'));
    clock = new TestClock();
    backend = new MemoryBackend({ sweepPeriodMs: 0 });
    audit = new FileAuditLog(dir);
    auth = await initTestAuthServer({ backend, audit, clusterName: 'example.com' });
    gh = await FakeGithub.start({ clientId: 'app', clientSecret: 'app-secret', redirectUri: REDIRECT }, { octo: [{ org: 'octocats', slug: 'admins' }], kim: [{ org: 'octocats', slug: 'admins' }], ray: [{ org: 'octocats', slug: 'admins' }] });
    await auth.connectors.upsert(connector('github'), true);
    await auth.connectors.upsert(connector('github-two'), true);
    sso = new SsoLogins(auth, new WebSessions(auth, new LocalLogins(auth)), clock);
  });
  afterAll(async () => {
    await gh?.stop();
    await auth?.close();
    await backend?.close();
    await audit?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('GIVEN a web login WHEN the browser that began it comes back THEN it gets a session; the same state again is refused', async () => {
    const binding = randomBytes(32).toString('hex');
    const { redirect_url } = await webBegin(binding);
    const cb = await authorize(redirect_url, 'octo');
    const out = await sso.complete('github', { ...cb, binding }, '198.51.100.7');
    expect(out.session?.user).toBe('octo');
    const user = await auth.users.get('octo');
    expect(user.spec.created_by?.connector).toEqual({ type: 'github', id: 'github', identity: 'octo' });
    expect(user.spec.traits.logins).toEqual(['ubuntu']);
    // the user expires with the web session
    expect(Date.parse(user.spec.expires!)).toBe(Date.parse(out.session!.expires));
    expect(await refusal(sso.complete('github', { ...cb, binding }, '198.51.100.7'))).toContain('unknown, used or expired single sign-on state');
  });

  test('GIVEN a web login WHEN the callback comes without the binding cookie, or with another one THEN it is refused', async () => {
    const binding = randomBytes(32).toString('hex');
    const first = await authorize((await webBegin(binding)).redirect_url, 'octo');
    expect(await refusal(sso.complete('github', { ...first, binding: randomBytes(32).toString('hex') }, ''))).toContain('started in another browser');
    const second = await authorize((await webBegin(binding)).redirect_url, 'octo');
    expect(await refusal(sso.complete('github', { ...second }, ''))).toContain('started in another browser');
  });

  test('GIVEN a web login WHEN the provider answers after 10 minutes THEN it is refused, even where the backend still holds the request', async () => {
    const binding = randomBytes(32).toString('hex');
    const cb = await authorize((await webBegin(binding)).redirect_url, 'octo');
    clock.ms += SSO_REQUEST_TTL_MS;
    try {
      expect(await refusal(sso.complete('github', { ...cb, binding }, ''))).toContain('unknown, used or expired single sign-on state');
    } finally {
      clock.ms -= SSO_REQUEST_TTL_MS;
    }
  });

  test('GIVEN a local user, or a user of another connector, of the same name WHEN an SSO login names them THEN it does not take them over', async () => {
    await auth.addUser('kim', ['kim'], ['admin'], 'test');
    const binding = randomBytes(32).toString('hex');
    const kim = await authorize((await webBegin(binding)).redirect_url, 'kim');
    expect(await refusal(sso.complete('github', { ...kim, binding }, ''))).toContain('a user named kim exists already (a local user)');
    expect((await auth.users.get('kim')).spec.created_by?.connector).toBeUndefined();

    const octo = await authorize((await webBegin(binding, 'github-two')).redirect_url, 'octo');
    expect(await refusal(sso.complete('github', { ...octo, binding }, ''))).toContain('a user named octo exists already (from github connector "github")');
  });

  test('GIVEN an SSO login of a new name WHEN an admin adds a local user of that name meanwhile THEN the local user is not overwritten', async () => {
    const binding = randomBytes(32).toString('hex');
    const cb = await authorize((await webBegin(binding)).redirect_url, 'ray');
    // the admin's `tctl users add ray` lands between the login's look-up of "ray" and its write
    const get = auth.users.get.bind(auth.users);
    const spy = jest.spyOn(auth.users, 'get').mockImplementationOnce(async (name: string) => {
      await auth.addUser('ray', ['ray'], ['admin'], 'admin');
      return get(`${name}-not-there-yet`);
    });
    try {
      expect(await refusal(sso.complete('github', { ...cb, binding }, ''))).toContain('a user named ray exists already');
    } finally {
      spy.mockRestore();
    }
    expect((await auth.users.get('ray')).spec.created_by?.connector).toBeUndefined();
  });

  test('GIVEN a console login WHEN it completes THEN its certificates go to the loopback callback, sealed with tsh\'s key only', async () => {
    const key = randomBytes(32);
    const pair = generateKeyPair('ed25519');
    const begun = await sso.begin(
      'github',
      { type: 'console', connector: 'github', redirectUrl: 'http://127.0.0.1:40000/callback', secretKey: key.toString('base64url'), sshPublicKey: formatAuthorizedKey(publicKeyBlob(pair.publicKey)) },
      '',
    );
    const cb = await authorize(begun.redirect_url, 'octo');
    const out = new URL((await sso.complete('github', cb, '')).redirect_url);
    expect(out.origin + out.pathname).toBe('http://127.0.0.1:40000/callback');
    expect(out.searchParams.get('state')).toBe(begun.state);
    expect(openSealed(key, out.searchParams.get('response')!)?.username).toBe('octo');
    expect(openSealed(randomBytes(32), out.searchParams.get('response')!)).toBeUndefined();
  });

  test('GIVEN one source address WHEN it begins more logins than the limit at once THEN the next is refused and audited, and another address still may', async () => {
    const limited = new SsoLogins(auth, new WebSessions(auth, new LocalLogins(auth)), clock);
    const begin = (addr: string) => limited.begin('github', { type: 'web', connector: 'github', binding: tokenDigest('b') }, addr);
    for (let i = 0; i < BEGIN_LIMIT.burst; i++) await begin('203.0.113.9');
    expect(await refusal(begin('203.0.113.9'))).toContain('too many requests');
    expect(await refusal(begin('203.0.113.10'))).toBe('completed');
    const events = await audit.search({ from: new Date(Date.now() - 60_000), to: new Date(Date.now() + 60_000), eventTypes: ['user.login'] });
    expect(events.filter((e) => e['addr.remote'] === '203.0.113.9' && e.success === false).map((e) => e.error)).toEqual(['too many requests, try again later']);
  });

  test.each(['https://evil.example.com/callback', 'http://10.0.0.1:4000/callback', 'http://127.0.0.1/callback'])(
    'GIVEN a console login whose callback is %s WHEN it begins THEN it is refused',
    async (redirectUrl) => {
      const pair = generateKeyPair('ed25519');
      const begun = sso.begin('github', { type: 'console', connector: 'github', redirectUrl, secretKey: randomBytes(32).toString('base64url'), sshPublicKey: formatAuthorizedKey(publicKeyBlob(pair.publicKey)) }, '');
      expect(await refusal(begun)).toContain("tsh's callback on a loopback address");
    },
  );
});
