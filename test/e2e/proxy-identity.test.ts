/**
 * The proxy's host certificate from a local auth service: it carries the
 * loopback names (`localhost`, `127.0.0.1`, `::1`) as Teleport's does, so a
 * client on the proxy's host checks it under them (OpenSSH through
 * `tsh config` after `tsh login --proxy=localhost`); and when the
 * configuration asks for a name the stored certificate lacks (a new
 * public_addr), the next start issues a new one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IdentityStore } from '../../runtime/auth/identity';
import { openBackend } from '../../runtime/backend';
import { parseCertificate } from '../../runtime/sshcert';
import { createAuth, TestAuth } from '../helpers/cluster';

describe('the proxy host certificate of a local auth service', () => {
  let c: TestAuth;

  beforeAll(async () => {
    c = await createAuth({ proxy: {} });
  });
  afterAll(async () => {
    await c?.cleanup();
  });

  /** The principals of the proxy's stored SSH host certificate. */
  const proxyPrincipals = async (): Promise<string[]> => {
    const proc = await openBackend({ type: 'sqlite', path: path.join(c.dataDir, 'proc', 'sqlite.db') });
    try {
      return parseCertificate((await new IdentityStore(proc).load('Proxy')).sshCert).principals;
    } finally {
      await proc.close();
    }
  };

  it('GIVEN a new cluster THEN the proxy certificate has the loopback names; GIVEN a new public_addr and a restart THEN it is issued again with it', async () => {
    // GIVEN a new cluster with a proxy.
    c.start();
    await c.ready();
    // THEN its certificate names the proxy by its node name and the loopback names, not yet by a public address.
    const first = await proxyPrincipals();
    expect(first).toEqual(expect.arrayContaining(['test-auth.example.com', 'test-auth', 'localhost', '127.0.0.1', '::1']));
    expect(first).not.toContain('proxy.example.test');

    // WHEN the config gains a public_addr for the proxy and teleport starts again.
    expect(await c.daemon!.stop()).toBe(0);
    const text = fs.readFileSync(c.configPath, 'utf8');
    fs.writeFileSync(c.configPath, text.replace(/^proxy_service:\n {2}enabled: yes\n/m, 'proxy_service:\n  enabled: yes\n  public_addr: proxy.example.test:3080\n'));
    c.start();
    await c.ready();

    // THEN the proxy has a new certificate that names it too, and the log says why.
    expect(await proxyPrincipals()).toEqual(expect.arrayContaining(['proxy.example.test', 'localhost', '127.0.0.1', '::1']));
    expect(c.daemon!.stderr).toMatch(/issuing this host a new certificate with the names the configuration asks for.*"principals":\["proxy\.example\.test"\]/);
  });
});
