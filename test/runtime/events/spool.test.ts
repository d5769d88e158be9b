/**
 * The node's audit-event spool: durable before `emit` resolves, delivered in
 * order and once, resumed from disk after a crash, backing off while the
 * auth side is unreachable.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EventFields } from '../../../runtime/events/filelog';
import { EventSpool, MAX_EVENT_BYTES } from '../../../runtime/events/spool';
import { auditEventsQueued, registry } from '../../../runtime/service/metrics';
import { BadParameterError, ConnectionProblemError } from '../../../runtime/utils/errors';
import { setLogLevel } from '../../../runtime/utils/logger';
import { tempDir, waitFor } from '../../helpers/proc';
import { SmallDisk } from '../../helpers/tmpfs';

const unreachable = async (): Promise<void> => {
  throw new ConnectionProblemError('auth server unreachable');
};
/** What a crashed process's connection does: nothing, ever. */
const hang = (): Promise<void> => new Promise<void>(() => undefined);
const segmentFiles = (dir: string) => fs.readdirSync(dir).filter((f) => f.endsWith('.events')).sort();
const uids = (events: EventFields[]) => events.map((e) => e.uid);

function collector() {
  const batches: EventFields[][] = [];
  return { batches, all: () => batches.flat(), send: async (b: EventFields[]) => void batches.push(b) };
}

