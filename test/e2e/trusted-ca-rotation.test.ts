/**
 * A leaf cluster follows its root's user and host CA rotations (Teleport's
 * RotateExternalCertAuthority): the root's proxy sends the root's current
 * CAs (public parts) to the leaf's auth server through the leaf's reverse
 * tunnel, authenticated by its own host identity. And the root follows the
 * leaf's host CA rotation: its proxy reads the leaf's CAs through the same
 * tunnel and passes them to the root's auth server. Two real clusters as in
 * trusted-clusters.test.ts: root (auth + proxy) and leaf (auth + proxy + node
 * "test-auth"). alice logs in before the rotation and never again; bob logs in
 * in update_clients. The leaf's node is also reached directly with stock
 * ssh, so the leaf's own decision is what is tested (not only the root proxy's).
 * (bob logs in once: a third TOTP code would need the next 30 s step.)
 * The leaf's auth takes the CA only from a proxy of that root, only for that
 * root's CA, and only public parts that parse.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { AccessSnapshot } from '../../runtime/auth/access/feed';
import { AuthClient } from '../../runtime/auth/client';
import type { CertAuthority } from '../../runtime/auth/resources';
import { externalCAPath } from '../../runtime/proxy/leafca';
import { startAuth, TestAuth } from '../helpers/cluster';
import { tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { directToLeafNode, LEAF, NODE, restartLeaf, ROOT, startLeaf, TOKEN, trustedCluster } from '../helpers/trusted';
import { TshUser } from '../helpers/users';

describe('trusted clusters: a leaf follows the root user CA rotation', () => {
  let root: TestAuth;
  let leaf: TestAuth;
  let work: string;
  let alice: TshUser;
  let bob: TshUser;
  /** Users signed up during the tests. */
  const later: TshUser[] = [];

  /** The root's user (or host) CA keys the leaf trusts now (its access data, as its proxies and nodes load it). */
  const leafTrusts = async (type: 'user' | 'host' = 'user') => {
    const c = await leaf.adminClient();
    try {
      const root = (await c.get<AccessSnapshot>('/v1/access?version=&wait=0')).clusters.find((x) => x.name === ROOT);
      return (type === 'user' ? root?.user_ca_keys : root?.host_ca_keys) ?? [];
    } finally {
      c.close();
    }
  };
  /** The root's own user (or host) CA. */
  const rootUserCA = async (type: 'user' | 'host' = 'user') => {
    const c = await root.adminClient();
    try {
      return (await c.get<CertAuthority[]>(`/v1/authorities/${type}`)).find((ca) => ca.spec.cluster_name === ROOT)!;
    } finally {
      c.close();
    }
  };
  /**
   * Restarts the leaf (its proxy dials the root anew, each side checking the other's host certificate) and signs
   * up root user `name`, who logs in now; resolves once they reach the leaf's node through the root.
   */
  const restartLeafAndReachAs = async (name: string) => {
    await restartLeaf(root, leaf);
    const user = await TshUser.signUp(root, name, [LOGIN]);
    later.push(user);
    await user.login();
    await waitFor(`${name} reaching the leaf node through the new tunnel`, async () => (await viaRoot(user)).stdout === 'in-leaf\n');
    expect((await remote())?.status.connection).toBe('online');
  };
  /** The leaf as the root's `tctl get rc` shows it. */
  const remote = async () => (JSON.parse(await root.tctlOk('get', 'rc', '--format=json')) as { metadata: { name: string }; status: { connection: string } }[]).find((c) => c.metadata.name === LEAF);
  const keyLines = (ca: CertAuthority) => ca.spec.checking_keys.map((k) => Buffer.from(k, 'base64').toString());
  const rotate = (phase: string) => root.tctlOk('auth', 'rotate', '--type=user', '--manual', `--phase=${phase}`);
  const viaRoot = (u: TshUser) => u.tsh(['ssh', `--cluster=${LEAF}`, NODE, 'echo in-leaf']);

  /** Calls the leaf's auth API directly with an identity of `from`'s process (Proxy, Node or Admin). */
  const asIdentity = async (from: TestAuth, role: 'Proxy' | 'Node' | 'Admin', body: unknown) => {
    const id = await from.identity(role);
    const leafCAs = (await leaf.adminIdentity()).tlsCACerts;
    const c = new AuthClient({ servers: [{ host: '127.0.0.1', port: leaf.port }], credentials: { key: id.tlsKey, cert: id.tlsCert, ca: leafCAs } });
    try {
      return await c.post<{ updated: boolean }>(externalCAPath('user'), body);
    } finally {
      c.close();
    }
  };

  beforeAll(async () => {
    work = tempDir('trusted-rot-');
    root = await startAuth({ clusterName: ROOT, proxy: {} });
    leaf = await startLeaf(root, work);
    await root.tctlOk('tokens', 'add', '--type=trusted_cluster', `--value=${TOKEN}`);
    fs.writeFileSync(path.join(work, 'tc.yaml'), trustedCluster(root));
    await leaf.tctlOk('create', path.join(work, 'tc.yaml'));
    alice = await TshUser.signUp(root, 'alice', [LOGIN]);
    bob = await TshUser.signUp(root, 'bob', [LOGIN]);
    await waitFor('the leaf online at the root', async () => (await remote())?.status.connection === 'online');
  }, 120_000);

  afterAll(async () => {
    await leaf?.cleanup();
    await root?.cleanup();
    alice?.cleanup();
    bob?.cleanup();
    later.forEach((u) => u.cleanup());
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('GIVEN a root user logged in before WHEN the root rotates its user CA manually THEN the leaf trusts both keys from init, a new certificate reaches the leaf node and auth in update_clients, and in standby the old one is refused by the leaf', async () => {
    // GIVEN alice logged in with the root's first user CA, and the leaf trusting just that key
    await alice.login();
    const before = keyLines(await rootUserCA());
    expect(before).toHaveLength(1);
    expect(await leafTrusts()).toEqual(before);
    expect((await directToLeafNode(leaf, alice, 'echo before')).stdout).toBe('before\n');

    // WHEN the root starts a manual rotation (init)
    await rotate('init');
    const both = keyLines(await rootUserCA());
    expect(both).toHaveLength(2);
    // THEN the root's proxy pushes it: the leaf trusts both keys, and audited the update
    await waitFor('the leaf trusting both root user CA keys', async () => (await leafTrusts()).length === 2);
    expect([...(await leafTrusts())].sort()).toEqual([...both].sort());
    const updates = await leaf.events(['trusted_cluster.ca_update']);
    expect(updates).toEqual([expect.objectContaining({ name: ROOT, ca_type: 'user', keys_added: 1, keys_removed: 0 })]);

    // WHEN the new key signs (update_clients) and bob logs in
    await rotate('update_clients');
    await bob.login();
    // THEN bob's new certificate reaches the leaf's node through the root proxy and straight at the node
    const r = await viaRoot(bob);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('in-leaf\n');
    expect((await directToLeafNode(leaf, bob, 'echo new-direct')).stdout).toBe('new-direct\n');
    // AND the leaf's auth server takes it (tsh ls --cluster=leaf runs mutual TLS with the leaf's auth)
    const ls = await bob.tsh(['ls', `--cluster=${LEAF}`]);
    expect(ls.stderr).toBe('');
    expect(ls.stdout).toMatch(new RegExp(`^${NODE}\\s+127\\.0\\.0\\.1:${leaf.nodePort}`, 'm'));
    // AND alice's old certificate still works in the leaf (the old key is still trusted)
    expect((await directToLeafNode(leaf, alice, 'echo old-still')).stdout).toBe('old-still\n');
    // AND a phase change that keeps the same keys wrote nothing more at the leaf
    expect(await leaf.events(['trusted_cluster.ca_update'])).toHaveLength(1);

    // WHEN the rotation completes (update_servers, then standby)
    await rotate('update_servers');
    await rotate('standby');
    const after = keyLines(await rootUserCA());
    expect(after).toEqual([both.find((k) => k !== before[0])]);
    // THEN the leaf drops the old key
    await waitFor('the leaf trusting only the new key', async () => JSON.stringify(await leafTrusts()) === JSON.stringify(after));
    expect((await leaf.events(['trusted_cluster.ca_update'])).some((e) => e.keys_removed === 1 && e.keys_added === 0)).toBe(true);
    // AND the leaf's node refuses alice's old certificate while bob's new one works, straight and through the root
    await waitFor('the leaf node refusing the old certificate', async () => (await directToLeafNode(leaf, alice, 'echo no')).code === 255);
    expect((await directToLeafNode(leaf, bob, 'echo yes')).stdout).toBe('yes\n');
    expect((await viaRoot(bob)).stdout).toBe('in-leaf\n');
    // AND alice's old certificate lists nothing in the leaf any more
    const old = await alice.tsh(['ls', `--cluster=${LEAF}`]);
    expect(old.code).not.toBe(0);
  }, 180_000);

  it('GIVEN the leaf trusts the root WHEN others send a user CA to the leaf auth THEN the leaf proxy, node and admin are refused (403), the root proxy only for its own CA, and private keys or garbage are refused (400)', async () => {
    const current = await rootUserCA();
    const events = async () => (await leaf.events(['trusted_cluster.ca_update'])).length;
    const eventsBefore = await events();
    const trustsBefore = await leafTrusts();
    const denied = { reason: 'access_denied' };
    const bad = { reason: 'bad_parameter' };
    const body = (spec: Partial<CertAuthority['spec']>) => ({ certificate_authority: { ...current, spec: { ...current.spec, ...spec } } });
    // A key the leaf must never take: the leaf's own user CA key (whoever sends it would mint root users)
    const leafOwnCA = (await (async () => {
      const c = await leaf.adminClient();
      try {
        return await c.get<CertAuthority[]>('/v1/authorities/user');
      } finally {
        c.close();
      }
    })())[0];
    const forged = body({ checking_keys: leafOwnCA.spec.checking_keys, tls_key_pairs: leafOwnCA.spec.tls_key_pairs });

    // WHEN the leaf's own proxy, node or admin sends a CA for the root THEN 403
    await expect(asIdentity(leaf, 'Proxy', forged)).rejects.toMatchObject(denied);
    await expect(asIdentity(leaf, 'Node', forged)).rejects.toMatchObject(denied);
    await expect(asIdentity(leaf, 'Admin', forged)).rejects.toMatchObject(denied);
    // WHEN the root's admin (a root identity, not a proxy) sends it THEN it is nobody here: 403
    await expect(asIdentity(root, 'Admin', forged)).rejects.toMatchObject(denied);
    // WHEN the root's proxy sends a CA naming another cluster THEN 403
    await expect(asIdentity(root, 'Proxy', body({ cluster_name: 'other.example' }))).rejects.toMatchObject(denied);
    await expect(asIdentity(root, 'Proxy', body({ cluster_name: LEAF }))).rejects.toMatchObject(denied);
    // WHEN it sends private keys, keys that do not parse, too many keys, a TLS certificate that is no CA, or a host CA THEN 400
    await expect(asIdentity(root, 'Proxy', body({ signing_keys: ['c2VjcmV0'] }))).rejects.toMatchObject(bad);
    await expect(asIdentity(root, 'Proxy', body({ tls_key_pairs: current.spec.tls_key_pairs.map((p) => ({ ...p, key: 'c2VjcmV0' })) }))).rejects.toMatchObject(bad);
    await expect(asIdentity(root, 'Proxy', body({ checking_keys: [Buffer.from('ssh-ed25519 AAAAnotakey').toString('base64')] }))).rejects.toMatchObject(bad);
    await expect(asIdentity(root, 'Proxy', body({ checking_keys: [] }))).rejects.toMatchObject(bad);
    await expect(asIdentity(root, 'Proxy', body({ checking_keys: Array(9).fill(current.spec.checking_keys[0]) }))).rejects.toMatchObject(bad);
    const notACA = Buffer.from((await root.identity('Proxy')).tlsCert).toString('base64');
    await expect(asIdentity(root, 'Proxy', body({ tls_key_pairs: [{ cert: notACA, key: '' }] }))).rejects.toMatchObject(bad);
    await expect(asIdentity(root, 'Proxy', body({ tls_key_pairs: [{ cert: 'bm90IGEgY2VydA==', key: '' }] }))).rejects.toMatchObject(bad);
    await expect(asIdentity(root, 'Proxy', body({ type: 'host' }))).rejects.toMatchObject(bad);
    await expect(asIdentity(root, 'Proxy', { certificate_authority: 'garbage' })).rejects.toMatchObject(bad);
    // THEN nothing changed and nothing was audited
    expect(await leafTrusts()).toEqual(trustsBefore);
    expect(await events()).toBe(eventsBefore);

    // WHEN the root's proxy sends the current CA THEN it is taken, and nothing is written (unchanged)
    await expect(asIdentity(root, 'Proxy', { certificate_authority: current })).resolves.toEqual({ updated: false });
    expect(await events()).toBe(eventsBefore);

    // WHEN the trust is disabled THEN even the root's proxy is refused (it is no trusted cluster's proxy now)
    fs.writeFileSync(path.join(work, 'tc-off.yaml'), trustedCluster(root, { enabled: false }));
    await leaf.tctlOk('create', '-f', path.join(work, 'tc-off.yaml'));
    await expect(asIdentity(root, 'Proxy', { certificate_authority: current })).rejects.toMatchObject(denied);
  }, 120_000);

  it('GIVEN the leaf offline while the root starts another rotation WHEN its tunnel comes back THEN the root proxy sends it the CA it missed', async () => {
    // GIVEN the trust disabled on the leaf (the test before): its proxy holds no tunnel to the root
    await waitFor('the leaf offline at the root', async () => (await remote())?.status.connection === 'offline');
    const trusted = await leafTrusts();
    expect(trusted).toHaveLength(1);
    // WHEN the root starts a rotation while the leaf is offline
    await rotate('init');
    const both = keyLines(await rootUserCA());
    expect(both).toHaveLength(2);
    expect(await leafTrusts()).toEqual(trusted);
    // AND the leaf enables the trust again (its proxy dials the root)
    fs.writeFileSync(path.join(work, 'tc-on.yaml'), trustedCluster(root));
    await leaf.tctlOk('create', '-f', path.join(work, 'tc-on.yaml'));
    // THEN once the tunnel is up the leaf trusts both keys
    await waitFor('the leaf trusting both keys after its tunnel came back', async () => (await leafTrusts()).length === 2);
    expect([...(await leafTrusts())].sort()).toEqual([...both].sort());
  }, 120_000);

  it('GIVEN the leaf trusts the root WHEN the root rotates its host CA manually THEN the leaf trusts the new key from init and only it from standby, and the leaf, restarted, accepts the root proxy\'s new host certificate', async () => {
    await waitFor('the leaf online at the root', async () => (await remote())?.status.connection === 'online');
    const rotateHost = (phase: string) => root.tctlOk('auth', 'rotate', '--type=host', '--manual', `--phase=${phase}`);
    const before = keyLines(await rootUserCA('host'));
    expect(before).toHaveLength(1);
    expect(await leafTrusts('host')).toEqual(before);
    const hostUpdates = async () => (await leaf.events(['trusted_cluster.ca_update'])).filter((e) => e.ca_type === 'host');
    // WHEN the root starts a host CA rotation (init)
    await rotateHost('init');
    const both = keyLines(await rootUserCA('host'));
    expect(both).toHaveLength(2);
    // THEN its proxy pushes it: the leaf trusts both host keys, audited as a host CA update
    await waitFor('the leaf trusting both root host CA keys', async () => (await leafTrusts('host')).length === 2);
    expect([...(await leafTrusts('host'))].sort()).toEqual([...both].sort());
    expect(await hostUpdates()).toEqual([expect.objectContaining({ name: ROOT, ca_type: 'host', keys_added: 1, keys_removed: 0 })]);
    // WHEN the rotation goes on to standby (the root's proxy presents a certificate of the new key from update_servers)
    await rotateHost('update_clients');
    await rotateHost('update_servers');
    await rotateHost('standby');
    const after = keyLines(await rootUserCA('host'));
    expect(after).toEqual([both.find((k) => k !== before[0])]);
    // THEN the leaf drops the old key
    await waitFor('the leaf trusting only the new root host key', async () => JSON.stringify(await leafTrusts('host')) === JSON.stringify(after));
    expect((await hostUpdates()).map((e) => [e.keys_added, e.keys_removed])).toEqual([[1, 0], [0, 1]]);
    // WHEN the leaf restarts, so its proxy dials the root anew and checks the root proxy's new host certificate
    // THEN the tunnel comes up and a root user (logged in after the rotation: tsh trusts the root's new host CA) reaches the leaf's node through it
    await restartLeafAndReachAs('carol');
  }, 180_000);

  it('GIVEN the root trusts the leaf WHEN the leaf rotates its host CA manually THEN the root keeps the new key from init and only it from standby, and takes the restarted leaf\'s tunnels with certificates of the new key', async () => {
    await waitFor('the leaf online at the root', async () => (await remote())?.status.connection === 'online');
    /** The leaf's host CA keys the root keeps (its access data, as its proxies load it). */
    const rootTrusts = async () => {
      const c = await root.adminClient();
      try {
        return (await c.get<AccessSnapshot>('/v1/access?version=&wait=0')).clusters.find((x) => x.name === LEAF)?.host_ca_keys ?? [];
      } finally {
        c.close();
      }
    };
    const leafHostCA = async () => {
      const c = await leaf.adminClient();
      try {
        return keyLines((await c.get<CertAuthority[]>('/v1/authorities/host')).find((ca) => ca.spec.cluster_name === LEAF)!);
      } finally {
        c.close();
      }
    };
    const rotateLeafHost = (phase: string) => leaf.tctlOk('auth', 'rotate', '--type=host', '--manual', `--phase=${phase}`);
    const updates = async () => (await root.events(['trusted_cluster.ca_update'])).filter((e) => e.name === LEAF);
    const before = await leafHostCA();
    expect(before).toHaveLength(1);
    expect(await rootTrusts()).toEqual(before);
    // WHEN the leaf starts a host CA rotation (init)
    await rotateLeafHost('init');
    const both = await leafHostCA();
    expect(both).toHaveLength(2);
    // THEN the root's proxy reads it from the leaf: the root keeps both keys, audited there as a leaf's host CA update
    await waitFor('the root keeping both leaf host CA keys', async () => (await rootTrusts()).length === 2);
    expect([...(await rootTrusts())].sort()).toEqual([...both].sort());
    expect(await updates()).toEqual([expect.objectContaining({ ca_type: 'host', remote_cluster: true, keys_added: 1, keys_removed: 0 })]);
    // WHEN the rotation goes on to standby (the leaf's proxy and node get certificates of the new key in update_servers)
    await rotateLeafHost('update_clients');
    await rotateLeafHost('update_servers');
    await rotateLeafHost('standby');
    const after = await leafHostCA();
    expect(after).toEqual([both.find((k) => k !== before[0])]);
    // THEN the root drops the old key
    await waitFor('the root keeping only the new leaf host key', async () => JSON.stringify(await rootTrusts()) === JSON.stringify(after));
    expect((await updates()).map((e) => [e.keys_added, e.keys_removed])).toEqual([[1, 0], [0, 1]]);
    // WHEN the leaf restarts, so its proxy dials the root with its new host certificate
    // THEN the root takes the tunnel, and a root user logged in now (tsh trusts the leaf's new host CA) reaches the leaf's node
    await restartLeafAndReachAs('dave');
  }, 180_000);
});
