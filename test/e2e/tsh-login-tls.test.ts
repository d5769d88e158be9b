/**
 * `tsh login` against a proxy with the self-signed certificate `teleport
 * start` makes: without `--insecure` it refuses, and says the two ways on
 * (`--insecure`, or trusting the certificate through NODE_EXTRA_CA_CERTS);
 * the second of them, as the error and the printed next steps put it, works.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startCluster, TestAuth } from '../helpers/cluster';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';

describe('tsh login and the self-signed proxy certificate', () => {
  let c: TestAuth;
  let alice: TshUser;
  const proxyArg = () => `--proxy=localhost:${c.proxyPorts!.web},${c.proxyPorts!.ssh}`;

  beforeAll(async () => {
    // GIVEN a proxy serving HTTPS with the self-signed certificate it made in its data dir.
    c = await startCluster({ proxy: {} });
    alice = await TshUser.signUp(c, 'alice', [LOGIN]);
  });
  afterAll(async () => {
    alice?.cleanup();
    await c?.cleanup();
  });

  it('GIVEN no --insecure WHEN tsh login runs THEN it refuses before asking anything, saying to add --insecure or to trust the certificate', async () => {
    const r = await alice.tsh(['login', proxyArg(), '--user=alice'], `${alice.password}\n`);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `ERROR: the proxy's HTTPS certificate at https://localhost:${c.proxyPorts!.web} is not trusted (self-signed certificate). ` +
        'For the self-signed certificate of a quickstart proxy, add --insecure (the certificate is then not checked), ' +
        "or have tsh trust it: run it with NODE_EXTRA_CA_CERTS=<the proxy's data_dir>/webproxy_cert.pem (teleport start prints the path). " +
        "For a proxy of your own, give it a certificate from a CA this machine trusts (https_keypairs), or name that CA's file in NODE_EXTRA_CA_CERTS\n",
    );
    expect(fs.existsSync(path.join(alice.home, '.tsh'))).toBe(false);
  });

  it('GIVEN NODE_EXTRA_CA_CERTS naming the proxy certificate WHEN tsh login runs without --insecure THEN it checks the certificate and logs in', async () => {
    const r = await alice.tsh(['login', proxyArg(), '--user=alice'], `${alice.password}\n${alice.nextCode()}\n`, {
      NODE_EXTRA_CA_CERTS: path.join(c.dataDir, 'webproxy_cert.pem'),
    });
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: expect.stringContaining('Logged in as: alice') });
    // THEN the profile records a checked login (no insecure flag).
    expect(fs.readFileSync(path.join(alice.home, '.tsh', 'localhost.yaml'), 'utf8')).not.toContain('insecure');
  });
});
