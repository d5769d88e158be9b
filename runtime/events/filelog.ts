/**
 * The file audit log: one JSON object per line, one file per UTC day named
 * `YYYY-MM-DD.00:00:00.log` under `<data_dir>/log` (the Admin Manual's
 * layout). Each event is written whole and fsynced before `emit` resolves, so an
 * acknowledged event survives a crash, and is stored once however often it is retried.
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BadParameterError, ConnectionProblemError } from '../utils/errors';
import { logger } from '../utils/logger';
import { codeFor } from './codes';

export type EventFields = Record<string, unknown> & { event: string; uid?: string; code?: string; time?: string };

export interface SearchQuery {
  from: Date;
  to: Date;
  /** Only these event types; all when empty. */
  eventTypes?: string[];
  /** Only events whose `user` is this one. */
  user?: string;
  limit?: number;
}

/** Whether an event passes a query's type and user filters (not its time range). */
export function matchesQuery(e: EventFields, q: Pick<SearchQuery, 'eventTypes' | 'user'>): boolean {
  if (q.eventTypes?.length && !q.eventTypes.includes(e.event)) return false;
  return q.user === undefined || e.user === q.user;
}

export interface AuditLog {
  emit(fields: EventFields): Promise<EventFields>;
  search(q: SearchQuery): Promise<EventFields[]>;
  close(): Promise<void>;
}

const FILE_RE = /^(\d{4}-\d{2}-\d{2})\.00:00:00\.log$/;
const DAY_MS = 86_400_000;

/** Fills in `uid`, `time` (RFC 3339, whole seconds) and `code` when missing (formats.md §6.1). */
export function completeEvent(fields: EventFields, now = new Date()): EventFields {
  if (typeof fields.event !== 'string' || !fields.event) throw new BadParameterError('an audit event needs an "event" field');
  const time = fields.time ?? new Date(Math.floor(now.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
  const code = fields.code ?? codeFor(fields.event, fields.success === false || fields.success === 'false');
  return { ...fields, uid: fields.uid ?? randomUUID(), time, ...(code ? { code } : {}) };
}

/**
 * The identity under which a log stores an event once: its `uid` from the origin, scoped by the
 * `server_id` the auth service stamped on it, so one host cannot suppress another's event by
 * sending its uid first (sessions-api.ts).
 */
export function eventIdentity(e: EventFields): string {
  return typeof e.server_id === 'string' && e.server_id ? `${String(e.uid)}@${e.server_id}` : String(e.uid);
}

/** What a file system error means for someone who cannot get an event recorded, e.g. "disk full". */
export function storageProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC') return 'disk full';
  if (code === 'EDQUOT') return 'disk quota exceeded';
  if (code === 'EROFS') return 'read-only file system';
  if (code === 'EIO') return 'I/O error';
  return err instanceof Error ? err.message : String(err);
}

/** The file operations the log uses; a test swaps `write` to inject a failing or short write. */
export interface FileLogIo {
  write(fd: number, data: Buffer, offset: number, length: number, position: number): number;
}

const realIo: FileLogIo = { write: (fd, data, offset, length, position) => fs.writeSync(fd, data, offset, length, position) };

/** Whole JSON lines of `text` and how many lines could not be parsed. */
function parseLines(text: string): { events: EventFields[]; damaged: number } {
  const events: EventFields[] = [];
  let damaged = 0;
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      const e = JSON.parse(line) as unknown;
      if (e && typeof e === 'object' && typeof (e as EventFields).event === 'string') events.push(e as EventFields);
      else damaged++;
    } catch {
      damaged++;
    }
  }
  return { events, damaged };
}

/**
 * Writes each event as one whole line at the end of the day's file and fsyncs it before `emit`
 * resolves. A failed or short write (a full disk) is cut back to the last whole record, so the file
 * never holds a partial line, and `emit` rejects; an event whose identity (`eventIdentity`) the
 * day's file already holds is not written again, so a retried delivery is stored once.
 */
export class FileAuditLog implements AuditLog {
  private readonly log = logger('events').child('file');
  private open?: { day: string; fd: number; size: number; ids: Set<string> };
  /** Why writes fail, while they do (logged once per outage). */
  private failing?: string;
  /** Files whose damaged lines were already reported. */
  private readonly reported = new Set<string>();

