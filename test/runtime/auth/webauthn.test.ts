/**
 * The server side of security keys that the browser tests
 * (test/e2e/web-webauthn.test.ts) cannot reach with a clock they move or a
 * cluster of each `second_factor`: a challenge's binding to its user and its
 * TTL, which factors each `second_factor` takes, and tsh login's requests
 * (answered once, collected once and only with tsh's secret, expiring).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalLogins } from '../../../runtime/auth/login';
import { MfaDevice } from '../../../runtime/auth/mfa';
import { AuthServer } from '../../../runtime/auth/server';
import { totp } from '../../../runtime/auth/totp';
import { AssertionResponse, CHALLENGE_LIMIT, CHALLENGE_TTL_MS, WebAuthn } from '../../../runtime/auth/webauthn';
import { CLI_REQUEST_TTL_MS, WebAuthnCliRequests } from '../../../runtime/auth/webauthn-cli';
import { Clock } from '../../../runtime/backend/clock';
import { MemoryBackend } from '../../../runtime/backend/memory';
import type { SecondFactor } from '../../../runtime/config/schema';
import { FileAuditLog } from '../../../runtime/events/filelog';
import { initTestAuthServer } from '../../helpers/authserver';
import { Keys, rangeEnd } from '../../../runtime/contract/keys';
import { LimitExceededError } from '../../../runtime/utils/errors';

const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
const PASSWORD = 'kim-secret-pass';
const RP = { id: 'proxy.example.com', origin: 'https://proxy.example.com:3080' };
const ADDR = '198.51.100.1';

class TestClock implements Clock {
  constructor(public ms: number) {}
  now(): Date {
    return new Date(this.ms);
  }
}

/** A key's answer to `challenge` from credential `id`, well formed but signed by nothing (its signature is never reached, or is refused). */
function answer(challenge: string, id = 'AAAA'): AssertionResponse {
  const clientData = Buffer.from(JSON.stringify({ type: 'webauthn.get', challenge, origin: RP.origin })).toString('base64url');
  return { id, rawId: id, type: 'public-key', response: { clientDataJSON: clientData, authenticatorData: 'AAAA', signature: 'AAAA' }, clientExtensionResults: {} };
}

/** A stored security key device of a user (its public key is not a real one). */
const keyDevice = (name: string, credentialId: string): MfaDevice => ({
  kind: 'mfa_device',
  version: 'v1',
  metadata: { name },
  id: `id-${name}`,
  added_at: new Date(0).toISOString(),
  last_used: new Date(0).toISOString(),
  webauthn: { credential_id: credentialId, public_key: 'AAAA', counter: 3 },
});

