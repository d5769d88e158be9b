/**
 * A root proxy's push of its user CA to its leaves (runtime/proxy/leafca.ts), with the access data,
 * the auth server's answer and the leaves' auth servers as stand-ins: when it sends, what it sends
 * (public parts only), one send at a time per leaf, retries after a failure, and nothing to a leaf
 * whose tunnel is gone. (The real send through a tunnel is test/e2e/trusted-ca-rotation.test.ts.)
 */
import type { CertAuthority } from '../../../runtime/auth/resources';
import { LeafCAPush } from '../../../runtime/proxy/leafca';
import { logger } from '../../../runtime/utils/logger';
import { waitFor } from '../../helpers/proc';

const CLUSTER = 'root.example';

function userCA(keys: string[]): CertAuthority {
  return {
    kind: 'cert_authority',
    version: 'v2',
    sub_kind: 'user',
    metadata: { name: CLUSTER, namespace: 'default' },
    spec: {
      type: 'user',
      cluster_name: CLUSTER,
      checking_keys: keys,
      signing_keys: ['c2VjcmV0'],
      tls_key_pairs: keys.map((k) => ({ cert: `cert-${k}`, key: 'c2VjcmV0' })),
      signing_alg: '',
      roles: [],
      rotation: { state: 'standby' },
    },
  };
}

describe('LeafCAPush', () => {
  let push: LeafCAPush | undefined;
  afterEach(() => push?.stop());

  /** A push with stand-ins: `keys` is the user CA in the access data and at the auth server; `fail` sends that fail first. */
  function setup(o: { fail?: number } = {}) {
    const state = { keys: ['a'], connected: new Set(['leaf.example']), fail: o.fail ?? 0, fetches: 0 };
    const listeners: (() => void)[] = [];
    const sent: { leaf: string; ca: CertAuthority }[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    push = new LeafCAPush({
      clusterName: CLUSTER,
      access: { onChange: (l) => void listeners.push(l), userCAKeys: () => state.keys.map((k) => Buffer.from(k)) },
      fetchUserCAs: async () => {
        state.fetches++;
        return [{ ...userCA(state.keys), metadata: { name: 'other', namespace: 'default' }, spec: { ...userCA(['x']).spec, cluster_name: 'other.example' } }, userCA(state.keys)];
      },
      connected: (name) => state.connected.has(name),
      send: async (leaf, ca) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await new Promise((resolve) => setImmediate(resolve));
        inFlight--;
        if (state.fail > 0) {
          state.fail--;
          throw new Error('the leaf is not answering');
        }
        sent.push({ leaf, ca });
        return true;
      },
      log: logger('test:leafca'),
      retryMs: { min: 10, max: 40 },
    });
    const change = (keys: string[]) => {
      state.keys = keys;
      listeners.forEach((l) => l());
    };
    return { state, sent, change, maxInFlight: () => maxInFlight };
  }

  it('GIVEN a leaf tunnel comes up THEN the current user CA of this cluster is sent to it once, public parts only', async () => {
    const t = setup();
    push!.start();
    push!.leafChanged('leaf.example', true);
    await waitFor('the CA sent', async () => t.sent.length === 1);
    expect(t.sent[0].leaf).toBe('leaf.example');
    expect(t.sent[0].ca.spec.cluster_name).toBe(CLUSTER);
    expect(t.sent[0].ca.spec.checking_keys).toEqual(['a']);
    expect(t.sent[0].ca.spec.signing_keys).toEqual([]);
    expect(t.sent[0].ca.spec.tls_key_pairs).toEqual([{ cert: 'cert-a', key: '' }]);
    // WHEN the access data changes without the user CA keys changing THEN nothing is read or sent again
    const fetches = t.state.fetches;
    t.change(['a']);
    push!.leafChanged('leaf.example', true);
    await new Promise((resolve) => setImmediate(resolve));
    expect(t.state.fetches).toBe(fetches);
    expect(t.sent).toHaveLength(1);
  });

  it('GIVEN the user CA keys change THEN the CA is read again and sent to every connected leaf, one send at a time per leaf, the last keys last', async () => {
    const t = setup();
    t.state.connected.add('east.example');
    push!.start();
    push!.leafChanged('leaf.example', true);
    push!.leafChanged('east.example', true);
    await waitFor('both leaves have the first CA', async () => t.sent.length === 2);
    t.change(['b', 'a']);
    t.change(['b']);
    await waitFor('both leaves have the last CA', async () => ['leaf.example', 'east.example'].every((l) => t.sent.filter((s) => s.leaf === l).at(-1)?.ca.spec.checking_keys.join() === 'b'));
    expect(t.maxInFlight()).toBeLessThanOrEqual(2);
    for (const leaf of ['leaf.example', 'east.example']) expect(t.sent.filter((s) => s.leaf === leaf).length).toBeLessThanOrEqual(3);
  });

  it('GIVEN sends that fail THEN it retries until the leaf has the CA; a leaf whose tunnel went down gets nothing more', async () => {
    const t = setup({ fail: 2 });
    push!.start();
    push!.leafChanged('leaf.example', true);
    await waitFor('the CA sent after two failures', async () => t.sent.length === 1);
    expect(t.state.fail).toBe(0);
    // WHEN the tunnel goes down and the CA changes THEN nothing is sent to it
    t.state.connected.delete('leaf.example');
    push!.leafChanged('leaf.example', false);
    t.change(['c']);
    await waitFor('the new CA read', async () => t.state.fetches >= 2);
    await new Promise((resolve) => setImmediate(resolve));
    expect(t.sent).toHaveLength(1);
    // WHEN it comes back THEN it gets the CA it missed
    t.state.connected.add('leaf.example');
    push!.leafChanged('leaf.example', true);
    await waitFor('the missed CA sent', async () => t.sent.length === 2);
    expect(t.sent[1].ca.spec.checking_keys).toEqual(['c']);
  });
});