  constructor(
    private readonly dir: string,
    private readonly io: FileLogIo = realIo,
  ) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  async emit(fields: EventFields): Promise<EventFields> {
    const event = completeEvent(fields);
    const file = this.fileFor(String(event.time).slice(0, 10));
    const id = eventIdentity(event);
    if (file.ids.has(id)) return event;
    const data = Buffer.from(JSON.stringify(event) + '\n');
    try {
      for (let off = 0; off < data.length; ) off += this.io.write(file.fd, data, off, data.length - off, file.size + off);
      fs.fdatasyncSync(file.fd);
    } catch (err) {
      this.rollback(file);
      const reason = storageProblem(err);
      if (this.failing === undefined) this.log.error('cannot write the audit log; events are refused until it can be written', { dir: this.dir, reason });
      this.failing = reason;
      throw new ConnectionProblemError(`cannot write the audit log in ${this.dir}: ${reason}`, { cause: err });
    }
    file.size += data.length;
    file.ids.add(id);
    if (this.failing !== undefined) {
      this.log.info('the audit log is written again', { dir: this.dir, was: this.failing });
      this.failing = undefined;
    }
    return event;
  }

  async search(q: SearchQuery): Promise<EventFields[]> {
    const fromDay = new Date(Math.floor(q.from.getTime() / DAY_MS) * DAY_MS);
    const files = fs
      .readdirSync(this.dir)
      .map((f) => FILE_RE.exec(f))
      .filter((m): m is RegExpExecArray => !!m)
      .filter((m) => {
        const d = new Date(m[1] + 'T00:00:00Z');
        return d >= fromDay && d <= q.to;
      })
      .map((m) => m[0])
      .sort();
    const out: EventFields[] = [];
    for (const f of files) {
      for (const e of this.read(path.join(this.dir, f))) {
        const t = new Date(String(e.time));
        if (t < q.from || t > q.to || !matchesQuery(e, q)) continue;
        out.push(e);
      }
    }
    out.sort((a, b) => String(a.time).localeCompare(String(b.time)));
    return q.limit ? out.slice(0, q.limit) : out;
  }

  async close(): Promise<void> {
    if (this.open) fs.closeSync(this.open.fd);
    this.open = undefined;
  }

  /** The events of a file; damaged lines are skipped and reported once per file. */
  private read(file: string, text = fs.readFileSync(file, 'utf8')): EventFields[] {
    const { events, damaged } = parseLines(text);
    if (damaged && !this.reported.has(file)) {
      this.reported.add(file);
      this.log.warn('skipping damaged lines of an audit log file', { file, lines: damaged });
    }
    return events;
  }

  /** The day's file, open for appending; a torn last line (a crash mid-write, never acknowledged) is cut off. */
  private fileFor(day: string): NonNullable<FileAuditLog['open']> {
    if (this.open?.day === day) return this.open;
    const name = path.join(this.dir, `${day}.00:00:00.log`);
    const fd = fs.openSync(name, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    try {
      const text = fs.readFileSync(fd, 'utf8');
      const whole = text.lastIndexOf('\n') + 1;
      const size = Buffer.byteLength(text.slice(0, whole));
      if (size !== Buffer.byteLength(text)) {
        fs.ftruncateSync(fd, size);
        this.log.warn('cut off a torn last line of an audit log file', { file: name });
      }
      const ids = new Set(this.read(name, text.slice(0, whole)).map(eventIdentity));
      if (this.open) fs.closeSync(this.open.fd);
      this.open = { day, fd, size, ids };
      return this.open;
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  /** Cuts the file back to its last whole record after a failed write; if even that fails, the file is reopened (and checked) next time. */
  private rollback(file: NonNullable<FileAuditLog['open']>): void {
    try {
      fs.ftruncateSync(file.fd, file.size);
    } catch (err) {
      this.log.error('cannot cut a failed write off the audit log; the file is checked again on the next write', { error: err });
      fs.closeSync(file.fd);
      this.open = undefined;
    }
  }
}
