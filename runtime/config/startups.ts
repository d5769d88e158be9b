/**
 * sshd's `MaxStartups` spec, `start:rate:full` (or a single number, which is
 * `n:100:n`): below `start` unauthenticated connections every new one is
 * accepted; from `start` on a new one is dropped with probability `rate`%,
 * rising linearly to 100% at `full`.
 */
import { BadParameterError } from '../utils/errors';

export interface MaxStartups {
  start: number;
  rate: number;
  full: number;
}

/** The SSH listeners' limits on connections not authenticated yet (service/preauth.ts). */
export interface PreAuthLimits {
  /** Time a connection has to authenticate; 0 means no limit. */
  loginGraceMs: number;
  /** Unauthenticated connections in all. */
  maxStartups: MaxStartups;
  /** Unauthenticated connections from one source address; none by default, as sshd's `PerSourceMaxStartups`. */
  perSourceMaxStartups?: MaxStartups;
}

/** sshd's default, `10:30:100`. */
export const DEFAULT_MAX_STARTUPS: MaxStartups = { start: 10, rate: 30, full: 100 };

/** Parses `start:rate:full` or `n`; throws a BadParameterError saying what is wrong. */
export function parseMaxStartups(text: string): MaxStartups {
  const s = text.trim();
  const bad = (why: string) => new BadParameterError(`invalid startups limit ${JSON.stringify(text)}: ${why}; expected start:rate:full such as 10:30:100`);
  const parts = s.split(':');
  if ((parts.length !== 1 && parts.length !== 3) || parts.some((p) => !/^\d{1,9}$/.test(p))) throw bad('expected one number or three numbers separated by colons');
  const [start, rate, full] = parts.length === 1 ? [Number(parts[0]), 100, Number(parts[0])] : parts.map(Number);
  if (start < 1) throw bad('start must be at least 1 (0 would refuse every connection)');
  if (rate < 1 || rate > 100) throw bad('rate is a percentage from 1 to 100');
  if (full < start) throw bad('full must not be less than start');
  return { start, rate, full };
}
