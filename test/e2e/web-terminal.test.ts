/**
 * The browser terminal end to end: a real `teleport start` (auth, node
 * `test-auth` with env=prod, proxy), real headless Chromium running the page's
 * xterm.js, and WebSocket clients (`ws`) for what a browser would not send.
 *
 * A second node, nat-1, is behind NAT (joined through the proxy, reached only by its reverse tunnel).
 *
 * Users: alice (admin role) uses the browser; the others log in through the
 * web API, most with the admin role plus `staging-ops`, which allows the login
 * `stagingops` on env=staging nodes only, so their certificates list
 * `stagingops` but the access decision refuses it on test-auth. dave's role
 * caps sessions at 1 minute.
 * Each user makes at most two logins (sign-up and one login): a TOTP step is
 * never used twice.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Browser } from 'playwright-core';
import { Client } from 'ssh2';
import { WebSocket } from 'ws';
import { AuthClient } from '../../runtime/auth/client';
import { IdentityStore } from '../../runtime/auth/identity';
import { openBackend } from '../../runtime/backend';
import { CLOSE_SESSION_ENDED, MAX_MESSAGE_BYTES, SESSION_COOKIE, TERMINAL_PROTOCOL } from '../../runtime/proxy/terminal';
import { fetchRecording } from '../../runtime/recordings/playback';
import { CLIENT_ALGORITHMS, clientCertIdentity, formatAuthorizedKey, generateKeyPair, publicKeyBlob } from '../../runtime/sshcert';
import { cspViolations, goto, launchChromium, newContext, recordCspViolations, terminalScreen } from '../helpers/browser';
import { startCluster, TestAuth, TestNode } from '../helpers/cluster';
import { malformedJson, runFuzz, wrongJsonValue } from '../helpers/fuzz';
import { tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';
import { webApiRequest, WebRequestOptions } from '../helpers/webapi';

const SITE = 'example.com';

/** A terminal WebSocket as a test drives it: what it received, and how it closed. */
class TestTerminal {
  output = '';
  errors: string[] = [];
  closed?: { code: number; reason: string };

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      const text = Buffer.from(data as Buffer).toString('utf8');
      if (isBinary) this.output += text;
      else this.errors.push(text);
    });
    ws.on('close', (code, reason) => (this.closed = { code, reason: reason.toString() }));
    ws.on('error', () => undefined);
  }

  type(text: string): void {
    this.ws.send(Buffer.from(text), { binary: true });
  }

  waitForOutput(what: string, re: RegExp): Promise<RegExpExecArray> {
    return waitFor(what, async () => re.exec(this.output) ?? undefined);
  }

  waitForClose(what: string, timeoutMs?: number): Promise<{ code: number; reason: string }> {
    return waitFor(what, async () => this.closed, timeoutMs);
  }
}