describe('WebAuthn challenges', () => {
  let backend: MemoryBackend;
  let clock: TestClock;
  let webauthn: WebAuthn;
  beforeEach(() => {
    clock = new TestClock(Date.now());
    backend = new MemoryBackend({ clock, sweepPeriodMs: 0 });
    webauthn = new WebAuthn(backend, 'example.com', clock);
  });
  afterEach(async () => {
    await backend.close();
  });

  test('GIVEN a challenge for bob WHEN alice answers it THEN it is refused as not hers', async () => {
    const options = await webauthn.assertionOptions('bob', RP, [keyDevice('key', 'AAAA')]);
    expect(options.rpId).toBe(RP.id);
    // WHEN alice's login carries bob's challenge THEN refused before any key is looked at
    expect(await webauthn.verifyAssertion('alice', answer(options.challenge), [keyDevice('key', 'AAAA')])).toEqual({ ok: false, why: 'webauthn challenge was not made for this user' });
    // AND it is used up: bob cannot use it either
    expect(await webauthn.verifyAssertion('bob', answer(options.challenge), [keyDevice('key', 'AAAA')])).toEqual({ ok: false, why: 'webauthn challenge unknown, expired or already used' });
  });

  test('GIVEN a login challenge WHEN a registration (of the same user) answers it THEN it is refused: a challenge is for one purpose', async () => {
    const options = await webauthn.assertionOptions('kim', RP, [keyDevice('key', 'AAAA')]);
    const clientData = Buffer.from(JSON.stringify({ type: 'webauthn.create', challenge: options.challenge, origin: RP.origin })).toString('base64url');
    const registration = { id: 'BBBB', rawId: 'BBBB', type: 'public-key' as const, response: { clientDataJSON: clientData, attestationObject: 'AAAA' }, clientExtensionResults: {} };
    await expect(webauthn.verifyRegistration({ user: 'kim', purpose: 'register' }, registration, [])).rejects.toThrow('webauthn challenge was not made for this user');
  });

  test('GIVEN a sign-up challenge of one token WHEN a sign-up with another token of the same user answers it THEN it is refused', async () => {
    const options = await webauthn.registrationOptions({ user: 'kim', purpose: 'signup', token: 'digest-a' }, RP, []);
    const clientData = Buffer.from(JSON.stringify({ type: 'webauthn.create', challenge: options.challenge, origin: RP.origin })).toString('base64url');
    const registration = { id: 'BBBB', rawId: 'BBBB', type: 'public-key' as const, response: { clientDataJSON: clientData, attestationObject: 'AAAA' }, clientExtensionResults: {} };
    await expect(webauthn.verifyRegistration({ user: 'kim', purpose: 'signup', token: 'digest-b' }, registration, [])).rejects.toThrow('webauthn challenge was not made for this sign-up');
  });

  test('GIVEN a challenge WHEN its answer comes after CHALLENGE_TTL_MS THEN it is refused as expired; a moment before, it gets as far as the signature', async () => {
    const devices = [keyDevice('key', 'AAAA')];
    const late = await webauthn.assertionOptions('kim', RP, devices);
    const inTime = await webauthn.assertionOptions('kim', RP, devices);
    clock.ms += CHALLENGE_TTL_MS - 1;
    // WHEN one answer comes in time THEN the challenge is accepted and the (fake) signature is what fails
    expect(await webauthn.verifyAssertion('kim', answer(inTime.challenge), devices)).toEqual({ ok: false, why: expect.stringMatching(/^invalid webauthn assertion/) });
    // WHEN the other comes after the TTL THEN refused for that
    clock.ms += 1;
    expect(await webauthn.verifyAssertion('kim', answer(late.challenge), devices)).toEqual({ ok: false, why: 'webauthn challenge unknown, expired or already used' });
  });

  test('GIVEN a user who asked for CHALLENGE_LIMIT.burst challenges WHEN they ask for one more THEN it is refused and nothing is stored; other users are not held back, and the user gets one again in time', async () => {
    const devices = [keyDevice('key', 'AAAA')];
    for (let i = 0; i < CHALLENGE_LIMIT.burst; i++) await webauthn.assertionOptions('kim', RP, devices);
    const prefix = Keys.webauthnChallenge('');
    const stored = async () => (await backend.getRange(prefix, rangeEnd(prefix))).length;
    expect(await stored()).toBe(CHALLENGE_LIMIT.burst);
    // WHEN kim asks again, for a login or a new key THEN refused with the limit's error, and no record more
    await expect(webauthn.assertionOptions('kim', RP, devices)).rejects.toBeInstanceOf(LimitExceededError);
    await expect(webauthn.registrationOptions({ user: 'kim', purpose: 'register' }, RP, [])).rejects.toBeInstanceOf(LimitExceededError);
    expect(await stored()).toBe(CHALLENGE_LIMIT.burst);
    // AND bob is not held back by kim's limit
    await webauthn.assertionOptions('bob', RP, devices);
    // AND after the refill time kim gets one challenge again (and only one)
    clock.ms += 1000 / CHALLENGE_LIMIT.perSecond;
    await webauthn.assertionOptions('kim', RP, devices);
    await expect(webauthn.assertionOptions('kim', RP, devices)).rejects.toBeInstanceOf(LimitExceededError);
  });

  test('GIVEN a user without a key WHEN a challenge is asked for THEN there is none', async () => {
    await expect(webauthn.assertionOptions('kim', RP, [])).rejects.toThrow('no security key is registered for this user');
  });
});

