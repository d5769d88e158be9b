/** sshd's MaxStartups drop decision (runtime/service/preauth.ts). */
import { parseMaxStartups } from '../../../runtime/config/startups';
import { shouldDrop } from '../../../runtime/service/preauth';

describe('sshd MaxStartups drop decision', () => {
  const spec = parseMaxStartups('10:30:100');

  test('GIVEN fewer pending than start THEN nothing is dropped, whatever the dice', () => {
    expect(shouldDrop(spec, 9, () => 0)).toBe(false);
  });

  test('GIVEN pending at full or more THEN everything is dropped, whatever the dice', () => {
    expect(shouldDrop(spec, 100, () => 0.999)).toBe(true);
    expect(shouldDrop(spec, 150, () => 0.999)).toBe(true);
  });

  test('GIVEN pending between start and full THEN the drop rate rises linearly from rate% to 100%', () => {
    // at start: 30%
    expect(shouldDrop(spec, 10, () => 0.29)).toBe(true);
    expect(shouldDrop(spec, 10, () => 0.3)).toBe(false);
    // halfway (55): 30 + 70 * 45/90 = 65%
    expect(shouldDrop(spec, 55, () => 0.64)).toBe(true);
    expect(shouldDrop(spec, 55, () => 0.65)).toBe(false);
  });
});
