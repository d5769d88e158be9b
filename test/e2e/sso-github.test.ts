/**
 * Single sign-on with GitHub, end to end: a cluster (auth + proxy + node), a GitHub connector made
 * with `tctl create` whose `endpoint_url` / `api_endpoint_url` name a stand-in for GitHub's OAuth and
 * REST endpoints (test/helpers/github.ts), `tsh login --auth=github --browser=none` and the web login,
 * each browser step done with plain HTTP requests. Team membership maps to logins; a user in no mapped
 * team is refused with a clear message.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startCluster, TestAuth } from '../helpers/cluster';
import { FakeGithub } from '../helpers/github';
import { cliPath, Daemon, runCli, tempDir } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { webApiRequest, WebAnswer } from '../helpers/webapi';

const SECRET = 'github-oauth-app-secret';

describe('single sign-on with GitHub', () => {
  let c: TestAuth;
  let gh: FakeGithub;
  let ca: string;
  let work: string;
  const homes: string[] = [];

  /** A request to the proxy's web listener by a full URL. */
  const proxyGet = (url: string, cookie?: string): Promise<WebAnswer> => {
    const u = new URL(url);
    return webApiRequest(c.webUrl(), ca, 'GET', u.pathname + u.search, cookie ? { headers: { cookie } } : {});
  };

  /** What a browser does with GitHub's authorize URL: the user authorizes, GitHub sends it to the proxy's callback. */
  async function authorize(url: string, user: string, cookie?: string): Promise<WebAnswer> {
    gh.signIn = user;
    const res = await fetch(url, { redirect: 'manual' });
    expect(res.status).toBe(302);
    return proxyGet(res.headers.get('location')!, cookie);
  }

  /** `tsh login [--auth=…] --browser=none` as `user`, the browser's steps done here; resolves tsh's exit code and output. */
  async function tshLogin(user: string, home: string, auth: string[]): Promise<{ code: number | null; out: string }> {
    const tsh = Daemon.spawn(process.execPath, [cliPath('tsh'), 'login', '--insecure', `--proxy=${c.webUrl()},${c.proxyPorts!.ssh}`, ...auth, '--browser=none'], { HOME: home, TELEPORT_HOME: '' });
    try {
      await tsh.waitForOutput(/log in:\n(\S+)/);
      const atProxy = await authorize(/log in:\n(\S+)/.exec(tsh.stdout + tsh.stderr)![1], user);
      // the proxy sends the browser on to tsh's callback on 127.0.0.1
      expect(atProxy.status).toBe(302);
      const toTsh = atProxy.headers.location as string;
      expect(toTsh).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback\?/);
      await (await fetch(toTsh)).text();
      const code = await tsh.exited;
      return { code, out: tsh.stdout + tsh.stderr };
    } finally {
      await tsh.stop();
    }
  }

  beforeAll(async () => {
    c = await startCluster({ proxy: {}, authExtra: ['authentication:', '  type: github', '  connector_name: github'] });
    ca = fs.readFileSync(path.join(c.dataDir, 'webproxy_cert.pem'), 'utf8');
    // octo-alice is in 120 teams: the mapped one is on the second page of /user/teams
    const many = Array.from({ length: 119 }, (_, i) => ({ org: 'elsewhere', slug: `team-${i}` }));
    gh = await FakeGithub.start(
      { clientId: 'Iv1.teleport', clientSecret: SECRET, redirectUri: `${c.webUrl()}/v1/webapi/github/callback` },
      { 'octo-alice': [...many, { org: 'octocats', slug: 'admins', name: 'Admins' }], 'octo-bob': [{ org: 'octocats', slug: 'interns' }] },
    );
    work = tempDir('sso-github-');
    const connector = [
      'kind: github',
      'version: v3',
      'metadata:',
      '  name: github',
      'spec:',
      '  client_id: Iv1.teleport',
      `  client_secret: ${SECRET}`,
      `  redirect_url: ${c.webUrl()}/v1/webapi/github/callback`,
      '  display: GitHub',
      `  endpoint_url: ${gh.url}`,
      `  api_endpoint_url: ${gh.url}`,
      '  teams_to_logins:',
      `    - {organization: octocats, team: admins, logins: [${LOGIN}]}`,
    ].join('\n');
    fs.writeFileSync(path.join(work, 'github.yaml'), connector + '\n');
    await c.tctlOk('create', path.join(work, 'github.yaml'));
  });
  afterAll(async () => {
    await gh?.stop();
    await c?.cleanup();
    for (const h of [work, ...homes]) if (h) fs.rmSync(h, { recursive: true, force: true });
  });

  it('GIVEN the connector WHEN tctl get shows it THEN its secret is hidden and the default API endpoints are replaced by the configured ones', async () => {
    const shown = await c.tctlOk('get', 'github/github');
    expect(shown).not.toContain(SECRET);
    expect(shown).toContain(`api_endpoint_url: ${gh.url}`);
  });

  it('GIVEN a member of a mapped team WHEN they log in with tsh, no --auth (the cluster\'s connector_name) THEN they get the team\'s logins and reach the node', async () => {
    const home = tempDir('tsh-octo-alice-');
    homes.push(home);
    const login = await tshLogin('octo-alice', home, []);
    expect(login.code).toBe(0);
    expect(login.out).toMatch(/Logged in as:\s+octo-alice/);
    expect(login.out).toMatch(new RegExp(`Logins:\\s+${LOGIN}`));
    const ssh = await runCli('tsh', ['ssh', `${LOGIN}@test-auth`, 'echo from-github'], { env: { HOME: home, TELEPORT_HOME: '' } });
    expect(ssh.stdout).toBe('from-github\n');
    const ok = (await c.events(['user.login'])).find((e) => e.method === 'github' && e.user === 'octo-alice' && e.success === true);
    expect(ok).toMatchObject({ connector: 'github', code: 'T1001I', github_teams: ['octocats/admins'] });
  });

  it('GIVEN a user in no mapped team WHEN they log in with tsh THEN tsh exits saying so and the refusal is audited', async () => {
    const home = tempDir('tsh-octo-bob-');
    homes.push(home);
    const login = await tshLogin('octo-bob', home, ['--auth=github']);
    expect(login.code).not.toBe(0);
    expect(login.out).toContain('GitHub user octo-bob is not a member of any team that GitHub connector "github" maps (octocats/admins)');
    expect(fs.existsSync(path.join(home, '.tsh', 'keys'))).toBe(false);
    const refused = (await c.events(['user.login'])).find((e) => e.method === 'github' && e.success === false && e.user === 'octo-bob');
    expect(refused).toMatchObject({ connector: 'github', code: 'T1001W' });
  });

  it('GIVEN tsh login --user=<name> WHEN GitHub logs the user in as someone else THEN tsh refuses to save that login', async () => {
    const home = tempDir('tsh-octo-other-');
    homes.push(home);
    const login = await tshLogin('octo-alice', home, ['--auth=github', '--user=octo-carol']);
    expect(login.code).not.toBe(0);
    expect(login.out).toContain('the identity provider logged you in as octo-alice, not octo-carol');
    expect(fs.existsSync(path.join(home, '.tsh', 'keys'))).toBe(false);
  });

  it('GIVEN the web login WHEN a member authorizes the app THEN the browser gets a session, its bearer token once, and the node list with the team\'s logins', async () => {
    // GIVEN the browser begins the login: a binding cookie, and off to GitHub
    const begin = await webApiRequest(c.webUrl(), ca, 'GET', '/v1/webapi/github/login/web?connector_id=github');
    expect(begin.status).toBe(302);
    const binding = (begin.headers['set-cookie'] as string[]).find((k) => k.startsWith('__Host-teleport-sso-binding='))!;
    expect(binding).toMatch(/HttpOnly; SameSite=Lax/);
    // WHEN the user authorizes it and GitHub sends the browser back (a HEAD of the callback first, as a link checker would, uses nothing up)
    gh.signIn = 'octo-alice';
    const callback = (await fetch(begin.headers.location as string, { redirect: 'manual' })).headers.get('location')!;
    const u = new URL(callback);
    expect((await webApiRequest(c.webUrl(), ca, 'HEAD', u.pathname + u.search, { headers: { cookie: binding.split(';')[0] } })).status).toBe(404);
    const back = await proxyGet(callback, binding.split(';')[0]);
    // THEN the proxy sets the session and hand-off cookies and sends it to the login page
    expect(back.headers.location).toBe('/web/login?sso=1');
    const cookies = (back.headers['set-cookie'] as string[]).map((k) => k.split(';')[0]).filter((k) => !k.endsWith('='));
    expect(cookies.map((k) => k.split('=')[0]).sort()).toEqual(['__Host-teleport-session', '__Host-teleport-sso-session']);
    const handoff = { headers: { cookie: cookies.join('; ') }, body: {} };
    const session = await webApiRequest(c.webUrl(), ca, 'POST', '/webapi/sessions/sso', handoff);
    expect(session.status).toBe(200);
    expect(session.json).toMatchObject({ user: 'octo-alice', token_type: 'Bearer' });
    const nodes = await webApiRequest(c.webUrl(), ca, 'GET', '/webapi/sites/example.com/nodes', { token: session.json.token });
    expect(nodes.json.items).toEqual([expect.objectContaining({ hostname: 'test-auth', logins: [LOGIN] })]);
    // AND the hand-off cookie is cleared: the page gets the token once
    expect((session.headers['set-cookie'] as string[]).some((k) => k.startsWith('__Host-teleport-sso-session=;') && k.includes('Max-Age=0'))).toBe(true);
  });
});
