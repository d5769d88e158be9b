import { BadParameterError } from '../../../runtime/utils/errors';
import { formatDuration, parseDuration } from '../../../runtime/config';

describe('parseDuration', () => {
  test.each([
    ['1h0m0s', 3_600_000],
    ['30m', 1_800_000],
    ['90s', 90_000],
    ['1h30m', 5_400_000],
    ['500ms', 500],
    ['1.5s', 1500],
    ['2h45m0.5s', 9_900_500],
    ['1500us', 1.5],
    ['1500µs', 1.5],
    ['250ns', 0.00025],
    ['0', 0],
    ['-1m', -60_000],
  ])('GIVEN %s WHEN parsed THEN it is %d ms', (text, ms) => {
    expect(parseDuration(text)).toBeCloseTo(ms, 9);
  });

  test.each([
    ['', /empty/],
    ['30', /missing unit after 30/],
    ['1d', /unknown unit "d"/],
    ['abc', /unexpected "abc"/],
    ['1h5', /missing unit after 5/],
  ])('GIVEN %j WHEN parsed THEN a BadParameterError says why', (text, why) => {
    let err: unknown;
    try {
      parseDuration(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BadParameterError);
    expect((err as Error).message).toContain(`invalid duration ${JSON.stringify(text)}`);
    expect((err as Error).message).toMatch(why);
  });
});

describe('formatDuration', () => {
  test.each([
    [3_600_000, '1h0m0s'],
    [5_400_000, '1h30m0s'],
    [90_000, '1m30s'],
    [1500, '1.5s'],
    [500, '500ms'],
    [0, '0s'],
    [1.5, '1.5ms'],
    [0.0015, '1.5µs'],
    [0.00025, '250ns'],
    [9_900_500, '2h45m0.5s'],
    [-60_000, '-1m0s'],
    [31_536_000_000, '8760h0m0s'],
  ])('GIVEN %d ms WHEN formatted THEN it reads %s (as Go prints it)', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  test('GIVEN a formatted duration WHEN parsed back THEN the value is the same', () => {
    for (const ms of [1, 999, 1000, 61_000, 3_599_999, 86_400_000]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
  });
});
