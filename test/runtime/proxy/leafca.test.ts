/**
 * A root proxy's push of its user and host CAs to its leaves (runtime/proxy/leafca.ts), with the access data,
 * the auth server's answer and the leaves' auth servers as stand-ins: when it sends, what it sends
 * (public parts only), one send at a time per leaf, retries after a failure, and nothing to a leaf
 * whose tunnel is gone. (The real send through a tunnel is test/e2e/trusted-ca-rotation.test.ts.)
 */
import type { CertAuthority } from '../../../runtime/auth/resources';
import { LeafCAPush } from '../../../runtime/proxy/leafca';
import { logger } from '../../../runtime/utils/logger';
import { waitFor } from '../../helpers/proc';

const CLUSTER = 'root.example';

function ca(keys: string[], type: 'user' | 'host' = 'user'): CertAuthority {
  return {
    kind: 'cert_authority',
    version: 'v2',
    sub_kind: type,
    metadata: { name: CLUSTER, namespace: 'default' },
    spec: {
      type,
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

  /**
   * A push with stand-ins: `keys` and `hostKeys` are the user and host CAs in the access data and at the auth server;
   * `fail` sends that fail first. `sent` has the user CAs sent, `sentHost` the host CAs.
   */
  function setup(o: { fail?: number } = {}) {
    const state = { keys: ['a'], hostKeys: ['h1'], connected: new Set(['leaf.example']), fail: o.fail ?? 0, fetches: 0 };
    const listeners: (() => void)[] = [];
    const sent: { leaf: string; ca: CertAuthority }[] = [];
    const sentHost: { leaf: string; ca: CertAuthority }[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    push = new LeafCAPush({
      clusterName: CLUSTER,
      access: { onChange: (l) => void listeners.push(l), userCAKeys: () => state.keys.map((k) => Buffer.from(k)), hostCAKeys: () => state.hostKeys.map((k) => Buffer.from(k)) },
      fetchCAs: async (type) => {
        if (type === 'user') state.fetches++;
        const keys = type === 'user' ? state.keys : state.hostKeys;
        return [{ ...ca(keys, type), metadata: { name: 'other', namespace: 'default' }, spec: { ...ca(['x'], type).spec, cluster_name: 'other.example' } }, ca(keys, type)];
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
        (ca.spec.type === 'user' ? sent : sentHost).push({ leaf, ca });
        return true;
      },
      log: logger('test:leafca'),
      retryMs: { min: 10, max: 40 },
    });
    const change = (keys: string[], hostKeys = state.hostKeys) => {
      state.keys = keys;
      state.hostKeys = hostKeys;
      listeners.forEach((l) => l());
    };
    return { state, sent, sentHost, change, maxInFlight: () => maxInFlight };
  }

  it('GIVEN a leaf tunnel comes up THEN the current user and host CAs of this cluster are sent to it once, public parts only', async () => {
    const t = setup();
    push!.start();
    push!.leafChanged('leaf.example', true);
    await waitFor('the CAs sent', async () => t.sent.length === 1 && t.sentHost.length === 1);
    expect(t.sentHost[0].ca.spec).toEqual(expect.objectContaining({ type: 'host', cluster_name: CLUSTER, checking_keys: ['h1'], signing_keys: [], tls_key_pairs: [{ cert: 'cert-h1', key: '' }] }));
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

  it('GIVEN a leaf has the CAs WHEN only the host CA keys change (a host CA rotation) THEN both are read again and the new host CA is sent to it', async () => {
    const t = setup();
    push!.start();
    push!.leafChanged('leaf.example', true);
    await waitFor('the first CAs sent', async () => t.sentHost.length === 1);
    // WHEN the host CA gets a second key (init), then loses the first (standby)
    t.change(['a'], ['h1', 'h2']);
    await waitFor('the host CA with both keys sent', async () => t.sentHost.at(-1)?.ca.spec.checking_keys.join() === 'h1,h2');
    t.change(['a'], ['h2']);
    await waitFor('the host CA with the new key only sent', async () => t.sentHost.at(-1)?.ca.spec.checking_keys.join() === 'h2');
    // THEN the user CA sent each time is the unchanged one
    expect(t.sent.every((s) => s.ca.spec.checking_keys.join() === 'a')).toBe(true);
  });
});
