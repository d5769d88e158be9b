/**
 * A root proxy following its leaves' CAs (runtime/proxy/leafcafollow.ts), with the leaf's long poll and
 * this cluster's auth server as stand-ins: what it passes on and when, retries after failures, and the
 * end of the loop when the leaf's tunnel goes. (The real poll through a tunnel, against a leaf's real
 * rotation, is test/e2e/trusted-ca-rotation.test.ts.)
 */
import type { CertAuthority } from '../../../runtime/auth/resources';
import { LeafCAFollow, type LeafCAs } from '../../../runtime/proxy/leafcafollow';
import { logger } from '../../../runtime/utils/logger';
import { waitFor } from '../../helpers/proc';

const LEAF = 'leaf.example';

const hostCA = (keys: string[]): CertAuthority => ({
  kind: 'cert_authority',
  version: 'v2',
  sub_kind: 'host',
  metadata: { name: LEAF, namespace: 'default' },
  spec: { type: 'host', cluster_name: LEAF, checking_keys: keys, signing_keys: [], tls_key_pairs: [{ cert: 'c', key: '' }], signing_alg: '', roles: [], rotation: { state: 'standby' } },
});

describe('LeafCAFollow', () => {
  let follow: LeafCAFollow | undefined;
  afterEach(() => follow?.stop());

  /** A leaf whose long poll answers at once when `known` is not its fingerprint, else when `change` is called (or the poll is aborted). */
  function setup(o: { failPolls?: number; failUpdates?: number } = {}) {
    const state = { keys: ['k1'], connected: true, failPolls: o.failPolls ?? 0, failUpdates: o.failUpdates ?? 0, polls: [] as string[], aborted: 0 };
    const updated: string[][] = [];
    let wake: (() => void) | undefined;
    const answer = (): LeafCAs => ({ fingerprint: state.keys.join(','), certificate_authorities: [hostCA(state.keys)] });
    follow = new LeafCAFollow({
      connected: () => state.connected,
      poll: async (name, known, signal) => {
        expect(name).toBe(LEAF);
        state.polls.push(known);
        if (state.failPolls > 0) {
          state.failPolls--;
          throw new Error('the tunnel broke');
        }
        if (known !== state.keys.join(',')) return answer();
        await new Promise<void>((resolve, reject) => {
          wake = resolve;
          signal.addEventListener('abort', () => (state.aborted++, reject(new Error('aborted'))));
        });
        return answer();
      },
      update: async (_name, ca) => {
        if (state.failUpdates > 0) {
          state.failUpdates--;
          throw new Error('the auth server is not answering');
        }
        updated.push(ca.spec.checking_keys);
        return true;
      },
      log: logger('test:leafcafollow'),
      retryMs: { min: 5, max: 20 },
    });
    const change = (keys: string[]) => {
      state.keys = keys;
      wake?.();
    };
    return { state, updated, change };
  }

  it('GIVEN a leaf tunnel comes up THEN its CAs are passed on once, then again each time the leaf answers a changed fingerprint', async () => {
    const t = setup();
    follow!.leafChanged(LEAF, true);
    await waitFor('the first CAs passed on', async () => t.updated.length === 1);
    expect(t.updated).toEqual([['k1']]);
    // AND the next poll carries the fingerprint it has, and is held
    await waitFor('a held poll', async () => t.state.polls.at(-1) === 'k1');
    // WHEN the leaf's CA changes (a rotation's init, then standby)
    t.change(['k1', 'k2']);
    await waitFor('the rotated CA passed on', async () => t.updated.length === 2);
    t.change(['k2']);
    await waitFor('the new key alone passed on', async () => t.updated.length === 3);
    expect(t.updated).toEqual([['k1'], ['k1', 'k2'], ['k2']]);
    // AND a second "up" of the same leaf starts no second loop
    follow!.leafChanged(LEAF, true);
    await waitFor('a held poll again', async () => t.state.polls.at(-1) === 'k2');
    expect(t.state.polls.filter((k) => k === '')).toHaveLength(1);
  });

  it('GIVEN polls and updates that fail THEN it retries until the CA is passed on, from the last fingerprint it passed on', async () => {
    const t = setup({ failPolls: 2, failUpdates: 1 });
    follow!.leafChanged(LEAF, true);
    await waitFor('the CAs passed on after the failures', async () => t.updated.length === 1);
    // THEN it polled without a fingerprint until one was passed on (a failed update is asked for again)
    expect(t.state.polls.slice(0, 4)).toEqual(['', '', '', '']);
    await waitFor('a held poll', async () => t.state.polls.at(-1) === 'k1');
  });

  it('GIVEN a held poll WHEN the leaf\'s last tunnel goes down THEN the poll is given up and nothing more is polled', async () => {
    const t = setup();
    follow!.leafChanged(LEAF, true);
    await waitFor('a held poll', async () => t.state.polls.at(-1) === 'k1');
    const polls = t.state.polls.length;
    t.state.connected = false;
    follow!.leafChanged(LEAF, false);
    expect(t.state.aborted).toBe(1);
    t.change(['k9']);
    await new Promise((resolve) => setImmediate(resolve));
    expect(t.state.polls).toHaveLength(polls);
    expect(t.updated).toEqual([['k1']]);
  });
});
