/**
 * Where a service that runs SSH sessions (a node, or a proxy in recording
 * mode) puts what it audits: events spooled to local disk and shipped to the
 * auth server (spool.ts), gated by `ssh_service.audit_failure`
 * (node/auditgate.ts), and session recordings written under
 * `<dir>/sessions/default` and uploaded by the RecordingUploader.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { AuthClient } from '../auth/client';
import { AuditGate, type AuditFailureMode } from '../node/auditgate';
import type { SessionRecording } from '../node/session';
import { SessionRecorder } from '../recordings/recorder';
import { RecordingUploader } from '../recordings/uploader';
import { auditEventsQueued, recordingUploadsPending } from '../service/metrics';
import type { Closers } from '../utils/closers';
import { Logger } from '../utils/logger';
import type { EventFields } from './filelog';
import { auditEventSender, EventSpool } from './spool';
import { claimSpoolDir } from './spooldir';

/**
 * Writes to a session's recording. When that fails the recording is closed and `audit_failure`
 * decides: `continue` returns undefined (the session goes on unrecorded), `refuse` throws
 * AuditUnavailableError (the caller ends the session; what was not recorded is not shown).
 */
export function writeRecording(recording: SessionRecording, audit: AuditGate, write: (r: SessionRecording) => void): SessionRecording | undefined {
  try {
    write(recording);
    return recording;
  } catch (err) {
    void recording.close().catch(() => undefined);
    audit.refuse(err, 'recording');
    return undefined;
  }
}

/** What the user is told when a session ends because its recording could not be written. */
export const recordingEndedMessage = (refusal: Error) => `session ended: ${refusal.message.replace(/^session refused: /, '')}`;

/** A recording that keeps nothing (`session_recording` is not this service's to do). */
export const NO_RECORDING: SessionRecording = { output: () => undefined, event: () => undefined, close: async () => undefined, discard: () => undefined };

export interface SessionSink {
  readonly audit: AuditGate;
  /** Writes an event durably to the spool (what `audit` gates). */
  write(fields: EventFields): Promise<EventFields>;
  /** The spool's directory (its disk is what `audit_failure` watches). */
  readonly spoolDir: string;
  /** Where recordings are written, `<dir>/sessions/default`. */
  readonly sessionsDir: string;
  /** A recording written by another process (a connection worker) is complete: it is uploaded. */
  recorded(): void;
  /** Starts recording session `sid`; `serverId` goes in its events that do not name one. */
  record(sid: string, serverId: string): SessionRecording;
  /** Waits until every event emitted so far has reached the auth server. */
  flush(): Promise<void>;
}

export interface SessionSinkOptions {
  client: AuthClient;
  /** The upload directory, e.g. `<data_dir>/log/upload`: events in `events/`, recordings in `sessions/default/`. */
  dir: string;
  auditFailure: AuditFailureMode;
  log: Logger;
  /** What is opened here is closed with these. */
  opened: Closers;
}

export async function startSessionSink(opts: SessionSinkOptions): Promise<SessionSink> {
  const { client, log, opened } = opts;
  // One process per spool directory: during a USR2 handover the new process spools beside the old one's.
  const spoolDir = claimSpoolDir(path.join(opts.dir, 'events'));
  opened.add(() => spoolDir.release());
  const send = auditEventSender(client);
  const spool = new EventSpool({ dir: spoolDir.dir, send, log: log.child('events') });
  opened.add(() => spool.close());
  await spool.start();
  opened.add(auditEventsQueued.track(() => spool.queued()));
  for (const dir of spoolDir.orphans) {
    // A spool left by a process that is gone: its events are delivered, then it is removed.
    const left = new EventSpool({ dir, send, log: log.child('events') });
    opened.add(() => left.close());
    await left.start();
    void left
      .flush()
      .then(() => left.close())
      .then(() => fs.promises.rm(dir, { recursive: true, force: true }))
      .then(
        () => log.info('delivered the audit events a previous process left', { dir }),
        (err) => log.warn('cannot deliver the audit events a previous process left yet; they stay for the next start', { dir, error: (err as Error).message }),
      );
  }
  const audit = new AuditGate({ write: (e) => spool.emit(e), dir: spoolDir.dir, mode: opts.auditFailure, log: log.child('audit') });
  const sessionsDir = path.join(opts.dir, 'sessions', 'default');
  const uploader = new RecordingUploader({ dir: sessionsDir, client, log: log.child('upload') });
  opened.add(() => uploader.close());
  await uploader.start();
  opened.add(recordingUploadsPending.track(() => uploader.pending()));
  return {
    audit,
    write: (e) => spool.emit(e),
    spoolDir: spoolDir.dir,
    sessionsDir,
    recorded: () => uploader.notify(),
    record: (sid, serverId) => recordIn(sessionsDir, sid, serverId, () => uploader.notify()),
    flush: () => spool.flush(),
  };
}

/** Records session `sid` in `dir` (a sink's `sessionsDir`); `closed` is called once it is complete, to upload it. */
export function recordIn(dir: string, sid: string, serverId: string, closed: () => void): SessionRecording {
  const rec = new SessionRecorder({ dir, sid, serverId });
  return {
    output: (d) => rec.output(d),
    event: (f) => rec.event(f),
    close: async () => {
      await rec.close();
      closed();
    },
    discard: () => rec.discard(),
  };
}
