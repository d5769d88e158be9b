/**
 * Whether the node may start what it cannot audit (`ssh_service.audit_failure`). With `refuse`
 * (the default) a session starts only once the event that records it is durable in the spool
 * (`emitDurable`) or, for a command whose `exec` event is written when it ends, once the spool's
 * disk has room for it (`ready`); otherwise the session is refused with AuditUnavailableError,
 * whose message is what the user is told. With `continue` the failure is logged and the session runs.
 *
 * The operator sees one error line when events stop being recorded and one info line when they are
 * recorded again, not one per event or retry.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { EventFields } from '../events/filelog';
import { storageProblem } from '../events/filelog';
import { MAX_EVENT_BYTES } from '../events/spool';
import { ConnectionProblemError } from '../utils/errors';
import { Logger } from '../utils/logger';

export type AuditFailureMode = 'refuse' | 'continue';

/** A session refused because it could not be audited; the message is for the user. */
export class AuditUnavailableError extends ConnectionProblemError {
  constructor(readonly problem: string) {
    super(`session refused: the node cannot record audit events (${problem})`);
  }
}

export interface AuditGateOptions {
  /** Writes an event durably (the node's EventSpool). */
  readonly write: (fields: EventFields) => Promise<EventFields>;
  /** The directory events are spooled in; its file system must have room for `minFreeBytes`. */
  readonly dir: string;
  readonly mode: AuditFailureMode;
  /** @default MAX_EVENT_BYTES (room for the largest event) */
  readonly minFreeBytes?: number;
  readonly log: Logger;
}

export class AuditGate {
  /** Why events cannot be recorded, while they cannot. */
  private down?: string;

  constructor(private readonly opts: AuditGateOptions) {}

  /** Records an event without waiting; a failure is logged (once per outage). */
  emit(fields: EventFields): void {
    this.opts.write(fields).then(
      () => this.recovered(),
      (err) => this.failed(err, fields.event),
    );
  }

  /** Records an event durably; AuditUnavailableError (with `refuse`) when it cannot be. */
  async emitDurable(fields: EventFields): Promise<void> {
    try {
      await this.opts.write(fields);
    } catch (err) {
      return this.refuse(err, fields.event);
    }
    this.recovered();
  }

  /**
   * AuditUnavailableError (with `refuse`) unless the spool's disk has room for an event. While
   * writes are failing, free space is not trusted (a quota, a read-only remount): an event's worth
   * of bytes is written, synced and deleted first.
   */
  async ready(what: string): Promise<void> {
    const need = this.opts.minFreeBytes ?? MAX_EVENT_BYTES;
    let free: number;
    try {
      const st = await fs.promises.statfs(this.opts.dir);
      free = st.bavail * st.bsize;
    } catch (err) {
      return this.refuse(err, what);
    }
    if (free < need) return this.refuse(Object.assign(new Error(`${free} bytes free in ${this.opts.dir}`), { code: 'ENOSPC' }), what);
    if (this.down === undefined) return;
    try {
      await this.probe(need);
    } catch (err) {
      return this.refuse(err, what);
    }
    this.recovered();
  }

  private async probe(bytes: number): Promise<void> {
    const file = path.join(this.opts.dir, '.probe');
    try {
      const fh = await fs.promises.open(file, 'w', 0o600);
      try {
        await fh.write(Buffer.alloc(bytes));
        await fh.datasync();
      } finally {
        await fh.close();
      }
    } finally {
      await fs.promises.rm(file, { force: true });
    }
  }

  /**
   * What could not be written (an event, a recording) stops the session (`refuse`: throws
   * AuditUnavailableError) or is logged and let go (`continue`).
   */
  refuse(err: unknown, what: string): void {
    const reason = this.failed(err, what);
    if (this.opts.mode === 'refuse') throw new AuditUnavailableError(reason);
  }

  /** Logs the first failure of an outage as an error, later ones at debug; returns the reason. */
  private failed(err: unknown, what: string): string {
    const reason = storageProblem(err);
    const fields = { reason, what, audit_failure: this.opts.mode, dir: this.opts.dir };
    if (this.down === undefined) {
      this.opts.log.error(
        this.opts.mode === 'refuse'
          ? 'cannot record audit events; refusing sessions until they can be recorded'
          : 'cannot record audit events; sessions run unaudited (audit_failure: continue)',
        fields,
      );
    } else this.opts.log.debug('cannot record an audit event', fields);
    this.down = reason;
    return reason;
  }

  private recovered(): void {
    if (this.down === undefined) return;
    this.opts.log.info('audit events are recorded again', { was: this.down });
    this.down = undefined;
  }
}
