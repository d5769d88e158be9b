/**
 * Go-style durations as written in teleport.yaml and on the command line
 * (`1h0m0s`, `30m`, `90s`, `1h30m`, `500ms`): parsing to milliseconds and
 * printing back the way Go's time.Duration.String() does.
 */

import { BadParameterError } from '../utils/errors';

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3, // U+00B5 micro sign
  'μs': 1e-3, // U+03BC greek mu
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const TERM = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)?/;
const EXAMPLE = 'e.g. "30s", "5m", "1h30m" or "1h0m0s"';

/** Parses a Go duration string into milliseconds (fractional below 1 ms). */
export function parseDuration(text: string): number {
  const s = text.trim();
  const bad = (why: string) => new BadParameterError(`invalid duration ${JSON.stringify(text)}: ${why}`);
  if (s === '') throw bad(`it is empty; expected a number with a unit, ${EXAMPLE}`);
  let rest = s;
  let sign = 1;
  if (rest[0] === '-' || rest[0] === '+') {
    sign = rest[0] === '-' ? -1 : 1;
    rest = rest.slice(1);
  }
  if (rest === '0') return 0;
  if (rest === '') throw bad(`expected a number after the sign, ${EXAMPLE}`);
  let total = 0;
  while (rest !== '') {
    const m = TERM.exec(rest);
    if (!m) throw bad(`unexpected ${JSON.stringify(rest)}; expected a number with a unit, ${EXAMPLE}`);
    const unit = m[2];
    if (unit === undefined) {
      const after = rest.slice(m[1].length);
      throw after === ''
        ? bad(`missing unit after ${m[1]} (use h, m, s, ms, us or ns), ${EXAMPLE}`)
        : bad(`unknown unit ${JSON.stringify(after.match(/^[^\d.]+/)?.[0] ?? after)} (use h, m, s, ms, us or ns)`);
    }
    total += parseFloat(m[1]) * UNIT_MS[unit];
    rest = rest.slice(m[0].length);
  }
  return sign * total;
}

const NS_PER = { us: 1_000n, ms: 1_000_000n, s: 1_000_000_000n, m: 60_000_000_000n, h: 3_600_000_000_000n };

/** `value / unit` with the remainder as a decimal fraction, trailing zeros trimmed. */
function fraction(value: bigint, unit: bigint, digits: number): string {
  const whole = value / unit;
  const rem = value % unit;
  if (rem === 0n) return whole.toString();
  const frac = rem.toString().padStart(digits, '0').replace(/0+$/, '');
  return `${whole}.${frac}`;
}

/** Formats milliseconds the way Go prints a time.Duration: 3600000 → `1h0m0s`, 500 → `500ms`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) throw new BadParameterError(`cannot format duration ${ms}`);
  let ns = BigInt(Math.round(ms * 1e6));
  const sign = ns < 0n ? '-' : '';
  if (ns < 0n) ns = -ns;
  if (ns === 0n) return '0s';
  if (ns < NS_PER.us) return `${sign}${ns}ns`;
  if (ns < NS_PER.ms) return `${sign}${fraction(ns, NS_PER.us, 3)}µs`;
  if (ns < NS_PER.s) return `${sign}${fraction(ns, NS_PER.ms, 6)}ms`;
  const hours = ns / NS_PER.h;
  const minutes = (ns % NS_PER.h) / NS_PER.m;
  const seconds = fraction(ns % NS_PER.m, NS_PER.s, 9);
  if (hours > 0n) return `${sign}${hours}h${minutes}m${seconds}s`;
  if (minutes > 0n) return `${sign}${minutes}m${seconds}s`;
  return `${sign}${seconds}s`;
}
