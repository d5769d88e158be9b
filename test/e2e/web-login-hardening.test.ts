/**
 * The proxy's login endpoints against what a hostile web page or a password
 * sprayer can do: cross-site and non-JSON POSTs are refused before anything
 * is checked, failures are limited per source address (the TCP peer, or the
 * client a trusted load balancer names in X-Forwarded-For), and logging out
 * is audited.
 */
import * as https from 'node:https';
import { startAuth, TestAuth } from '../helpers/cluster';

interface Answer {
  status: number;
  json: any;
}

const GENERIC = 'invalid username, password or second factor';
const CROSS_SITE = /cross-site requests are refused/;
/** joe's password (the cluster has second_factor: off, so logins can repeat within a TOTP step). */
const PASSWORD = 'joe has a long password';

describe('proxy web login hardening', () => {
  let c: TestAuth;

  /** One request to the web listener, from `from` (a loopback address) when given. */
  const request = (method: string, path: string, opts: { body?: string | object; headers?: Record<string, string>; from?: string } = {}) =>
    new Promise<Answer>((resolve, reject) => {
      const body = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
      const req = https.request(
        `https://127.0.0.1:${c.proxyPorts!.web}${path}`,
        {
          method,
          rejectUnauthorized: false,
          agent: false,
          ...(opts.from ? { localAddress: opts.from } : {}),
          headers: {
            ...(typeof opts.body === 'object' ? { 'content-type': 'application/json' } : {}),
            ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}),
            ...opts.headers,
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode!, json: text ? JSON.parse(text) : undefined }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });

  const login = (user: string, pass: string, opts: { headers?: Record<string, string>; from?: string } = {}) =>
    request('POST', '/webapi/sessions', { body: { user, pass }, ...opts });

  const loginEvents = async (user: string) => (await c.events(['user.login'])).filter((e) => e.user === user);

  beforeAll(async () => {
    c = await startAuth({ proxy: { extra: ['trust_x_forwarded_for_from: [127.0.0.1/32]'] }, authExtra: ['authentication:', '  second_factor: off'] });
    const token = /\/web\/newuser\/([0-9a-f]{32})/.exec(await c.tctlOk('users', 'add', 'joe', 'joe'))![1];
    expect((await request('POST', `/webapi/signuptokens/${token}`, { body: { password: PASSWORD } })).status).toBe(200);
  });
  afterAll(async () => {
    await c?.cleanup();
  });

  it('GIVEN a POST whose body is not declared JSON THEN 415 before any credential is looked at', async () => {
    const json = JSON.stringify({ user: 'mallory', pass: 'guess-guess' });
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonp']) {
      for (const path of ['/webapi/sessions', '/webapi/ssh/certs', '/v1/webapi/sessions', `/webapi/signuptokens/${'0'.repeat(32)}`]) {
        const r = await request('POST', path, { body: json, headers: { 'content-type': type } });
        expect([path, type, r.status]).toEqual([path, type, 415]);
        expect(r.json.error.message).toMatch(/send Content-Type: application\/json/);
      }
    }
    expect((await request('POST', '/webapi/sessions', { body: json })).status).toBe(415); // no Content-Type at all
    // AND JSON with a charset parameter is JSON
    expect((await request('POST', '/webapi/sessions', { body: json, headers: { 'content-type': 'application/json; charset=utf-8' } })).status).toBe(403);
    expect((await loginEvents('mallory')).length).toBe(1);
  });

  it('GIVEN a POST or DELETE from another site THEN 403, while same-origin browsers and clients without Origin get through', async () => {
    const own = `https://127.0.0.1:${c.proxyPorts!.web}`;
    const crossSite: Record<string, string>[] = [
      { origin: 'https://evil.example' },
      { origin: 'null' },
      { origin: `http://127.0.0.1:${c.proxyPorts!.web}` }, // same host, another scheme
      { origin: `https://127.0.0.1:${c.proxyPorts!.web + 1}` },
      { 'sec-fetch-site': 'cross-site', origin: own },
      { 'sec-fetch-site': 'same-site' },
    ];
    for (const headers of crossSite) {
      const r = await login('joe', PASSWORD, { headers });
      expect([headers, r.status]).toEqual([headers, 403]);
      expect(r.json.error.message).toMatch(CROSS_SITE);
    }
    expect(await loginEvents('joe')).toEqual([]);

    // WHEN the request is same-origin (as Chromium sends it) or has neither header (tsh, curl) THEN it logs in
    const browser = await login('joe', PASSWORD, { headers: { origin: own, 'sec-fetch-site': 'same-origin' } });
    expect(browser.status).toBe(200);
    expect((await login('joe', PASSWORD, { headers: { origin: own } })).status).toBe(200);
    const plain = await login('joe', PASSWORD);
    expect(plain.status).toBe(200);

    // AND a cross-site logout is refused and leaves the session alive
    const token = plain.json.token as string;
    const bearer = { authorization: `Bearer ${token}` };
    const evil = await request('DELETE', '/webapi/sessions/current', { headers: { ...bearer, origin: 'https://evil.example' } });
    expect([evil.status, evil.json.error.message]).toEqual([403, expect.stringMatching(CROSS_SITE)]);
    expect((await request('GET', '/webapi/sites', { headers: bearer })).status).toBe(200);
  });

  it('GIVEN a web logout THEN it is audited as user.logout with the client address, and the session ends', async () => {
    const own = `https://127.0.0.1:${c.proxyPorts!.web}`;
    const { token } = (await login('joe', PASSWORD)).json;
    const bearer = { authorization: `Bearer ${token}` };
    expect((await request('DELETE', '/webapi/sessions/current', { headers: { ...bearer, origin: own, 'sec-fetch-site': 'same-origin' } })).status).toBe(200);
    expect((await request('GET', '/webapi/sites', { headers: bearer })).status).toBe(403);
    const events = await c.events(['user.logout']);
    expect(events).toEqual([expect.objectContaining({ event: 'user.logout', code: 'TL001I', user: 'joe', method: 'web', 'addr.remote': '127.0.0.1' })]);
    expect(JSON.stringify(events)).not.toContain(token);
  });

  it('GIVEN 40 wrong passwords across 40 user names from one untrusted address THEN the ones past 20 are throttled, whatever X-Forwarded-For it claims', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) {
      const r = await login(`spray${i}`, 'Summer2024!', { from: '127.0.0.2', headers: { 'x-forwarded-for': `198.51.100.${i}` } });
      statuses.push(r.status);
      expect(r.json.error.message).toBe(r.status === 403 ? GENERIC : 'too many requests, try again later');
    }
    expect(statuses).toEqual([...Array(20).fill(403), ...Array(20).fill(429)]);
    const events = (await c.events(['user.login'])).filter((e) => String(e.user).startsWith('spray'));
    expect(events).toHaveLength(40);
    expect(new Set(events.map((e) => e['addr.remote']))).toEqual(new Set(['127.0.0.2']));

    // AND a user elsewhere (the trusted 127.0.0.1, no header) still logs in
    expect((await login('joe', PASSWORD)).status).toBe(200);
  });

  it('GIVEN a trusted load balancer THEN the client it names in X-Forwarded-For has its own budget and is the audited address', async () => {
    // GIVEN 127.0.0.1 is trusted and 127.0.0.2 is throttled (test above); the client writes a fake address first
    const viaLb = (user: string, client: string) => login(user, 'Autumn2024!', { headers: { 'x-forwarded-for': `127.0.0.2, ${client}` } });
    const statuses: number[] = [];
    for (let i = 0; i < 21; i++) statuses.push((await viaLb(`lb${i}`, '203.0.113.5')).status);
    expect(statuses).toEqual([...Array(20).fill(403), 429]);
    expect((await viaLb('lb-other', '203.0.113.6')).status).toBe(403);
    const addrs = (await c.events(['user.login'])).filter((e) => String(e.user).startsWith('lb')).map((e) => e['addr.remote']);
    expect(new Set(addrs)).toEqual(new Set(['203.0.113.5', '203.0.113.6']));

    // AND a trusted hop in the header is skipped, a malformed one stops the walk at the balancer
    expect((await login('lb-hops', 'Autumn2024!', { headers: { 'x-forwarded-for': '203.0.113.7, 127.0.0.1' } })).status).toBe(403);
    expect((await login('lb-bad', 'Autumn2024!', { headers: { 'x-forwarded-for': '203.0.113.8, not-an-ip' } })).status).toBe(403);
    const last = (await c.events(['user.login'])).filter((e) => e.user === 'lb-hops' || e.user === 'lb-bad');
    expect(last.map((e) => [e.user, e['addr.remote']])).toEqual([
      ['lb-hops', '203.0.113.7'],
      ['lb-bad', '127.0.0.1'],
    ]);
  });
});
