/**
 * A node's durable queue of audit events. `emit` resolves once the event is
 * appended to a segment file in the spool directory and fsynced; a shipper
 * sends the events in order, in batches, to the auth service and retries with
 * capped exponential backoff while it cannot be reached. What was
 * acknowledged is recorded in `cursor.json` and whole segments are deleted
 * once acknowledged. After a crash `start()` resumes from the disk: delivery
 * is at least once, and every event carries a stable `uid` that the auth
 * service uses to drop copies it already has.
 *
 * Layout: `<dir>/<16-digit id>.events` (JSON lines, ids increase) and
 * `<dir>/cursor.json` = `{"segment": id, "acked": n}`: every segment with a
 * smaller id, and the first `n` events of segment `id`, are acknowledged.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { AuthClient } from '../auth/client';
import { BadParameterError, ConnectionProblemError } from '../utils/errors';
import { Logger, logger } from '../utils/logger';
import { completeEvent, EventFields } from './filelog';

export interface EventSpoolOptions {
  /** The spool directory, e.g. `<data_dir>/log/upload/events`; made 0700 if missing. */
  readonly dir: string;
  /** Delivers a batch, in order; resolving means the auth service has it. */
  readonly send: (events: EventFields[]) => Promise<void>;
  /** @default 100 */
  readonly batchSize?: number;
  /**
   * A batch holds at most this many bytes of JSON (one event always goes, however big).
   * @default 512 KiB
   */
  readonly batchBytes?: number;
  /**
   * Events per segment file before a new one is started.
   * @default 1000
   */
  readonly segmentEvents?: number;
  /** Delay before the n-th retry: a random time in [d/2, d], d = min(maxMs, initialMs * 2^(n-1)). @default 250 ms to 30 s */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Called before each wait after a failed send. */
  readonly onRetry?: (info: { attempt: number; delayMs: number; error: unknown }) => void;
  readonly log?: Logger;
}

/** The largest event the spool takes, as JSON. */
export const MAX_EVENT_BYTES = 256 * 1024;

interface Segment {
  id: number;
  /** Loaded for the active segment and the oldest one being shipped. */
  events?: EventFields[];
  /** How many events a sealed segment not loaded holds (counted once, for `queued`). */
  count?: number;
  sealed: boolean;
}

interface Pending {
  event: EventFields;
  line: string;
  resolve(e: EventFields): void;
  reject(err: unknown): void;
}

interface Position {
  segment: number;
  index: number;
}

const SEGMENT_RE = /^(\d{16})\.events$/;
const CURSOR = 'cursor.json';
const segmentName = (id: number) => `${String(id).padStart(16, '0')}.events`;