describe('second factors each second_factor takes', () => {
  let dir: string;
  let backend: MemoryBackend;
  let audit: FileAuditLog;
  let auth: AuthServer;
  let logins: LocalLogins;
  let clock: TestClock;

  async function setup(secondFactor: SecondFactor): Promise<void> {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'webauthn-'));
    clock = new TestClock(Date.now());
    backend = new MemoryBackend({ clock, sweepPeriodMs: 0 });
    audit = new FileAuditLog(dir);
    auth = await initTestAuthServer({ backend, audit, clusterName: 'example.com', clusterConfig: { second_factor: secondFactor } });
    logins = new LocalLogins(auth, { clock });
  }
  afterEach(async () => {
    await auth?.close();
    await backend?.close();
    await audit?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function addUser(name: string, devices: 'totp' | 'none'): Promise<void> {
    await auth.addUser(name, [name], ['admin'], 'test');
    await auth.users.setPassword(name, PASSWORD);
    if (devices === 'totp') await auth.users.mfa.replaceAll(name, 'otp', { totp: { key: SECRET, last_step: -1 } }, new Date(clock.ms));
  }

  const attempt = async (name: string, second: { otpToken?: string; webauthn?: AssertionResponse } = {}) =>
    logins.loginWith({ username: name, password: PASSWORD, ...second }, ADDR, async () => 'ok').catch((err: Error) => err.message);
  const failures = async () => (await audit.search({ from: new Date(Date.now() - 60_000), to: new Date(Date.now() + 60_000), eventTypes: ['user.login'] })).filter((e) => e.success === false).map((e) => e.error);

  test('GIVEN second_factor otp WHEN a login carries a security key THEN it is refused for that', async () => {
    await setup('otp');
    await addUser('kim', 'totp');
    expect(await attempt('kim', { webauthn: answer('A'.repeat(43)) })).toBe('invalid username, password or second factor');
    expect(await failures()).toEqual(['a security key was given but second_factor is otp']);
    // AND the offer of a security key is refused
    await expect(logins.offerWebAuthnDevice('kim', { password: PASSWORD, otpToken: totp(SECRET, { timeMs: clock.ms }) }, RP, ADDR)).rejects.toThrow(
      'this cluster does not use WebAuthn devices (auth_service.authentication.second_factor is otp)',
    );
  });

  test('GIVEN second_factor webauthn WHEN a login carries a TOTP code THEN it is refused, and no TOTP device may be added nor sign-up skip the key', async () => {
    await setup('webauthn');
    await addUser('kim', 'totp');
    expect(await attempt('kim', { otpToken: totp(SECRET, { timeMs: clock.ms }) })).toBe('invalid username, password or second factor');
    expect(await failures()).toEqual(['a one-time code was given but second_factor is webauthn']);
    await expect(logins.offerMfaDevice('kim', { password: PASSWORD }, ADDR)).rejects.toThrow('this cluster does not use TOTP devices (auth_service.authentication.second_factor is webauthn)');
    // AND a sign-up without a key's registration does not complete
    await auth.addUser('lee', ['lee'], ['admin'], 'test');
    const { token } = await auth.users.createSignupToken('lee', 3_600_000);
    await expect(logins.completeSignup(token, PASSWORD, { otpToken: '123456' })).rejects.toThrow('register a security key: this cluster requires one');
    await expect(auth.users.passwordHash('lee')).resolves.toBeUndefined();
  });

  test('GIVEN second_factor optional WHEN a user without a device gives the password alone THEN they log in; one with a device does not', async () => {
    await setup('optional');
    await addUser('kim', 'totp');
    await addUser('lee', 'none');
    expect(await attempt('lee')).toBe('ok');
    expect(await attempt('kim')).toBe('invalid username, password or second factor');
    expect(await failures()).toEqual(['no second factor given']);
    expect(await attempt('kim', { otpToken: totp(SECRET, { timeMs: clock.ms }) })).toBe('ok');
  });

  test('GIVEN second_factor on WHEN a user gives the password alone THEN refused, even without any device', async () => {
    await setup('on');
    await addUser('lee', 'none');
    expect(await attempt('lee')).toBe('invalid username, password or second factor');
    expect(await failures()).toEqual(['no second factor given']);
  });
});

describe("tsh login's security key requests", () => {
  let backend: MemoryBackend;
  let clock: TestClock;
  let requests: WebAuthnCliRequests;
  beforeEach(() => {
    clock = new TestClock(Date.now());
    backend = new MemoryBackend({ clock, sweepPeriodMs: 0 });
    requests = new WebAuthnCliRequests(backend, clock);
  });
  afterEach(async () => {
    await backend.close();
  });

  test('GIVEN a request WHEN the page answers twice THEN the second is refused, and only the secret collects the first, once', async () => {
    const r = await requests.open('kim', ADDR);
    expect(await requests.pending(r.id)).toEqual({ user: 'kim', from: ADDR });
    // WHEN tsh asks before the page answered THEN nothing yet
    expect(await requests.collect(r.id, r.secret)).toBeUndefined();
    await requests.answer(r.id, answer('first-answer-challenge'));
    // WHEN the page answers again THEN refused
    await expect(requests.answer(r.id, answer('second-answer-challenge'))).rejects.toThrow('this security key request has been answered already');
    await expect(requests.pending(r.id)).rejects.toThrow('this security key request has been answered already');
    // WHEN someone without the secret collects THEN refused
    await expect(requests.collect(r.id, 'f'.repeat(64))).rejects.toThrow('wrong secret for this security key request');
    await expect(requests.collect(r.id, 'short')).rejects.toThrow('wrong secret for this security key request');
    // WHEN tsh collects THEN it gets the first answer, and the request is gone
    expect(await requests.collect(r.id, r.secret)).toEqual({ user: 'kim', answer: answer('first-answer-challenge') });
    await expect(requests.collect(r.id, r.secret)).rejects.toThrow('no such security key request');
  });

  test('GIVEN a request WHEN CLI_REQUEST_TTL_MS has passed THEN it is gone', async () => {
    const r = await requests.open('kim', ADDR);
    clock.ms += CLI_REQUEST_TTL_MS - 1;
    expect(await requests.pending(r.id)).toEqual({ user: 'kim', from: ADDR });
    clock.ms += 1;
    await expect(requests.pending(r.id)).rejects.toThrow('no such security key request');
    await expect(requests.answer(r.id, answer('late-answer-challenge'))).rejects.toThrow('no such security key request');
  });
});
