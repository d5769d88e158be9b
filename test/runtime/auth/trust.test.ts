/**
 * Establishing trust between two auth servers in one process (runtime/auth/trust.ts), the leaf's
 * exchange wired straight to the root's validation: what each side keeps, where it keeps it, and
 * every refusal (token type, names, private keys, keys that changed, pins, repeats, rate).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AuthServer } from '../../../runtime/auth/server';
import type { CertAuthority, TrustedClusterResource } from '../../../runtime/auth/resources';
import { MemoryBackend } from '../../../runtime/backend/memory';
import { Keys, rangeEnd } from '../../../runtime/contract/keys';
import { FileAuditLog } from '../../../runtime/events/filelog';
import { caPin } from '../../../runtime/tlsca';
import { initTestAuthServer } from '../../helpers/authserver';

const ROOT = 'root.example';
const LEAF = 'leaf.example';
const TOKEN = 'tc-token-0123456789abcdef';

function tc(o: Partial<TrustedClusterResource['spec']> & { name?: string } = {}): TrustedClusterResource {
  const { name, ...spec } = o;
  return {
    kind: 'trusted_cluster',
    version: 'v2',
    metadata: { name: name ?? ROOT },
    spec: { enabled: true, token: TOKEN, web_proxy_addr: 'root.example:3080', tunnel_addr: 'root.example:3024', role_map: [{ remote: 'admin', local: ['access'] }], ...spec },
  };
}

describe('establishing trust between a leaf and a root', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trust-'));
  const backends = { root: new MemoryBackend({ sweepPeriodMs: 0 }), leaf: new MemoryBackend({ sweepPeriodMs: 0 }) };
  const audits = { root: new FileAuditLog(path.join(dir, 'root')), leaf: new FileAuditLog(path.join(dir, 'leaf')) };
  let root: AuthServer;
  let leaf: AuthServer;
  /** What the leaf sent in its last exchange. */
  let sent: CertAuthority[] = [];

  beforeAll(async () => {
    root = await initTestAuthServer({ backend: backends.root, audit: audits.root, clusterName: ROOT });
    leaf = await initTestAuthServer({
      backend: backends.leaf,
      audit: audits.leaf,
      clusterName: LEAF,
      trustExchange: async (t, ours) => {
        sent = ours;
        return root.trust.validate({ token: t.spec.token, certificate_authorities: ours }, '192.0.2.10');
      },
    });
    await root.tokens.create({ roles: ['trusted_cluster'], token: TOKEN });
    await root.tokens.create({ roles: ['node'], token: 'node-token-0123456789abcdef' });
  });
  afterAll(async () => {
    await root?.close();
    await leaf?.close();
    await Promise.all([backends.root.close(), backends.leaf.close(), audits.root.close(), audits.leaf.close()]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const keysUnder = async (b: MemoryBackend, prefix: string) => (await b.getRange(prefix, rangeEnd(prefix))).map((i) => i.key);

  it('GIVEN a node token THEN the root refuses it and neither side keeps anything', async () => {
    await expect(leaf.trust.upsertTrustedCluster(tc({ token: 'node-token-0123456789abcdef' }), { force: false, user: 'admin' })).rejects.toThrow(/invalid token/);
    expect(await root.trust.list()).toEqual([]);
    expect(await leaf.trust.list()).toEqual([]);
  });

  it('GIVEN a pin that is not the root CA\'s THEN trust is not established', async () => {
    await expect(leaf.trust.upsertTrustedCluster(tc({ ca_pin: `sha256:${'0'.repeat(64)}` }), { force: false, user: 'admin' })).rejects.toThrow(/does not match spec.ca_pin/);
    expect(await leaf.trust.list()).toEqual([]);
  });

  it('GIVEN the token and the right pin THEN each side keeps the other\'s CAs (public parts only) outside its own authorities', async () => {
    await leaf.trust.upsertTrustedCluster(tc({ ca_pin: caPin(root.hostCA.tlsCert()) }), { force: false, user: 'admin' });
    // THEN the leaf sent no private key
    expect(sent.map((ca) => [ca.spec.type, ca.spec.signing_keys, ca.spec.tls_key_pairs.map((p) => p.key)])).toEqual([['host', [], ['']], ['user', [], ['']]]);
    const [atLeaf] = await leaf.trust.list('trusted');
    expect(atLeaf.spec).toMatchObject({ relation: 'trusted', enabled: true, role_map: [{ remote: 'admin', local: ['access'] }] });
    expect(atLeaf.spec.user_ca.spec.checking_keys).toEqual(root.userCA.resource.spec.checking_keys);
    expect(JSON.stringify(atLeaf)).not.toContain(TOKEN);
    const [atRoot] = await root.trust.list('remote');
    expect(atRoot.metadata.name).toBe(LEAF);
    expect(atRoot.spec.host_ca.spec.checking_keys).toEqual(leaf.hostCA.resource.spec.checking_keys);
    // AND neither cluster's own authorities (what members, exports and the CA pin read) gained a key
    expect(await keysUnder(backends.leaf, '/authorities/')).toEqual([Keys.certAuthority('host', LEAF), Keys.certAuthority('user', LEAF)]);
    expect(await keysUnder(backends.root, '/authorities/')).toEqual([Keys.certAuthority('host', ROOT), Keys.certAuthority('user', ROOT)]);
    // AND the leaf's access data carries the root's user CA with the role map, the root's carries the leaf's host CA
    const snap = () => leaf.access.snapshot().clusters;
    await waitUntil(() => snap().length === 1);
    expect(snap()[0]).toMatchObject({ name: ROOT, relation: 'trusted', enabled: true, role_map: [{ remote: 'admin', local: ['access'] }] });
    expect(leaf.access.snapshot().user_ca_keys).toHaveLength(1);
  });

  it('GIVEN the same trusted cluster again THEN it is refused without --force; with it only enabled, role_map and addresses change', async () => {
    await expect(leaf.trust.upsertTrustedCluster(tc(), { force: false, user: 'admin' })).rejects.toThrow(/already exists; use tctl create -f/);
    await leaf.trust.upsertTrustedCluster(tc({ enabled: false, role_map: [] }), { force: true, user: 'admin' });
    const [atLeaf] = await leaf.trust.list('trusted');
    expect(atLeaf.spec).toMatchObject({ enabled: false, role_map: [] });
    expect(atLeaf.spec.host_ca.spec.checking_keys).toEqual(root.hostCA.resource.spec.checking_keys);
  });

  it('GIVEN the root sends its user or host CA (rotateExternalCA) THEN the leaf takes only an enabled trusted cluster\'s own CAs, replaces the kept keys of that type, audits it, and writes nothing when the keys are the same', async () => {
    const events = async () => audits.leaf.search({ from: new Date(Date.now() - 60_000), to: new Date(Date.now() + 60_000), eventTypes: ['trusted_cluster.ca_update'] });
    const by = { user: 'proxy-1.root.example', remoteAddr: '192.0.2.20' };
    const current = root.userCA.withoutSecrets();
    // A second valid public key, as a rotation's init adds one
    const rotated: CertAuthority = { ...current, spec: { ...current.spec, checking_keys: [...current.spec.checking_keys, ...leaf.hostCA.resource.spec.checking_keys] } };
    const kept = async () => (await leaf.trust.get(ROOT))!.spec.user_ca.spec.checking_keys;
    // GIVEN the trust disabled (the test before) THEN refused
    await expect(leaf.trust.rotateExternalCA(ROOT, rotated, by)).rejects.toThrow(`cluster ${ROOT} is not a trusted cluster here`);
    await leaf.trust.upsertTrustedCluster(tc(), { force: true, user: 'admin' });
    // WHEN another cluster's CA or a cluster the leaf does not trust is sent THEN refused, nothing kept
    await expect(leaf.trust.rotateExternalCA(ROOT, { ...rotated, spec: { ...rotated.spec, cluster_name: LEAF } }, by)).rejects.toThrow(/only cluster root.example's own CAs are taken for it/);
    await expect(leaf.trust.rotateExternalCA('other.example', { ...rotated, spec: { ...rotated.spec, cluster_name: 'other.example' } }, by)).rejects.toThrow(/not a trusted cluster here/);
    await expect(leaf.trust.rotateExternalCA(ROOT, root.userCA.resource, by)).rejects.toThrow(/sent with its private key/);
    expect(await kept()).toEqual(current.spec.checking_keys);
    // WHEN the root's CA with a second key is sent THEN it is kept (public parts only) and audited
    await expect(leaf.trust.rotateExternalCA(ROOT, rotated, by)).resolves.toBe(true);
    expect(await kept()).toEqual(rotated.spec.checking_keys);
    expect((await leaf.trust.get(ROOT))!.spec.user_ca.spec.tls_key_pairs.map((p) => p.key)).toEqual(['']);
    expect(await events()).toEqual([expect.objectContaining({ name: ROOT, user: by.user, ca_type: 'user', keys_added: 1, keys_removed: 0, 'addr.remote': by.remoteAddr })]);
    // WHEN the same keys come again, in the other order (the signing key moves first) THEN nothing is written or audited
    const item = await backends.leaf.get(Keys.clusterTrust(ROOT));
    const reordered = { ...rotated, spec: { ...rotated.spec, checking_keys: [...rotated.spec.checking_keys].reverse() } };
    await expect(leaf.trust.rotateExternalCA(ROOT, reordered, by)).resolves.toBe(false);
    expect((await backends.leaf.get(Keys.clusterTrust(ROOT))).id).toBe(item.id);
    expect(await events()).toHaveLength(1);
    // WHEN the rotation completes (the old key dropped) THEN the leaf drops it too
    await expect(leaf.trust.rotateExternalCA(ROOT, current, by)).resolves.toBe(true);
    expect(await kept()).toEqual(current.spec.checking_keys);
    expect((await events()).map((e) => [e.keys_added, e.keys_removed])).toEqual([[1, 0], [0, 1]]);
    // WHEN the root's host CA with a second key is sent (a host CA rotation's init) THEN the kept host CA changes, not the user CA
    const host = root.hostCA.withoutSecrets();
    const hostRotated: CertAuthority = { ...host, spec: { ...host.spec, checking_keys: [...host.spec.checking_keys, ...leaf.userCA.resource.spec.checking_keys] } };
    await expect(leaf.trust.rotateExternalCA(ROOT, hostRotated, by)).resolves.toBe(true);
    expect((await leaf.trust.get(ROOT))!.spec.host_ca.spec.checking_keys).toEqual(hostRotated.spec.checking_keys);
    expect(await kept()).toEqual(current.spec.checking_keys);
    expect((await events()).at(-1)).toEqual(expect.objectContaining({ name: ROOT, ca_type: 'host', keys_added: 1, keys_removed: 0 }));
    // AND another cluster's host CA is refused
    await expect(leaf.trust.rotateExternalCA(ROOT, { ...hostRotated, spec: { ...hostRotated.spec, cluster_name: LEAF } }, by)).rejects.toThrow(/only cluster root.example's own CAs are taken for it/);
  });

  it('GIVEN the root keeps the leaf\'s CAs WHEN its proxy passes on the leaf\'s rotated host CA (updateRemoteCA) THEN the root replaces the kept host CA and audits it; only the leaf\'s own CA, only for a leaf', async () => {
    const by = { user: 'proxy-1.root.example', remoteAddr: '192.0.2.30' };
    const events = async () => (await audits.root.search({ from: new Date(Date.now() - 60_000), to: new Date(Date.now() + 60_000), eventTypes: ['trusted_cluster.ca_update'] })).filter((e) => e.name === LEAF);
    const host = leaf.hostCA.withoutSecrets();
    const rotated: CertAuthority = { ...host, spec: { ...host.spec, checking_keys: [...host.spec.checking_keys, ...root.userCA.resource.spec.checking_keys] } };
    const kept = async () => (await root.trust.get(LEAF))!.spec.host_ca.spec.checking_keys;
    // WHEN another cluster's CA is passed on for the leaf, or a CA for a name that is no leaf here THEN refused, nothing kept
    await expect(root.trust.updateRemoteCA(LEAF, { ...rotated, spec: { ...rotated.spec, cluster_name: ROOT } }, by)).rejects.toThrow(`only cluster ${LEAF}'s own CAs are taken for it`);
    await expect(root.trust.updateRemoteCA('other.example', { ...rotated, spec: { ...rotated.spec, cluster_name: 'other.example' } }, by)).rejects.toThrow('cluster other.example is not a leaf cluster here');
    await expect(root.trust.updateRemoteCA(LEAF, leaf.hostCA.resource, by)).rejects.toThrow(/sent with its private key/);
    expect(await kept()).toEqual(host.spec.checking_keys);
    // AND at the leaf, the root is no leaf: its CAs do not go this way
    await expect(leaf.trust.updateRemoteCA(ROOT, root.hostCA.withoutSecrets(), by)).rejects.toThrow(`cluster ${ROOT} is not a leaf cluster here`);
    // WHEN the leaf's host CA with a second key is passed on THEN the root keeps it, audited as a leaf's
    await expect(root.trust.updateRemoteCA(LEAF, rotated, by)).resolves.toBe(true);
    expect(await kept()).toEqual(rotated.spec.checking_keys);
    expect(await events()).toEqual([expect.objectContaining({ user: by.user, ca_type: 'host', remote_cluster: true, keys_added: 1, keys_removed: 0 })]);
    // AND the same again changes nothing
    await expect(root.trust.updateRemoteCA(LEAF, rotated, by)).resolves.toBe(false);
    expect(await events()).toHaveLength(1);
    // WHEN the leaf's rotation completes with its first key (a rollback) THEN the root drops the other
    await expect(root.trust.updateRemoteCA(LEAF, host, by)).resolves.toBe(true);
    expect(await kept()).toEqual(host.spec.checking_keys);
    expect((await events()).map((e) => [e.keys_added, e.keys_removed])).toEqual([[1, 0], [0, 1]]);
  });

  it('GIVEN a leaf that claims the root\'s own name, sends private keys, or changes its keys THEN the root refuses', async () => {
    const own = [root.hostCA.withoutSecrets(), root.userCA.withoutSecrets()];
    await expect(root.trust.validate({ token: TOKEN, certificate_authorities: own }, '192.0.2.11')).rejects.toThrow(`"${ROOT}" is this cluster's own name`);
    await expect(root.trust.validate({ token: TOKEN, certificate_authorities: [leaf.hostCA.resource, leaf.userCA.resource] }, '192.0.2.11')).rejects.toThrow(/sent with its private key/);
    const other = await initTestAuthServer({ backend: new MemoryBackend({ sweepPeriodMs: 0 }), audit: audits.leaf, clusterName: LEAF });
    try {
      await expect(root.trust.validate({ token: TOKEN, certificate_authorities: [other.hostCA.withoutSecrets(), other.userCA.withoutSecrets()] }, '192.0.2.11')).rejects.toThrow(
        /already known here with other keys/,
      );
    } finally {
      await other.close();
    }
    // AND the same keys again is fine (a leaf that re-creates its trusted cluster)
    await expect(root.trust.validate({ token: TOKEN, certificate_authorities: sent }, '192.0.2.11')).resolves.toMatchObject({ certificate_authorities: expect.any(Array) });
  });

  it('GIVEN many validations from one address THEN they are rate-limited', async () => {
    const tries = Array.from({ length: 12 }, () => root.trust.validate({ token: 'wrong', certificate_authorities: sent }, '192.0.2.99').then(() => 'ok', (e: Error) => e.message));
    const results = await Promise.all(tries);
    expect(results.filter((m) => m === 'too many requests, try again later').length).toBeGreaterThan(0);
  });

  it('GIVEN trust removed on either side THEN the record goes and the removal is audited', async () => {
    await leaf.trust.delete('trusted', ROOT, 'admin');
    await root.trust.delete('remote', LEAF, 'admin');
    expect(await leaf.trust.list()).toEqual([]);
    expect(await root.trust.list()).toEqual([]);
    await expect(leaf.trust.delete('trusted', ROOT, 'admin')).rejects.toThrow(`trusted cluster "${ROOT}" not found`);
    const events = await audits.leaf.search({ from: new Date(Date.now() - 60_000), to: new Date(Date.now() + 60_000), eventTypes: ['trusted_cluster.delete'] });
    expect(events.map((e) => e.name)).toEqual([ROOT]);
  });
});

async function waitUntil(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 10));
}
