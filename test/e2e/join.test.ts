/**
 * Joining: a host trades a join token and its public keys for host
 * certificates, after checking the auth server's CA against the CA pin.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { register, RegisterOptions } from '../../runtime/auth/register';
import { identityOf, publicKeyPem } from '../../runtime/tlsca';
import { formatAuthorizedKey, parseCertificate } from '../../runtime/sshcert';
import { logger } from '../../runtime/utils/logger';
import { tokenId } from '../../runtime/utils/secrets';
import { startAuth, TestAuth } from '../helpers/cluster';
import { tempDir, waitFor } from '../helpers/proc';
import { AuthClient } from '../../runtime/auth/client';
import type { Identity } from '../../runtime/auth/identity';

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

  describe('during a host CA rotation', () => {
    const hostUUID = '7d3e2f4a-0000-4000-8000-000000000020';
    const client = (id: { tlsKey: string; tlsCert: string; tlsCACerts: string[] }) =>
      new AuthClient({ servers: [{ host: '127.0.0.1', port: auth.port }], credentials: { key: id.tlsKey, cert: id.tlsCert, ca: id.tlsCACerts } });
    const reissueBody = (id: Identity) => ({
      node_name: 'web-1',
      additional_principals: [],
      dns_names: [],
      public_ssh_key: Buffer.from(formatAuthorizedKey(parseCertificate(id.sshCert).publicKey)).toString('base64'),
      public_tls_key: Buffer.from(publicKeyPem(id.tlsKey)).toString('base64'),
    });
    const rotate = (phase: string) => auth.tctlOk('auth', 'rotate', '--type=host', '--manual', `--phase=${phase}`);

    afterAll(async () => {
      // back to one host CA for whatever runs next
      const state = (await auth.caStatus()).host.state;
      if (!state.startsWith('rolling back') && state.includes('mode:')) await rotate('rollback');
      if ((await auth.caStatus()).host.state.includes('mode:')) await rotate('standby');
    });

    it('GIVEN update_clients WHEN a node joins THEN only the CAs its pins name are trusted: the old pin joins, the new one alone is refused (the auth server still serves the old CA), both join', async () => {
      await rotate('init');
      await rotate('update_clients');
      const [newPin, oldPin] = /CA pin\s+(\S+)/.exec(await auth.tctlOk('status'))![1].split(',');
      expect(oldPin).toBe(pin);
      await expect(register(opts({ caPins: [newPin], hostUUID: '7d3e2f4a-0000-4000-8000-000000000021' }))).rejects.toThrow(/certificate|verify/i);
      const old = await register(opts({ caPins: [oldPin], hostUUID: '7d3e2f4a-0000-4000-8000-000000000022' }));
      expect(old.tlsCACerts).toHaveLength(2);
      await expect(register(opts({ caPins: [newPin, oldPin], hostUUID }))).resolves.toMatchObject({ role: 'Node' });
    });

    it('GIVEN a member WHEN it asks for new host certificates THEN they name its own host ID and role, from the signing key; a host ID in the request, or a user, is refused', async () => {
      const id = await register(opts({ hostUUID: '7d3e2f4a-0000-4000-8000-000000000023', caPins: [] }));
      const c = client(id);
      try {
        const packed = await c.post<{ cert: string; tls_cert: string }>('/v1/hosts/reissue', reissueBody(id));
        const cert = parseCertificate(Buffer.from(packed.cert, 'base64').toString());
        expect(cert.keyId).toBe('7d3e2f4a-0000-4000-8000-000000000023.example.com');
        expect(cert.extensions['x-teleport-role']).toBe('Node');
        expect(identityOf(Buffer.from(packed.tls_cert, 'base64').toString())).toMatchObject({ username: '7d3e2f4a-0000-4000-8000-000000000023.example.com', groups: ['Node'] });
        // from the signing key (the new one in update_clients), as the join's were
        expect(formatAuthorizedKey(cert.signatureKey)).toBe(formatAuthorizedKey(parseCertificate(id.sshCert).signatureKey));
        await expect(c.post('/v1/hosts/reissue', { ...reissueBody(id), hostID: 'someone-else' })).rejects.toMatchObject({ reason: 'bad_parameter' });
      } finally {
        c.close();
      }
      // the admin identity (tctl's) is no host: refused
      const admin = await auth.adminClient();
      try {
        await expect(admin.post('/v1/hosts/reissue', reissueBody(id))).rejects.toMatchObject({ reason: 'access_denied' });
      } finally {
        admin.close();
      }
      // a user's certificate is refused
      const dir = tempDir('reissue-');
      try {
        await auth.tctlOk('users', 'add', 'carol', 'carol');
        await auth.tctlOk('auth', 'sign', '--user=carol', '--format=tls', '-o', path.join(dir, 'carol'), '--ttl=1h');
        const read = (ext: string) => fs.readFileSync(path.join(dir, `carol.${ext}`), 'utf8');
        const user = client({ tlsKey: read('key'), tlsCert: read('crt'), tlsCACerts: id.tlsCACerts });
        try {
          await expect(user.post('/v1/hosts/reissue', reissueBody(id))).rejects.toMatchObject({ reason: 'access_denied' });
        } finally {
          user.close();
        }
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
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
