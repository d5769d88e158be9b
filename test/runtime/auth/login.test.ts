/**
 * LocalLogins on a real auth server (memory backend, file audit log) with a
 * clock the tests move: lockout and its expiry, the same answer and the same
 * work for unknown, locked and existing users, and the per-source limit.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { INVALID_LOGIN, LOCKOUT, LocalLogins, SOURCE_LIMIT } from '../../../runtime/auth/login';
import { AuthServer } from '../../../runtime/auth/server';
import { totp } from '../../../runtime/auth/totp';
import { Clock } from '../../../runtime/backend/clock';
import { MemoryBackend } from '../../../runtime/backend/memory';
import { FileAuditLog } from '../../../runtime/events/filelog';
import { initTestAuthServer } from '../../helpers/authserver';
import { addressKey } from '../../../runtime/utils/ratelimit';
import { Keys } from '../../../runtime/contract/keys';
import * as secrets from '../../../runtime/utils/secrets';

const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
const MINUTE = 60_000;

class TestClock implements Clock {
  constructor(public ms: number) {}
  now(): Date {
    return new Date(this.ms);
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}

interface Setup {
  auth: AuthServer;
  logins: LocalLogins;
  clock: TestClock;
  audit: FileAuditLog;
  close(): Promise<void>;
}

async function setup(secondFactor: 'otp' | 'off'): Promise<Setup> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'logins-'));
  const clock = new TestClock(Date.now());
  const backend = new MemoryBackend({ clock, sweepPeriodMs: 0 });
  const audit = new FileAuditLog(dir);
  const auth = await initTestAuthServer({ backend, audit, clusterName: 'example.com', clusterConfig: { second_factor: secondFactor } });
  return {
    auth,
    logins: new LocalLogins(auth, { clock }),
    clock,
    audit,
    close: async () => {
      await auth.close();
      await backend.close();
      await audit.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A user who completed sign-up: password and (with otp) a TOTP secret. */
async function addUser(s: Setup, name: string, password: string): Promise<void> {
  await s.auth.addUser(name, [name], ['admin'], 'test');
  await s.auth.users.setPassword(name, password);
  await s.auth.users.mfa.replaceAll(name, 'otp', { totp: { key: SECRET, last_step: -1 } }, new Date(s.clock.ms));
}

/** One login attempt: 'ok', or what the caller is told. */
async function attempt(s: Setup, name: string, password: string, addr = '198.51.100.1', code?: string): Promise<string> {
  try {
    await s.logins.loginWith({ username: name, password, otpToken: code ?? totp(SECRET, { timeMs: s.clock.ms }) }, addr, async () => undefined);
    return 'ok';
  } catch (err) {
    return `${(err as { reason?: string }).reason}: ${(err as Error).message}`;
  }
}

const REFUSED = `access_denied: ${INVALID_LOGIN}`;

/** A 6-digit code valid for no step the server accepts around `timeMs`. */
function wrongCode(timeMs: number): string {
  const near = [-1, 0, 1].map((d) => totp(SECRET, { timeMs: timeMs + d * 30_000 }));
  let n = 0;
  while (near.includes(String(n).padStart(6, '0'))) n++;
  return String(n).padStart(6, '0');
}

describe('local logins: lockout with a clock the test moves', () => {
  let s: Setup;
  beforeEach(async () => {
    s = await setup('otp');
    await addUser(s, 'kim', 'kim-secret-pass');
  });
  afterEach(async () => {
    await s?.close();
  });

  test('GIVEN 5 failed logins WHEN the lock expires THEN the right password and code log in again, and not a moment before', async () => {
    // GIVEN 5 wrong passwords
    const start = s.clock.ms;
    for (let i = 0; i < LOCKOUT.maxAttempts; i++) expect(await attempt(s, 'kim', `wrong-${i}`)).toBe(REFUSED);
    const status = (await s.auth.users.get('kim')).spec.status!;
    expect(status.is_locked).toBe(true);
    expect(new Date(status.lock_expires!).getTime()).toBe(start + LOCKOUT.lockMs);

    // WHEN the right credentials come while locked THEN the same refusal
    s.clock.advance(LOCKOUT.lockMs - 1000);
    expect(await attempt(s, 'kim', 'kim-secret-pass')).toBe(REFUSED);

    // WHEN the lock has expired THEN they log in and the lock is lifted
    s.clock.advance(2000);
    expect(await attempt(s, 'kim', 'kim-secret-pass')).toBe('ok');
    expect((await s.auth.users.get('kim')).spec.status?.is_locked).toBe(false);
    const events = await s.audit.search({ from: new Date(Date.now() - MINUTE), to: new Date(Date.now() + MINUTE), eventTypes: ['user.login'] });
    expect(events.map((e) => e.error ?? 'ok')).toEqual([
      'invalid password',
      'invalid password',
      'invalid password',
      'invalid password',
      expect.stringMatching(/^invalid password; user locked until \S+ after 5 failed attempts$/),
      'user is locked',
      'ok',
    ]);
  });

  test('GIVEN a locked user WHEN more failures follow THEN the lock is not extended by them', async () => {
    const start = s.clock.ms;
    for (let i = 0; i < LOCKOUT.maxAttempts * 2; i++) {
      expect(await attempt(s, 'kim', `wrong-${i}`)).toBe(REFUSED);
      s.clock.advance(MINUTE);
    }
    expect(new Date((await s.auth.users.get('kim')).spec.status!.lock_expires!).getTime()).toBe(start + 4 * MINUTE + LOCKOUT.lockMs);
  });
});

