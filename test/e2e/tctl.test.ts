/**
 * tctl as an admin uses it: users, tokens, nodes, resources and status,
 * against a running auth server.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AuthClient } from '../../runtime/auth/client';
import { register } from '../../runtime/auth/register';
import { logger } from '../../runtime/utils/logger';
import { tokenId } from '../../runtime/utils/secrets';
import { startAuth, TestAuth } from '../helpers/cluster';

describe('tctl', () => {
  let auth: TestAuth;
  const file = (name: string, text: string) => {
    const p = path.join(auth.dir, name);
    fs.writeFileSync(p, text);
    return p;
  };

  beforeAll(async () => {
    auth = await startAuth({ tokens: ['node:static-token-for-tctl'] });
  });
  afterAll(() => auth?.cleanup());

  it('GIVEN users add WHEN listing and removing THEN the user comes and goes', async () => {
    const out = await auth.tctlOk('users', 'add', 'joe', 'joe,root');
    expect(out).toMatch(/^Signup token has been created and is valid for 1h0m0s\. Share this URL with the user:\nhttps:\/\/[^/]+:3080\/web\/newuser\/[0-9a-f]{32}\n/);
    expect(await auth.tctlOk('users', 'ls')).toMatch(/^User\s+Allowed Logins\n----\s+--------------\n(.*\n)*joe\s+joe,root$/m);
    const dup = await auth.tctl('users', 'add', 'joe');
    expect(dup.code).toBe(1);
    expect(dup.stderr).toBe('ERROR: user "joe" already exists; `tctl users reset joe` gives them a new sign-up link\n');
    const token = /\/web\/newuser\/([0-9a-f]{32})/.exec(out)![1];
    expect(await auth.tctlOk('tokens', 'ls')).toMatch(new RegExp(`^${tokenId(token)}\\s+Signup\\s`, 'm'));
    expect(await auth.tctlOk('users', 'rm', 'joe')).toBe('User "joe" has been deleted\n');
    expect(await auth.tctlOk('users', 'ls')).not.toMatch(/^joe/m);
    expect(await auth.tctlOk('tokens', 'ls')).not.toMatch(/Signup/);
  });

  it('GIVEN audit events WHEN tctl events ls filters by type and time THEN only those events are listed', async () => {
    await auth.tctlOk('users', 'add', 'evt-user', 'root');
    const text = await auth.tctlOk('events', 'ls', '--type=user.create', '--from=1h');
    expect(text).toMatch(/^Time\s+Event\s+Code\s+User\s+Details$/m);
    expect(text).toMatch(/^\S+\s+user\.create\s+T1002I\s+\S+\s+.*"name":"evt-user"/m);
    expect(text).not.toMatch(/reset_password_token\.create/);
    const json = JSON.parse(await auth.tctlOk('events', 'ls', '--type=user.create', '--type=reset_password_token.create', '--format=json')) as { event: string; name?: string }[];
    expect(json.filter((e) => e.name === 'evt-user').map((e) => e.event).sort()).toEqual(['reset_password_token.create', 'user.create']);
    const future = await auth.tctlOk('events', 'ls', `--from=${new Date(Date.now() + 3600_000).toISOString()}`, `--to=${new Date(Date.now() + 7200_000).toISOString()}`);
    expect(future.trim().split('\n')).toHaveLength(2);
    const bad = await auth.tctl('events', 'ls', '--from=yesterday');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--from: "yesterday" is neither an RFC 3339 time nor a duration/);
  });

  it('GIVEN events of several users WHEN tctl events ls --user THEN only that user\'s are listed; a reversed range or a limit out of range is refused saying so', async () => {
    // GIVEN alice's and bob's events on a past day (in the auth server's day file)
    const day = '2020-02-03';
    const ev = (n: number, event: string, user: string, code: string) => ({ event, user, code, uid: `00000000-0000-4000-8000-00000000000${n}`, time: `${day}T08:00:0${n}Z` });
    const planted = [ev(1, 'user.login', 'alice', 'T1000I'), ev(2, 'user.login', 'bob', 'T1000I'), ev(3, 'exec', 'alice', 'T3002I')];
    fs.writeFileSync(path.join(auth.dataDir, 'log', `${day}.00:00:00.log`), planted.map((e) => JSON.stringify(e) + '\n').join(''));
    const range = [`--from=${day}T00:00:00Z`, `--to=${day}T23:59:59Z`];
    // WHEN listing alice's, then bob's logins
    const alice = JSON.parse(await auth.tctlOk('events', 'ls', ...range, '--user=alice', '--format=json')) as { event: string; user: string }[];
    const bob = await auth.tctlOk('events', 'ls', ...range, '--user=bob', '--type=user.login');
    // THEN each lists that user's events only
    expect(alice.map((e) => [e.event, e.user])).toEqual([
      ['user.login', 'alice'],
      ['exec', 'alice'],
    ]);
    expect(bob.trim().split('\n').slice(2)).toEqual([expect.stringMatching(/^2020-02-03T08:00:02Z\s+user\.login\s+T1000I\s+bob\s/)]);
    // AND a range whose start is after its end, or a limit over the maximum, is refused with the reason
    const reversed = await auth.tctl('events', 'ls', `--from=${day}T12:00:00Z`, `--to=${day}T11:00:00Z`);
    expect([reversed.code, reversed.stderr]).toEqual([1, expect.stringMatching(/from \(2020-02-03T12:00:00.000Z\) is after to \(2020-02-03T11:00:00.000Z\)/)]);
    const tooMany = await auth.tctl('events', 'ls', '--limit=20000');
    expect([tooMany.code, tooMany.stderr]).toEqual([1, expect.stringMatching(/limit must be between 1 and 10000/)]);
  });

  it('GIVEN tokens add with a value THEN tokens ls shows its ID (never the value) with its type and expiry, and del revokes it', async () => {
    // GIVEN a token with a chosen value, and a generated one
    await auth.tctlOk('tokens', 'add', '--type=node,proxy', '--value=my-secret-value-1', '--ttl=2h');
    const generated = /The invite token: ([0-9a-f]{32})/.exec(await auth.tctlOk('tokens', 'add', '--type=proxy'))![1];
    // WHEN listing
    const ls = await auth.tctlOk('tokens', 'ls');
    const json = await auth.tctlOk('tokens', 'ls', '--format=json');
    // THEN each token is shown by its ID, static ones included, and no token value is printed
    expect(ls).toMatch(/^Token ID\s+Type\s+Expiry Time \(UTC\)$/m);
    expect(ls).toMatch(new RegExp(`^${tokenId('static-token-for-tctl')}\\s+Node\\s+never$`, 'm'));
    expect(ls).toMatch(new RegExp(`^${tokenId('my-secret-value-1')}\\s+Node,Proxy\\s+\\w{3}, \\d{2} \\w{3} \\d{4} [\\d:]{8} UTC \\((1h59m\\d+s|2h0m0s)\\)$`, 'm'));
    expect(ls).toMatch(new RegExp(`^${tokenId(generated)}\\s+Proxy\\s`, 'm'));
    for (const secret of ['static-token-for-tctl', 'my-secret-value-1', generated]) {
      expect(ls).not.toContain(secret);
      expect(json).not.toContain(secret);
    }
    expect(JSON.parse(json)).toContainEqual({ id: tokenId('my-secret-value-1'), type: 'Node,Proxy', expires: expect.any(String) });
    // WHEN one is deleted by its value and the other by its ID
    expect(await auth.tctlOk('tokens', 'del', 'my-secret-value-1')).toBe(`Token ${tokenId('my-secret-value-1')} has been deleted\n`);
    expect(await auth.tctlOk('tokens', 'rm', tokenId(generated))).toBe(`Token ${tokenId(generated)} has been deleted\n`);
    // THEN both are gone, and deleting again says so
    const after = await auth.tctlOk('tokens', 'ls');
    expect(after).not.toContain(tokenId('my-secret-value-1'));
    expect(after).not.toContain(tokenId(generated));
    expect((await auth.tctl('tokens', 'rm', tokenId(generated))).stderr).toBe('ERROR: token not found\n');
    // AND static tokens cannot be deleted, by value or by ID
    for (const name of ['static-token-for-tctl', tokenId('static-token-for-tctl')]) {
      const r = await auth.tctl('tokens', 'rm', name);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/static tokens .* cannot be deleted/);
    }
  });

  it('GIVEN a joined node that heartbeats THEN nodes ls shows its name, UUID, address and labels', async () => {
    const id = await register({
      servers: [{ host: '127.0.0.1', port: auth.port }], token: 'static-token-for-tctl', caPins: [], role: 'Node',
      hostUUID: '1b0c1d2e-3f40-4000-8000-00000000abcd', nodeName: 'db-1', additionalPrincipals: [], dnsNames: [], log: logger('test'),
    });
    const client = new AuthClient({ servers: [{ host: '127.0.0.1', port: auth.port }], credentials: { key: id.tlsKey, cert: id.tlsCert, ca: id.tlsCACerts } });
    try {
      await client.post('/v1/namespaces/default/nodes', {
        kind: 'node', version: 'v2', metadata: { name: '1b0c1d2e-3f40-4000-8000-00000000abcd', namespace: 'default', labels: { env: 'prod' } },
        spec: { addr: '10.0.0.7:3022', hostname: 'db-1', cmd_labels: { kernel: { command: ['uname', '-r'], period: 3600e9, result: '6.1.0' } } },
      });
      // A node may only announce itself.
      await expect(client.post('/v1/namespaces/default/nodes', {
        kind: 'node', version: 'v2', metadata: { name: 'someone-else', namespace: 'default' }, spec: { addr: '10.0.0.8:3022', hostname: 'evil' },
      })).rejects.toMatchObject({ reason: 'access_denied' });
      // A node may not manage users.
      await expect(client.get('/v1/status')).rejects.toMatchObject({ reason: 'access_denied' });
    } finally {
      client.close();
    }
    expect(await auth.tctlOk('nodes', 'ls')).toMatch(/^Nodename\s+UUID\s+Address\s+Labels\n[-\s]+\ndb-1\s+1b0c1d2e-3f40-4000-8000-00000000abcd\s+10\.0\.0\.7:3022\s+env=prod,kernel=6\.1\.0$/m);
    const json = JSON.parse(await auth.tctlOk('nodes', 'ls', '--format', 'json'));
    expect(json[0].spec.hostname).toBe('db-1');
  });

  it('GIVEN resource YAML WHEN create, get and rm THEN users and roles round-trip', async () => {
    const roleFile = file('role.yaml', `kind: role
version: v3
metadata:
  name: dba
spec:
  options:
    max_session_ttl: 8h0m0s
    forward_agent: false
  allow:
    logins: [postgres]
`);
    expect(await auth.tctlOk('create', roleFile)).toBe('role "dba" has been created\n');
    expect((await auth.tctl('create', roleFile)).stderr).toMatch(/already exists/);
    expect(await auth.tctlOk('create', '-f', roleFile)).toBe('role "dba" has been updated\n');
    const userFile = file('user.yaml', `kind: user
version: v2
metadata:
  name: dana
spec:
  roles: [dba]
  traits:
    logins: [dana]
`);
    await auth.tctlOk('create', userFile);
    const got = await auth.tctlOk('get', 'user/dana');
    expect(got).toMatch(/^kind: user\nversion: v2\nmetadata:\n  name: dana/);
    expect(await auth.tctlOk('get', 'role/dba')).toMatch(/max_session_ttl: 8h0m0s/);
    // The user's certificate carries only what the role allows.
    const key = path.join(auth.dir, 'dana');
    await auth.tctlOk('auth', 'sign', '--user', 'dana', '--format', 'openssh', '-o', key);
    const cert = fs.readFileSync(key + '-cert.pub', 'utf8');
    const { parseCertificate } = await import('../../runtime/sshcert');
    const parsed = parseCertificate(cert);
    expect(parsed.principals).toEqual(['postgres']);
    expect(parsed.extensions).not.toHaveProperty('permit-agent-forwarding');
    expect(JSON.parse(parsed.extensions['teleport-roles'])).toEqual({ version: 'v1', roles: ['dba'] });
    expect((await auth.tctl('rm', 'role/dba')).stderr).toMatch(/used by users dana/);
    expect(await auth.tctlOk('rm', 'user/dana')).toBe('user "dana" has been deleted\n');
    expect(await auth.tctlOk('rm', 'role/dba')).toBe('role "dba" has been deleted\n');
    expect((await auth.tctl('get', 'role/dba')).stderr).toBe('ERROR: role "dba" not found\n');
  });

  it('GIVEN a file whose second document is invalid WHEN create THEN nothing is created', async () => {
    const f = file('two.yaml', `kind: role
version: v3
metadata:
  name: ok-role
spec:
  allow:
    logins: [ubuntu]
---
kind: role
version: v3
metadata:
  name: bad-role
spec:
  allow:
    logins: [ubuntu]
  surprise: true
`);
    const r = await auth.tctl('create', f);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/document 2/);
    expect(r.stderr).toMatch(/spec.*surprise|Unrecognized key.*surprise/);
    expect((await auth.tctl('get', 'role/ok-role')).code).toBe(1);
    const bad = await auth.tctl('create', file('broken.yaml', 'kind: role\n  version: [v3\n'));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/broken\.yaml/);
  });

  it('GIVEN tokens created as resources THEN they can join, and the status shows the cluster', async () => {
    const expires = new Date(Date.now() + 600_000).toISOString();
    await auth.tctlOk('create', file('token.yaml', `kind: token\nversion: v2\nmetadata:\n  name: resource-token-1\n  expires: ${expires}\nspec:\n  roles: [Node]\n`));
    const id = tokenId('resource-token-1');
    for (const name of ['resource-token-1', id]) {
      const got = await auth.tctlOk('get', `token/${name}`);
      expect(got).toMatch(new RegExp(`^kind: token\nversion: v2\nmetadata:\n  name: ${id}\n(.*\n)*spec:\n  roles:\n\\s+- Node`));
      expect(got).not.toContain('resource-token-1');
    }
    expect(await auth.tctlOk('rm', 'token/resource-token-1')).toBe(`token "${id}" has been deleted\n`);
    expect((await auth.tctl('get', `token/${id}`)).stderr).toBe('ERROR: token not found\n');
    const status = await auth.tctlOk('status');
    expect(status).toMatch(/^Cluster\s+example\.com\nUser CA\s+never updated\n\s+SHA256:\S{43}\nHost CA\s+never updated\n\s+SHA256:\S{43}\nCA pin\s+sha256:[0-9a-f]{64}\n$/);
  });

  it('GIVEN auth sign for an unknown user THEN it fails and writes no files', async () => {
    const out = path.join(auth.dir, 'ghost');
    const r = await auth.tctl('auth', 'sign', '--user', 'ghost', '--format', 'openssh', '-o', out);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('ERROR: user "ghost" not found\n');
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.existsSync(out + '-cert.pub')).toBe(false);
  });

  it('GIVEN no auth server data in the data dir THEN tctl says where it looked', async () => {
    const r = await auth.tctl('--data-dir', path.join(auth.dir, 'nowhere'), 'status');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no admin identity in .*nowhere/);
  });
});
