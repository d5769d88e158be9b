/**
 * The readiness decision both `teleport signal-ready` and `/readyz` take: every check probed
 * together, what does not hold with why; and `answers`, a probe of a call that must settle in time.
 */
import { answers, unreadyChecks } from '../../../runtime/instance/readiness';
import { NotFoundError } from '../../../runtime/utils/errors';

describe('readiness', () => {
  test('GIVEN checks that hold, fail and throw WHEN probed THEN the failing and throwing ones come back with why, in order', async () => {
    // WHEN
    const unready = await unreadyChecks([
      { name: 'a', probe: async () => undefined },
      { name: 'b', probe: async () => 'b is down' },
      { name: 'c', probe: () => Promise.reject(new Error('boom')) },
    ]);
    // THEN
    expect(unready).toEqual([
      { check: 'b', reason: 'b is down' },
      { check: 'c', reason: 'cannot check: boom' },
    ]);
  });

  test('GIVEN a call WHEN it resolves, fails with an answer, fails, or never settles THEN answers says so', async () => {
    // WHEN / THEN
    expect(await answers('the store', async () => 'value', 1000)).toBeUndefined();
    expect(await answers('the store', () => Promise.reject(new NotFoundError('no key')), 1000, (e) => e instanceof NotFoundError)).toBeUndefined();
    expect(await answers('the store', () => Promise.reject(new Error('connection refused')), 1000)).toBe('the store does not answer: connection refused');
    expect(await answers('the store', () => new Promise(() => undefined), 20)).toBe('the store does not answer within 20 ms');
  });
});
