/**
 * Ships the node's session recordings from its upload directory to the auth
 * service and deletes them locally only once the auth service has them.
 * It scans on start, every few seconds and when told a session ended. A
 * recording is uploaded when it is completed (`<sid>.completed`) or when no
 * recorder of this process is writing it, which is how a session cut short
 * by a crash or restart of the node still reaches the auth service. Uploads
 * go in parts of at most 5 MiB, each checked by SHA-256 when the recording is
 * completed; a failed upload is retried from the start with capped
 * exponential backoff (the auth service keeps the parts by number).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { AuthClient } from '../auth/client';
import { BadParameterError, isReason } from '../utils/errors';
import { Logger, logger } from '../utils/logger';
import { limitRepeats } from '../utils/logrepeats';
import { DEFAULT_NAMESPACE, MAX_PART_BYTES, MAX_PARTS, checkNamespace, checkPartNumber, checkSessionId } from './limits';
import { isRecording, recordingFiles, syncDir } from './recorder';
import { CompleteResult, PartRef, RecordingFile, sha256Hex } from './store';
import { exists } from '../utils/files';

/** Where recordings go: the auth API (`AuthRecordingTarget`), or a store directly. */
export interface RecordingTarget {
  putPart(sid: string, part: number, data: Buffer, namespace?: string): Promise<void>;
  complete(sid: string, parts: PartRef[], namespace?: string): Promise<CompleteResult>;
}

/** Uploads through the auth API (`PUT .../recording/parts/:n`, `POST .../recording/complete`). */
export class AuthRecordingTarget implements RecordingTarget {
  constructor(private readonly client: Pick<AuthClient, 'callRaw' | 'post'>) {}

  private base(sid: string, namespace = DEFAULT_NAMESPACE): string {
    return `/v1/namespaces/${encodeURIComponent(checkNamespace(namespace))}/sessions/${checkSessionId(sid)}/recording`;
  }

  async putPart(sid: string, part: number, data: Buffer, namespace?: string): Promise<void> {
    await this.client.callRaw('PUT', `${this.base(sid, namespace)}/parts/${checkPartNumber(part)}`, data);
  }

  complete(sid: string, parts: PartRef[], namespace?: string): Promise<CompleteResult> {
    return this.client.post<CompleteResult>(`${this.base(sid, namespace)}/complete`, { parts });
  }
}

export interface RecordingUploaderOptions {
  /** The upload directory, `<data_dir>/log/upload/sessions/default`. */
  readonly dir: string;
  /** Upload through this auth client (unless `target` is given). */
  readonly client?: AuthClient;
  readonly target?: RecordingTarget;
  /** @default 'default' */
  readonly namespace?: string;
  /** @default 5000 */
  readonly scanPeriodMs?: number;
  /** @default MAX_PART_BYTES (5 MiB, also the maximum) */
  readonly partSize?: number;
  /** Delay after the n-th failure of a recording: a random time in [d/2, d], d = min(maxMs, initialMs * 2^(n-1)). @default 1 s to 60 s */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  readonly log?: Logger;
}

const FILE_RE = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.(?:session\.bytes|session\.log|completed)$/;

/** Recordings being uploaded by some uploader of this process. */
const inFlight = new Set<string>();

export class RecordingUploader {
  private readonly target: RecordingTarget;
  private readonly log: Logger;
  private readonly failures = new Map<string, { count: number; retryAt: number }>();
  private state: 'new' | 'started' | 'closed' = 'new';
  private loop?: Promise<void>;
  private wake?: () => void;
  private kicked = false;
  private idleWaiters: { resolve(): void; reject(err: unknown): void }[] = [];

  constructor(private readonly opts: RecordingUploaderOptions) {
    if (opts.target) this.target = opts.target;
    else if (opts.client) this.target = new AuthRecordingTarget(opts.client);
    else throw new BadParameterError('a recording uploader needs an auth client or a target');
    const partSize = opts.partSize ?? MAX_PART_BYTES;
    if (!Number.isInteger(partSize) || partSize < 1 || partSize > MAX_PART_BYTES) {
      throw new BadParameterError(`recording uploader: partSize must be from 1 to ${MAX_PART_BYTES} bytes, got ${opts.partSize}`);
    }
    checkNamespace(opts.namespace ?? DEFAULT_NAMESPACE);
    // A scan that fails fails again on the next tick: once per interval with a count.
    this.log = limitRepeats(opts.log ?? logger('recordings:upload'));
  }

