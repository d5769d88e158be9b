/**
 * The rotation state machine on a CA resource: which keys sign and which are
 * trusted in each phase, the transitions allowed, the auto schedule, and the
 * keys a completed rotation or rollback leaves to delete.
 */
import type { CertAuthority } from '../../../runtime/auth/resources';
import { checkGracePeriod, describeRotation, dueStep, nextDue, phaseOf, rotate, type RotationPhase } from '../../../runtime/auth/rotation';

const T0 = new Date('2026-12-06T10:00:00Z');
const MIN = 60_000;

function ca(): CertAuthority {
  return {
    kind: 'cert_authority',
    version: 'v2',
    sub_kind: 'user',
    metadata: { name: 'example.com', namespace: 'default' },
    spec: {
      type: 'user',
      cluster_name: 'example.com',
      checking_keys: ['old-pub'],
      signing_keys: ['old-ref'],
      tls_key_pairs: [{ cert: 'old-cert', key: 'old-tls-ref' }],
      signing_alg: 'ssh-ed25519',
      roles: [],
      rotation: { state: 'standby' },
    },
  };
}
const fresh = { checkingKey: 'new-pub', signingKey: 'new-ref', tlsKeyPair: { cert: 'new-cert', key: 'new-tls-ref' } };
const keys = (c: CertAuthority) => [c.spec.signing_keys, c.spec.checking_keys, c.spec.tls_key_pairs.map((p) => p.cert)];
const step = (c: CertAuthority, to: RotationPhase, now = T0) => rotate(c, to, { now, mode: 'manual', gracePeriodMs: 30 * MIN, ...(to === 'init' ? { fresh } : {}) });

describe('CA rotation phases', () => {
  it('GIVEN a manual rotation WHEN it goes through every phase THEN the old keys sign until update_clients, both are trusted until standby, and then only the new ones remain', () => {
    const init = step(ca(), 'init');
    expect(keys(init.ca)).toEqual([
      ['old-ref', 'new-ref'],
      ['old-pub', 'new-pub'],
      ['old-cert', 'new-cert'],
    ]);
    expect(init.ca.spec.rotation).toMatchObject({ state: 'in_progress', phase: 'init', mode: 'manual', started: T0.toISOString(), grace_period: 30 * MIN * 1e6 });
    const clients = step(init.ca, 'update_clients');
    expect(keys(clients.ca)).toEqual([
      ['new-ref', 'old-ref'],
      ['new-pub', 'old-pub'],
      ['new-cert', 'old-cert'],
    ]);
    const servers = step(clients.ca, 'update_servers');
    expect(keys(servers.ca)).toEqual(keys(clients.ca));
    expect(phaseOf(servers.ca)).toBe('update_servers');
    const done = step(servers.ca, 'standby', new Date(T0.getTime() + MIN));
    expect(keys(done.ca)).toEqual([['new-ref'], ['new-pub'], ['new-cert']]);
    expect(done.discarded).toEqual(['old-ref', 'old-tls-ref']);
    expect(done.ca.spec.rotation).toEqual({ state: 'standby', phase: 'standby', last_rotated: new Date(T0.getTime() + MIN).toISOString(), current_id: init.ca.spec.rotation.current_id });
    expect(describeRotation(done.ca)).toBe(`rotated ${new Date(T0.getTime() + MIN).toISOString()}`);
  });

  it.each(['init', 'update_clients', 'update_servers'] as const)('GIVEN a rotation in %s WHEN rolled back and completed THEN the old keys sign again at once, both stay trusted until standby, and then only the old ones remain', (from) => {
    let c = step(ca(), 'init').ca;
    if (from !== 'init') c = step(c, 'update_clients').ca;
    if (from === 'update_servers') c = step(c, 'update_servers').ca;
    const back = step(c, 'rollback');
    expect(keys(back.ca)).toEqual([
      ['old-ref', 'new-ref'],
      ['old-pub', 'new-pub'],
      ['old-cert', 'new-cert'],
    ]);
    expect(describeRotation(back.ca)).toMatch(/^rolling back \(mode: manual, started: /);
    const done = step(back.ca, 'standby');
    expect(keys(done.ca)).toEqual([['old-ref'], ['old-pub'], ['old-cert']]);
    expect(done.discarded).toEqual(['new-ref', 'new-tls-ref']);
    expect(done.ca.spec.rotation.last_rotated).toBeUndefined();
  });

  it('GIVEN each phase THEN only the next phases Teleport allows are taken, and a refusal says which are', () => {
    expect(() => step(ca(), 'update_clients')).toThrow('the user CA is in phase standby: it can go to init, not to update_clients (start a rotation with --phase=init, or without --manual)');
    const init = step(ca(), 'init').ca;
    expect(() => step(init, 'update_servers')).toThrow('it can go to update_clients or rollback, not to update_servers');
    expect(() => step(init, 'init')).toThrow(/not to init/);
    const back = step(init, 'rollback').ca;
    expect(() => step(back, 'update_clients')).toThrow('it can go to standby, not to update_clients');
    expect(() => rotate(ca(), 'init', { now: T0, mode: 'manual', gracePeriodMs: 0 })).toThrow('starting a rotation needs new keys');
  });

  it('GIVEN an auto rotation THEN its schedule spaces the phases by thirds of the grace period, dueStep follows it, and a rollback turns it manual', () => {
    const init = rotate(ca(), 'init', { now: T0, mode: 'auto', gracePeriodMs: 30 * MIN, fresh }).ca;
    const at = (m: number) => new Date(T0.getTime() + m * MIN);
    expect(init.spec.rotation.schedule).toEqual({ update_clients: at(10).toISOString(), update_servers: at(20).toISOString(), standby: at(30).toISOString() });
    expect(describeRotation(init)).toBe(`initialized (mode: auto, started: ${T0.toISOString()}, ending: ${at(30).toISOString()})`);
    expect(dueStep(init, at(9.99))).toBeUndefined();
    expect(dueStep(init, at(10))).toBe('update_clients');
    expect(nextDue(init)).toEqual(at(10));
    const clients = rotate(init, 'update_clients', { now: at(10), mode: 'auto', gracePeriodMs: 0 }).ca;
    expect(dueStep(clients, at(20))).toBe('update_servers');
    const servers = rotate(clients, 'update_servers', { now: at(20), mode: 'auto', gracePeriodMs: 0 }).ca;
    expect(dueStep(servers, at(29))).toBeUndefined();
    expect(dueStep(servers, at(30))).toBe('standby');
    const back = rotate(servers, 'rollback', { now: at(25), mode: 'manual', gracePeriodMs: 0 }).ca;
    expect(back.spec.rotation.mode).toBe('manual');
    expect(back.spec.rotation.schedule).toBeUndefined();
    expect(dueStep(back, at(60))).toBeUndefined();
    expect(nextDue(back)).toBeUndefined();
  });

  it('GIVEN grace periods THEN 0 to 720h are taken for manual rotations, and an auto one needs at least 3s', () => {
    expect(() => checkGracePeriod('manual', 0)).not.toThrow();
    expect(() => checkGracePeriod('manual', 721 * 3600_000)).toThrow('--grace-period must be between 0s and 720h');
    expect(() => checkGracePeriod('manual', -1)).toThrow(/between/);
    expect(() => checkGracePeriod('auto', 2_999)).toThrow('an automatic rotation needs a --grace-period of at least 3s');
    expect(() => checkGracePeriod('auto', 3_000)).not.toThrow();
  });
});
