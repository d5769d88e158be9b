/**
 * Fuzzing the HTTPS listeners, kept as tests: the auth API (3025) with a
 * valid client identity (the admin's) and the proxy's web API (3080) with a
 * valid web session. Inputs whose answer is known get exactly that answer
 * (malformed JSON 400, wrong types 400, oversized body 413, unknown path 404,
 * cross-site 403, not JSON 415, bad bearer token 403); byte-mutated requests
 * get an answer that is never a 5xx, or their connection closed, in time.
 * Afterwards the listener still serves a real request and the daemon's
 * settled memory is back near where it was. Loopback only, bounded in count
 * and time; deterministic (seed and input index in every failure).
 */
import * as tls from 'node:tls';
import { webRequest } from '../../runtime/client/weblogin';
import { MAX_BODY_BYTES } from '../../runtime/auth/http';
import { createAuth, TestAuth } from '../helpers/cluster';
import { expectNearBaseline, HttpTemplate, httpBytes, malformedJson, MB, mutatedHttpRequest, Rng, runFuzz, SETTLE_NODE_ARGS, settledMemory, wrongJsonValue, type Memory } from '../helpers/fuzz';
import { TshUser } from '../helpers/users';

const SEED = 0x5eed_0080;
const INPUTS = 2500;
const WEB_BODY_LIMIT = 64 * 1024;

interface Answer {
  status?: number;
}

/**
 * Sends raw request bytes over TLS and reads the status line of the answer; no status when the server
 * closed without one. `complete: false` (a mutated request, maybe cut short): after a second without an
 * answer the client half-closes, so the server knows the request is over rather than waiting for its
 * headers timeout (a half-closed TLS connection gets no answer, so complete requests never do this).
 */
function exchange(port: number, data: Buffer, creds: tls.ConnectionOptions, signal: AbortSignal, complete = true): Promise<Answer> {
  return new Promise((resolve) => {
    let head = '';
    let settled = false;
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...creds });
    const done = (a: Answer) => {
      if (settled) return;
      settled = true;
      s.destroy();
      resolve(a);
    };
    signal.addEventListener('abort', () => s.destroy());
    let idle: NodeJS.Timeout | undefined;
    s.on('secureConnect', () => {
      s.write(data);
      if (!complete) idle = setTimeout(() => s.end(), 1000);
    });
    s.on('close', () => clearTimeout(idle));
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3}) /.exec(head);
      if (m && head.includes('\r\n\r\n')) done({ status: Number(m[1]) });
    });
    s.on('close', () => done({}));
  });
}

/** What a known-answer input must get. */
interface Expected {
  request: Buffer;
  status?: number;
  why: string;
}

function check(expected: Expected, a: Answer): string | undefined {
  if (expected.status !== undefined) return a.status === expected.status ? undefined : `${expected.why}: expected ${expected.status}, got ${a.status ?? 'a closed connection'}`;
  return a.status !== undefined && a.status >= 500 ? `${expected.why}: got ${a.status}` : undefined;
}

/** A JSON request with a body built by `body`, and its exact expected status. */
function jsonCase(rng: Rng, t: HttpTemplate & { valid: Record<string, unknown>; stringField: string }, limit: number): Expected {
  const base = { ...t, headers: { 'content-type': 'application/json', ...t.headers } };
  switch (rng.int(3)) {
    case 0: {
      const body = malformedJson(rng, t.valid);
      return { request: httpBytes({ ...base, body }), status: body.length > limit ? 413 : 400, why: `malformed JSON (${body.length} bytes) to ${t.method} ${t.path}` };
    }
    case 1:
      return { request: httpBytes({ ...base, body: JSON.stringify({ ...t.valid, [t.stringField]: wrongJsonValue(rng) }) }), status: 400, why: `${t.stringField} of the wrong type to ${t.path}` };
    default: {
      // Over the limit by up to 1 MiB: answered 413 (read and dropped first, so the answer is not lost to a reset).
      const size = limit + 1 + rng.int(MB);
      const pad = 'x'.repeat(size);
      return { request: httpBytes({ ...base, body: JSON.stringify({ ...t.valid, [t.stringField]: pad }) }), status: 413, why: `a ${size}-byte body to ${t.path}` };
    }
  }
}

