/**
 * The failures-only limit (RateLimiter.reserve) behind the join limit: a
 * success gives its token back, failures use the limit up as `take` does, and
 * attempts that arrive while the limit is held by undecided ones wait for
 * them instead of being refused or slipping past.
 */
import { RateLimiter } from '../../../runtime/utils/ratelimit';
import { LimitExceededError } from '../../../runtime/utils/errors';

/** A burst of 3 that never refills within a test (one token per ~11.6 days). */
const limiter = () => new RateLimiter({ burst: 3, perSecond: 1e-6 });

describe('RateLimiter.reserve', () => {
  it('GIVEN only successes THEN any number pass, one after another', async () => {
    const l = limiter();
    for (let i = 0; i < 50; i++) (await l.reserve('10.0.0.1')).succeed();
  });

  it('GIVEN failures THEN the burst is all they get: the next attempt from that address is refused at once', async () => {
    // GIVEN three failed attempts from one address
    const l = limiter();
    for (let i = 0; i < 3; i++) (await l.reserve('10.0.0.1')).fail();
    // THEN the next attempt is refused at once, whatever its outcome would have been
    await expect(l.reserve('10.0.0.1')).rejects.toBeInstanceOf(LimitExceededError);
    // AND another address is not affected
    (await l.reserve('10.0.0.2')).fail();
  });

  it('GIVEN concurrent attempts beyond the burst THEN they wait for the undecided ones: successes free a place, failures do not', async () => {
    const l = limiter();
    // GIVEN three undecided attempts holding the whole burst
    const held = await Promise.all([l.reserve('a'), l.reserve('a'), l.reserve('a')]);
    // WHEN two more arrive THEN they wait rather than being refused
    let admitted = 0;
    const waiting = [l.reserve('a'), l.reserve('a')].map((p) =>
      p.then((r) => {
        admitted++;
        return r;
      }),
    );
    await Promise.resolve();
    expect(admitted).toBe(0);
    // WHEN one of the held ones fails THEN nobody gets its place
    held[0].fail();
    await new Promise((resolve) => setImmediate(resolve));
    expect(admitted).toBe(0);
    // WHEN one succeeds THEN one waiting attempt takes its place
    held[1].succeed();
    await new Promise((resolve) => setImmediate(resolve));
    expect(admitted).toBe(1);
    // WHEN the last held one fails and the admitted one fails too THEN no attempt is pending: the last waiter is refused
    held[2].fail();
    (await Promise.race(waiting)).fail();
    const results = await Promise.allSettled(waiting);
    expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason)).toEqual([expect.any(LimitExceededError)]);
  });

  it('GIVEN an attempt decided twice THEN only the first decision counts', async () => {
    const l = limiter();
    const r = await l.reserve('b');
    r.fail();
    r.succeed(); // no token comes back for a failure
    (await l.reserve('b')).fail();
    (await l.reserve('b')).fail();
    await expect(l.reserve('b')).rejects.toBeInstanceOf(LimitExceededError);
  });
});
