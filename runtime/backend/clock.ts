/** The time source backends use for TTLs; tests inject a clock they can move. */

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