describe('HTTPS listeners under fuzzing', () => {
  let cluster: TestAuth;
  let user: TshUser;
  let token = '';
  let admin: tls.ConnectionOptions;

  beforeAll(async () => {
    // GIVEN auth and proxy in one process run under settle.js, an admin identity, and bob with a web session
    cluster = await createAuth({ proxy: {} });
    cluster.nodeArgs = SETTLE_NODE_ARGS;
    cluster.start();
    await cluster.ready();
    const id = await cluster.adminIdentity();
    admin = { key: id.tlsKey, cert: id.tlsCert, ca: id.tlsCACerts };
    user = await TshUser.signUp(cluster, 'bob', ['root']);
    const web = { scheme: 'https' as const, host: '127.0.0.1', port: cluster.proxyPorts!.web, insecure: true };
    token = (await webRequest<{ token: string }>(web, 'POST', '/webapi/sessions', { user: 'bob', pass: user.password, second_factor_token: user.nextCode() })).token;
  }, 120_000);
  afterAll(async () => {
    user?.cleanup();
    await cluster?.cleanup();
  });

  /**
   * The baseline, taken after one burst of 16 oversized bodies at once: the allocator keeps the pages
   * such a burst needed for reuse, and that high-water mark is not growth (heap and external memory
   * show what is really held). Each of the burst must get its 413.
   */
  async function baselineAfterBurst(port: number, creds: tls.ConnectionOptions, path: string, limit: number): Promise<Memory> {
    const big = httpBytes({ method: 'POST', path, headers: { 'content-type': 'application/json' }, body: 'x'.repeat(limit + MB) });
    const statuses = await Promise.all(Array.from({ length: 16 }, () => exchange(port, big, creds, new AbortController().signal).then((a) => a.status)));
    expect(statuses).toEqual(Array(16).fill(413));
    return settledMemory(cluster.daemon!);
  }

  async function settledNear(before: Memory): Promise<void> {
    expectNearBaseline(expect.getState().currentTestName ?? '', before, await settledMemory(cluster.daemon!));
  }

  it(`GIVEN the admin identity WHEN ${INPUTS} malformed, oversized and mutated requests reach the auth API THEN each gets its answer and the API still serves`, async () => {
    const port = cluster.port;
    const before = await baselineAfterBurst(port, admin, '/v1/tokens', MAX_BODY_BYTES);
    const templates: (HttpTemplate & { valid: Record<string, unknown>; stringField: string })[] = [
      { method: 'POST', path: '/v1/tokens', valid: { roles: ['Node'], ttl: 60e9 }, stringField: 'token' },
      { method: 'POST', path: '/v1/users/bob/certs', valid: { public_key: 'x', ttl: 60e9 }, stringField: 'public_key' },
      { method: 'POST', path: '/v1/signuptokens', valid: { user: 'carol', ttl: 60e9 }, stringField: 'user' },
      { method: 'POST', path: '/v1/tokens/register', valid: { hostID: 'h', node_name: 'n', role: 'Node', token: 't', public_tls_key: 'k' }, stringField: 'node_name' },
    ];
    const reads: HttpTemplate[] = [
      { method: 'GET', path: '/v1/ping' },
      { method: 'GET', path: '/v1/users' },
      { method: 'GET', path: '/v1/namespaces/default/nodes' },
      { method: 'POST', path: '/v1/tokens', headers: { 'content-type': 'application/json' }, body: '{"roles":["Node"],"ttl":1}' },
    ];
    // WHEN known-answer inputs (JSON bodies, unknown paths) and byte-mutated requests arrive, 16 at a time
    const r = await runFuzz<Expected>({
      name: 'auth API',
      seed: SEED,
      count: INPUTS,
      concurrency: 16,
      timeoutMs: 30_000,
      input: (rng) => {
        const k = rng.int(10);
        if (k < 4) return jsonCase(rng, rng.pick(templates), MAX_BODY_BYTES);
        if (k < 5) return { request: httpBytes({ method: 'GET', path: `/v1/${rng.pick(['nope', 'users/x/y/z', '%2e%2e/%2e%2e', 'x'.repeat(rng.int(4000))])}` }), status: 404, why: 'an unknown path' };
        return { request: mutatedHttpRequest(rng, rng.pick(reads)), why: 'a mutated request' };
      },
      send: async (e, signal) => check(e, await exchange(port, e.request, admin, signal, e.status !== undefined)),
      describe: (e) => `${e.why}: ${e.request.subarray(0, 80).toString('latin1')}`,
    });
    // THEN each got exactly its answer (and no mutated one a 5xx)
    process.stdout.write(`auth API: ${r.ran} inputs; slowest:\n  ${r.slowest.join('\n  ')}\n`);
    expect(r.failures).toEqual([]);
    // THEN the API still serves the admin, and memory settled back
    const client = await cluster.adminClient();
    try {
      expect(await client.get<{ cluster_name: string }>('/v1/ping')).toMatchObject({ cluster_name: 'example.com' });
    } finally {
      client.close();
    }
    await settledNear(before);
  }, 120_000);

  it(`GIVEN bob's web session WHEN ${INPUTS} malformed, oversized, cross-site and mutated requests reach the web API THEN each gets its answer and the session still works`, async () => {
    const port = cluster.proxyPorts!.web;
    const before = await baselineAfterBurst(port, {}, '/webapi/sessions', WEB_BODY_LIMIT);
    const auth = { authorization: `Bearer ${token}` };
    const posts: (HttpTemplate & { valid: Record<string, unknown>; stringField: string })[] = [
      { method: 'POST', path: '/webapi/sessions', valid: { user: 'nobody', pass: 'not the password' }, stringField: 'user' },
      { method: 'POST', path: '/webapi/ssh/certs', valid: { user: 'nobody', password: 'nope', pub_key: 'x', ttl: 60e9 }, stringField: 'password' },
      { method: 'POST', path: '/webapi/signuptokens/0123456789abcdef0123456789abcdef', valid: { password: 'x'.repeat(20), otp_token: '123456' }, stringField: 'password' },
    ];
    const reads: HttpTemplate[] = [
      { method: 'GET', path: '/webapi/sites', headers: auth },
      { method: 'GET', path: '/webapi/sites/example.com/nodes', headers: auth },
      { method: 'GET', path: '/webapi/ping' },
      { method: 'POST', path: '/webapi/sessions', headers: { 'content-type': 'application/json' }, body: '{"user":"nobody","pass":"nope"}' },
    ];
    /** A different token of visible characters: never this session's. */
    const badToken = (rng: Rng): string => {
      const t = token.split('');
      switch (rng.int(4)) {
        case 0:
          t[rng.int(t.length)] = rng.pick(['g', 'G', '-', '.', '~']);
          return t.join('');
        case 1:
          return token.slice(0, rng.int(token.length));
        case 2:
          return token + rng.text(1 + rng.int(200), '0123456789abcdef');
        default:
          return token.toUpperCase().replace(/^[0-9]*/, 'X');
      }
    };
    const r = await runFuzz<Expected>({
      name: 'web API',
      seed: SEED,
      count: INPUTS,
      concurrency: 16,
      timeoutMs: 30_000,
      input: (rng) => {
        const k = rng.int(12);
        if (k < 4) return jsonCase(rng, rng.pick(posts), WEB_BODY_LIMIT);
        if (k < 5) {
          const cross = rng.pick<Record<string, string>>([{ origin: 'https://evil.example' }, { 'sec-fetch-site': 'cross-site' }, { origin: 'null' }, { 'sec-fetch-site': 'same-site' }]);
          return { request: httpBytes({ method: 'POST', path: '/webapi/sessions', headers: { 'content-type': 'application/json', ...cross }, body: '{}' }), status: 403, why: `a cross-site POST (${JSON.stringify(cross)})` };
        }
        if (k < 6) {
          const type = rng.pick(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonx']);
          return { request: httpBytes({ method: 'POST', path: '/webapi/sessions', headers: { 'content-type': type }, body: '{}' }), status: 415, why: `a POST of ${type}` };
        }
        if (k < 8) {
          const scheme = rng.pick(['Bearer', 'Bearer', 'Basic']);
          return { request: httpBytes({ method: 'GET', path: rng.pick(['/webapi/sites', '/webapi/sites/example.com/nodes']), headers: { authorization: `${scheme} ${badToken(rng)}` } }), status: 403, why: 'a bad bearer token' };
        }
        return { request: mutatedHttpRequest(rng, rng.pick(reads)), why: 'a mutated request' };
      },
      send: async (e, signal) => check(e, await exchange(port, e.request, {}, signal, e.status !== undefined)),
      describe: (e) => `${e.why}: ${e.request.subarray(0, 80).toString('latin1')}`,
    });
    process.stdout.write(`web API: ${r.ran} inputs; slowest:\n  ${r.slowest.join('\n  ')}\n`);
    expect(r.failures).toEqual([]);
    // THEN bob's session still lists the cluster, and memory settled back
    const sites = await exchange(port, httpBytes({ method: 'GET', path: '/webapi/sites', headers: auth }), {}, new AbortController().signal);
    expect(sites.status).toBe(200);
    await settledNear(before);
  }, 120_000);
});