async function syncDir(dir: string): Promise<void> {
  const fh = await fs.promises.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Parses a segment; a last line without its newline was torn by a crash and never acknowledged to `emit`. */
function parseSegment(text: string, log: Logger, file: string): EventFields[] {
  const lines = text.split('\n');
  lines.pop(); // the text after the last newline: empty, or a torn line
  const out: EventFields[] = [];
  for (const line of lines) {
    try {
      out.push(JSON.parse(line) as EventFields);
    } catch {
      log.warn('skipping an unreadable line in the event spool', { file });
    }
  }
  return out;
}

export class EventSpool {
  private readonly log: Logger;
  private readonly segments: Segment[] = [];
  private active?: { seg: Segment; fh: fs.promises.FileHandle; size: number };
  private nextId = 1;
  private cursor = { segment: 1, acked: 0 };
  private pending: Pending[] = [];
  private writing = false;
  private io: Promise<unknown> = Promise.resolve();
  private state: 'new' | 'started' | 'closed' = 'new';
  private filesClosed = false;
  private wake?: () => void;
  /** Set when there was news while the shipper was not waiting. */
  private kicked = false;
  private waiters: { target: Position; resolve(): void; reject(err: unknown): void }[] = [];

  constructor(private readonly opts: EventSpoolOptions) {
    this.log = opts.log ?? logger('events:spool');
    const positive = (v: number | undefined, name: string) => {
      if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new BadParameterError(`event spool: ${name} must be a positive integer, got ${v}`);
    };
    positive(opts.batchSize, 'batchSize');
    positive(opts.batchBytes, 'batchBytes');
    positive(opts.segmentEvents, 'segmentEvents');
  }

  /** Loads what is on disk and starts shipping it. */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new BadParameterError('event spool: start() was already called');
    const dir = this.opts.dir;
    await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
    try {
      const c = JSON.parse(await fs.promises.readFile(path.join(dir, CURSOR), 'utf8')) as { segment?: unknown; acked?: unknown };
      if (Number.isSafeInteger(c.segment) && Number.isSafeInteger(c.acked)) this.cursor = { segment: c.segment as number, acked: c.acked as number };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn('the event spool cursor is unreadable; re-sending from the oldest segment', { error: err });
    }
    const ids = (await fs.promises.readdir(dir))
      .map((f) => SEGMENT_RE.exec(f))
      .filter((m): m is RegExpExecArray => !!m)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    for (const id of ids) {
      if (id < this.cursor.segment) await fs.promises.rm(path.join(dir, segmentName(id)), { force: true });
      else this.segments.push({ id, sealed: true });
    }
    this.nextId = Math.max(this.cursor.segment, (ids[ids.length - 1] ?? 0) + 1);
    const oldest = this.segments[0];
    if (oldest && oldest.id !== this.cursor.segment) this.cursor = { segment: oldest.id, acked: 0 };
    this.state = 'started';
    if (this.segments.length) this.log.info('resuming the delivery of spooled audit events', { segments: this.segments.length });
    void this.ship();
  }

  /** Completes the event (uid, time, code), writes it durably and queues it; resolves with the event as it will be delivered. */
  emit(fields: EventFields): Promise<EventFields> {
    if (this.state !== 'started') return Promise.reject(new BadParameterError(`event spool in ${this.opts.dir} is ${this.state === 'new' ? 'not started' : 'closed'}`));
    let event: EventFields;
    try {
      event = completeEvent(fields);
    } catch (err) {
      return Promise.reject(err);
    }
    const line = JSON.stringify(event) + '\n';
    if (Buffer.byteLength(line) > MAX_EVENT_BYTES) {
      return Promise.reject(new BadParameterError(`audit event "${event.event}" is larger than ${MAX_EVENT_BYTES} bytes`));
    }
    return new Promise<EventFields>((resolve, reject) => {
      this.pending.push({ event, line, resolve, reject });
      if (!this.writing) {
        this.writing = true;
        void this.locked(() => this.writePending());
      }
    });
  }

  /** Resolves when every event emitted before the call has been acknowledged by the auth service. */
  async flush(): Promise<void> {
    await this.locked(async () => undefined);
    if (this.state === 'closed') throw new BadParameterError(`event spool in ${this.opts.dir} is closed`);
    const last = this.segments[this.segments.length - 1];
    if (!last) return;
    const target = { segment: last.id, index: last.sealed && !last.events ? Number.MAX_SAFE_INTEGER : (last.events?.length ?? 0) };
    if (this.reached(target)) return;
    await new Promise<void>((resolve, reject) => this.waiters.push({ target, resolve, reject }));
  }

  /**
   * How many events wait for the auth service: emitted and not acknowledged yet (for the
   * `audit_events_queued` metric). Segments an earlier run left are read to count them.
   */
  async queued(): Promise<number> {
    let n = this.pending.length;
    for (const seg of [...this.segments]) {
      if (!seg.events && seg.count === undefined) {
        // Counted, not kept: a backlog of segments stays on disk, not in memory.
        const file = path.join(this.opts.dir, segmentName(seg.id));
        const text = await fs.promises.readFile(file, 'utf8').catch(() => undefined); // acknowledged and removed meanwhile
        if (text === undefined) continue;
        seg.count = parseSegment(text, this.log, file).length;
      }
      n += Math.max(0, (seg.events?.length ?? seg.count ?? 0) - (this.cursor.segment === seg.id ? this.cursor.acked : 0));
    }
    return n;
  }

  /** Stops shipping and closes the files. What was not acknowledged stays on disk for the next start. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    const wasStarted = this.state === 'started';
    this.state = 'closed';
    this.signal();
    if (wasStarted) {
      await this.locked(async () => {
        this.filesClosed = true;
        if (this.active) await this.active.fh.close();
        this.active = undefined;
      });
    }
    const err = new BadParameterError(`event spool in ${this.opts.dir} was closed before its events were delivered`);
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.io.then(fn);
    this.io = run.catch(() => undefined);
    return run;
  }

  private reached(t: Position): boolean {
    return this.cursor.segment > t.segment || (this.cursor.segment === t.segment && this.cursor.acked >= t.index);
  }

  private settleWaiters(): void {
    this.waiters = this.waiters.filter((w) => {
      if (!this.reached(w.target)) return true;
      w.resolve();
      return false;
    });
  }

  private async openActive(): Promise<NonNullable<EventSpool['active']>> {
    if (this.active) return this.active;
    const seg: Segment = { id: this.nextId++, events: [], sealed: false };
    const fh = await fs.promises.open(path.join(this.opts.dir, segmentName(seg.id)), 'wx', 0o600);
    this.segments.push(seg);
    this.active = { seg, fh, size: 0 };
    await syncDir(this.opts.dir);
    return this.active;
  }

  private async seal(): Promise<void> {
    const act = this.active;
    if (!act) return;
    this.active = undefined;
    act.seg.sealed = true;
    if (this.segments[0] !== act.seg) act.seg.events = undefined;
    await act.fh.close().catch(() => undefined);
  }

  /** Group commit: everything emitted while the previous write was in flight goes in one write and one fsync. */
  private async writePending(): Promise<void> {
    try {
      while (this.pending.length && !this.filesClosed) {
        const perSegment = this.opts.segmentEvents ?? 1000;
        let act: NonNullable<EventSpool['active']> | undefined;
        try {
          act = await this.openActive();
        } catch (err) {
          for (const p of this.pending.splice(0)) p.reject(err);
          continue;
        }
        const group = this.pending.splice(0, perSegment - act.seg.events!.length);
        const data = Buffer.from(group.map((p) => p.line).join(''));
        try {
          let off = 0;
          while (off < data.length) off += (await act.fh.write(data, off, data.length - off, act.size + off)).bytesWritten;
          await act.fh.datasync();
        } catch (err) {
          // Leave no partial line behind, so the file holds exactly the events that were acknowledged to emit;
          // a segment that cannot be cut back is not written to again (its torn tail is dropped when read).
          const cut = await act.fh.truncate(act.size).then(
            () => true,
            () => false,
          );
          if (!cut) await this.seal();
          for (const p of group) p.reject(err);
          continue;
        }
        act.size += data.length;
        act.seg.events!.push(...group.map((p) => p.event));
        if (act.seg.events!.length >= perSegment) await this.seal();
        for (const p of group) p.resolve(p.event);
        this.signal();
      }
      const closed = new BadParameterError(`event spool in ${this.opts.dir} is closed`);
      for (const p of this.pending.splice(0)) p.reject(closed);
    } finally {
      this.writing = false;
    }
  }

  /** The next events to send from the oldest segment; drops segments that are fully acknowledged. */
  private async nextBatch(): Promise<EventFields[]> {
    for (;;) {
      const seg = this.segments[0];
      if (!seg) return [];
      if (!seg.events) {
        const file = path.join(this.opts.dir, segmentName(seg.id));
        seg.events = parseSegment(await fs.promises.readFile(file, 'utf8'), this.log, file);
      }
      const start = this.cursor.segment === seg.id ? this.cursor.acked : 0;
      if (start >= seg.events.length) {
        if (!seg.sealed) return [];
        await this.dropOldest();
        continue;
      }
      const maxEvents = this.opts.batchSize ?? 100;
      const maxBytes = this.opts.batchBytes ?? 512 * 1024;
      const batch: EventFields[] = [];
      let bytes = 0;
      for (let i = start; i < seg.events.length && batch.length < maxEvents; i++) {
        const size = JSON.stringify(seg.events[i]).length;
        if (batch.length && bytes + size > maxBytes) break;
        batch.push(seg.events[i]);
        bytes += size;
      }
      return batch;
    }
  }

  private async ack(n: number): Promise<void> {
    const seg = this.segments[0];
    const acked = (this.cursor.segment === seg.id ? this.cursor.acked : 0) + n;
    this.cursor = { segment: seg.id, acked };
    if (seg.sealed && acked >= seg.events!.length) await this.dropOldest();
    else await this.writeCursor();
  }

  private async dropOldest(): Promise<void> {
    const seg = this.segments.shift()!;
    this.cursor = { segment: this.segments[0]?.id ?? this.nextId, acked: 0 };
    await this.writeCursor();
    await fs.promises.rm(path.join(this.opts.dir, segmentName(seg.id)), { force: true });
  }

  private async writeCursor(): Promise<void> {
    const tmp = path.join(this.opts.dir, CURSOR + '.tmp');
    const fh = await fs.promises.open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify(this.cursor));
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await fs.promises.rename(tmp, path.join(this.opts.dir, CURSOR));
    await syncDir(this.opts.dir);
  }

  private signal(): void {
    if (this.wake) this.wake();
    else this.kicked = true;
  }

  private waitForWake(ms?: number): Promise<void> {
    if (this.kicked) {
      this.kicked = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(done, ms);
      timer?.unref();
      const self = this;
      function done() {
        if (timer) clearTimeout(timer);
        if (self.wake === done) self.wake = undefined;
        resolve();
      }
      this.wake = done;
    });
  }

  private delayFor(attempt: number): number {
    const initial = this.opts.backoff?.initialMs ?? 250;
    const max = this.opts.backoff?.maxMs ?? 30_000;
    const d = Math.min(max, initial * 2 ** Math.min(attempt - 1, 30));
    return d / 2 + Math.random() * (d / 2);
  }

  private async ship(): Promise<void> {
    let failures = 0;
    let readFailures = 0;
    while (this.state === 'started') {
      let batch: EventFields[];
      try {
        batch = await this.locked(() => this.nextBatch());
      } catch (err) {
        // Once per outage (e.g. a full disk refuses the cursor), not once per retry.
        (readFailures++ === 0 ? this.log.error : this.log.debug)('cannot read the event spool', { dir: this.opts.dir, error: err });
        await this.waitForWake(this.delayFor(readFailures));
        continue;
      }
      readFailures = 0;
      if (!batch.length) {
        await this.waitForWake();
        continue;
      }
      try {
        await this.opts.send(batch);
      } catch (error) {
        if (this.state !== 'started') return;
        const delayMs = this.delayFor(++failures);
        this.opts.onRetry?.({ attempt: failures, delayMs, error });
        const log = failures === 1 || failures % 10 === 0 ? this.log.warn : this.log.debug;
        log('cannot deliver audit events; will retry', { events: batch.length, attempt: failures, retry_in_ms: Math.round(delayMs), error: error instanceof ConnectionProblemError ? error.message : error });
        await this.sleep(delayMs);
        continue;
      }
      if (this.state !== 'started') return;
      failures = 0;
      try {
        await this.locked(() => this.ack(batch.length));
      } catch (err) {
        this.log.error('cannot record delivered audit events; they may be sent again', { dir: this.opts.dir, error: err });
      }
      this.settleWaiters();
    }
  }

  /** Waits out a backoff; new events do not cut it short, close does. */
  private async sleep(ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (this.state === 'started' && Date.now() < until) await this.waitForWake(until - Date.now());
  }
}

/** A `send` for the spool: delivers batches to the auth service, which drops events whose uid it already has. */
export function auditEventSender(client: Pick<AuthClient, 'post'>): (events: EventFields[]) => Promise<void> {
  return async (events) => {
    await client.post('/v1/events/batch', { events });
  };
}
