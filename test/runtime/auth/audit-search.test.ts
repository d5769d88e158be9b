/** The audit search query: defaults, repeated types, time zones, and what is refused (audit-search.ts). */
import { MAX_SEARCH_LIMIT, parseSearchQuery } from '../../../runtime/auth/audit-search';
import { BadParameterError } from '../../../runtime/utils/errors';

const parse = (q: string) => parseSearchQuery(new URLSearchParams(q));

describe('parseSearchQuery', () => {
  it('GIVEN no parameters THEN the 30 days up to now, every type and user, at most the maximum', () => {
    const before = Date.now();
    const q = parse('');
    expect(q.to.getTime()).toBeGreaterThanOrEqual(before);
    expect(q.to.getTime() - q.from.getTime()).toBe(30 * 86_400_000);
    expect(q).toMatchObject({ eventTypes: [], limit: MAX_SEARCH_LIMIT });
    expect(q.user).toBeUndefined();
  });

  it('GIVEN times with an offset, repeated types, a user and a limit THEN the query says exactly that', () => {
    const q = parse('from=2026-01-02T10:00:00%2B02:00&to=2026-01-02T09:30:00.5Z&event=session.start&event=session.end&user=alice&limit=25');
    expect(q).toEqual({
      from: new Date('2026-01-02T08:00:00Z'),
      to: new Date('2026-01-02T09:30:00.500Z'),
      eventTypes: ['session.start', 'session.end'],
      user: 'alice',
      limit: 25,
    });
  });

  it.each([
    ['from=2026-01-02', /from must be an RFC 3339 time/],
    ['to=Tue, 01 Jan 2026 00:00:00 GMT', /to must be an RFC 3339 time/],
    ['from=2026-01-03T00:00:00Z&to=2026-01-02T00:00:00Z', /from \(2026-01-03T00:00:00.000Z\) is after to \(2026-01-02T00:00:00.000Z\)/],
    ['limit=0', /limit must be between 1 and 10000/],
    ['limit=-5', /limit must be a whole number/],
    ['event=', /an event type cannot be empty/],
    ['from=2026-01-02T00:00:00Z&from=2026-01-01T00:00:00Z', /from is given more than once/],
    ['sort=desc', /unknown parameter sort/],
  ])('GIVEN %s THEN a BadParameterError that says what is wrong', (q, message) => {
    expect(() => parse(q)).toThrow(BadParameterError);
    expect(() => parse(q)).toThrow(message);
  });
});