  /** Scans now and then every `scanPeriodMs`. */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new BadParameterError('recording uploader: start() was already called');
    await fs.promises.mkdir(this.opts.dir, { recursive: true, mode: 0o700 });
    this.state = 'started';
    this.loop = this.run();
  }

  /** Scans soon: a session ended (or anything else changed). */
  notify(): void {
    if (this.wake) this.wake();
    else this.kicked = true;
  }

  /** Resolves once a scan finds nothing left to upload except recordings still being written. */
  async flush(): Promise<void> {
    if (this.state !== 'started') throw new BadParameterError(`recording uploader for ${this.opts.dir} is not running`);
    await new Promise<void>((resolve, reject) => {
      this.idleWaiters.push({ resolve, reject });
      this.notify();
    });
  }

  /** Stops scanning; an upload in progress finishes its current request first. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.notify();
    await this.loop;
    const err = new BadParameterError(`recording uploader for ${this.opts.dir} was closed before everything was uploaded`);
    for (const w of this.idleWaiters.splice(0)) w.reject(err);
  }

  private async run(): Promise<void> {
    const period = this.opts.scanPeriodMs ?? 5000;
    while (this.state === 'started') {
      let waiting = 0;
      let nextRetry = Infinity;
      const waiters = this.idleWaiters.splice(0);
      try {
        for (const sid of await this.candidates()) {
          if (this.state !== 'started') break;
          const f = this.failures.get(sid);
          if (f && f.retryAt > Date.now()) {
            waiting++;
            nextRetry = Math.min(nextRetry, f.retryAt);
            continue;
          }
          if (!(await this.uploadOne(sid))) {
            waiting++;
            nextRetry = Math.min(nextRetry, this.failures.get(sid)?.retryAt ?? Infinity);
          }
        }
      } catch (err) {
        this.log.error('cannot scan the recordings upload directory', { dir: this.opts.dir, error: err });
        waiting++;
      }
      if (waiting || this.state !== 'started') this.idleWaiters.unshift(...waiters);
      else for (const w of waiters) w.resolve();
      await this.sleep(Math.max(0, Math.min(period, nextRetry - Date.now())));
    }
  }

  private sleep(ms: number): Promise<void> {
    if (this.kicked || this.state !== 'started') {
      this.kicked = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.wake = done;
    });
  }

  /** How many recordings wait to be uploaded (the one uploading now included); for `recording_uploads_pending`. */
  async pending(): Promise<number> {
    return (await this.waiting()).length;
  }

  /** Recordings not yet uploaded: completed, or left behind by a recorder that is no longer running. */
  private async waiting(): Promise<string[]> {
    const sids = new Set<string>();
    for (const f of await fs.promises.readdir(this.opts.dir)) {
      const m = FILE_RE.exec(f);
      if (m) sids.add(m[1]);
    }
    return [...sids].filter((sid) => !isRecording(this.opts.dir, sid)).sort();
  }

  /** Recordings ready to go: waiting, and not being uploaded by another uploader of this process. */
  private async candidates(): Promise<string[]> {
    return (await this.waiting()).filter((sid) => !inFlight.has(this.flightKey(sid)));
  }

  private flightKey(sid: string): string {
    return path.join(path.resolve(this.opts.dir), sid);
  }

  /** True when the recording is gone from this node (uploaded, or already on the auth service). */
  private async uploadOne(sid: string): Promise<boolean> {
    const key = this.flightKey(sid);
    inFlight.add(key);
    try {
      await this.upload(sid);
      this.failures.delete(sid);
      return true;
    } catch (err) {
      if (isReason(err, 'already_exists')) {
        this.log.info('the auth service already has this recording; removing the local copy', { sid });
        await this.remove(sid);
        this.failures.delete(sid);
        return true;
      }
      const count = (this.failures.get(sid)?.count ?? 0) + 1;
      const initial = this.opts.backoff?.initialMs ?? 1000;
      const d = Math.min(this.opts.backoff?.maxMs ?? 60_000, initial * 2 ** Math.min(count - 1, 30));
      const delay = d / 2 + Math.random() * (d / 2);
      this.failures.set(sid, { count, retryAt: Date.now() + delay });
      const level = count === 1 || count % 10 === 0 ? 'warn' : 'debug';
      this.log[level]('cannot upload a session recording; will retry', { sid, attempt: count, retry_in_ms: Math.round(delay), error: err });
      return false;
    } finally {
      inFlight.delete(key);
    }
  }

  private async upload(sid: string): Promise<void> {
    const files = recordingFiles(this.opts.dir, sid);
    const ns = this.opts.namespace ?? DEFAULT_NAMESPACE;
    const partSize = this.opts.partSize ?? MAX_PART_BYTES;
    const completed = await exists(files.completed);
    if (!(await exists(files.log)) && !(await exists(files.bytes))) {
      await this.remove(sid); // a marker left by a crash while removing an uploaded recording
      return;
    }
    const parts: PartRef[] = [];
    let part = 0;
    for (const [file, p] of [['log', files.log], ['bytes', files.bytes]] as [RecordingFile, string][]) {
      let fh: fs.promises.FileHandle;
      try {
        fh = await fs.promises.open(p, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      try {
        const size = (await fh.stat()).size;
        if (part + Math.ceil(size / partSize) > MAX_PARTS) throw new BadParameterError(`the recording of session ${sid} needs more than ${MAX_PARTS} parts`);
        for (let off = 0; off < size; off += partSize) {
          const data = Buffer.alloc(Math.min(partSize, size - off));
          let got = 0;
          while (got < data.length) {
            const { bytesRead } = await fh.read(data, got, data.length - got, off + got);
            if (!bytesRead) throw new BadParameterError(`${p} shrank while it was being uploaded`);
            got += bytesRead;
          }
          if (this.state === 'closed') throw new BadParameterError('the uploader was closed');
          part++;
          await this.target.putPart(sid, part, data, ns);
          parts.push({ part, file, size: data.length, sha256: sha256Hex(data) });
        }
      } finally {
        await fh.close();
      }
    }
    const res = await this.target.complete(sid, parts, ns);
    await this.remove(sid);
    this.log.info(completed ? 'uploaded a session recording' : 'uploaded the recording of an interrupted session', {
      sid,
      url: res.url,
      bytes: parts.filter((p) => p.file === 'bytes').reduce((n, p) => n + p.size, 0),
      parts: parts.length,
    });
  }

  private async remove(sid: string): Promise<void> {
    const files = recordingFiles(this.opts.dir, sid);
    for (const f of [files.bytes, files.log, files.completed]) await fs.promises.rm(f, { force: true });
    syncDir(this.opts.dir);
  }
}
