/**
 * Heartbeats: a failed announce is retried after a short backoff, long before
 * the next period, so one lost heartbeat cannot let the record expire; waits
 * are jittered so a fleet does not come back in one burst.
 */
import { ConnectionProblemError } from '../../../runtime/utils/errors';
import { Server } from '../../../runtime/auth/resources';
import { ACCESS_POLL_WAIT_MS } from '../../../runtime/auth/access/cache';
import type { CallOptions } from '../../../runtime/auth/client';
import { BACKGROUND_HEARTBEAT_MIN_TTL_MS, Heartbeat, heartbeatWaitMs } from '../../../runtime/service/heartbeat';
import { jittered } from '../../../runtime/utils/jitter';
import { logger, setLogLevel } from '../../../runtime/utils/logger';
import { waitFor } from '../../helpers/proc';

/** The default announce TTL: the next regular announce is 225–300 s away. */
const TTL_MS = 600_000;

const record = (): Server => ({
  kind: 'node',
  version: 'v2',
  metadata: { name: 'host-1', namespace: 'default' },
  spec: { addr: '127.0.0.1:3022', hostname: 'host-1', version: 'test' },
});

describe('Heartbeat', () => {
  let beats: Heartbeat[] = [];
  beforeAll(() => setLogLevel('error'));
  afterEach(() => {
    for (const b of beats) b.stop();
    beats = [];
  });

  /** A client whose first `failFirst` posts fail as an unreachable auth server does. */
  const flakyClient = (failFirst: number) => {
    const posts: { path: string; at: number }[] = [];
    return {
      posts,
      post: async <T>(path: string): Promise<T> => {
        posts.push({ path, at: Date.now() });
        if (posts.length <= failFirst) throw new ConnectionProblemError('auth server 127.0.0.1:3025: connect ECONNREFUSED');
        return {} as T;
      },
    };
  };

  it('retries a failed heartbeat before the next period, and is ready again once one gets through', async () => {
    // GIVEN a node whose first two heartbeats fail (the next period is minutes away)
    const client = flakyClient(2);
    const hb = new Heartbeat(client, record, TTL_MS, logger('test'), { retryMinMs: 20, retryMaxMs: 200 });
    beats.push(hb);
    const ready = hb.readiness('heartbeat');
    // WHEN it starts
    await hb.start();
    expect(await ready.probe()).toMatch(/the last heartbeat failed: .*ECONNREFUSED/);
    // THEN it tries again, and again, until one gets through: well before the period
    await waitFor('a third heartbeat', () => client.posts.length >= 3, 10_000, 10);
    expect(client.posts.every((p) => p.path === '/v1/namespaces/default/nodes')).toBe(true);
    await waitFor('readiness to recover', async () => (await ready.probe()) === undefined, 10_000, 10);
  });

  it('sends the first heartbeat at once and the periodic ones in the background lane, when the TTL can wait out a held access poll', async () => {
    jest.useFakeTimers();
    try {
      // GIVEN a client that records the lane of each post, and heartbeats with the default TTL and with a short one
      const lanes = (ttlMs: number) => {
        const seen: (string | undefined)[] = [];
        const client = { post: async <T>(_path: string, _body: unknown, opts?: CallOptions): Promise<T> => (seen.push(opts?.lane), {} as T) };
        const hb = new Heartbeat(client, record, ttlMs, logger('test'));
        beats.push(hb);
        return { hb, seen };
      };
      const long = lanes(600_000);
      const short = lanes(20_000);
      // WHEN each starts and a period of each passes
      await long.hb.start();
      await short.hb.start();
      await jest.advanceTimersByTimeAsync(300_000);
      // THEN the first heartbeat of each went at once (the foreground lane); the periodic ones of the default TTL
      // in the background lane (after the poll held on that connection), those of the short TTL at once
      expect(long.seen).toEqual(['foreground', 'background']);
      expect(short.seen.length).toBeGreaterThanOrEqual(3);
      expect(new Set(short.seen)).toEqual(new Set(['foreground']));
      // AND the 240 s threshold leaves a record three quarters of its TTL after a poll's 60 s hold
      expect(BACKGROUND_HEARTBEAT_MIN_TTL_MS).toBeGreaterThanOrEqual(4 * ACCESS_POLL_WAIT_MS);
    } finally {
      for (const b of beats) b.stop();
      jest.useRealTimers();
    }
  });

  it('backs off: the wait after failures doubles from the minimum, capped, and is the period after a success', () => {
    // GIVEN the default TTL (period 300 s) and the default backoff (1 s to 60 s)
    // THEN the waits after 0..8 failures in a row are
    expect([0, 1, 2, 3, 4, 5, 6, 7, 8].map((n) => heartbeatWaitMs(n, TTL_MS))).toEqual([300_000, 1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]);
    // AND a short TTL caps the backoff at its period
    expect(heartbeatWaitMs(10, 20_000)).toBe(10_000);
  });

  it('jitters a wait by up to a quarter, never lengthening it', () => {
    // GIVEN the extremes of the jitter source THEN the wait stays within 75–100% of its nominal value
    expect(jittered(1000, () => 0)).toBe(1000);
    expect(jittered(1000, () => 0.999999)).toBeGreaterThan(750);
    expect(jittered(1000, () => 0.5)).toBe(875);
  });
});
