/**
 * Session recordings in S3 (`audit_sessions_uri: s3://<bucket>/<prefix>`).
 *
 * A recording is two objects under `<prefix>/<namespace>/`:
 *
 * - `<sid>.recording`: the log's and the bytes file's content, in *segments*
 *   (the node's parts, not necessarily in file order);
 * - `<sid>.index.json`: where each file's segments lie in that object, the
 *   sizes, and event checkpoints (log offsets with the largest `ei` before
 *   them). Written last: a recording exists exactly when its index does.
 *
 * Playback reads ranges: `stream()` is one or two ranged GetObjects of the
 * bytes' segments; `events()` starts at the checkpoint before `after` and
 * reads the log in 1 MiB ranges until it has `limit` events.
 *
 * Upload: S3 wants every multipart part but the last to be at least 5 MiB,
 * and a node part's file (log or bytes) is only known at `complete`. So a
 * full part (exactly MAX_PART_BYTES, the uploader's usual size) becomes S3
 * part `n` of the recording's multipart upload at once; a smaller part (the
 * tail of a file, or every part of an uploader with a smaller part size) is
 * staged on local disk and, at `complete`, goes after the full parts as
 * S3 parts 8193 and up. The index then says which ranges are the log and
 * which the bytes. A journal on local disk (`<staging>/<ns>/<sid>/`: the
 * upload ID and each part's size, SHA-256 and ETag) lets a restarted auth
 * server check and complete an upload that was in progress; re-sending a
 * part replaces it in S3 and in the journal.
 *
 * `completeAbandoned()` (run every 10 minutes by `startCompleter`) aborts
 * multipart uploads and removes local staging older than a grace period
 * (24 h): the node still has such a recording and sends it again.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { z } from 'zod';
import { EventFields } from '../events/filelog';
import { AlreadyExistsError, BadParameterError, ConnectionProblemError, LimitExceededError, NotFoundError, TeleportError } from '../utils/errors';
import { Logger, logger } from '../utils/logger';
import { checkNamespace, checkPartNumber, checkSessionId, DEFAULT_NAMESPACE, MAX_PART_BYTES, MAX_PARTS } from './limits';
import { syncDir } from './recorder';
import {
  checkEventsQuery,
  checkPartList,
  checkStreamRange,
  CompleteResult,
  EventsQuery,
  KeyedLock,
  PartRef,
  RecordingFile,
  RecordingStore,
  sha256Hex,
  writeFileDurably,
} from './store';

/** S3's smallest multipart part (all but the last). A node part this big goes to S3 at once. */
export const S3_MIN_PART_BYTES = 5 * 1024 * 1024;
/** S3's largest part number. */
const S3_MAX_PART_NUMBER = 10_000;
/** The parts built from staged small parts are numbered from here, after every node part. */
export const TAIL_FIRST_PART = MAX_PARTS + 1;
/** Staged small parts are sent in S3 parts of this size (more when there is a lot of them). */
const TAIL_PART_BYTES = 16 * 1024 * 1024;
/** `events()` reads the log in ranges of this size. */
const EVENTS_READ_BYTES = 1024 * 1024;
/** `complete` reads the log in ranges of this size to place the checkpoints. */
const CHECKPOINT_READ_BYTES = 8 * 1024 * 1024;
/** How many indexes are kept in memory (an index never changes once written). */
const INDEX_CACHE_SIZE = 256;
export const DEFAULT_CHECKPOINT_BYTES = 1024 * 1024;
/** `defaults.UploadGracePeriod`. */
export const DEFAULT_UPLOAD_GRACE_MS = 24 * 3600_000;
/** `LowResPollingPeriod`. */
export const DEFAULT_COMPLETER_PERIOD_MS = 10 * 60_000;
export const DEFAULT_S3_MAX_ATTEMPTS = 5;

/** `aws:kms` (the default, with the account's `aws/s3` key unless `kmsKeyId` is given), `AES256` (SSE-S3), or none. */
export type S3Encryption = 'aws:kms' | 'AES256' | 'off';

