/**
 * Rate limiting of repeated log lines: a failure that repeats (a heartbeat
 * to an auth server that is down, a spool that cannot be read, a client that
 * keeps failing its TLS handshake) is logged the first time at once, then at
 * most once per interval, as `<msg> (repeated 57 times in the last 60s)` with
 * the fields of the latest occurrence. Lines are the same when their level,
 * message and error text are; other fields (addresses, counters) may differ.
 * A count left at the end of an interval is written then, so a burst that
 * stops is still reported.
 */
import type { Level, Logger } from './logger';

export const REPEAT_INTERVAL_MS = 60_000;

export interface RepeatOptions {
  /** At most one line per key in this long (after the first). */
  intervalMs?: number;
  /** The clock (tests inject one). */
  now?: () => number;
  /** Runs `fn` after `ms` (tests inject one); the default timer does not keep the process alive. */
  schedule?: (fn: () => void, ms: number) => void;
  /** How many distinct lines to track; the oldest is forgotten beyond that. */
  maxKeys?: number;
}

interface Window {
  /** When the last line of this key was written. */
  writtenAt: number;
  /** Occurrences since then that were not written. */
  suppressed: number;
  /** The fields of the latest suppressed occurrence. */
  fields?: Record<string, unknown>;
  /** A flush is scheduled. */
  pending: boolean;
}

function errorText(fields: Record<string, unknown> | undefined): string {
  const e = fields?.error;
  return e instanceof Error ? e.message : e === undefined ? '' : String(e);
}

const defaultSchedule = (fn: () => void, ms: number) => setTimeout(fn, ms).unref();

/**
 * A Logger like `log` whose warn and error lines are rate-limited per
 * (level, message, error text); debug and info lines pass through.
 */
export function limitRepeats(log: Logger, opts: RepeatOptions = {}): Logger {
  const interval = opts.intervalMs ?? REPEAT_INTERVAL_MS;
  const now = opts.now ?? Date.now;
  const schedule = opts.schedule ?? defaultSchedule;
  const maxKeys = opts.maxKeys ?? 1000;
  const windows = new Map<string, Window>();
  const seconds = `${Math.round(interval / 1000)}s`;

  const write = (level: Level, msg: string, w: Window) => {
    log[level](`${msg} (repeated ${w.suppressed} time${w.suppressed === 1 ? '' : 's'} in the last ${seconds})`, w.fields);
    w.writtenAt = now();
    w.suppressed = 0;
    w.fields = undefined;
  };

  const limited = (level: Level) => (msg: string, fields?: Record<string, unknown>) => {
    const key = `${level}\u0000${msg}\u0000${errorText(fields)}`;
    const t = now();
    const w = windows.get(key);
    if (!w || (t - w.writtenAt >= interval && w.suppressed === 0)) {
      windows.delete(key);
      windows.set(key, { writtenAt: t, suppressed: 0, pending: false });
      if (windows.size > maxKeys) windows.delete(windows.keys().next().value as string);
      log[level](msg, fields);
      return;
    }
    w.suppressed++;
    w.fields = fields;
    if (w.pending) return;
    w.pending = true;
    schedule(
      () => {
        w.pending = false;
        if (w.suppressed > 0) write(level, msg, w);
      },
      Math.max(0, w.writtenAt + interval - t),
    );
  };

  return {
    debug: log.debug,
    info: log.info,
    warn: limited('warn'),
    error: limited('error'),
    child: (sub) => limitRepeats(log.child(sub), opts),
  };
}
