import { X509Certificate, createHash } from 'node:crypto';
import * as tls from 'node:tls';
import { AddressInfo } from 'node:net';
import { AUTH_SERVER_NAME, caPin, generateCA, generateTlsKey, identityOf, issueCert, matchesPin, publicKeyPem, verifyIssuedBy } from '../../../runtime/tlsca';

describe('tlsca', () => {
  let ca: Awaited<ReturnType<typeof generateCA>>;
  beforeAll(async () => {
    ca = await generateCA('example.com');
  });

  it('GIVEN a new CA THEN it is a self-signed CA named after the cluster, valid for ten years', () => {
    const cert = new X509Certificate(ca.cert);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toContain('CN=example.com');
    expect(cert.subject).toContain('O=example.com');
    expect(cert.checkIssued(cert)).toBe(true);
    const years = (new Date(cert.validTo).getTime() - Date.now()) / (365 * 24 * 3600 * 1000);
    expect(years).toBeGreaterThan(9.9);
  });

  it('GIVEN an issued cert WHEN its identity is read THEN user, roles, logins and route come back', async () => {
    const key = generateTlsKey();
    const pem = await issueCert({
      ca,
      publicKey: publicKeyPem(key),
      identity: { username: 'alice', groups: ['admin', 'dev'], principals: ['root', 'alice'], routeToCluster: 'leaf' },
      ttlMs: 3600_000,
    });
    expect(identityOf(pem)).toEqual({ username: 'alice', groups: ['admin', 'dev'], principals: ['root', 'alice'], routeToCluster: 'leaf' });
    expect(() => verifyIssuedBy(pem, ca.cert)).not.toThrow();
    const other = await generateCA('other');
    expect(() => verifyIssuedBy(pem, other.cert)).toThrow(/not signed by the cluster CA/);
  });

  it('THEN the CA pin is sha256 of the SubjectPublicKeyInfo and matches only its own CA', async () => {
    const spki = new X509Certificate(ca.cert).publicKey.export({ format: 'der', type: 'spki' });
    const expected = 'sha256:' + createHash('sha256').update(spki).digest('hex');
    expect(caPin(ca.cert)).toBe(expected);
    expect(matchesPin(ca.cert, [expected])).toBe(true);
    const other = await generateCA('example.com');
    expect(matchesPin(other.cert, [expected])).toBe(false);
    expect(() => matchesPin(ca.cert, ['sha1:abcd'])).toThrow(/invalid CA pin/);
  });

  it('GIVEN server and client certs from the CA WHEN they talk mutual TLS THEN both sides verify each other', async () => {
    const serverKey = generateTlsKey();
    const serverCert = await issueCert({
      ca, publicKey: publicKeyPem(serverKey), identity: { username: 'uuid.example.com', groups: ['Auth'], principals: [] },
      dnsNames: [AUTH_SERVER_NAME, '127.0.0.1'], ttlMs: 3600_000,
    });
    const clientKey = generateTlsKey();
    const clientCert = await issueCert({ ca, publicKey: publicKeyPem(clientKey), identity: { username: 'bob', groups: ['admin'], principals: [] }, ttlMs: 3600_000 });
    const server = tls.createServer({ key: serverKey, cert: serverCert, ca: ca.cert, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' }, (s) => {
      s.end(JSON.stringify(identityOf((s.getPeerCertificate(false).raw))));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const body = await new Promise<string>((resolve, reject) => {
      const c = tls.connect({ host: '127.0.0.1', port, servername: AUTH_SERVER_NAME, key: clientKey, cert: clientCert, ca: ca.cert }, () => undefined);
      let data = '';
      c.on('data', (d) => (data += d)).on('end', () => resolve(data)).on('error', reject);
    });
    server.close();
    expect(JSON.parse(body)).toEqual({ username: 'bob', groups: ['admin'], principals: [] });
  });
});
