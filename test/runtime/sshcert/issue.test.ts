import {
  CLOCK_SKEW_MS,
  MAX_VALID_BEFORE,
  parseCertificate,
  publicKeyBlob,
  signHostCert,
  signUserCert,
  UserCertParams,
  USER_CERT_TTL,
  verifyCertificate,
  HostCertParams,
} from '../../../runtime/sshcert';
import { BadParameterError } from '../../../runtime/utils/errors';
import { keyPair } from './fixtures';

const NOW = new Date('2030-03-04T05:06:07Z');
const NOW_S = BigInt(NOW.getTime() / 1000);
const HOUR_MS = 3_600_000;

const userParams = (over: Partial<UserCertParams> = {}): UserCertParams => ({
  caPrivateKey: keyPair('ed25519', 'user-ca').privateKey,
  publicKey: publicKeyBlob(keyPair('ecdsa-p256', 'alice').publicKey),
  username: 'alice',
  logins: ['alice', 'root'],
  now: NOW,
  permit: { pty: false, portForwarding: false, agentForwarding: false, x11Forwarding: false },
  roles: ['admin'],
  ...over,
});

const hostParams = (over: Partial<HostCertParams> = {}): HostCertParams => ({
  caPrivateKey: keyPair('ed25519', 'host-ca').privateKey,
  publicKey: publicKeyBlob(keyPair('ed25519', 'host').publicKey),
  hostUUID: 'a1b2c3',
  nodeName: 'db-1',
  clusterName: 'example.com',
  role: 'Node',
  now: NOW,
  ...over,
});

