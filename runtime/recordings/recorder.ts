/**
 * Records one interactive session on the node, to local disk first: the PTY
 * output goes to `<sid>.session.bytes` and a `print` event per chunk (plus
 * the session's own events) to `<sid>.session.log`, as JSON lines. Each chunk
 * is written as it arrives, so killing the process loses nothing already
 * written; the files are fsynced about every second and on close, when
 * `<sid>.completed` marks the recording ready for upload.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { completeEvent, EventFields } from '../events/filelog';
import { AlreadyExistsError, BadParameterError } from '../utils/errors';
import { checkSessionId, DEFAULT_NAMESPACE } from './limits';

export interface RecordingFiles {
  readonly bytes: string;
  readonly log: string;
  readonly completed: string;
}

export function recordingFiles(dir: string, sid: string): RecordingFiles {
  return {
    bytes: path.join(dir, `${sid}.session.bytes`),
    log: path.join(dir, `${sid}.session.log`),
    completed: path.join(dir, `${sid}.completed`),
  };
}

/** Recordings being written by this process (or by one of its node's connection workers), keyed by directory and session ID. */
const live = new Set<string>();
const liveKey = (dir: string, sid: string) => path.join(path.resolve(dir), sid);

/** Whether a recorder of this process is still writing the recording (the uploader leaves it alone). */
export function isRecording(dir: string, sid: string): boolean {
  return live.has(liveKey(dir, sid));
}

/**
 * Marks recording `sid` in `dir` as being written by another process of this node (a connection
 * worker), so that this process's uploader leaves it alone until the returned release is called
 * (the recording is complete, or its writer died: then it is uploaded as an interrupted one).
 */
export function holdRecording(dir: string, sid: string): () => void {
  const key = liveKey(dir, sid);
  if (live.has(key)) throw new AlreadyExistsError(`session ${sid} is already being recorded in ${dir}`);
  live.add(key);
  return () => live.delete(key);
}

export interface SessionRecorderOptions {
  /** The node's upload directory, `<data_dir>/log/upload/sessions/default`; made 0700 if missing. */
  readonly dir: string;
  /** The session ID (a UUID). */
  readonly sid: string;
  /** The host UUID of this node, put in session events that do not carry one. */
  readonly serverId: string;
  /** @default 'default' */
  readonly namespace?: string;
  /**
   * How often written data is fsynced.
   * @default 1000
   */
  readonly syncIntervalMs?: number;
}

/** A `print` event: `bytes` bytes of output at `offset` in the bytes file, `ms` after the recording started. */
export interface PrintEvent extends EventFields {
  event: 'print';
  bytes: number;
  ms: number;
  offset: number;
  ei: number;
  time: string;
}

function writeAll(fd: number, data: Buffer): void {
  let off = 0;
  while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off);
}

export class SessionRecorder {
  readonly sid: string;
  private readonly files: RecordingFiles;
  private readonly started = Date.now();
  private readonly bytesFd: number;
  private readonly logFd: number;
  private readonly timer: NodeJS.Timeout;
  private offset = 0;
  private ei = 0;
  private dirty = false;
  private syncing?: Promise<void>;
  private closing?: Promise<void>;

  constructor(private readonly opts: SessionRecorderOptions) {
    this.sid = checkSessionId(opts.sid);
    if (!opts.serverId) throw new BadParameterError('a session recorder needs the server ID of the node');
    this.files = recordingFiles(opts.dir, this.sid);
    const key = liveKey(opts.dir, this.sid);
    if (live.has(key)) throw new AlreadyExistsError(`session ${this.sid} is already being recorded in ${opts.dir}`);
    fs.mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    // Registered before the files exist, so the uploader never takes a recording that is being written.
    live.add(key);
    let bytesFd: number | undefined;
    try {
      bytesFd = fs.openSync(this.files.bytes, 'wx', 0o600);
      this.logFd = fs.openSync(this.files.log, 'wx', 0o600);
    } catch (err) {
      if (bytesFd !== undefined) {
        fs.closeSync(bytesFd);
        fs.rmSync(this.files.bytes, { force: true });
      }
      live.delete(key);
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new AlreadyExistsError(`a recording of session ${this.sid} already exists in ${opts.dir}`);
      throw err;
    }
    this.bytesFd = bytesFd;
    this.timer = setInterval(() => void this.sync(), opts.syncIntervalMs ?? 1000);
    this.timer.unref();
  }

  /** Bytes of output recorded so far. */
  get size(): number {
    return this.offset;
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** Appends a chunk of terminal output and its `print` event. */
  output(data: Buffer): PrintEvent | undefined {
    this.checkOpen();
    if (!data.length) return undefined;
    writeAll(this.bytesFd, data);
    const print: PrintEvent = {
      event: 'print',
      bytes: data.length,
      ms: Date.now() - this.started,
      offset: this.offset,
      ei: this.ei++,
      time: new Date().toISOString(),
    };
    this.offset += data.length;
    this.appendLog(print);
    return print;
  }

  /** Appends a session event (session.start, resize, session.end, ...) with the next event index. */
  event(fields: EventFields): EventFields {
    this.checkOpen();
    const e = completeEvent({
      namespace: this.opts.namespace ?? DEFAULT_NAMESPACE,
      server_id: this.opts.serverId,
      ...fields,
      sid: this.sid,
      ei: this.ei++,
      ms: Date.now() - this.started,
    });
    this.appendLog(e);
    return e;
  }

  /** Fsyncs, closes the files and writes `<sid>.completed`. Calling it again waits for the first call. */
  close(): Promise<void> {
    this.closing ??= this.finish();
    return this.closing;
  }

  /** Stops recording and deletes its files: for a session refused before it ran (e.g. the disk is full). */
  discard(): void {
    if (this.closing) return;
    this.closing = Promise.resolve();
    clearInterval(this.timer);
    for (const fd of [this.bytesFd, this.logFd]) {
      try {
        fs.closeSync(fd);
      } catch {
        /* already closed */
      }
    }
    for (const f of [this.files.bytes, this.files.log]) fs.rmSync(f, { force: true });
    live.delete(liveKey(this.opts.dir, this.sid));
  }

  private async finish(): Promise<void> {
    clearInterval(this.timer);
    try {
      await this.syncing;
      fs.fdatasyncSync(this.bytesFd);
      fs.fdatasyncSync(this.logFd);
      fs.closeSync(this.bytesFd);
      fs.closeSync(this.logFd);
      const fd = fs.openSync(this.files.completed, 'w', 0o600);
      try {
        writeAll(fd, Buffer.from(JSON.stringify({ sid: this.sid, bytes: this.offset, events: this.ei, completed: new Date().toISOString() }) + '\n'));
        fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      syncDir(this.opts.dir);
    } finally {
      live.delete(liveKey(this.opts.dir, this.sid));
    }
  }

  private appendLog(e: EventFields): void {
    writeAll(this.logFd, Buffer.from(JSON.stringify(e) + '\n'));
    this.dirty = true;
  }

  private checkOpen(): void {
    if (this.closing) throw new BadParameterError(`the recording of session ${this.sid} is closed`);
  }

  private sync(): Promise<void> {
    if (!this.dirty || this.syncing || this.closing) return Promise.resolve();
    this.dirty = false;
    const one = (fd: number) => new Promise<void>((resolve) => fs.fdatasync(fd, () => resolve()));
    this.syncing = Promise.all([one(this.bytesFd), one(this.logFd)]).then(() => {
      this.syncing = undefined;
    });
    return this.syncing;
  }
}

/** Makes the directory's entries (new and renamed files) durable. */
export function syncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