describe('browser terminal', () => {
  let c: TestAuth;
  let browser: Browser;
  let base: string;
  let ca: string;
  let work: string;
  let nodeId: string;
  let nat: TestNode;
  const users: TshUser[] = [];
  const sockets: WebSocket[] = [];

  /** A request to the proxy's web listener, trusting exactly its self-signed certificate. */
  const request = (method: string, p: string, opts: WebRequestOptions = {}) => webApiRequest(base, ca, method, p, opts);

  /** Calls the auth API with the identity of this process's proxy or node. */
  const asMember = async <T>(role: 'Proxy' | 'Node', call: (client: AuthClient) => Promise<T>): Promise<T> => {
    const proc = await openBackend({ type: 'sqlite', path: path.join(c.dataDir, 'proc', 'sqlite.db') });
    const id = await new IdentityStore(proc).load(role).finally(() => proc.close());
    const client = new AuthClient({ servers: [{ host: '127.0.0.1', port: c.port }], credentials: { key: id.tlsKey, cert: id.tlsCert, ca: id.tlsCACerts } });
    try {
      return await call(client);
    } finally {
      client.close();
    }
  };

  /** Signs a user up (admin role plus `roles`) and logs them in to the web API: their web session token. */
  const webSession = async (name: string, roles: string[] = []): Promise<{ user: TshUser; token: string; cookie: string }> => {
    const user = await TshUser.signUp(c, name, [LOGIN], { roles: ['admin', ...roles] });
    users.push(user);
    const res = await request('POST', '/webapi/sessions', { body: { user: name, pass: user.password, second_factor_token: user.nextCode() } });
    expect(res.status).toBe(200);
    const cookie = ([] as string[]).concat(res.headers['set-cookie'] ?? []).find((h) => h.startsWith(`${SESSION_COOKIE}=`))!;
    return { user, token: res.json.token, cookie: cookie.split(';')[0] };
  };

  const params = (o: { server_id?: string; login?: string } = {}) => JSON.stringify({ server_id: nodeId, login: LOGIN, term: { w: 100, h: 30 }, ...o });

  /** Opens a terminal WebSocket; resolves with the open socket, or with the HTTP answer that refused it. */
  const connect = (o: { token?: string; cookie?: string; origin?: string | null; params?: string; site?: string }) =>
    new Promise<{ term?: TestTerminal; status?: number; body?: any }>((resolve, reject) => {
      const url = `wss://127.0.0.1:${c.proxyPorts!.web}/webapi/sites/${o.site ?? SITE}/connect?params=${encodeURIComponent(o.params ?? params())}`;
      const protocols = [TERMINAL_PROTOCOL, ...(o.token ? [`bearer.${o.token}`] : [])];
      const origin = o.origin === undefined ? base : o.origin;
      const ws = new WebSocket(url, protocols, { ca, headers: { ...(o.cookie ? { cookie: o.cookie } : {}), ...(origin ? { origin } : {}) } });
      sockets.push(ws);
      const term = new TestTerminal(ws);
      ws.once('open', () => resolve({ term }));
      ws.once('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode, body: text ? JSON.parse(text) : undefined }));
      });
      ws.once('error', (err) => reject(err));
    });

  /** A terminal that is open and has shown its shell's output for a command. */
  const openShell = async (o: { token: string; cookie: string }) => {
    const { term, status, body } = await connect(o);
    if (!term) throw new Error(`the terminal was refused: ${status} ${JSON.stringify(body)}`);
    term.type('echo ready-$((6*7))\n');
    await term.waitForOutput('the shell to answer', /ready-42/);
    return term;
  };

  beforeAll(async () => {
    work = tempDir('web-terminal-');
    c = await startCluster({ proxy: {}, labels: { env: 'prod' }, tokens: ['node:web-terminal-nat-token'] });
    base = `https://127.0.0.1:${c.proxyPorts!.web}`;
    ca = fs.readFileSync(path.join(c.dataDir, 'webproxy_cert.pem'), 'utf8');
    const roles = path.join(work, 'roles.yaml');
    fs.writeFileSync(
      roles,
      'kind: role\nversion: v3\nmetadata:\n  name: staging-ops\nspec:\n  allow:\n    logins: [stagingops]\n    node_labels:\n      env: staging\n' +
        '---\nkind: role\nversion: v3\nmetadata:\n  name: short\nspec:\n  options:\n    max_session_ttl: 1m\n',
    );
    await c.tctlOk('create', roles);
    nodeId = /\b([0-9a-f-]{36})\b/.exec(await waitFor('the node to announce itself', async () => (await c.tctlOk('nodes', 'ls')).match(/test-auth.*/)?.[0]))![1];
    nat = await TestNode.create(c, { token: 'web-terminal-nat-token', caPin: await c.caPin(), nodeName: 'nat-1', authServer: `127.0.0.1:${c.proxyPorts!.web}` });
    nat.start();
    await nat.daemon!.waitForOutput(/reverse tunnel to the proxy is up/);
    browser = await launchChromium();
  });
  afterAll(async () => {
    for (const ws of sockets) ws.terminate();
    await browser?.close();
    await nat?.cleanup();
    await c?.cleanup();
    for (const u of users) u.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('GIVEN a logged-in user on the node list WHEN they open a terminal THEN the shell runs as their login in a PTY, UTF-8 goes both ways, pasting works, a resize reaches stty, exit ends it, it is recorded and audited, and the player plays it back', async () => {
    // GIVEN alice logged in in Chromium, on the node list
    const alice = await TshUser.signUp(c, 'alice', [LOGIN], { roles: ['admin'] });
    users.push(alice);
    const context = await newContext(browser);
    await recordCspViolations(context);
    const problems: string[] = [];
    context.on('page', (p) => {
      p.on('pageerror', (e) => problems.push(e.message));
      p.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
    });
    const page = await context.newPage();
    await goto(page, `${base}/web/login`);
    await page.fill('#username', 'alice');
    await page.fill('#password', alice.password);
    await page.fill('#otp', alice.nextCode());
    await page.click('#login');
    await page.waitForURL(`${base}/web/cluster/${SITE}/nodes`);
    const link = page.locator('#nodes tbody tr', { hasText: 'test-auth' }).locator('a.connect', { hasText: LOGIN });
    expect(await link.getAttribute('href')).toBe(`/web/cluster/${SITE}/console/node/${nodeId}/${LOGIN}`);

    // WHEN she opens a terminal from it THEN a new tab connects, named after the login and node
    const [tab] = await Promise.all([context.waitForEvent('page'), link.click()]);
    await tab.locator('#status', { hasText: 'Connected' }).waitFor();
    await tab.locator('#target', { hasText: `${LOGIN}@test-auth` }).waitFor();
    const lines = async () => (await tab.locator('.xterm-rows > div').allTextContents()).map((l) => l.replace(/\u00a0/g, ' ').trimEnd());
    const typeLine = async (text: string) => {
      await tab.keyboard.type(text);
      await tab.keyboard.press('Enter');
    };

    // WHEN she runs `echo $USER; tty` THEN her login and a PTY come back
    await typeLine('echo $USER; tty');
    await waitFor('the output of echo $USER; tty', async () => {
      const l = await lines();
      return l.includes(LOGIN) && l.some((x) => /^\/dev\/pts\/\d+$/.test(x));
    });

    // WHEN she types UTF-8 THEN the shell receives and echoes it intact
    await typeLine("echo 'héllo wörld ✓'");
    await waitFor('the UTF-8 echo', async () => (await lines()).includes('héllo wörld ✓'));

    // WHEN the output has 256 and 24-bit colours THEN xterm.js draws them: the page's CSP admits the <style> elements
    // it makes (theme, 256 colours) and the style attributes of 24-bit colours, and blocks nothing
    await typeLine('printf "\\033[38;5;208mindexed\\033[0m \\033[38;2;255;100;0mtruecolor\\033[0m\\n"');
    await waitFor('the coloured line', async () => (await lines()).includes('indexed truecolor'));
    const colourOf = (text: string) =>
      tab.evaluate(`getComputedStyle([...document.querySelectorAll('.xterm-rows span')].find((s) => s.textContent === ${JSON.stringify(text)})).color`);
    expect(await colourOf('indexed')).toBe('rgb(255, 135, 0)');
    expect(await colourOf('truecolor')).toBe('rgb(255, 100, 0)');
    expect(await tab.evaluate('[...document.querySelectorAll("style")].filter((s) => !s.sheet).length')).toBe(0);

    // WHEN text is pasted into the terminal (the browser's paste event, as Ctrl+V or the menu gives it) THEN the shell gets it
    await tab.evaluate(`(() => {
      const data = new DataTransfer();
      data.setData('text/plain', 'echo pasted-$((6*7))');
      document.querySelector('.xterm-helper-textarea').dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
    })()`);
    await tab.keyboard.press('Enter');
    await waitFor('the pasted command to run', async () => (await lines()).includes('pasted-42'));

    // WHEN the window is resized THEN stty size reports the terminal's new rows and columns
    await typeLine('stty size');
    const sizeLine = async () => (await lines()).filter((l) => /^\d+ \d+$/.test(l));
    const [before] = await waitFor('stty size', async () => ((await sizeLine()).length ? await sizeLine() : undefined));
    const [rowsBefore, colsBefore] = before.split(' ').map(Number);
    expect(rowsBefore).toBe((await lines()).length);
    await tab.setViewportSize({ width: 700, height: 360 });
    const rowsAfter = await waitFor('the terminal to fit the smaller window', async () => {
      const n = (await lines()).length;
      return n < rowsBefore ? n : undefined;
    });
    await typeLine('clear; stty size');
    const after = await waitFor('stty size after the resize', async () => (await sizeLine()).find((l) => l !== before));
    const [rows, cols] = after.split(' ').map(Number);
    expect(rows).toBe(rowsAfter);
    expect(cols).toBeLessThan(colsBefore);

    // WHEN she exits the shell THEN the page says the session ended with its status
    await typeLine('exit');
    await tab.locator('#status', { hasText: 'Session ended (exit status 0)' }).waitFor();
    expect(await cspViolations(tab)).toEqual([]);
    expect(problems).toEqual([]);

    // THEN the session appears in the player once its recording is uploaded, and plays back the same text
    const start = await waitFor('session.start', async () => (await c.events(['session.start'])).find((e) => e.user === 'alice'));
    await waitFor('session.upload', async () => (await c.events(['session.upload'])).find((e) => e.sid === start.sid));
    const terminalUrl = tab.url();
    await goto(tab, `${base}/web/cluster/${SITE}/session/${start.sid}`);
    await tab.locator('#status', { hasText: 'Ready' }).waitFor();
    // (every row the player draws is kept: `clear` wipes the screen before the end)
    await tab.evaluate(`(() => {
      const rows = document.querySelector('.xterm-rows');
      window.drawnRows = new Set();
      new MutationObserver(() => rows.querySelectorAll(':scope > div').forEach((d) => window.drawnRows.add(d.textContent.replace(/\\u00a0/g, ' ').trimEnd())))
        .observe(rows, { subtree: true, childList: true, characterData: true });
    })()`);
    await tab.click('#play');
    await tab.locator('#status', { hasText: 'Finished' }).waitFor();
    const played = await tab.evaluate<string[]>('[...window.drawnRows]');
    expect(played).toContain(LOGIN);
    expect(played.some((l) => /^\/dev\/pts\/\d+$/.test(l))).toBe(true);
    expect(played).toContain('héllo wörld ✓');
    expect(played).toContain('pasted-42');
    expect(played).toContain(before);
    expect(await terminalScreen(tab)).toContain(after);

    // WHEN the web session is ended and the terminal page is opened again THEN it is refused and says why
    const token = await tab.evaluate<string>("sessionStorage.getItem('teleport.token')");
    expect((await request('DELETE', '/webapi/sessions/current', { token })).status).toBe(200);
    await goto(tab, terminalUrl);
    await tab.locator('#error', { hasText: 'Your web session has expired or was ended. Log in again.' }).waitFor();
    expect(await tab.textContent('#status')).toBe('Disconnected');
    await context.close();

    // THEN the node audited the session with her user and login, and its recording holds what she saw
    expect(start).toMatchObject({ login: LOGIN, server_id: nodeId });
    const end = await waitFor('session.end', async () => (await c.events(['session.end'])).find((e) => e.user === 'alice'));
    expect(end).toMatchObject({ sid: start.sid, login: LOGIN });
    const admin = await c.adminClient();
    try {
      const rec = await waitFor('the recording', () => fetchRecording(admin, start.sid).catch(() => undefined));
      expect(rec.bytes.toString('utf8')).toMatch(/\/dev\/pts\/\d+/);
      expect(rec.bytes.toString('utf8')).toContain('héllo wörld ✓');
    } finally {
      admin.close();
    }
  }, 120_000);

  it('GIVEN a web session WHEN a terminal is asked for without its cookie, from another origin, with another session, for a login the roles refuse there, or with bad params THEN the upgrade is refused; and the node refuses that login itself', async () => {
    const bob = await webSession('bob', ['staging-ops']);
    const carol = await webSession('carol', ['staging-ops']);
    // GIVEN the cookie and bearer of one session open a terminal
    const ok = await connect({ token: bob.token, cookie: bob.cookie });
    expect(ok.term).toBeDefined();
    ok.term!.ws.close();

    // WHEN the cookie is missing THEN 401
    expect(await connect({ token: bob.token })).toMatchObject({ status: 401 });
    // WHEN the bearer is missing THEN 401
    expect(await connect({ cookie: bob.cookie })).toMatchObject({ status: 401 });
    // WHEN cookie and bearer name different (valid) sessions THEN 401
    expect(await connect({ token: carol.token, cookie: bob.cookie })).toMatchObject({ status: 401 });
    // WHEN the Origin is another site's, or missing THEN 403
    expect(await connect({ token: bob.token, cookie: bob.cookie, origin: 'https://evil.example' })).toMatchObject({ status: 403 });
    expect(await connect({ token: bob.token, cookie: bob.cookie, origin: `http://127.0.0.1:${c.proxyPorts!.web}` })).toMatchObject({ status: 403 });
    expect(await connect({ token: bob.token, cookie: bob.cookie, origin: null })).toMatchObject({ status: 403 });
    // WHEN the login is one bob's roles do not allow on that node (his certificate lists it) THEN 403 with the decision's reason
    const refused = await connect({ token: bob.token, cookie: bob.cookie, params: params({ login: 'stagingops' }) });
    expect(refused).toMatchObject({ status: 403, body: { error: { message: expect.stringMatching(/^access denied: login "stagingops" is not allowed/) } } });
    // AND the refusal is audited with the user, the login and the client's address
    const audited = await waitFor('the refusal in the audit log', async () => (await c.events(['auth'])).find((e) => e.user === 'bob' && e.login === 'stagingops'));
    expect(audited).toMatchObject({ success: false, error: refused.body.error.message, 'addr.remote': '127.0.0.1' });
    // WHEN the node, cluster or params are wrong THEN 404, 404, 400
    expect(await connect({ token: bob.token, cookie: bob.cookie, params: params({ server_id: '00000000-0000-4000-8000-000000000000' }) })).toMatchObject({ status: 404 });
    expect(await connect({ token: bob.token, cookie: bob.cookie, site: 'other.example' })).toMatchObject({ status: 404 });
    expect(await connect({ token: bob.token, cookie: bob.cookie, params: '{"server_id":' })).toMatchObject({ status: 400 });
    expect(await connect({ token: bob.token, cookie: bob.cookie, params: JSON.stringify({ server_id: nodeId, login: LOGIN, term: { w: 0, h: 30 } }) })).toMatchObject({ status: 400 });

    // AND the node decides for itself: bob's web-session certificate, taken straight to the node (no proxy), does not get stagingops there
    const pair = generateKeyPair('ed25519');
    const certRequest = { token: bob.token, pub_key: formatAuthorizedKey(publicKeyBlob(pair.publicKey)) };
    // (only proxies get such certificates: a node's identity is refused)
    await expect(asMember('Node', (client) => client.post('/v1/websessions/certs', certRequest))).rejects.toMatchObject({ reason: 'access_denied' });
    const { cert } = await asMember('Proxy', (client) => client.post<{ cert: string }>('/v1/websessions/certs', certRequest));
    const refusal = await new Promise<{ error: Error; banner: string }>((resolve, reject) => {
      const client = new Client();
      let banner = '';
      client.on('banner', (text: string) => (banner += text));
      client.on('ready', () => {
        client.end();
        reject(new Error('the node let bob in as stagingops'));
      });
      client.on('error', (error) => resolve({ error, banner }));
      client.connect({ host: '127.0.0.1', port: c.nodePort!, username: 'stagingops', agent: clientCertIdentity(pair.privateKey, cert), algorithms: CLIENT_ALGORITHMS, hostVerifier: () => true });
    });
    expect(refusal.banner).toMatch(/access denied: login "stagingops" is not allowed/);
    expect((refusal.error as { level?: string }).level).toBe('client-authentication');
  });

  it('GIVEN open terminals WHEN one gets a malformed message THEN only that socket closes and the others keep working', async () => {
    const erin = await webSession('erin', ['staging-ops']);
    const healthy = await openShell(erin);
    // WHEN a text message is not JSON THEN 1007
    const notJson = await openShell(erin);
    notJson.ws.send('not json');
    expect(await notJson.waitForClose('the socket to close')).toMatchObject({ code: 1007 });
    // WHEN a control message is of an unknown type, or out of range THEN 1003
    const unknown = await openShell(erin);
    unknown.ws.send(JSON.stringify({ type: 'shutdown' }));
    expect(await unknown.waitForClose('the socket to close')).toMatchObject({ code: 1003 });
    const huge = await openShell(erin);
    huge.ws.send(JSON.stringify({ type: 'resize', cols: 100000, rows: 5 }));
    expect(await huge.waitForClose('the socket to close')).toMatchObject({ code: 1003 });
    // WHEN a frame is over the size limit THEN 1009
    const tooBig = await openShell(erin);
    tooBig.ws.send(Buffer.alloc(MAX_MESSAGE_BYTES + 1, 0x61), { binary: true });
    expect(await tooBig.waitForClose('the socket to close')).toMatchObject({ code: 1009 });
    // THEN the healthy terminal still runs commands, and a resize message reaches its PTY
    healthy.ws.send(JSON.stringify({ type: 'resize', cols: 91, rows: 17 }));
    healthy.type('stty size\n');
    await healthy.waitForOutput('the resized PTY', /^17 91\r?$/m);
    expect(healthy.closed).toBeUndefined();
    // AND when its shell exits the socket closes normally with the exit status
    // (while input keeps coming: what arrives after the shell has ended goes nowhere)
    healthy.type('exit 3\n');
    const flood = setInterval(() => healthy.ws.readyState === WebSocket.OPEN && healthy.type('more input\n'), 1);
    try {
      expect(await healthy.waitForClose('the session to end')).toEqual({ code: 1000, reason: 'exit status 3' });
    } finally {
      clearInterval(flood);
    }
    // AND the proxy still opens terminals
    await openShell(erin);
  });

  it('GIVEN a node behind NAT (no listening port) WHEN a terminal is opened to it THEN it is reached through its reverse tunnel, and the node records the session', async () => {
    const gina = await webSession('gina');
    const natId = await waitFor('the NAT node to announce itself', async () =>
      (JSON.parse(await c.tctlOk('nodes', 'ls', '--format=json')) as { metadata: { name: string }; spec: { hostname: string } }[]).find((n) => n.spec.hostname === 'nat-1')?.metadata.name,
    );
    const { term } = await connect({ token: gina.token, cookie: gina.cookie, params: params({ server_id: natId }) });
    term!.type('echo on-$(hostname)-$((6*7)); exit\n');
    await term!.waitForOutput('the NAT node to answer', /on-\S+-42/);
    expect(await term!.waitForClose('the session to end')).toEqual({ code: 1000, reason: 'exit status 0' });
    expect(c.daemon!.stderr).toMatch(/"msg":"proxying to node".*"tunnel":true/);
    const start = await waitFor('session.start on the NAT node', async () => (await c.events(['session.start'])).find((e) => e.user === 'gina'));
    expect(start).toMatchObject({ server_id: natId, login: LOGIN });
  });

  it('GIVEN seeded malformed terminal requests (params, tokens, origins, sites) WHEN they are sent THEN each is refused with a 4xx, none opens a session, and a valid one still works', async () => {
    const henry = await webSession('henry');
    const valid = { server_id: nodeId, login: LOGIN, term: { w: 80, h: 24 } };
    const fields = ['server_id', 'login', 'term', 'w', 'h'] as const;
    type Input = { kind: string; token?: string; cookie?: string; origin?: string | null; params?: string; site?: string; expect: number[] };
    const result = await runFuzz<Input>({
      name: 'terminal upgrade',
      seed: 0x7e4a1,
      count: 240,
      concurrency: 4,
      timeoutMs: 20_000,
      input: (rng): Input => {
        const good = { token: henry.token, cookie: henry.cookie };
        switch (rng.int(5)) {
          case 0:
            return { kind: 'malformed params', ...good, params: malformedJson(rng, valid), expect: [400, 431] };
          case 1: {
            const field = rng.pick(fields);
            const p: any = JSON.parse(JSON.stringify(valid));
            if (field === 'w' || field === 'h') p.term[field] = rng.pick([0, -1, 1001, 1.5, '80', null, 1e308]);
            else p[field] = wrongJsonValue(rng);
            if (rng.chance(0.3)) p[rng.text(1 + rng.int(8))] = 1;
            return { kind: `wrong ${field}`, ...good, params: JSON.stringify(p), expect: [400] };
          }
          case 2: {
            const bad = rng.pick([rng.text(64, '0123456789abcdef'), rng.text(63, '0123456789abcdef'), henry.token.toUpperCase(), henry.token + 'a', rng.text(1 + rng.int(100))]);
            return rng.chance(0.5)
              ? { kind: 'bad bearer', token: bad, cookie: henry.cookie, expect: [401] }
              : { kind: 'bad cookie', token: henry.token, cookie: `${SESSION_COOKIE}=${bad}`, expect: [401] };
          }
          case 3:
            return { kind: 'bad origin', ...good, origin: rng.pick([`https://${rng.text(8)}.example`, 'null', `https://127.0.0.1:${rng.int(65536)}`, `http://127.0.0.1:${c.proxyPorts!.web}`, `https://127.0.0.1.${rng.text(3)}:${c.proxyPorts!.web}`]), expect: [403] };
          default:
            return { kind: 'bad site', ...good, site: rng.pick(['%zz', '%', 'other.example', rng.text(1 + rng.int(40)), 'example.com%2f..']), expect: [400, 404] };
        }
      },
      describe: (i) => `${i.kind} ${JSON.stringify({ params: i.params?.slice(0, 80), origin: i.origin, site: i.site })}`,
      send: async (i) => {
        // A request head over Node's 16 KiB limit is answered 431 and closed, which may reset the connection before the answer is read.
        const oversized = encodeURIComponent(i.params ?? '').length > 16 * 1024;
        const got = await connect(i).catch((err: NodeJS.ErrnoException): { term?: TestTerminal; status?: number } => {
          if (oversized && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) return { status: 431 };
          throw err;
        });
        if (got.term) {
          got.term.ws.terminate();
          return 'the upgrade was accepted';
        }
        return i.expect.includes(got.status!) ? undefined : `expected ${i.expect.join(' or ')}, got ${got.status}`;
      },
    });
    expect(result.failures).toEqual([]);
    expect(result.ran).toBe(240);
    // AND the proxy still opens terminals, and no session was started by any of them
    const term = await openShell(henry);
    term.ws.close();
    const starts = await waitFor("henry's session.start", async () => {
      const found = (await c.events(['session.start'])).filter((e) => e.user === 'henry');
      return found.length ? found : undefined;
    });
    expect(starts).toHaveLength(1);
  }, 120_000);

  it('GIVEN open terminals WHEN their web session is logged out, ended elsewhere, or expires THEN each socket is closed', async () => {
    // GIVEN carol, frank and dave (whose role caps sessions at 1 minute) each with a terminal open
    const carol = await webSession('carol2', ['staging-ops']);
    const frank = await webSession('frank', ['staging-ops']);
    const dave = await webSession('dave', ['staging-ops', 'short']);
    const [carolTerm, frankTerm, daveTerm] = await Promise.all([openShell(carol), openShell(frank), openShell(dave)]);

    // WHEN carol logs out on this proxy THEN her terminal closes at once, and the logout removes her cookie
    const logout = await request('DELETE', '/webapi/sessions/current', { token: carol.token });
    expect(logout.status).toBe(200);
    expect(String(logout.headers['set-cookie'])).toMatch(new RegExp(`^${SESSION_COOKIE}=; .*Max-Age=0`));
    expect(await carolTerm.waitForClose('carol\'s terminal to close')).toEqual({ code: CLOSE_SESSION_ENDED, reason: 'web session ended' });
    // AND her old session opens no new terminal
    expect(await connect({ token: carol.token, cookie: carol.cookie })).toMatchObject({ status: 401 });

    // WHEN frank's sessions are ended on the auth server (tctl users reset) THEN his terminal closes too
    await c.tctlOk('users', 'reset', 'frank');
    expect(await frankTerm.waitForClose('frank\'s terminal to close')).toEqual({ code: CLOSE_SESSION_ENDED, reason: 'web session ended' });

    // WHEN dave's session reaches its expiry THEN his terminal closes, saying so
    expect(await daveTerm.waitForClose('dave\'s terminal to close', 90_000)).toEqual({ code: CLOSE_SESSION_ENDED, reason: 'web session expired' });
  }, 150_000);

  // (last: it stops the cluster)
  it('GIVEN an open terminal WHEN teleport is told to stop gracefully (QUIT) THEN the terminal keeps working until its shell exits, and teleport then exits 0', async () => {
    // GIVEN no other terminal or upgraded connection (the NAT node's auth pipe is one) and one open terminal
    for (const ws of sockets) ws.terminate();
    await nat.cleanup();
    const ivan = await webSession('ivan');
    const term = await openShell(ivan);
    // WHEN
    c.daemon!.child.kill('SIGQUIT');
    await c.daemon!.waitForOutput(/no longer accepting connections/);
    // THEN the terminal still runs commands, and teleport waits for it
    term.type('echo still-$((6*7))\n');
    await term.waitForOutput('the terminal to keep working', /still-42/);
    expect(c.daemon!.child.exitCode).toBeNull();
    // AND once its shell exits, teleport exits 0
    term.type('exit\n');
    expect(await term.waitForClose('the session to end')).toEqual({ code: 1000, reason: 'exit status 0' });
    expect(await c.daemon!.exited).toBe(0);
  });
});
