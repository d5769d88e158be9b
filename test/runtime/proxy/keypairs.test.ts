/**
 * The web proxy's `https_keypairs`: every pair is served, chosen by the TLS
 * server name the client asks for (SNI), the first pair by default; the
 * server's protocol and cipher settings hold whichever pair is chosen. Real
 * TLS handshakes on loopback.
 */
import * as fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { loadKeyPairs, type KeyPairFiles } from '../../../runtime/proxy/keypairs';
import { selfSignedServerCert } from '../../../runtime/tlsca';
import { tempDir } from '../../helpers/proc';

describe('web proxy key pairs (SNI)', () => {
  let dir: string;
  const pair: Record<string, KeyPairFiles> = {};
  const servers: tls.Server[] = [];

  beforeAll(async () => {
    dir = tempDir('keypairs-');
    const names: Record<string, string[]> = {
      main: ['proxy.example.com'],
      wild: ['*.apps.example.com'],
      exact: ['one.apps.example.com'],
    };
    for (const [id, dns] of Object.entries(names)) {
      const kp = await selfSignedServerCert(dns);
      pair[id] = { keyFile: path.join(dir, `${id}-key.pem`), certFile: path.join(dir, `${id}-cert.pem`) };
      fs.writeFileSync(pair[id].keyFile, kp.key);
      fs.writeFileSync(pair[id].certFile, kp.cert);
    }
  });
  afterAll(async () => {
    for (const s of servers) await new Promise((r) => s.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function serve(pairs: KeyPairFiles[], extra: tls.TlsOptions = {}): Promise<number> {
    const server = tls.createServer({ ...loadKeyPairs(pairs), minVersion: 'TLSv1.2', ...extra }, (s) => s.end());
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return (server.address() as AddressInfo).port;
  }

  /** The DNS names of the certificate the server presents for `servername` (undefined: no SNI). */
  function presented(port: number, servername?: string, opts: tls.ConnectionOptions = {}): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...(servername ? { servername } : {}), ...opts }, () => {
        resolve(s.getPeerX509Certificate()!.subjectAltName!);
        s.destroy();
      });
      s.on('error', reject);
    });
  }

  it('GIVEN three pairs WHEN clients ask for names THEN each gets the pair that names it, exact before wildcard, else the first', async () => {
    const port = await serve([pair.main, pair.wild, pair.exact]);
    expect(await presented(port, 'proxy.example.com')).toBe('DNS:proxy.example.com');
    expect(await presented(port, 'two.apps.example.com')).toBe('DNS:*.apps.example.com');
    expect(await presented(port, 'one.apps.example.com')).toBe('DNS:one.apps.example.com');
    // a wildcard covers one label only
    expect(await presented(port, 'a.b.apps.example.com')).toBe('DNS:proxy.example.com');
    expect(await presented(port, 'unknown.example.net')).toBe('DNS:proxy.example.com');
    expect(await presented(port)).toBe('DNS:proxy.example.com');
  });

  it('GIVEN one pair WHEN loaded THEN it is served without SNI selection', () => {
    expect(loadKeyPairs([pair.main])).toEqual({ key: fs.readFileSync(pair.main.keyFile, 'utf8'), cert: fs.readFileSync(pair.main.certFile, 'utf8') });
  });

  it("GIVEN the server's TLS settings WHEN SNI picks another pair THEN they still hold", async () => {
    const port = await serve([pair.main, pair.wild], { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384' });
    expect(await presented(port, 'x.apps.example.com', { ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384' })).toBe('DNS:*.apps.example.com');
    await expect(presented(port, 'x.apps.example.com', { ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256', maxVersion: 'TLSv1.2' })).rejects.toThrow(
      /handshake failure/i,
    );
    await expect(presented(port, 'x.apps.example.com', { minVersion: 'TLSv1.3' })).rejects.toThrow(/protocol version/i);
  });

  it('GIVEN a missing file or a key that is not the certificate\'s WHEN loaded THEN the error names the files', () => {
    const missing = path.join(dir, 'nope.pem');
    expect(() => loadKeyPairs([pair.main, { keyFile: missing, certFile: pair.wild.certFile }])).toThrow(`https_keypairs: cannot read the key_file "${missing}"`);
    expect(() => loadKeyPairs([{ keyFile: pair.main.keyFile, certFile: pair.wild.certFile }])).toThrow(
      `https_keypairs: the key_file "${pair.main.keyFile}" does not match the cert_file "${pair.wild.certFile}" (the certificate is for another key)`,
    );
    // a certificate given as the key, and a key given as the certificate
    expect(() => loadKeyPairs([{ keyFile: pair.main.certFile, certFile: pair.main.certFile }])).toThrow(`https_keypairs: the key_file "${pair.main.certFile}" is not a PEM private key`);
    expect(() => loadKeyPairs([{ keyFile: pair.main.keyFile, certFile: pair.main.keyFile }])).toThrow(`https_keypairs: the cert_file "${pair.main.keyFile}" is not a PEM certificate`);
    expect(() => loadKeyPairs([{ keyFile: dir, certFile: pair.main.certFile }])).toThrow(`https_keypairs: the key_file "${dir}" is not a file`);
  });
});
