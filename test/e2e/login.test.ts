/**
 * Local users through the auth API, called as the proxy calls it: sign-up
 * with a `tctl users add` token (password and TOTP), then password + TOTP
 * login for certificates; refusals, replay, lockout, audit, and who may call.
 */
import { AuthClient } from '../../runtime/auth/client';
import { register } from '../../runtime/auth/register';
import { base32Decode, hotp, totpStep } from '../../runtime/auth/totp';
import { formatAuthorizedKey, generateKeyPair, parseCertificate, publicKeyBlob } from '../../runtime/sshcert';
import { generateTlsKey, identityOf, publicKeyPem } from '../../runtime/tlsca';
import { logger } from '../../runtime/utils/logger';
import { tokenId } from '../../runtime/utils/secrets';
import { startAuth, TestAuth } from '../helpers/cluster';
import { waitFor } from '../helpers/proc';

const NS = 1_000_000;
const HOUR = 3600_000;
const GENERIC = /^invalid username, password or second factor$/;
const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64').toString();

interface LoginResponse {
  username: string;
  cert: string;
  tls_cert?: string;
  host_signers: { domain_name: string; checking_keys: string[]; tls_certs: string[] }[];
}

async function clientFor(auth: TestAuth, role: 'Proxy' | 'Node', token: string): Promise<AuthClient> {
  const id = await register({
    servers: [{ host: '127.0.0.1', port: auth.port }],
    token,
    caPins: [await auth.caPin()],
    role,
    hostUUID: `00000000-0000-4000-8000-${role === 'Proxy' ? '000000000001' : '000000000002'}`,
    nodeName: role.toLowerCase(),
    additionalPrincipals: [],
    dnsNames: [],
    log: logger('test'),
  });
  return new AuthClient({ servers: [{ host: '127.0.0.1', port: auth.port }], credentials: { key: id.tlsKey, cert: id.tlsCert, ca: id.tlsCACerts } });
}

async function signupToken(auth: TestAuth, ...args: string[]): Promise<string> {
  const out = await auth.tctlOk('users', 'add', ...args);
  return /\/web\/newuser\/([0-9a-f]{32})/.exec(out)![1];
}

const sshPublicKey = () => b64(formatAuthorizedKey(publicKeyBlob(generateKeyPair('ed25519').publicKey)));

/** A user's authenticator app: codes of the current step, never one already used. */
class Authenticator {
  lastStep = -1;
  constructor(readonly secret: string) {}

  /** The code of the next step not used yet (the server accepts one step ahead). */
  next(): string {
    const step = Math.max(totpStep(Date.now()), this.lastStep + 1);
    this.lastStep = step;
    return hotp(base32Decode(this.secret), step);
  }

  /** A 6-digit code valid for no step near now. */
  wrong(): string {
    const near = [-2, -1, 0, 1, 2].map((d) => hotp(base32Decode(this.secret), totpStep(Date.now()) + d));
    let n = 0;
    while (near.includes(String(n).padStart(6, '0'))) n++;
    return String(n).padStart(6, '0');
  }
}

async function errorOf(p: Promise<unknown>): Promise<{ reason?: string; message: string }> {
  try {
    await p;
  } catch (err) {
    return { reason: (err as { reason?: string }).reason, message: (err as Error).message };
  }
  throw new Error('expected the call to fail');
}

