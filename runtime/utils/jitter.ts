/**
 * Jitter for periodic and retried work: many servers that started, or failed,
 * together must not come back to the auth server in one burst.
 */

/** `ms` less up to a quarter, at random (`random` uniform in [0, 1)). */
export function jittered(ms: number, random: () => number = Math.random): number {
  return ms * (1 - 0.25 * random());
}
