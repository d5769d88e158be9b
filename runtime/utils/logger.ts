/**
 * Structured logging: JSON lines when stderr is not a TTY, a short human form
 * when it is. Every logger carries a `component` field. Secrets never go in
 * fields: callers log identifiers, not tokens or keys.
 */

export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Whether a line at `level` is written when the minimum is `min`. */
export const levelEnabled = (level: Level, min: Level): boolean => ORDER[level] >= ORDER[min];

/** JSON.stringify's replacer for log fields: an Error as its message, a bigint as its digits. */
export const logFieldReplacer = (_k: string, v: unknown): unknown => (v instanceof Error ? v.message : typeof v === 'bigint' ? v.toString() : v);

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
}

interface Sink {
  level: Level;
  json: boolean;
  write(line: string): void;
}

const sink: Sink = {
  level: (process.env.TELEPORT_LOG_LEVEL as Level) in ORDER ? (process.env.TELEPORT_LOG_LEVEL as Level) : 'info',
  json: !process.stderr.isTTY,
  write: (line) => process.stderr.write(line + '\n'),
};

/** Sets the process-wide minimum level (`-d` turns on debug). */
export function setLogLevel(level: Level): void {
  sink.level = level;
}

/** The process-wide minimum level. */
export function logLevel(): Level {
  return sink.level;
}

/** Replaces where log lines go (tests capture them). */
export function setLogWriter(write: (line: string) => void, json = true): void {
  sink.write = write;
  sink.json = json;
}

function format(level: Level, component: string, msg: string, fields?: Record<string, unknown>): string {
  const rest = fields ?? {};
  if (sink.json) {
    return JSON.stringify({ time: new Date().toISOString(), level, component, msg, ...rest }, logFieldReplacer);
  }
  const kv = Object.entries(rest)
    .map(([k, v]) => `${k}=${v instanceof Error ? v.message : typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(' ');
  return `${level.toUpperCase().padEnd(5)} [${component}] ${msg}${kv ? ' ' + kv : ''}`;
}

export function logger(component: string): Logger {
  const emit = (level: Level) => (msg: string, fields?: Record<string, unknown>) => {
    if (levelEnabled(level, sink.level)) sink.write(format(level, component, msg, fields));
  };
  return {
    debug: emit('debug'),
    info: emit('info'),
    warn: emit('warn'),
    error: emit('error'),
    child: (sub) => logger(`${component}:${sub}`),
  };
}