describe('EventSpool', () => {
  let dir: string;
  const open: EventSpool[] = [];
  const spool = (opts: Partial<ConstructorParameters<typeof EventSpool>[0]> & { send: (e: EventFields[]) => Promise<void> }) => {
    const s = new EventSpool({ dir, backoff: { initialMs: 2, maxMs: 10 }, ...opts });
    open.push(s);
    return s;
  };
  beforeAll(() => setLogLevel('error'));
  beforeEach(() => {
    dir = path.join(tempDir('spool-'), 'events');
  });
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
    fs.rmSync(path.dirname(dir), { recursive: true, force: true });
  });

  it('GIVEN a reachable auth side WHEN events are emitted THEN each arrives once, in order, in bounded batches, and acknowledged segments are deleted', async () => {
    const sink = collector();
    const s = spool({ send: sink.send, batchSize: 7, segmentEvents: 10 });
    await s.start();

    const emitted = await Promise.all(Array.from({ length: 45 }, (_, n) => s.emit({ event: 'exec', n, command: `cmd ${n}` })));
    await s.flush();

    expect(sink.all().map((e) => e.n)).toEqual(emitted.map((_, n) => n));
    expect(uids(sink.all())).toEqual(uids(emitted));
    expect(new Set(uids(emitted)).size).toBe(45);
    expect(sink.all()[0]).toMatchObject({ event: 'exec', code: 'T3002I', time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/) });
    expect(Math.max(...sink.batches.map((b) => b.length))).toBeLessThanOrEqual(7);
    // 45 events in segments of 10: the four full ones are gone, the one being written stays.
    expect(segmentFiles(dir)).toEqual(['0000000000000005.events']);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(dir, segmentFiles(dir)[0])).mode & 0o777).toBe(0o600);
  });

  it('GIVEN events spooled while the auth side is unreachable WHEN the node crashes and starts again THEN the new spool delivers all of them once, in order', async () => {
    let crashed = false;
    const a = spool({ send: () => (crashed ? hang() : unreachable()), batchSize: 4 });
    await a.start();
    const emitted: EventFields[] = [];
    for (let n = 0; n < 30; n++) emitted.push(await a.emit({ event: 'session.start', n }));
    crashed = true; // dropped without close: no more I/O from it

    const sink = collector();
    const b = spool({ send: sink.send, batchSize: 4 });
    await b.start();
    await b.flush();

    expect(uids(sink.all())).toEqual(uids(emitted));
    expect(sink.all().map((e) => e.n)).toEqual(emitted.map((e) => e.n));
  });

  it('GIVEN an unreachable auth side WHEN events are spooled, the node restarts, and the auth side answers THEN audit_events_queued counts them until they are delivered', async () => {
    // GIVEN a spool whose auth side is unreachable, its queue tracked by the gauge
    const queued = async () => (await registry.getSingleMetric('audit_events_queued')!.get()).values[0].value;
    let crashed = false;
    const a = spool({ send: () => (crashed ? hang() : unreachable()), segmentEvents: 4 });
    await a.start();
    const untrackA = auditEventsQueued.track(() => a.queued());
    try {
      // WHEN ten events are spooled
      for (let n = 0; n < 10; n++) await a.emit({ event: 'exec', n });
      // THEN
      expect(await queued()).toBe(10);
    } finally {
      untrackA();
    }
    crashed = true;

    // WHEN the node starts again (the segments on disk are all it knows) and the auth side answers
    let reachable = false;
    const sink = collector();
    const b = spool({ send: (events) => (reachable ? sink.send(events) : unreachable()), segmentEvents: 4 });
    await b.start();
    const untrackB = auditEventsQueued.track(() => b.queued());
    try {
      // THEN the backlog is counted before anything is delivered
      expect(await queued()).toBe(10);
      reachable = true;
      await b.flush();
      // THEN
      expect(sink.all()).toHaveLength(10);
      expect(await queued()).toBe(0);
    } finally {
      untrackB();
    }
  });

  it('GIVEN part of the spool was acknowledged before a crash THEN the next start sends only the rest', async () => {
    const sent: EventFields[][] = [];
    const a = spool({
      send: (b) => {
        sent.push(b);
        return sent.length <= 2 ? Promise.resolve() : hang();
      },
      batchSize: 5,
    });
    await a.start();
    const emitted = await Promise.all(Array.from({ length: 20 }, (_, n) => a.emit({ event: 'exec', n })));
    // The third send starts only after the second batch's acknowledgement is on disk.
    await waitFor('a third batch in flight', () => sent.length === 3);

    const sink = collector();
    const b = spool({ send: sink.send });
    await b.start();
    await b.flush();

    expect(uids(sent.slice(0, 2).flat())).toEqual(uids(emitted.slice(0, 10)));
    expect(uids(sink.all())).toEqual(uids(emitted.slice(10)));
  });

  it('GIVEN a failing auth side THEN the same first batch is retried with capped exponential backoff, and delivery resumes once it recovers', async () => {
    const attempts: EventFields[][] = [];
    const delays: number[] = [];
    const s = spool({
      send: async (b) => {
        attempts.push(b);
        if (attempts.length <= 6) throw new ConnectionProblemError('auth server unreachable');
      },
      batchSize: 3,
      backoff: { initialMs: 4, maxMs: 16 },
      onRetry: ({ delayMs }) => void delays.push(delayMs),
    });
    await s.start();
    const emitted = await Promise.all(Array.from({ length: 5 }, (_, n) => s.emit({ event: 'exec', n })));
    await s.flush();

    const caps = [4, 8, 16, 16, 16, 16];
    expect(delays).toHaveLength(caps.length);
    delays.forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual(caps[i] / 2);
      expect(d).toBeLessThanOrEqual(caps[i]);
    });
    for (const failed of attempts.slice(0, 6)) expect(uids(failed)).toEqual(uids(emitted.slice(0, 3)));
    expect(uids(attempts.slice(6).flat())).toEqual(uids(emitted));
  });

  it('GIVEN a segment whose last line was torn by a crash THEN the torn line is skipped and every whole event is delivered', async () => {
    let crashed = false;
    const a = spool({ send: () => (crashed ? hang() : unreachable()) });
    await a.start();
    const emitted = [await a.emit({ event: 'exec', n: 1 }), await a.emit({ event: 'exec', n: 2 })];
    crashed = true;
    fs.appendFileSync(path.join(dir, segmentFiles(dir)[0]), '{"event":"exec","n":3,"ui');

    const sink = collector();
    const b = spool({ send: sink.send });
    await b.start();
    await b.emit({ event: 'exec', n: 4 });
    await b.flush();

    expect(sink.all().map((e) => e.n)).toEqual([1, 2, 4]);
    expect(uids(sink.all()).slice(0, 2)).toEqual(uids(emitted));
  });

  it('GIVEN a full disk WHEN events are emitted THEN they reject (ENOSPC), leave no partial line or new segment behind, and once space returns new events follow the whole ones', async () => {
    // GIVEN a spool on a small disk that is then filled; the auth side is unreachable so nothing is acknowledged
    const disk = await SmallDisk.mount(path.dirname(dir), '1m');
    try {
      const s = spool({ send: unreachable });
      await s.start();
      const before = await s.emit({ event: 'exec', n: 1 });
      disk.fill();
      // WHEN events are emitted on the full disk (the last partly filled page takes a few, then they fail)
      const failures: unknown[] = [];
      for (let n = 2; n < 40; n++) await s.emit({ event: 'exec', n, command: 'x'.repeat(500) }).catch((err) => failures.push(err));
      // THEN they reject with ENOSPC, the segment holds only whole lines, and no empty segments pile up
      expect(failures.length).toBeGreaterThan(0);
      expect((failures[0] as NodeJS.ErrnoException).code).toBe('ENOSPC');
      expect(segmentFiles(dir)).toEqual(['0000000000000001.events']);
      const text = fs.readFileSync(path.join(dir, segmentFiles(dir)[0]), 'utf8');
      expect(text.endsWith('\n')).toBe(true);
      const stored = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as EventFields);
      expect(stored[0].uid).toBe(before.uid);
      // AND WHEN space returns THEN new events are written after the whole ones
      disk.free();
      const after = await s.emit({ event: 'exec', n: 99 });
      const lines = fs.readFileSync(path.join(dir, segmentFiles(dir)[0]), 'utf8').split('\n').filter(Boolean);
      expect(lines.map((l) => (JSON.parse(l) as EventFields).uid)).toEqual([...uids(stored), after.uid]);
      await s.close();
    } finally {
      await disk.unmount();
    }
  });

  it('GIVEN invalid use THEN emit and flush reject with a clear error and nothing is sent', async () => {
    const sink = collector();
    const s = spool({ send: sink.send });
    await expect(s.emit({ event: 'exec' })).rejects.toThrow(/not started/);
    await s.start();
    await expect(s.emit({} as EventFields)).rejects.toThrow(BadParameterError);
    await expect(s.emit({ event: 'exec', command: 'x'.repeat(MAX_EVENT_BYTES) })).rejects.toThrow(/larger than/);
    await s.flush();
    await s.close();
    await expect(s.emit({ event: 'exec' })).rejects.toThrow(/closed/);
    await expect(s.flush()).rejects.toThrow(/closed/);
    expect(sink.all()).toEqual([]);
    expect(() => new EventSpool({ dir, send: sink.send, batchSize: 0 })).toThrow(/batchSize/);
  });
});
