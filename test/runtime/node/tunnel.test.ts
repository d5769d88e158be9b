/** The reverse-tunnel agent's reconnect delays: capped exponential backoff with jitter. */
import { backoffMs, TUNNEL_BACKOFF } from '../../../runtime/node/tunnel';

describe('backoffMs', () => {
  it('GIVEN successive attempts THEN the delay doubles from the minimum and stops at the cap, each drawn from the upper half', () => {
    const b = { minMs: 1_000, maxMs: 30_000 };
    // GIVEN the lowest and highest draws WHEN each attempt is asked THEN the range is [cap/2, cap] with cap = min(max, min·2^n)
    const caps = [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000];
    caps.forEach((cap, attempt) => {
      expect(backoffMs(attempt, () => 0, b)).toBe(cap / 2);
      expect(backoffMs(attempt, () => 1, b)).toBe(cap);
    });
    // AND a huge attempt count stays at the cap (no overflow to Infinity or NaN)
    expect(backoffMs(10_000, () => 0.5, b)).toBe(22_500);
  });

  it('GIVEN the defaults THEN the first retry comes within a second and none waits beyond the cap', () => {
    expect(backoffMs(0, () => 1)).toBe(TUNNEL_BACKOFF.minMs);
    for (let attempt = 0; attempt < 50; attempt++) expect(backoffMs(attempt)).toBeLessThanOrEqual(TUNNEL_BACKOFF.maxMs);
  });
});
