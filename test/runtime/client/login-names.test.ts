/**
 * `tsh login` writes the cluster name and the proxy's SSH host the proxy
 * sends into known_hosts (and `tsh config` into ssh_config), so it takes
 * only plain host names or IP addresses there, checked before anything is
 * written. The proxy here is a stand-in web API on loopback that signs a
 * real certificate for the key tsh sends, with names chosen by each test.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { login } from '../../../runtime/client/login';
import type { Prompter } from '../../../runtime/client/prompt';
import { formatAuthorizedKey, generateKeyPair, parseAuthorizedKey, publicKeyBlob, signUserCert } from '../../../runtime/sshcert';
import { tempDir } from '../../helpers/proc';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const ca = generateKeyPair('ed25519');
const noPrompts = { ask: async () => 'password' } as unknown as Prompter;

describe('tsh login: names from the proxy', () => {
  let server: http.Server;
  let port: number;
  /** What the stand-in proxy answers with. */
  let answer: { cluster: string; sshPublicAddr: string };
  let home: string;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        if (req.url === '/webapi/ping') {
          res.end(JSON.stringify({ auth: { type: 'local', second_factor: 'off' }, proxy: { ssh: { listen_addr: '0.0.0.0:3023', ssh_public_addr: answer.sshPublicAddr } } }));
          return;
        }
        const { pub_key } = JSON.parse(body) as { pub_key: string };
        const cert = signUserCert({
          caPrivateKey: ca.privateKey,
          publicKey: parseAuthorizedKey(Buffer.from(pub_key, 'base64').toString()).blob,
          username: 'alice',
          logins: ['alice'],
          ttlMs: 3600_000,
          permit: { pty: true, portForwarding: false, agentForwarding: false, x11Forwarding: false },
          roles: ['access'],
        });
        res.end(
          JSON.stringify({
            username: 'alice',
            cert: b64(formatAuthorizedKey(cert)),
            host_signers: [{ domain_name: answer.cluster, checking_keys: [b64(formatAuthorizedKey(publicKeyBlob(ca.publicKey)))] }],
          }),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });
  beforeEach(() => {
    home = tempDir('login-names-');
  });
  afterEach(() => fs.rmSync(home, { recursive: true, force: true }));

  const tshLogin = () => login({ proxy: `http://127.0.0.1:${port}`, user: 'alice', prompter: noPrompts, home });

  it('GIVEN plain names WHEN tsh login runs THEN known_hosts trusts the CA for the cluster, its hosts and the proxy host', async () => {
    answer = { cluster: 'example.com', sshPublicAddr: 'proxy.example.net:3023' };
    await tshLogin();
    expect(fs.readFileSync(path.join(home, 'known_hosts'), 'utf8')).toBe(
      `@cert-authority example.com,*.example.com,proxy.example.net ${formatAuthorizedKey(publicKeyBlob(ca.publicKey))} type=host\n`,
    );
  });

  it('GIVEN a cluster name that is a known_hosts pattern WHEN tsh login runs THEN it is refused and nothing is written', async () => {
    // GIVEN a proxy whose cluster name would make the line trust its CA for every host.
    answer = { cluster: 'example.com,*', sshPublicAddr: 'proxy.example.net:3023' };
    await expect(tshLogin()).rejects.toThrow('the cluster name the proxy sent: "example.com,*" is not a host name or IP address');
    expect(fs.readdirSync(home)).toEqual([]);
  });

  it("GIVEN an SSH public address whose host is a pattern WHEN tsh login runs THEN it is refused and nothing is written", async () => {
    answer = { cluster: 'example.com', sshPublicAddr: '*:3023' };
    await expect(tshLogin()).rejects.toThrow(`the host of the proxy's SSH address: "*" is not a host name or IP address`);
    expect(fs.readdirSync(home)).toEqual([]);
  });
});