describe('local users with second_factor otp', () => {
  let auth: TestAuth;
  let proxy: AuthClient;
  let node: AuthClient;
  let joe: Authenticator;
  const passwords = { joe: 'joe-secret-pass-1', kim: 'kim-secret-pass-2', sam: 'sam-secret-pass-3' };
  const codesSent: string[] = [];

  const login = (name: string, body: Record<string, unknown>) => {
    if (typeof body.otp_token === 'string') codesSent.push(body.otp_token);
    return proxy.post<LoginResponse>(`/v1/users/${name}/login`, { pub_key: sshPublicKey(), ...body });
  };

  /** Completes a sign-up through the proxy API and returns the user's authenticator. */
  const signUp = async (password: string, token: string): Promise<Authenticator> => {
    const info = await proxy.get<{ otp_secret: string }>(`/v1/signuptokens/${token}`);
    const app = new Authenticator(info.otp_secret);
    const otp_token = app.next();
    codesSent.push(otp_token);
    await proxy.post(`/v1/signuptokens/${token}/complete`, { password, otp_token });
    return app;
  };

  beforeAll(async () => {
    auth = await startAuth({ tokens: ['proxy:login-proxy-token', 'node:login-node-token'] });
    proxy = await clientFor(auth, 'Proxy', 'login-proxy-token');
    node = await clientFor(auth, 'Node', 'login-node-token');
  });
  afterAll(async () => {
    proxy?.close();
    node?.close();
    await auth?.cleanup();
  });

  it('GIVEN a token from tctl users add WHEN the proxy reads it twice THEN it shows the same TOTP secret and otpauth URL', async () => {
    const token = await signupToken(auth, 'joe', 'joe');
    const first = await proxy.get<Record<string, string>>(`/v1/signuptokens/${token}`);
    expect(first).toMatchObject({ user: 'joe', second_factor: 'otp', otp_secret: expect.stringMatching(/^[A-Z2-7]{32}$/) });
    joe = new Authenticator(first.otp_secret);
    expect(new Date(first.expires).getTime()).toBeGreaterThan(Date.now());
    const url = new URL(first.otp_url);
    expect([url.protocol, decodeURIComponent(url.pathname), url.searchParams.get('secret'), url.searchParams.get('issuer')]).toEqual([
      'otpauth:',
      '/example.com:joe',
      first.otp_secret,
      'example.com',
    ]);
    expect(await proxy.get(`/v1/signuptokens/${token}`)).toEqual(first);
    const admin = await auth.adminClient();
    try {
      expect(JSON.stringify(await admin.get('/v1/signuptokens'))).not.toContain(first.otp_secret);
    } finally {
      admin.close();
    }

    // WHEN the code is wrong THEN sign-up is refused and the token stays usable
    const wrong = await errorOf(proxy.post(`/v1/signuptokens/${token}/complete`, { password: passwords.joe, otp_token: joe.wrong() }));
    expect(wrong).toMatchObject({ reason: 'access_denied', message: expect.stringMatching(/invalid second factor code/) });
    const noCode = await errorOf(proxy.post(`/v1/signuptokens/${token}/complete`, { password: passwords.joe }));
    expect(noCode.reason).toBe('access_denied');

    const code = joe.next();
    codesSent.push(code);
    expect(await proxy.post(`/v1/signuptokens/${token}/complete`, { password: passwords.joe, otp_token: code })).toEqual({ username: 'joe' });

    // THEN the token is used up
    const again = await errorOf(proxy.post(`/v1/signuptokens/${token}/complete`, { password: 'another-password', otp_token: joe.wrong() }));
    expect(again).toMatchObject({ reason: 'not_found', message: expect.stringMatching(/sign-up token not found or expired/) });
    expect((await errorOf(proxy.get(`/v1/signuptokens/${token}`))).reason).toBe('not_found');
    expect(await auth.events(['user.password_change'])).toContainEqual(expect.objectContaining({ user: 'joe', code: 'T1005I' }));
  });

  it('GIVEN a signed-up user WHEN they log in with password and code THEN they get certs for their logins within the TTL asked', async () => {
    const tlsKey = generateTlsKey();
    const ttlSec = 2 * 3600;
    const before = Math.floor(Date.now() / 1000);
    const res = await login('joe', { password: passwords.joe, otp_token: joe.next(), tls_pub_key: b64(publicKeyPem(tlsKey)), ttl: ttlSec * 1000 * NS });
    const after = Math.ceil(Date.now() / 1000);
    expect(res.username).toBe('joe');
    const cert = parseCertificate(unb64(res.cert));
    expect(cert.certType).toBe('user');
    expect(cert.principals).toEqual(['joe']);
    expect(cert.keyId).toBe('joe');
    expect(Number(cert.validBefore)).toBeLessThanOrEqual(after + ttlSec);
    expect(Number(cert.validBefore)).toBeGreaterThanOrEqual(before + ttlSec);

    const userCAs = await proxy.get<{ spec: { checking_keys: string[] } }[]>('/v1/authorities/user');
    expect(userCAs[0].spec.checking_keys.map(unb64).map((l) => l.split(' ')[1])).toContain(cert.signatureKey.toString('base64'));
    const hostCAs = await proxy.get<{ spec: { cluster_name: string; checking_keys: string[]; tls_key_pairs: { cert: string }[] } }[]>('/v1/authorities/host');
    expect(res.host_signers).toEqual([
      { domain_name: 'example.com', checking_keys: hostCAs[0].spec.checking_keys, tls_certs: hostCAs[0].spec.tls_key_pairs.map((p) => p.cert) },
    ]);
    expect(identityOf(unb64(res.tls_cert!))).toMatchObject({ username: 'joe', principals: ['joe'] });

    // AND a user certificate is not enough to call the proxy's login routes
    const asUser = new AuthClient({
      servers: [{ host: '127.0.0.1', port: auth.port }],
      credentials: { key: tlsKey, cert: unb64(res.tls_cert!), ca: res.host_signers[0].tls_certs.map(unb64) },
    });
    try {
      expect((await errorOf(asUser.post('/v1/users/joe/login', { password: passwords.joe, pub_key: sshPublicKey() }))).reason).toBe('access_denied');
    } finally {
      asUser.close();
    }

    // WHEN the same code is sent again THEN it is refused like any bad credential
    const replayed = await errorOf(login('joe', { password: passwords.joe, otp_token: hotp(base32Decode(joe.secret), joe.lastStep) }));
    expect(replayed).toMatchObject({ reason: 'access_denied', message: expect.stringMatching(GENERIC) });
  });

  it('GIVEN a wrong password, a wrong code, no code or an unknown user THEN each gets the same refusal', async () => {
    const refusals = [
      await errorOf(login('joe', { password: 'not-the-password', otp_token: joe.wrong() })),
      await errorOf(login('joe', { password: passwords.joe, otp_token: joe.wrong() })),
      await errorOf(login('joe', { password: passwords.joe })),
      await errorOf(login('nobody', { password: passwords.joe, otp_token: joe.wrong() })),
    ];
    for (const r of refusals) expect(r).toMatchObject({ reason: 'access_denied', message: expect.stringMatching(GENERIC) });
    // AND the client address a proxy names must be an IP address, and is what the audit log keeps
    expect((await errorOf(login('someone', { password: 'not-the-password', client_addr: 'evil.example' }))).reason).toBe('bad_parameter');
    expect((await errorOf(login('someone', { password: 'not-the-password', client_addr: '203.0.113.44' }))).reason).toBe('access_denied');
    expect((await auth.events(['user.login'])).filter((e) => e['addr.remote'] === '203.0.113.44')).toHaveLength(1);
    // AND a request outside the TTL limits is refused before any credential is checked
    expect((await errorOf(login('joe', { password: passwords.joe, otp_token: joe.wrong(), ttl: 31 * HOUR * NS }))).reason).toBe('bad_parameter');
  });

  it('GIVEN an expired sign-up token THEN it can neither be read nor completed', async () => {
    const token = await signupToken(auth, 'ann', 'ann', '--ttl=1s');
    const admin = await auth.adminClient();
    try {
      await waitFor('the sign-up token to expire', async () => !(await admin.get<{ id: string }[]>('/v1/signuptokens')).some((t) => t.id === tokenId(token)));
    } finally {
      admin.close();
    }
    expect(await errorOf(proxy.get(`/v1/signuptokens/${token}`))).toMatchObject({ reason: 'not_found', message: expect.stringMatching(/expired/) });
    expect((await errorOf(proxy.post(`/v1/signuptokens/${token}/complete`, { password: 'ann-secret-pass', otp_token: '123456' }))).reason).toBe('not_found');
    expect((await errorOf(proxy.get(`/v1/signuptokens/${'0'.repeat(32)}`))).reason).toBe('not_found');
  });

  it('GIVEN 5 failed logins WHEN the right password and code follow THEN the user is locked, and told no more than an unknown user is', async () => {
    const kim = await signUp(passwords.kim, await signupToken(auth, 'kim', 'kim'));
    const answers = async (name: string) => {
      const out: { reason?: string; message: string }[] = [];
      for (let i = 0; i < 5; i++) out.push(await errorOf(login(name, { password: `wrong-${i}`, otp_token: kim.wrong() })));
      out.push(await errorOf(login(name, { password: passwords.kim, otp_token: kim.next() })));
      return out;
    };
    const real = await answers('kim');
    expect(real).toEqual(Array(6).fill({ reason: 'access_denied', message: expect.stringMatching(GENERIC) }));
    expect(await answers('kim-nobody')).toEqual(real);

    const admin = await auth.adminClient();
    try {
      const user = await admin.get<{ spec: { status: { is_locked: boolean; locked_time: string; lock_expires: string } } }>('/v1/users/kim');
      expect(user.spec.status.is_locked).toBe(true);
      expect(new Date(user.spec.status.lock_expires).getTime() - new Date(user.spec.status.locked_time).getTime()).toBe(20 * 60_000);
    } finally {
      admin.close();
    }
  });

  it('GIVEN a role with a 1h max_session_ttl WHEN its user asks for 10h THEN the certificate lasts at most 1h', async () => {
    const admin = await auth.adminClient();
    try {
      await admin.put('/v1/roles', {
        kind: 'role',
        version: 'v3',
        metadata: { name: 'short' },
        spec: { options: { max_session_ttl: '1h' }, allow: { logins: ['{{internal.logins}}'] } },
      });
    } finally {
      admin.close();
    }
    const sam = await signUp(passwords.sam, await signupToken(auth, 'sam', 'sam', '--roles=short'));
    const after = () => Math.ceil(Date.now() / 1000);
    const res = await login('sam', { password: passwords.sam, otp_token: sam.next(), ttl: 10 * HOUR * NS });
    expect(Number(parseCertificate(unb64(res.cert)).validBefore)).toBeLessThanOrEqual(after() + 3600);
  });

  it('GIVEN a flood of attempts for one user name THEN they are rate limited', async () => {
    const attempts = await Promise.allSettled(Array.from({ length: 14 }, () => login('flood', { password: 'guess-guess' })));
    const reasons = attempts.map((a) => (a.status === 'rejected' ? (a.reason as { reason?: string }).reason : 'ok'));
    expect(reasons).not.toContain('ok');
    expect(reasons).toContain('limit_exceeded');
  });

  it('GIVEN the attempts above THEN every one is audited as user.login with its outcome and no secrets', async () => {
    const events = await auth.events(['user.login']);
    const joeEvents = events.filter((e) => e.user === 'joe');
    expect(joeEvents).toContainEqual(expect.objectContaining({ method: 'local', success: true, code: 'T1000I' }));
    expect(joeEvents).toContainEqual(expect.objectContaining({ method: 'local', success: false, code: 'T1000W', error: 'invalid password' }));
    expect(joeEvents).toContainEqual(expect.objectContaining({ success: false, error: 'second factor code already used' }));
    expect(events).toContainEqual(expect.objectContaining({ user: 'nobody', success: false, code: 'T1000W', error: expect.any(String) }));
    expect(events).toContainEqual(expect.objectContaining({ user: 'kim', success: false, error: 'user is locked' }));
    expect(events.filter((e) => e.user === 'flood')).toHaveLength(14);
    for (const e of events) expect(Object.keys(e)).not.toEqual(expect.arrayContaining(['password']));
    const text = JSON.stringify(await auth.events());
    for (const secret of [...Object.values(passwords), 'not-the-password', 'wrong-0', 'guess-guess']) expect(text).not.toContain(secret);
    for (const code of codesSent) expect(text).not.toContain(`"${code}"`);
    expect(text).not.toContain('otp_token');
  });

  it('GIVEN a Node identity THEN the sign-up and login routes are closed to it', async () => {
    const token = await signupToken(auth, 'lee', 'lee');
    // One call at a time: a call started early could fail before anything awaits it (an unhandled rejection).
    for (const call of [
      () => node.get(`/v1/signuptokens/${token}`),
      () => node.post(`/v1/signuptokens/${token}/complete`, { password: 'lee-secret-pass' }),
      () => node.post('/v1/users/joe/login', { password: passwords.joe, pub_key: sshPublicKey() }),
    ]) {
      expect((await errorOf(call())).reason).toBe('access_denied');
    }
    expect(await proxy.get(`/v1/signuptokens/${token}`)).toMatchObject({ user: 'lee' });
  });
});