export interface S3RecordingStoreOptions {
  bucket: string;
  /** Key prefix without leading or trailing slashes; '' for the bucket's root. */
  prefix?: string;
  region?: string;
  /** An S3-compatible endpoint URL; implies path-style addressing and checksums only when required. */
  endpoint?: string;
  /** @default 'aws:kms' */
  sse?: S3Encryption;
  /** SSEKMSKeyId (key ID, ARN or alias) with `aws:kms`. */
  kmsKeyId?: string;
  /** Where small parts and the upload journal wait on local disk (`<data_dir>/log/s3-staging`); made 0700. */
  stagingDir: string;
  /** Static credentials (tests); otherwise the SDK's default chain (environment, instance role...). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Attempts per S3 request, with the SDK's standard retry strategy (exponential backoff with jitter on throttling, 5xx and network errors). @default 5 */
  maxAttempts?: number;
  /** A checkpoint at least every this many bytes of log. @default 1 MiB */
  checkpointBytes?: number;
  log?: Logger;
}

export interface CompleterReport {
  /** Multipart uploads aborted: `key` and `uploadId`. */
  aborted: { key: string; uploadId: string }[];
  /** Recordings (`<ns>/<sid>`) whose local staging was removed. */
  removedStaging: string[];
}

const partRecordSchema = z
  .object({
    part: z.number().int().min(1).max(MAX_PARTS),
    size: z.number().int().min(0).max(MAX_PART_BYTES),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    where: z.enum(['s3', 'local']),
    etag: z.string().min(1).optional(),
    uploadId: z.string().min(1).optional(),
  })
  .strict();
type PartRecord = z.infer<typeof partRecordSchema>;

const uploadRecordSchema = z.object({ uploadId: z.string().min(1), key: z.string().min(1), created: z.string() }).strict();
type UploadRecord = z.infer<typeof uploadRecordSchema>;

const segmentsSchema = z.array(z.tuple([z.number().int().min(0), z.number().int().min(1)]));
const indexSchema = z
  .object({
    version: z.literal(1),
    sid: z.string(),
    namespace: z.string(),
    size: z.number().int().min(0),
    log: z.object({ size: z.number().int().min(0), segments: segmentsSchema }).strict(),
    bytes: z.object({ size: z.number().int().min(0), segments: segmentsSchema }).strict(),
    /** `[logOffset, largest ei before it]`, offsets ascending, each at a line start. */
    checkpoints: z.array(z.tuple([z.number().int().min(0), z.number()])),
  })
  .strict();
/** The `<sid>.index.json` object. */
export type RecordingIndex = z.infer<typeof indexSchema>;
type FileLayout = RecordingIndex['log'];

interface Ref {
  sid: string;
  ns: string;
  lockKey: string;
  dataKey: string;
  indexKey: string;
  staging: string;
}

const PART_FILE_RE = /^part-(\d{5})\.json$/;
const DATA_KEY_RE = /^([a-z0-9][a-z0-9_-]{0,63})\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.recording$/;

function errorName(err: unknown): string {
  const e = err as { name?: string; Code?: string };
  return e?.Code ?? e?.name ?? 'Error';
}