describe('signUserCert', () => {
  test('GIVEN no TTL WHEN a user cert is issued THEN it lasts 12h from now and is backdated by one minute', () => {
    // WHEN
    const cert = parseCertificate(signUserCert(userParams()));

    // THEN
    expect(USER_CERT_TTL).toEqual({ default: 12 * HOUR_MS, min: 60_000, max: 30 * HOUR_MS });
    expect(CLOCK_SKEW_MS).toBe(60_000);
    expect(cert.validAfter).toBe(NOW_S - 60n);
    expect(cert.validBefore).toBe(NOW_S + 12n * 3600n);
  });

  test('GIVEN the user, logins and roles WHEN issued THEN key id, principals, roles JSON and no critical options follow', () => {
    // WHEN
    const cert = parseCertificate(signUserCert(userParams()));

    // THEN
    expect(cert.certType).toBe('user');
    expect(cert.keyId).toBe('alice');
    expect(cert.principals).toEqual(['alice', 'root']);
    expect(cert.criticalOptions).toEqual({});
    expect(cert.extensions).toEqual({ 'teleport-roles': '{"version":"v1","roles":["admin"]}' });
    expect(JSON.parse(cert.extensions['teleport-roles'])).toEqual({ version: 'v1', roles: ['admin'] });
    expect(cert.publicKey.equals(userParams().publicKey)).toBe(true);
  });

  test.each([
    ['pty', 'permit-pty'],
    ['portForwarding', 'permit-port-forwarding'],
    ['agentForwarding', 'permit-agent-forwarding'],
    ['x11Forwarding', 'permit-X11-forwarding'],
  ] as const)('GIVEN only %s permitted WHEN issued THEN only the %s extension is granted', (flag, ext) => {
    // GIVEN
    const permit = { pty: false, portForwarding: false, agentForwarding: false, x11Forwarding: false, [flag]: true };

    // WHEN
    const cert = parseCertificate(signUserCert(userParams({ permit })));

    // THEN
    expect(Object.keys(cert.extensions).filter((k) => k.startsWith('permit-'))).toEqual([ext]);
    expect(cert.extensions[ext]).toBe('');
  });

  test('GIVEN traits and a route to a leaf cluster WHEN issued THEN they are carried as JSON and a name', () => {
    const cert = parseCertificate(
      signUserCert(userParams({ traits: { logins: ['alice'], groups: ['ops', 'dev'] }, routeToCluster: 'leaf.example.com' })),
    );
    expect(JSON.parse(cert.extensions['teleport-traits'])).toEqual({ logins: ['alice'], groups: ['ops', 'dev'] });
    expect(cert.extensions['teleport-route-to-cluster']).toBe('leaf.example.com');
  });

  test('GIVEN TTLs at and beyond the bounds WHEN issued THEN 1m and 30h are accepted and anything outside is BadParameterError', () => {
    // WHEN
    const min = parseCertificate(signUserCert(userParams({ ttlMs: 60_000 })));
    const max = parseCertificate(signUserCert(userParams({ ttlMs: 30 * HOUR_MS })));

    // THEN
    expect(min.validBefore).toBe(NOW_S + 60n);
    expect(max.validBefore).toBe(NOW_S + 30n * 3600n);
    for (const ttlMs of [59_999, 30 * HOUR_MS + 1, 0, -1, Number.NaN]) {
      expect(() => signUserCert(userParams({ ttlMs }))).toThrow(BadParameterError);
    }
    expect(() => signUserCert(userParams({ ttlMs: 31 * HOUR_MS }))).toThrow(/outside 60000 ms \(1m\) \.\. 108000000 ms \(30h\)/);
  });

  test('GIVEN no username or no logins WHEN issued THEN BadParameterError', () => {
    expect(() => signUserCert(userParams({ username: '' }))).toThrow(/username is required/);
    expect(() => signUserCert(userParams({ logins: [] }))).toThrow(/needs at least one login/);
    expect(() => signUserCert(userParams({ logins: ['ok', ''] }))).toThrow(/login #2 of "alice" is required/);
  });

  test('GIVEN two certs for the same request WHEN issued THEN their serials differ', () => {
    const a = parseCertificate(signUserCert(userParams()));
    const b = parseCertificate(signUserCert(userParams()));
    expect(a.serial).not.toBe(b.serial);
  });

  test('GIVEN an issued user cert WHEN verified for one of its logins within its TTL THEN accepted; one second past THEN refused', () => {
    // GIVEN
    const cert = parseCertificate(signUserCert(userParams({ ttlMs: HOUR_MS })));
    const opts = { trustedCAs: [publicKeyBlob(keyPair('ed25519', 'user-ca').publicKey)], certType: 'user' as const, principal: 'root' };

    // WHEN / THEN
    expect(() => verifyCertificate(cert, { ...opts, now: new Date(NOW.getTime() - 30_000) })).not.toThrow();
    expect(() => verifyCertificate(cert, { ...opts, now: new Date(NOW.getTime() + HOUR_MS) })).toThrow(/has expired/);
  });
});

describe('signHostCert', () => {
  test('GIVEN a node with a name and extra principals WHEN issued THEN principals are uuid.cluster, uuid, name.cluster, name, extras, de-duplicated', () => {
    // WHEN
    const cert = parseCertificate(
      signHostCert(hostParams({ additionalPrincipals: ['10.0.0.5', 'db-1', 'db.internal', 'a1b2c3', '10.0.0.5'] })),
    );

    // THEN
    expect(cert.principals).toEqual(['a1b2c3.example.com', 'a1b2c3', 'db-1.example.com', 'db-1', '10.0.0.5', 'db.internal']);
    expect(cert.keyId).toBe('a1b2c3.example.com');
    expect(cert.certType).toBe('host');
    expect(cert.extensions).toEqual({ 'x-teleport-role': 'Node', 'x-teleport-authority': 'example.com' });
    expect(cert.criticalOptions).toEqual({});
  });

  test('GIVEN no node name WHEN issued THEN only the uuid principals (and extras) are listed', () => {
    const cert = parseCertificate(signHostCert(hostParams({ nodeName: undefined, role: 'Proxy', additionalPrincipals: ['proxy.example.com'] })));
    expect(cert.principals).toEqual(['a1b2c3.example.com', 'a1b2c3', 'proxy.example.com']);
    expect(cert.extensions['x-teleport-role']).toBe('Proxy');
  });

  test('GIVEN the Admin role WHEN issued THEN the only principal is the host UUID', () => {
    const cert = parseCertificate(signHostCert(hostParams({ role: 'Admin', additionalPrincipals: ['x'] })));
    expect(cert.principals).toEqual(['a1b2c3']);
  });

  test('GIVEN no TTL or TTL 0 WHEN issued THEN it never expires and is backdated by one minute; a TTL sets the end', () => {
    for (const ttlMs of [undefined, 0]) {
      const cert = parseCertificate(signHostCert(hostParams({ ttlMs })));
      expect(cert.validAfter).toBe(NOW_S - 60n);
      expect(cert.validBefore).toBe(MAX_VALID_BEFORE);
    }
    expect(parseCertificate(signHostCert(hostParams({ ttlMs: HOUR_MS }))).validBefore).toBe(NOW_S + 3600n);
  });

  test('GIVEN missing identity or a negative TTL WHEN issued THEN BadParameterError', () => {
    expect(() => signHostCert(hostParams({ hostUUID: '' }))).toThrow(/hostUUID is required/);
    expect(() => signHostCert(hostParams({ clusterName: '' }))).toThrow(/clusterName is required/);
    expect(() => signHostCert(hostParams({ role: '' }))).toThrow(/role is required/);
    expect(() => signHostCert(hostParams({ ttlMs: -1 }))).toThrow(/TTL must be >= 0/);
  });

  test('GIVEN an issued host cert WHEN verified as a host for its node name THEN accepted; as a user cert THEN refused', () => {
    const cert = parseCertificate(signHostCert(hostParams()));
    const opts = { trustedCAs: [publicKeyBlob(keyPair('ed25519', 'host-ca').publicKey)], now: NOW };
    expect(() => verifyCertificate(cert, { ...opts, certType: 'host', principal: 'db-1.example.com' })).not.toThrow();
    expect(() => verifyCertificate(cert, { ...opts, certType: 'user', principal: 'db-1' })).toThrow(/expected a user certificate/);
  });
});
