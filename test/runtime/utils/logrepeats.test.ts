/**
 * Repeated warn/error lines are rate-limited: the first at once, then at most
 * one line per interval with the count of those held back. The clock and the
 * timer are injected: the test moves time and runs the due flushes itself.
 */
import { limitRepeats } from '../../../runtime/utils/logrepeats';
import { logger, setLogLevel, setLogWriter } from '../../../runtime/utils/logger';

const MINUTE = 60_000;

describe('limitRepeats', () => {
  let lines: Record<string, unknown>[];
  let clock: number;
  let timers: { at: number; fn: () => void }[];
  /** Moves the clock to `t` and runs the flushes due by then, in order. */
  const advanceTo = (t: number) => {
    for (;;) {
      const due = timers.filter((x) => x.at <= t).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      timers.splice(timers.indexOf(due), 1);
      clock = due.at;
      due.fn();
    }
    clock = t;
  };
  const limited = (intervalMs = MINUTE, maxKeys?: number) =>
    limitRepeats(logger('test'), {
      intervalMs,
      now: () => clock,
      schedule: (fn, ms) => timers.push({ at: clock + ms, fn }),
      ...(maxKeys ? { maxKeys } : {}),
    });
  const msgs = () => lines.map((l) => `${String(l.level)} ${String(l.msg)}`);

  beforeEach(() => {
    lines = [];
    clock = 1_000_000;
    timers = [];
    setLogLevel('debug');
    setLogWriter((l) => lines.push(JSON.parse(l) as Record<string, unknown>), true);
  });
  afterAll(() => {
    setLogLevel('info');
    setLogWriter((l) => process.stderr.write(l + '\n'), !process.stderr.isTTY);
  });

  it('GIVEN a failure that repeats 58 times in a minute WHEN logged THEN the first is written at once and the rest as one line with the count at the end of the minute', () => {
    const log = limited();
    // WHEN the same failure comes 58 times within the minute (from different addresses).
    for (let i = 0; i < 58; i++) {
      advanceTo(1_000_000 + i * 1000);
      log.warn('heartbeat failed', { error: new Error('connect ECONNREFUSED'), attempt: i });
    }
    // THEN only the first is written so far.
    expect(lines).toEqual([expect.objectContaining({ level: 'warn', msg: 'heartbeat failed', error: 'connect ECONNREFUSED', attempt: 0 })]);
    // WHEN the minute is over THEN one line counts the others, with the latest one's fields.
    advanceTo(1_000_000 + MINUTE - 1);
    expect(lines).toHaveLength(1);
    advanceTo(1_000_000 + MINUTE);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toEqual(
      expect.objectContaining({ level: 'warn', msg: 'heartbeat failed (repeated 57 times in the last 60s)', error: 'connect ECONNREFUSED', attempt: 57 }),
    );
  });

  it('GIVEN a failure that keeps repeating WHEN minutes pass THEN there is at most one line per minute; after a quiet minute the next is written at once', () => {
    const log = limited();
    log.error('cannot read the event spool', { error: 'EIO' });
    // Every 10 s for 3 minutes: 18 more.
    for (let i = 1; i <= 18; i++) {
      advanceTo(1_000_000 + i * 10_000);
      log.error('cannot read the event spool', { error: 'EIO' });
    }
    expect(msgs()).toEqual([
      'error cannot read the event spool',
      'error cannot read the event spool (repeated 5 times in the last 60s)',
      'error cannot read the event spool (repeated 6 times in the last 60s)',
      'error cannot read the event spool (repeated 6 times in the last 60s)',
    ]);
    // WHEN it is quiet for the next minute THEN the last one held back (at 180 s) is flushed, and nothing else.
    advanceTo(1_000_000 + 5 * MINUTE);
    expect(msgs().slice(4)).toEqual(['error cannot read the event spool (repeated 1 time in the last 60s)']);
    // WHEN it comes back after a quiet minute THEN it is written at once, without a count.
    advanceTo(1_000_000 + 7 * MINUTE);
    log.error('cannot read the event spool', { error: 'EIO' });
    expect(msgs().slice(5)).toEqual(['error cannot read the event spool']);
  });

  it('GIVEN different messages, levels and errors WHEN logged together THEN each is limited on its own; debug and info lines are never held back', () => {
    const log = limited();
    for (let i = 0; i < 3; i++) {
      log.warn('heartbeat failed', { error: 'ECONNREFUSED' });
      log.warn('heartbeat failed', { error: 'certificate expired' });
      log.error('heartbeat failed', { error: 'ECONNREFUSED' });
      log.warn('cannot refresh the node list', { error: 'ECONNREFUSED' });
      log.info('proxying to node');
      log.debug('the client went away before the request was answered');
    }
    expect(lines.filter((l) => l.level === 'warn' || l.level === 'error').map((l) => `${String(l.level)} ${String(l.msg)} ${String(l.error)}`)).toEqual([
      'warn heartbeat failed ECONNREFUSED',
      'warn heartbeat failed certificate expired',
      'error heartbeat failed ECONNREFUSED',
      'warn cannot refresh the node list ECONNREFUSED',
    ]);
    expect(lines.filter((l) => l.level === 'info')).toHaveLength(3);
    expect(lines.filter((l) => l.level === 'debug')).toHaveLength(3);
  });

  it('GIVEN a child logger WHEN its lines repeat THEN they are limited too, under the child component', () => {
    const log = limited().child('web');
    log.error('request failed', { error: 'boom' });
    log.error('request failed', { error: 'boom' });
    advanceTo(clock + MINUTE);
    expect(lines.map((l) => `${String(l.component)} ${String(l.msg)}`)).toEqual(['test:web request failed', 'test:web request failed (repeated 1 time in the last 60s)']);
  });

  it('GIVEN more distinct lines than it tracks WHEN the oldest repeats THEN it is written again (forgotten), and the held-back count of an evicted line is still flushed', () => {
    const log = limited(MINUTE, 2);
    log.warn('a');
    log.warn('a'); // held back
    log.warn('b');
    log.warn('c'); // evicts a
    log.warn('a'); // a is new again
    expect(msgs()).toEqual(['warn a', 'warn b', 'warn c', 'warn a']);
    advanceTo(clock + MINUTE);
    expect(msgs().slice(4)).toEqual(['warn a (repeated 1 time in the last 60s)']);
  });
});