describe('local users with second_factor off', () => {
  let auth: TestAuth;
  let proxy: AuthClient;

  beforeAll(async () => {
    auth = await startAuth({ tokens: ['proxy:off-proxy-token'], authExtra: ['authentication:', '  second_factor: off'] });
    proxy = await clientFor(auth, 'Proxy', 'off-proxy-token');
  });
  afterAll(async () => {
    proxy?.close();
    await auth?.cleanup();
  });

  it('GIVEN no second factor WHEN a user signs up and logs in with a password alone THEN they get certificates', async () => {
    const token = await signupToken(auth, 'joe', 'joe,root');
    const info = await proxy.get<Record<string, unknown>>(`/v1/signuptokens/${token}`);
    expect(info).toMatchObject({ user: 'joe', second_factor: 'off' });
    expect(info).not.toHaveProperty('otp_secret');
    const short = await errorOf(proxy.post(`/v1/signuptokens/${token}/complete`, { password: 'short' }));
    expect(short).toMatchObject({ reason: 'bad_parameter', message: expect.stringMatching(/at least 6 characters/) });
    await proxy.post(`/v1/signuptokens/${token}/complete`, { password: 'joe-plain-password' });

    const res = await proxy.post<LoginResponse>('/v1/users/joe/login', { password: 'joe-plain-password', pub_key: sshPublicKey() });
    const cert = parseCertificate(unb64(res.cert));
    expect(cert.principals).toEqual(['joe', 'root']);
    expect(Number(cert.validBefore - cert.validAfter)).toBeLessThanOrEqual(12 * 3600 + 60);
    expect(res).not.toHaveProperty('tls_cert');
    const wrong = await errorOf(proxy.post('/v1/users/joe/login', { password: 'joe-wrong-password', pub_key: sshPublicKey() }));
    expect(wrong).toMatchObject({ reason: 'access_denied', message: expect.stringMatching(GENERIC) });
  });
});