function isMissing(err: unknown): boolean {
  const name = errorName(err);
  return name === 'NoSuchKey' || name === 'NotFound' || (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode === 404;
}

/** The upload is gone (aborted, or completed elsewhere) or its parts no longer match what the journal says. */
function isLostUpload(err: unknown): boolean {
  return ['NoSuchUpload', 'InvalidPart', 'InvalidPartOrder'].includes(errorName(err));
}

function partName(part: number): string {
  return `part-${String(part).padStart(5, '0')}`;
}

async function readJson(file: string): Promise<unknown | undefined> {
  try {
    return JSON.parse(await fs.promises.readFile(file, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (err instanceof SyntaxError) return undefined; // torn by a crash: as if never written
    throw err;
  }
}

async function writeJsonDurably(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFileDurably(tmp, Buffer.from(JSON.stringify(value)));
  await fs.promises.rename(tmp, file);
}

export class S3RecordingStore implements RecordingStore {
  /** The SDK client (tests add middleware to it to see the requests). */
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  private readonly lock = new KeyedLock();
  private readonly indexes = new Map<string, RecordingIndex>();
  private readonly log: Logger;
  private readonly checkpointBytes: number;
  private completer?: NodeJS.Timeout;
  private completerRun?: Promise<unknown>;

  constructor(private readonly opts: S3RecordingStoreOptions) {
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(opts.bucket)) throw new BadParameterError(`S3 bucket name ${JSON.stringify(opts.bucket)} is invalid`);
    this.bucket = opts.bucket;
    this.prefix = (opts.prefix ?? '').replace(/^\/+|\/+$/g, '');
    if (opts.kmsKeyId && (opts.sse ?? 'aws:kms') !== 'aws:kms') throw new BadParameterError('an SSE-KMS key ID needs server-side encryption aws:kms');
    this.checkpointBytes = opts.checkpointBytes ?? DEFAULT_CHECKPOINT_BYTES;
    if (!Number.isInteger(this.checkpointBytes) || this.checkpointBytes < 1) throw new BadParameterError(`checkpointBytes must be a positive integer, got ${opts.checkpointBytes}`);
    this.log = opts.log ?? logger('recordings:s3');
    fs.mkdirSync(opts.stagingDir, { recursive: true, mode: 0o700 });
    const config: S3ClientConfig = {
      maxAttempts: opts.maxAttempts ?? DEFAULT_S3_MAX_ATTEMPTS,
      retryMode: 'standard',
      ...(opts.region ? { region: opts.region } : opts.endpoint ? { region: 'us-east-1' } : {}),
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
      ...(opts.endpoint
        ? { endpoint: opts.endpoint, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' }
        : {}),
    };
    this.client = new S3Client(config);
  }

  /** `s3://<bucket>/<prefix>`, for logs. */
  get location(): string {
    return `s3://${this.bucket}/${this.prefix}`;
  }

  private keyOf(rel: string): string {
    return this.prefix ? `${this.prefix}/${rel}` : rel;
  }

  private ref(sid: string, namespace = DEFAULT_NAMESPACE): Ref {
    const s = checkSessionId(sid);
    const ns = checkNamespace(namespace);
    return {
      sid: s,
      ns,
      lockKey: `${ns}/${s}`,
      dataKey: this.keyOf(`${ns}/${s}.recording`),
      indexKey: this.keyOf(`${ns}/${s}.index.json`),
      staging: path.join(this.opts.stagingDir, ns, s),
    };
  }

  private encryption(): { ServerSideEncryption?: 'aws:kms' | 'AES256'; SSEKMSKeyId?: string } {
    const sse = this.opts.sse ?? 'aws:kms';
    if (sse === 'off') return {};
    return { ServerSideEncryption: sse, ...(sse === 'aws:kms' && this.opts.kmsKeyId ? { SSEKMSKeyId: this.opts.kmsKeyId } : {}) };
  }

  /** Runs an S3 request; failures other than those `pass` lets through become ConnectionProblemError. */
  private async s3<T>(what: string, fn: () => Promise<T>, pass: (err: unknown) => boolean = () => false): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (pass(err) || err instanceof TeleportError) throw err;
      const status = (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
      throw new ConnectionProblemError(`S3 ${what} in bucket ${this.bucket} failed: ${errorName(err)}${status ? ` (HTTP ${status})` : ''}: ${(err as Error)?.message ?? err}`, {
        cause: err,
      });
    }
  }

  // ---- the RecordingStore contract ----

  async has(sid: string, namespace?: string): Promise<boolean> {
    return this.exists(this.ref(sid, namespace));
  }

  async putPart(sid: string, part: number, data: Buffer, namespace?: string): Promise<void> {
    const r = this.ref(sid, namespace);
    checkPartNumber(part);
    if (data.length > MAX_PART_BYTES) throw new LimitExceededError(`part ${part} of session ${r.sid} is ${data.length} bytes; the limit is ${MAX_PART_BYTES}`);
    await this.lock.run(r.lockKey, async () => {
      if (await this.exists(r)) throw new AlreadyExistsError(`the recording of session ${r.sid} is already complete`);
      await fs.promises.mkdir(r.staging, { recursive: true, mode: 0o700 });
      const sha256 = sha256Hex(data);
      const json = path.join(r.staging, `${partName(part)}.json`);
      const local = path.join(r.staging, `${partName(part)}.data`);
      if (data.length >= S3_MIN_PART_BYTES) {
        const { uploadId, etag } = await this.uploadNodePart(r, part, data);
        await writeJsonDurably(json, { part, size: data.length, sha256, where: 's3', etag, uploadId } satisfies PartRecord);
        await fs.promises.rm(local, { force: true });
      } else {
        const tmp = `${local}.${process.pid}.tmp`;
        await writeFileDurably(tmp, data);
        await fs.promises.rename(tmp, local);
        await writeJsonDurably(json, { part, size: data.length, sha256, where: 'local' } satisfies PartRecord);
      }
    });
  }

  async complete(sid: string, parts: PartRef[], namespace?: string): Promise<CompleteResult> {
    const r = this.ref(sid, namespace);
    checkPartList(parts);
    const url = `s3://${this.bucket}/${r.dataKey}`;
    return this.lock.run(r.lockKey, async () => {
      if (await this.exists(r)) {
        await fs.promises.rm(r.staging, { recursive: true, force: true });
        return { url, created: false };
      }
      const { upload, records } = await this.readJournal(r);
      const sorted = [...parts].sort((a, b) => a.part - b.part);
      const locals = new Map<number, string>(); // staged part -> its file, checked here and read again when sent
      for (const ref of sorted) {
        const rec = records.get(ref.part);
        const live = rec && (rec.where === 'local' || (upload !== undefined && rec.uploadId === upload.uploadId && rec.etag));
        if (!rec || !live) throw new BadParameterError(`part ${ref.part} of session ${r.sid} was never uploaded`);
        if (rec.size !== ref.size || rec.sha256 !== ref.sha256) {
          throw new BadParameterError(`part ${ref.part} of session ${r.sid} does not match its size or SHA-256 in the part list; upload it again`);
        }
        if (rec.where === 'local') {
          const file = path.join(r.staging, `${partName(ref.part)}.data`);
          const data = await fs.promises.readFile(file).catch(() => undefined);
          if (!data) throw new BadParameterError(`part ${ref.part} of session ${r.sid} was never uploaded`);
          if (data.length !== ref.size || sha256Hex(data) !== ref.sha256) {
            throw new BadParameterError(`part ${ref.part} of session ${r.sid} does not match its size or SHA-256 in the part list; upload it again`);
          }
          locals.set(ref.part, file);
        }
      }

      // Full parts first, in part order, then the staged ones: where each part lies in the object.
      const remote = sorted.filter((ref) => !locals.has(ref.part));
      const staged = sorted.filter((ref) => locals.has(ref.part));
      const at = new Map<number, number>();
      let size = 0;
      for (const ref of [...remote, ...staged]) {
        at.set(ref.part, size);
        size += ref.size;
      }
      const tail = staged.map((ref) => ({ file: locals.get(ref.part)!, size: ref.size }));

      if (remote.length === 0 && size <= TAIL_PART_BYTES) {
        const body = Buffer.concat(await Promise.all(tail.map((t) => fs.promises.readFile(t.file))));
        if (body.length !== size) throw new BadParameterError(`a staged part of session ${r.sid} changed size; upload it again`);
        await this.s3('PutObject', () =>
          this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: r.dataKey, Body: body, ContentType: 'application/octet-stream', ...this.encryption() })),
        );
        if (upload) await this.abortQuietly(upload.key, upload.uploadId);
      } else {
        const up = upload ?? (await this.startUpload(r));
        const completed = remote.map((ref) => ({ PartNumber: ref.part, ETag: records.get(ref.part)!.etag! }));
        try {
          completed.push(...(await this.uploadTail(r, up, tail)));
          await this.s3(
            'CompleteMultipartUpload',
            () => this.client.send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: r.dataKey, UploadId: up.uploadId, MultipartUpload: { Parts: completed } })),
            isLostUpload,
          );
        } catch (err) {
          if (!isLostUpload(err)) throw err;
          await fs.promises.rm(path.join(r.staging, 'upload.json'), { force: true });
          throw new BadParameterError(`the parts of session ${r.sid} kept in S3 are gone (${errorName(err)}); upload them again`);
        }
      }
      const head = await this.s3('HeadObject', () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: r.dataKey })));
      if (head.ContentLength !== size) {
        throw new ConnectionProblemError(`S3 object ${r.dataKey} has ${head.ContentLength} bytes after the upload, expected ${size}`);
      }

      const layout = (file: RecordingFile): FileLayout => {
        const segments: [number, number][] = [];
        let total = 0;
        for (const ref of sorted.filter((p) => p.file === file && p.size > 0)) {
          const start = at.get(ref.part)!;
          const last = segments[segments.length - 1];
          if (last && last[0] + last[1] === start) last[1] += ref.size;
          else segments.push([start, ref.size]);
          total += ref.size;
        }
        return { size: total, segments };
      };
      const index: RecordingIndex = { version: 1, sid: r.sid, namespace: r.ns, size, log: layout('log'), bytes: layout('bytes'), checkpoints: [] };
      index.checkpoints = await this.checkpoints(r, index.log);
      await this.s3('PutObject', () =>
        this.client.send(
          new PutObjectCommand({ Bucket: this.bucket, Key: r.indexKey, Body: JSON.stringify(index), ContentType: 'application/json', ...this.encryption() }),
        ),
      );
      this.remember(r, index);
      await fs.promises.rm(r.staging, { recursive: true, force: true });
      this.log.debug('stored a session recording in S3', { sid: r.sid, url, bytes: size });
      return { url, created: true };
    });
  }

  async events(sid: string, query: EventsQuery = {}): Promise<EventFields[]> {
    const r = this.ref(sid, query.namespace);
    const { after, limit } = checkEventsQuery(query);
    const index = await this.index(r);
    let start = 0;
    for (const [offset, maxEiBefore] of index.checkpoints) {
      if (maxEiBefore < after) start = offset;
      else break;
    }
    const out: EventFields[] = [];
    for await (const line of this.lines(r, index.log, start, EVENTS_READ_BYTES)) {
      const e = parseEvent(line.text);
      if (!e || typeof e.ei !== 'number' || e.ei < after) continue;
      if (query.print === false && e.event === 'print') continue;
      out.push(e);
      if (out.length >= limit) break;
    }
    return out;
  }

  async stream(sid: string, offset: number, bytes: number, namespace?: string): Promise<Buffer> {
    const r = this.ref(sid, namespace);
    checkStreamRange(offset, bytes);
    const index = await this.index(r);
    if (offset >= index.bytes.size) return Buffer.alloc(0);
    return this.read(r, index.bytes, offset, Math.min(bytes, index.bytes.size - offset));
  }

  // ---- abandoned uploads ----

  /**
   * Aborts this store's multipart uploads initiated more than `graceMs` ago
   * (unless this server's journal saw a part within the grace period), and
   * removes local staging untouched for as long.
   */
  async completeAbandoned(opts: { graceMs?: number; now?: number } = {}): Promise<CompleterReport> {
    const grace = opts.graceMs ?? DEFAULT_UPLOAD_GRACE_MS;
    const cutoff = (opts.now ?? Date.now()) - grace;
    const report: CompleterReport = { aborted: [], removedStaging: [] };
    const prefix = this.prefix ? `${this.prefix}/` : '';
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const page = await this.s3('ListMultipartUploads', () =>
        this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix || undefined, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker })),
      );
      for (const u of page.Uploads ?? []) {
        if (!u.Key || !u.UploadId || !u.Initiated || u.Initiated.getTime() > cutoff) continue;
        const m = DATA_KEY_RE.exec(u.Key.slice(prefix.length));
        if (!m) continue;
        const r = this.ref(m[2], m[1]);
        await this.lock.run(r.lockKey, async () => {
          if ((await this.lastActivity(r)) > cutoff) return;
          await this.abortQuietly(u.Key!, u.UploadId!);
          report.aborted.push({ key: u.Key!, uploadId: u.UploadId! });
          const journal = uploadRecordSchema.safeParse(await readJson(path.join(r.staging, 'upload.json')));
          if (journal.success && journal.data.uploadId === u.UploadId) await fs.promises.rm(path.join(r.staging, 'upload.json'), { force: true });
        });
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);

    for (const ns of await fs.promises.readdir(this.opts.stagingDir).catch(() => [] as string[])) {
      for (const sid of await fs.promises.readdir(path.join(this.opts.stagingDir, ns)).catch(() => [] as string[])) {
        let r: Ref;
        try {
          r = this.ref(sid, ns);
        } catch {
          continue; // not ours
        }
        await this.lock.run(r.lockKey, async () => {
          if ((await this.lastActivity(r)) > cutoff) return;
          const journal = uploadRecordSchema.safeParse(await readJson(path.join(r.staging, 'upload.json')));
          if (journal.success) {
            await this.abortQuietly(journal.data.key, journal.data.uploadId);
            report.aborted.push({ key: journal.data.key, uploadId: journal.data.uploadId });
          }
          await fs.promises.rm(r.staging, { recursive: true, force: true });
          report.removedStaging.push(`${ns}/${sid}`);
        });
      }
    }
    if (report.aborted.length || report.removedStaging.length) this.log.info('cleaned up abandoned recording uploads', { aborted: report.aborted.length, staging: report.removedStaging.length });
    return report;
  }

  /** Runs `completeAbandoned` every `periodMs` until `close()`. */
  startCompleter(opts: { periodMs?: number; graceMs?: number } = {}): void {
    if (this.completer) return;
    this.completer = setInterval(() => {
      if (this.completerRun) return;
      this.completerRun = this.completeAbandoned({ graceMs: opts.graceMs })
        .catch((err) => this.log.warn('cannot clean up abandoned recording uploads', { error: err }))
        .finally(() => (this.completerRun = undefined));
    }, opts.periodMs ?? DEFAULT_COMPLETER_PERIOD_MS);
    this.completer.unref();
  }

  async close(): Promise<void> {
    if (this.completer) clearInterval(this.completer);
    this.completer = undefined;
    await this.completerRun;
    this.client.destroy();
  }

  // ---- internals ----

  private async exists(r: Ref): Promise<boolean> {
    if (this.indexes.has(r.lockKey)) return true;
    return this.s3(
      'HeadObject',
      async () => {
        await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: r.indexKey }));
        return true;
      },
      isMissing,
    ).catch((err) => {
      if (isMissing(err)) return false;
      throw err;
    });
  }

  private async index(r: Ref): Promise<RecordingIndex> {
    const cached = this.indexes.get(r.lockKey);
    if (cached) return cached;
    let text: string;
    try {
      text = await this.s3(
        'GetObject',
        async () => {
          const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: r.indexKey }));
          return res.Body!.transformToString('utf8');
        },
        isMissing,
      );
    } catch (err) {
      if (isMissing(err)) throw new NotFoundError(`no recording of session ${r.sid} in namespace ${r.ns}`);
      throw err;
    }
    let parsed: RecordingIndex;
    try {
      parsed = indexSchema.parse(JSON.parse(text));
    } catch (err) {
      throw new ConnectionProblemError(`S3 object ${r.indexKey} is not a recording index: ${(err as Error).message}`);
    }
    if (parsed.sid !== r.sid || parsed.namespace !== r.ns) throw new ConnectionProblemError(`S3 object ${r.indexKey} indexes another recording`);
    this.remember(r, parsed);
    return parsed;
  }

  private remember(r: Ref, index: RecordingIndex): void {
    this.indexes.delete(r.lockKey);
    this.indexes.set(r.lockKey, index);
    if (this.indexes.size > INDEX_CACHE_SIZE) this.indexes.delete(this.indexes.keys().next().value!);
  }

  /** `length` bytes of a file from `offset`, by ranged GetObjects of its segments. */
  private async read(r: Ref, file: FileLayout, offset: number, length: number): Promise<Buffer> {
    const out: Buffer[] = [];
    let pos = 0; // the file offset where the current segment starts
    for (const [objStart, segLen] of file.segments) {
      const from = Math.max(offset, pos);
      const to = Math.min(offset + length, pos + segLen);
      if (from < to) {
        const first = objStart + (from - pos);
        const count = to - from;
        const chunk = await this.s3('GetObject', async () => {
          const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: r.dataKey, Range: `bytes=${first}-${first + count - 1}` }));
          return Buffer.from(await res.Body!.transformToByteArray());
        });
        if (chunk.length !== count) throw new ConnectionProblemError(`S3 returned ${chunk.length} bytes of ${r.dataKey} at ${first}, expected ${count}`);
        out.push(chunk);
      }
      pos += segLen;
      if (pos >= offset + length) break;
    }
    return Buffer.concat(out);
  }

  /** The log's lines from `start` (a line start), read in ranges of `readBytes`; a last line without a newline too. */
  private async *lines(r: Ref, log: FileLayout, start: number, readBytes: number): AsyncGenerator<{ offset: number; text: string }> {
    let carry: Buffer = Buffer.alloc(0);
    let carryAt = start;
    for (let pos = start; pos < log.size; ) {
      const n = Math.min(readBytes, log.size - pos);
      const buf = carry.length ? Buffer.concat([carry, await this.read(r, log, pos, n)]) : await this.read(r, log, pos, n);
      pos += n;
      let from = 0;
      for (let nl = buf.indexOf(0x0a); nl !== -1; nl = buf.indexOf(0x0a, from)) {
        yield { offset: carryAt + from, text: buf.toString('utf8', from, nl) };
        from = nl + 1;
      }
      carry = buf.subarray(from);
      carryAt += from;
    }
    if (carry.length) yield { offset: carryAt, text: carry.toString('utf8') };
  }

  /** `[offset, largest ei before it]` at line starts, at least `checkpointBytes` apart. */
  private async checkpoints(r: Ref, log: FileLayout): Promise<[number, number][]> {
    const out: [number, number][] = [];
    let maxEi = -1;
    let last = 0;
    for await (const line of this.lines(r, log, 0, CHECKPOINT_READ_BYTES)) {
      if (line.offset - last >= this.checkpointBytes) {
        out.push([line.offset, maxEi]);
        last = line.offset;
      }
      const e = parseEvent(line.text);
      if (e && typeof e.ei === 'number' && e.ei > maxEi) maxEi = e.ei;
    }
    return out;
  }

  private async readJournal(r: Ref): Promise<{ upload?: UploadRecord; records: Map<number, PartRecord> }> {
    const upload = uploadRecordSchema.safeParse(await readJson(path.join(r.staging, 'upload.json')));
    const records = new Map<number, PartRecord>();
    for (const f of await fs.promises.readdir(r.staging).catch(() => [] as string[])) {
      const m = PART_FILE_RE.exec(f);
      if (!m) continue;
      const rec = partRecordSchema.safeParse(await readJson(path.join(r.staging, f)));
      if (rec.success && rec.data.part === Number(m[1])) records.set(rec.data.part, rec.data);
    }
    return { upload: upload.success && upload.data.key === r.dataKey ? upload.data : undefined, records };
  }

  private async startUpload(r: Ref): Promise<UploadRecord> {
    await fs.promises.mkdir(r.staging, { recursive: true, mode: 0o700 });
    const res = await this.s3('CreateMultipartUpload', () =>
      this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: r.dataKey, ContentType: 'application/octet-stream', ...this.encryption() })),
    );
    if (!res.UploadId) throw new ConnectionProblemError(`S3 CreateMultipartUpload for ${r.dataKey} returned no upload ID`);
    const rec: UploadRecord = { uploadId: res.UploadId, key: r.dataKey, created: new Date().toISOString() };
    await writeJsonDurably(path.join(r.staging, 'upload.json'), rec);
    syncDir(r.staging);
    return rec;
  }

  /** Sends a full node part as S3 part `part`, starting (or, if it was aborted, restarting) the multipart upload. */
  private async uploadNodePart(r: Ref, part: number, data: Buffer): Promise<{ uploadId: string; etag: string }> {
    for (let attempt = 0; ; attempt++) {
      const { upload } = await this.readJournal(r);
      const up = upload ?? (await this.startUpload(r));
      try {
        const res = await this.s3(
          'UploadPart',
          () => this.client.send(new UploadPartCommand({ Bucket: this.bucket, Key: r.dataKey, UploadId: up.uploadId, PartNumber: part, Body: data, ContentLength: data.length })),
          (err) => errorName(err) === 'NoSuchUpload',
        );
        if (!res.ETag) throw new ConnectionProblemError(`S3 UploadPart for ${r.dataKey} returned no ETag`);
        return { uploadId: up.uploadId, etag: res.ETag };
      } catch (err) {
        if (errorName(err) !== 'NoSuchUpload' || attempt > 0) throw err instanceof TeleportError ? err : new ConnectionProblemError(`S3 UploadPart failed: ${errorName(err)}`, { cause: err });
        this.log.warn('the multipart upload of a recording is gone; starting a new one', { sid: r.sid, uploadId: up.uploadId });
        await fs.promises.rm(path.join(r.staging, 'upload.json'), { force: true });
      }
    }
  }

  /** Uploads the staged parts, concatenated, as S3 parts TAIL_FIRST_PART.. (each at least 5 MiB but the last). */
  private async uploadTail(r: Ref, up: UploadRecord, tail: { file: string; size: number }[]): Promise<{ PartNumber: number; ETag: string }[]> {
    const total = tail.reduce((n, t) => n + t.size, 0);
    if (total === 0) return [];
    const chunk = Math.max(TAIL_PART_BYTES, Math.ceil(total / (S3_MAX_PART_NUMBER - TAIL_FIRST_PART + 1)));
    const out: { PartNumber: number; ETag: string }[] = [];
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      const body = Buffer.concat(pending, pendingBytes);
      const partNumber = TAIL_FIRST_PART + out.length;
      pending = [];
      pendingBytes = 0;
      const res = await this.s3(
        'UploadPart',
        () => this.client.send(new UploadPartCommand({ Bucket: this.bucket, Key: r.dataKey, UploadId: up.uploadId, PartNumber: partNumber, Body: body, ContentLength: body.length })),
        isLostUpload,
      );
      if (!res.ETag) throw new ConnectionProblemError(`S3 UploadPart for ${r.dataKey} returned no ETag`);
      out.push({ PartNumber: partNumber, ETag: res.ETag });
    };
    for (const t of tail) {
      const buf = await fs.promises.readFile(t.file);
      if (buf.length !== t.size) throw new BadParameterError(`a staged part of session ${r.sid} changed size; upload it again`);
      let from = 0;
      while (from < buf.length) {
        const take = Math.min(chunk - pendingBytes, buf.length - from);
        pending.push(buf.subarray(from, from + take));
        pendingBytes += take;
        from += take;
        if (pendingBytes === chunk) await flush();
      }
    }
    if (pendingBytes) await flush();
    return out;
  }

  private async abortQuietly(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }));
    } catch (err) {
      if (errorName(err) !== 'NoSuchUpload') this.log.warn('cannot abort a multipart upload', { key, uploadId, error: errorName(err) });
    }
  }

  /** The newest modification time in the recording's local staging, or 0. */
  private async lastActivity(r: Ref): Promise<number> {
    let newest = 0;
    for (const f of await fs.promises.readdir(r.staging).catch(() => [] as string[])) {
      const st = await fs.promises.stat(path.join(r.staging, f)).catch(() => undefined);
      if (st && st.mtimeMs > newest) newest = st.mtimeMs;
    }
    return newest;
  }
}

function parseEvent(line: string): EventFields | undefined {
  if (!line) return undefined;
  try {
    return JSON.parse(line) as EventFields;
  } catch {
    return undefined; // a line torn by a crash of the node that recorded it
  }
}
