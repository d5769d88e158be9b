/**
 * Joining: a host trades a join token and its public keys for host
 * certificates, after checking the auth server's CA against the CA pin.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { register, RegisterOptions } from '../../runtime/auth/register';
import { identityOf } from '../../runtime/tlsca';
import { parseCertificate } from '../../runtime/sshcert';
import { logger } from '../../runtime/utils/logger';
import { tokenId } from '../../runtime/utils/secrets';
import { startAuth, TestAuth } from '../helpers/cluster';
import { waitFor } from '../helpers/proc';

const PIN_RE = /CA pin\s+(sha256:[0-9a-f]{64})/;

describe('joining the cluster with a token', () => {
  let auth: TestAuth;
  let pin: string;
  const opts = (o: Partial<RegisterOptions>): RegisterOptions => ({
    servers: [{ host: '127.0.0.1', port: auth.port }],
    token: 'static-node-token-1',
    caPins: [pin],
    role: 'Node',
    hostUUID: '7d3e2f4a-0000-4000-8000-000000000001',
    nodeName: 'web-1',
    additionalPrincipals: ['10.1.2.3'],
    dnsNames: [],
    log: logger('test'),
    ...o,
  });
  const auditEvents = () =>
    fs
      .readdirSync(path.join(auth.dataDir, 'log'))
      .filter((f) => f.endsWith('.log'))
      .flatMap((f) => fs.readFileSync(path.join(auth.dataDir, 'log', f), 'utf8').split('\n').filter(Boolean))
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  beforeAll(async () => {
    auth = await startAuth({ tokens: ['node:static-node-token-1', 'proxy:static-proxy-token-1'] });
    pin = PIN_RE.exec(await auth.tctlOk('status'))![1];
  });
  afterAll(() => auth?.cleanup());

  it('GIVEN a static token and the right pin WHEN a node joins THEN it gets host certs naming it', async () => {
    const id = await register(opts({}));
    const cert = parseCertificate(id.sshCert);
    expect(cert.certType).toBe('host');
    expect(cert.principals).toEqual([
      '7d3e2f4a-0000-4000-8000-000000000001.example.com',
      '7d3e2f4a-0000-4000-8000-000000000001',
      'web-1.example.com',
      'web-1',
      '10.1.2.3',
    ]);
    expect(cert.extensions).toMatchObject({ 'x-teleport-role': 'Node', 'x-teleport-authority': 'example.com' });
    expect(identityOf(id.tlsCert)).toMatchObject({ username: '7d3e2f4a-0000-4000-8000-000000000001.example.com', groups: ['Node'] });
    expect(id.clusterName).toBe('example.com');
    expect(auditEvents()).toContainEqual(expect.objectContaining({ event: 'instance.join', code: 'TJ001I', node_name: 'web-1' }));
  });

  it('GIVEN a dynamic token from tctl nodes add THEN it joins until the token is deleted', async () => {
    const out = await auth.tctlOk('nodes', 'add', '--ttl', '5m');
    const token = /The invite token: ([0-9a-f]{32})/.exec(out)![1];
    expect(out).toContain(`--ca-pin=${pin}`);
    await expect(register(opts({ token, hostUUID: '7d3e2f4a-0000-4000-8000-000000000002' }))).resolves.toMatchObject({ role: 'Node' });
    expect(await auth.tctlOk('tokens', 'del', token)).toBe(`Token ${tokenId(token)} has been deleted\n`);
    await expect(register(opts({ token, hostUUID: '7d3e2f4a-0000-4000-8000-000000000003' }))).rejects.toThrow(/invalid token/);
  });

  it('GIVEN a wrong CA pin WHEN a node joins THEN it is refused before the token is sent', async () => {
    const wrong = 'sha256:' + '0'.repeat(64);
    const hostUUID = '7d3e2f4a-0000-4000-8000-000000000004';
    await expect(register(opts({ caPins: [wrong], hostUUID }))).rejects.toThrow(/does not match the CA pin/);
    expect(auditEvents().filter((e) => e.host_id === hostUUID)).toEqual([]);
  });

  it('GIVEN a bad token, a token for another role, or an expired token THEN joining is refused and audited', async () => {
    await expect(register(opts({ token: 'not-a-real-token', hostUUID: '7d3e2f4a-0000-4000-8000-000000000005' }))).rejects.toMatchObject({ reason: 'access_denied' });
    await expect(register(opts({ token: 'static-proxy-token-1', hostUUID: '7d3e2f4a-0000-4000-8000-000000000006' }))).rejects.toThrow(/invalid token/);
    const out = await auth.tctlOk('tokens', 'add', '--type=node', '--ttl=1s');
    const token = /The invite token: ([0-9a-f]{32})/.exec(out)![1];
    await waitFor('the token to expire', async () => !(await auth.tctlOk('tokens', 'ls')).includes(tokenId(token)));
    await expect(register(opts({ token, hostUUID: '7d3e2f4a-0000-4000-8000-000000000007' }))).rejects.toThrow(/invalid token/);
    const failures = auditEvents().filter((e) => e.event === 'instance.join' && e.code === 'TJ001E');
    expect(failures.map((e) => e.host_id)).toEqual(
      expect.arrayContaining(['7d3e2f4a-0000-4000-8000-000000000005', '7d3e2f4a-0000-4000-8000-000000000006', '7d3e2f4a-0000-4000-8000-000000000007']),
    );
    expect(JSON.stringify(failures)).not.toContain('not-a-real-token');
  });

  it('GIVEN a flood of bad join attempts from one address THEN they are rate limited', async () => {
    const attempts = await Promise.allSettled(
      Array.from({ length: 40 }, (_, i) => register(opts({ token: `guess-${i}`, hostUUID: `7d3e2f4a-0000-4000-8000-1000000000${String(i).padStart(2, '0')}` }))),
    );
    const reasons = attempts.map((a) => (a.status === 'rejected' ? (a.reason as { reason?: string }).reason : 'ok'));
    expect(reasons).not.toContain('ok');
    expect(reasons).toContain('limit_exceeded');
  });
});