describe('local logins: an unknown user is answered as a known, locked or half-signed-up one', () => {
  let s: Setup;
  let verify: jest.SpyInstance;
  beforeAll(async () => {
    s = await setup('otp');
    await addUser(s, 'kim', 'kim-secret-pass');
    await addUser(s, 'lee', 'lee-secret-pass');
    await s.auth.addUser('ann', ['ann'], ['admin'], 'test'); // never finished sign-up
  });
  beforeEach(() => {
    verify = jest.spyOn(secrets, 'verifyPassword');
  });
  afterEach(() => verify.mockRestore());
  afterAll(async () => {
    await s?.close();
  });

  test('GIVEN 6 wrong passwords for a real user and for an unknown name THEN every answer is the same, and each ran one scrypt', async () => {
    const real: string[] = [];
    const ghost: string[] = [];
    for (let i = 0; i < LOCKOUT.maxAttempts + 1; i++) {
      real.push(await attempt(s, 'kim', `wrong-${i}`, `198.51.100.${i}`));
      ghost.push(await attempt(s, 'nobody', `wrong-${i}`, `198.51.100.${i}`));
    }
    expect((await s.auth.users.get('kim')).spec.status?.is_locked).toBe(true);
    expect(real).toEqual(Array(LOCKOUT.maxAttempts + 1).fill(REFUSED));
    expect(ghost).toEqual(real);
    expect(verify).toHaveBeenCalledTimes(2 * (LOCKOUT.maxAttempts + 1));
  });

  test('GIVEN the right password of a locked user, a user without a password, a wrong code and an unknown name THEN the same answer, one scrypt and one recorded attempt each', async () => {
    // kim is locked by the test above; her attempts were cleared when the lock was set
    const cases = [
      ['kim', 'kim-secret-pass', undefined],
      ['ann', 'ann-secret-pass', undefined],
      ['lee', 'lee-secret-pass', wrongCode(s.clock.ms)],
      ['ghost', 'ghost-secret-pass', undefined],
    ] as const;
    for (const [name, password, code] of cases) {
      const before = await s.auth.users.countLoginAttempts(name);
      verify.mockClear();
      expect(await attempt(s, name, password, '203.0.113.9', code)).toBe(REFUSED);
      expect(verify).toHaveBeenCalledTimes(1);
      expect(await s.auth.users.countLoginAttempts(name)).toBe(before + 1);
    }
  });

  test('GIVEN failures recorded for a name nobody had WHEN that user is created THEN they do not count against the new user', async () => {
    for (let i = 0; i < LOCKOUT.maxAttempts - 1; i++) await attempt(s, 'future', `wrong-${i}`, '203.0.113.10');
    expect(await s.auth.users.countLoginAttempts('future')).toBe(LOCKOUT.maxAttempts - 1);
    await addUser(s, 'future', 'future-secret-pass');
    expect(await s.auth.users.countLoginAttempts('future')).toBe(0);
  });
});

