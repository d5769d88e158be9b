/**
 * The file audit log: one JSON object per line, one file per UTC day named
 * `YYYY-MM-DD.00:00:00.log` under `<data_dir>/log` (the Admin Manual's
 * layout). Each event is written and fsynced before `emit` resolves, so an
 * acknowledged event survives a crash.
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BadParameterError } from '../utils/errors';
import { codeFor } from './codes';

export type EventFields = Record<string, unknown> & { event: string; uid?: string; code?: string; time?: string };

export interface SearchQuery {
  from: Date;
  to: Date;
  /** Only these event types; all when empty. */
  eventTypes?: string[];
  limit?: number;
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

export class FileAuditLog implements AuditLog {
  private fd?: number;
  private day?: string;

  constructor(private readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  async emit(fields: EventFields): Promise<EventFields> {
    const event = completeEvent(fields);
    const day = String(event.time).slice(0, 10);
    if (day !== this.day || this.fd === undefined) {
      if (this.fd !== undefined) fs.closeSync(this.fd);
      this.fd = fs.openSync(path.join(this.dir, `${day}.00:00:00.log`), 'a', 0o600);
      this.day = day;
    }
    fs.writeSync(this.fd, JSON.stringify(event) + '\n');
    fs.fdatasyncSync(this.fd);
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
    const types = new Set(q.eventTypes ?? []);
    const out: EventFields[] = [];
    for (const f of files) {
      for (const line of fs.readFileSync(path.join(this.dir, f), 'utf8').split('\n')) {
        if (!line) continue;
        let e: EventFields;
        try {
          e = JSON.parse(line) as EventFields;
        } catch {
          continue; // a torn last line after a crash
        }
        const t = new Date(String(e.time));
        if (t < q.from || t > q.to) continue;
        if (types.size && !types.has(e.event)) continue;
        out.push(e);
      }
    }
    out.sort((a, b) => String(a.time).localeCompare(String(b.time)));
    return q.limit ? out.slice(0, q.limit) : out;
  }

  async close(): Promise<void> {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}
