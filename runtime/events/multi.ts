/**
 * Several audit logs at once (`audit_events_uri` with more than one URI):
 * every event goes to each of them with the same uid and time, and is
 * acknowledged only once all have it; searches read the first one.
 */
import { AuditLog, completeEvent, EventFields, SearchQuery } from './filelog';

export class MultiAuditLog implements AuditLog {
  constructor(private readonly logs: AuditLog[]) {
    if (logs.length === 0) throw new Error('MultiAuditLog needs at least one log');
  }

  async emit(fields: EventFields): Promise<EventFields> {
    const event = completeEvent(fields);
    await Promise.all(this.logs.map((l) => l.emit(event)));
    return event;
  }

  search(q: SearchQuery): Promise<EventFields[]> {
    return this.logs[0].search(q);
  }

  async close(): Promise<void> {
    await Promise.all(this.logs.map((l) => l.close()));
  }
}