describe('local logins: the per-source limit', () => {
  let s: Setup;
  beforeEach(async () => {
    s = await setup('off');
    await s.auth.addUser('joe', ['joe'], ['admin'], 'test');
    await s.auth.users.setPassword('joe', 'joe-secret-pass');
  });
  afterEach(async () => {
    await s?.close();
  });

  test('GIVEN 40 wrong passwords across 40 user names from one address THEN the ones past the burst are throttled, other addresses are not', async () => {
    const answers: string[] = [];
    for (let i = 0; i < 40; i++) answers.push(await attempt(s, `user${i}`, 'guess-guess', '198.51.100.7'));
    expect(answers.slice(0, SOURCE_LIMIT.burst)).toEqual(Array(SOURCE_LIMIT.burst).fill(REFUSED));
    expect(answers.slice(SOURCE_LIMIT.burst)).toEqual(Array(40 - SOURCE_LIMIT.burst).fill('limit_exceeded: too many requests, try again later'));
    // AND the real user behind that address is held up too, while one elsewhere is not
    expect(await attempt(s, 'joe', 'joe-secret-pass', '198.51.100.7')).toMatch(/^limit_exceeded/);
    expect(await attempt(s, 'joe', 'joe-secret-pass', '198.51.100.8')).toBe('ok');
    // AND the bucket refills with time
    s.clock.advance(1000 / SOURCE_LIMIT.perSecond);
    expect(await attempt(s, 'user41', 'guess-guess', '198.51.100.7')).toBe(REFUSED);
    expect(await attempt(s, 'user42', 'guess-guess', '198.51.100.7')).toMatch(/^limit_exceeded/);
  });

  test('GIVEN successful logins between failures THEN only the failures count against the address', async () => {
    for (let i = 0; i < SOURCE_LIMIT.burst - 1; i++) expect(await attempt(s, `user${i}`, 'guess-guess', '198.51.100.9')).toBe(REFUSED);
    for (let i = 0; i < 5; i++) expect(await attempt(s, 'joe', 'joe-secret-pass', '198.51.100.9')).toBe('ok');
    expect(await attempt(s, 'userX', 'guess-guess', '198.51.100.9')).toBe(REFUSED);
    expect(await attempt(s, 'userY', 'guess-guess', '198.51.100.9')).toMatch(/^limit_exceeded/);
  });

  test('GIVEN IPv6 clients THEN one /64 is one source, and an IPv4-mapped address is its IPv4 address', async () => {
    for (let i = 0; i < SOURCE_LIMIT.burst; i++) expect(await attempt(s, `user${i}`, 'guess-guess', `2001:db8::${(i + 1).toString(16)}`)).toBe(REFUSED);
    expect(await attempt(s, 'userX', 'guess-guess', '2001:db8:0:0:ffff:ffff:ffff:ffff')).toMatch(/^limit_exceeded/);
    expect(await attempt(s, 'userY', 'guess-guess', '2001:db8:0:1::1')).toBe(REFUSED);
    expect(addressKey('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(addressKey('2001:DB8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
    expect(addressKey('64:ff9b::192.0.2.1')).toBe('64:ff9b:0:0::/64');
  });

  test('GIVEN attempts from an address THEN the audit log names it', async () => {
    await attempt(s, 'joe', 'joe-secret-pass', '198.51.100.20');
    await attempt(s, 'joe', 'wrong-password', '2001:db8::20');
    const events = await s.audit.search({ from: new Date(Date.now() - MINUTE), to: new Date(Date.now() + MINUTE), eventTypes: ['user.login'] });
    expect(events.map((e) => [e.success, e['addr.remote']])).toEqual([
      [true, '198.51.100.20'],
      [false, '2001:db8::20'],
    ]);
  });
});

describe('second-factor devices', () => {
  let s: Setup;
  const STEP = 30_000;
  const code = (secret = SECRET) => totp(secret, { timeMs: s.clock.ms });
  const outcome = (p: Promise<unknown>) =>
    p.then(
      () => 'ok',
      (err: Error & { reason?: string }) => `${err.reason}: ${err.message}`,
    );
  const events = (type: string) => s.audit.search({ from: new Date(Date.now() - MINUTE), to: new Date(Date.now() + MINUTE), eventTypes: [type] });

  beforeEach(async () => {
    s = await setup('otp');
    await addUser(s, 'kim', 'kim-secret-pass');
  });
  afterEach(async () => {
    await s?.close();
  });

  /** Offers kim a device and confirms it as `name`: its secret. */
  async function addDevice(name: string): Promise<string> {
    s.clock.advance(STEP);
    const offer = await s.logins.offerMfaDevice('kim', { password: 'kim-secret-pass', otpToken: code() }, '198.51.100.1');
    await s.logins.addMfaDevice('kim', { name, otpToken: code(offer.otp_secret) }, '198.51.100.1');
    return offer.otp_secret;
  }

  test('GIVEN kim with her sign-up device WHEN she adds a second THEN codes of either log her in, the list shows both without secrets, and the addition is audited', async () => {
    // WHEN she asks for a new device with her password and current code, and confirms it with a code of the new secret
    s.clock.advance(STEP);
    const offer = await s.logins.offerMfaDevice('kim', { password: 'kim-secret-pass', otpToken: code() }, '198.51.100.1');
    expect(offer.otp_url).toBe(`otpauth://totp/example.com:kim?secret=${offer.otp_secret}&issuer=example.com`);
    expect(offer.otp_secret).not.toBe(SECRET);
    const added = await s.logins.addMfaDevice('kim', { name: 'phone 2', otpToken: code(offer.otp_secret) }, '198.51.100.1');
    expect(added).toMatchObject({ name: 'phone 2', type: 'TOTP' });

    // THEN both devices are listed, without their secrets
    const list = await s.logins.mfaDevices('kim');
    expect(list.map((d) => d.name)).toEqual(['otp', 'phone 2']);
    expect(JSON.stringify(list)).not.toContain(offer.otp_secret);
    expect(JSON.stringify(list)).not.toContain(SECRET);

    // THEN a code of either device logs her in (the new one's code of the confirming step is used up)
    expect(await attempt(s, 'kim', 'kim-secret-pass', undefined, code(offer.otp_secret))).toBe('access_denied: ' + INVALID_LOGIN);
    s.clock.advance(STEP);
    expect(await attempt(s, 'kim', 'kim-secret-pass', undefined, code(offer.otp_secret))).toBe('ok');
    s.clock.advance(STEP);
    expect(await attempt(s, 'kim', 'kim-secret-pass', undefined, code())).toBe('ok');
    // AND the same code is not taken twice
    expect(await attempt(s, 'kim', 'kim-secret-pass', undefined, code())).toBe('access_denied: ' + INVALID_LOGIN);
    expect((await events('user.login')).map((e) => e.error ?? 'ok')).toEqual(['second factor code already used', 'ok', 'ok', 'second factor code already used']);

    // THEN the addition is audited with the device's name and ID
    expect(await events('mfa.add')).toEqual([expect.objectContaining({ user: 'kim', success: true, code: 'T1006I', mfa_device_name: 'phone 2', mfa_device_uuid: added.id, mfa_device_type: 'TOTP', 'addr.remote': '198.51.100.1' })]);
  });

  test('GIVEN a new device being set up WHEN the confirming code is wrong, the name is taken or bad, or the offer has expired THEN it is not added, and each is said', async () => {
    s.clock.advance(STEP);
    const offer = await s.logins.offerMfaDevice('kim', { password: 'kim-secret-pass', otpToken: code() }, '198.51.100.1');
    // WHEN confirmed with a code of her old device THEN refused, and the offer stays
    expect(await outcome(s.logins.addMfaDevice('kim', { name: 'phone 2', otpToken: code() }, ''))).toMatch(/^bad_parameter: the code is not from the new device/);
    // WHEN named as an existing device, or with a name that cannot be a key THEN refused
    expect(await outcome(s.logins.addMfaDevice('kim', { name: 'otp', otpToken: code(offer.otp_secret) }, ''))).toBe('already_exists: there is already a device named "otp"');
    expect(await outcome(s.logins.addMfaDevice('kim', { name: '../pwd', otpToken: code(offer.otp_secret) }, ''))).toMatch(/^bad_parameter: device name: /);
    // WHEN confirmed after 5 minutes THEN the offer is gone
    s.clock.advance(5 * MINUTE + 1000);
    expect(await outcome(s.logins.addMfaDevice('kim', { name: 'phone 2', otpToken: code(offer.otp_secret) }, ''))).toMatch(/^not_found: no new device is being set up, or it took more than 5 minutes/);
    expect((await s.logins.mfaDevices('kim')).map((d) => d.name)).toEqual(['otp']);
    expect((await events('mfa.add')).map((e) => [e.success, e.code])).toEqual([
      [false, 'T1006W'],
      [false, 'T1006W'],
      [false, 'T1006W'],
      [false, 'T1006W'],
    ]);
  });

  test('GIVEN a wrong password or code WHEN a device is asked for or removed THEN the login answer, audited, and counted toward the lockout', async () => {
    s.clock.advance(STEP);
    expect(await outcome(s.logins.offerMfaDevice('kim', { password: 'wrong-pass', otpToken: code() }, ''))).toBe('access_denied: invalid current password or second factor');
    expect(await outcome(s.logins.offerMfaDevice('kim', { password: 'kim-secret-pass', otpToken: wrongCode(s.clock.ms) }, ''))).toBe('access_denied: invalid current password or second factor');
    expect(await outcome(s.logins.deleteMfaDevice('kim', { name: 'otp', password: 'wrong-pass', otpToken: code() }, ''))).toBe('access_denied: invalid current password or second factor');
    expect((await events('mfa.add')).map((e) => e.error)).toEqual(['invalid password', 'invalid second factor code']);
    expect((await events('mfa.delete')).map((e) => e.error)).toEqual(['invalid password']);
    expect(await s.auth.users.countLoginAttempts('kim')).toBe(3);
  });

  test('GIVEN two devices WHEN one is removed THEN its codes no longer log in, the last one cannot be removed, and removals are audited', async () => {
    const second = await addDevice('phone 2');
    // WHEN the sign-up device is removed (with the password and a code of the second)
    s.clock.advance(STEP);
    await s.logins.deleteMfaDevice('kim', { name: 'otp', password: 'kim-secret-pass', otpToken: code(second) }, '198.51.100.1');
    // THEN its codes do not log in; the second's do
    s.clock.advance(STEP);
    expect(await attempt(s, 'kim', 'kim-secret-pass', undefined, code())).toBe('access_denied: ' + INVALID_LOGIN);
    expect(await attempt(s, 'kim', 'kim-secret-pass', undefined, code(second))).toBe('ok');
    // WHEN the last device is to be removed, or one she does not have THEN refused
    s.clock.advance(STEP);
    expect(await outcome(s.logins.deleteMfaDevice('kim', { name: 'phone 2', password: 'kim-secret-pass', otpToken: code(second) }, ''))).toMatch(/^bad_parameter: this is your only second-factor device/);
    s.clock.advance(STEP);
    expect(await outcome(s.logins.deleteMfaDevice('kim', { name: 'laptop', password: 'kim-secret-pass', otpToken: code(second) }, ''))).toBe('not_found: no second-factor device named "laptop"');
    expect((await s.logins.mfaDevices('kim')).map((d) => d.name)).toEqual(['phone 2']);
    expect((await events('mfa.delete')).map((e) => [e.success, e.mfa_device_name, e.code])).toEqual([
      [true, 'otp', 'T1007I'],
      [false, 'phone 2', 'T1007W'],
      [false, 'laptop', 'T1007W'],
    ]);
  });

  test('GIVEN a user from before devices (one TOTP record) WHEN she logs in THEN her code works, and the record became the device "otp"', async () => {
    // GIVEN the old record instead of devices
    await s.auth.users.mfa.removeAll('kim');
    await s.auth.backend.put({ key: Keys.userTotp('kim'), value: Buffer.from(JSON.stringify({ secret: SECRET, last_step: -1 })) });
    // WHEN she logs in THEN it works, once per code
    expect(await attempt(s, 'kim', 'kim-secret-pass')).toBe('ok');
    expect(await attempt(s, 'kim', 'kim-secret-pass')).toBe('access_denied: ' + INVALID_LOGIN);
    expect((await s.logins.mfaDevices('kim')).map((d) => d.name)).toEqual(['otp']);
    await expect(s.auth.backend.get(Keys.userTotp('kim'))).rejects.toMatchObject({ reason: 'not_found' });
  });

  test('GIVEN `tctl users reset` WHEN it runs THEN her devices and any device being set up are gone', async () => {
    s.clock.advance(STEP);
    await s.logins.offerMfaDevice('kim', { password: 'kim-secret-pass', otpToken: code() }, '');
    await s.auth.users.resetCredentials('kim');
    expect(await s.logins.mfaDevices('kim')).toEqual([]);
    await expect(s.auth.backend.get(Keys.userMfaOffer('kim'))).rejects.toMatchObject({ reason: 'not_found' });
  });

  test('GIVEN a cluster without a second factor WHEN a device is asked for THEN it is refused and says why', async () => {
    const off = await setup('off');
    try {
      await off.auth.addUser('lee', ['lee'], ['admin'], 'test');
      await off.auth.users.setPassword('lee', 'lee-secret-pass');
      await expect(off.logins.offerMfaDevice('lee', { password: 'lee-secret-pass' }, '')).rejects.toThrow(
        'this cluster does not use second-factor devices (auth_service.authentication.second_factor is off)',
      );
    } finally {
      await off.close();
    }
  });
});
