/**
 * Where the auth service keeps session recordings, and the contract any
 * other place (S3 later) must meet. A recording arrives as numbered parts
 * that are staged until `complete` names them; it then appears at once and
 * for good: `FileRecordingStore` assembles the files in a temporary place and
 * renames them into `<dir>/<namespace>/<sid>.session.bytes` and
 * `<sid>.session.log` (the Admin Manual's layout), the log last, so a
 * recording is visible exactly when its log is.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { EventFields } from '../events/filelog';
import { AlreadyExistsError, BadParameterError, LimitExceededError, NotFoundError } from '../utils/errors';
import { checkNamespace, checkPartNumber, checkSessionId, DEFAULT_NAMESPACE, MAX_CHUNK_BYTES, MAX_EVENTS_PAGE, MAX_PART_BYTES, MAX_PARTS } from './limits';
import { syncDir } from './recorder';
import { exists } from '../utils/files';

/** Which recording file a part belongs to. */
export type RecordingFile = 'log' | 'bytes';

/** One uploaded part as named in `complete`: the file's parts are joined in part-number order. */
export interface PartRef {
  part: number;
  file: RecordingFile;
  size: number;
  /** Hex SHA-256 of the part's bytes. */
  sha256: string;
}

export interface CompleteResult {
  /** Where the recording is kept. */
  url: string;
  /** False when the recording was already complete (a retried `complete`). */
  created: boolean;
}

export interface EventsQuery {
  /** Only events with `ei >= after`. @default 0 */
  after?: number;
  /** @default MAX_EVENTS_PAGE (also the maximum) */
  limit?: number;
  /** Include `print` events. @default true */
  print?: boolean;
  /** @default 'default' */
  namespace?: string;
}

export interface RecordingStore {
  /** Stages (or replaces) part `part` of a recording. AlreadyExistsError once the recording is complete. */
  putPart(sid: string, part: number, data: Buffer, namespace?: string): Promise<void>;
  /** Assembles the staged parts into the recording; completing a complete recording again is harmless. */
  complete(sid: string, parts: PartRef[], namespace?: string): Promise<CompleteResult>;
  has(sid: string, namespace?: string): Promise<boolean>;
  /** The recording's events in order. NotFoundError if there is no such recording. */
  events(sid: string, query?: EventsQuery): Promise<EventFields[]>;
  /** Up to `bytes` (at most MAX_CHUNK_BYTES) of output from `offset`; empty at the end. */
  stream(sid: string, offset: number, bytes: number, namespace?: string): Promise<Buffer>;
}

const SHA256_RE = /^[0-9a-f]{64}$/;

/** Checks a part list: known files, unique part numbers in range, sizes within the part limit. */
export function checkPartList(parts: PartRef[]): void {
  if (!Array.isArray(parts) || parts.length > MAX_PARTS) throw new BadParameterError(`a recording has at most ${MAX_PARTS} parts`);
  const seen = new Set<number>();
  for (const p of parts) {
    checkPartNumber(p.part);
    if (seen.has(p.part)) throw new BadParameterError(`part ${p.part} is listed twice`);
    seen.add(p.part);
    if (p.file !== 'log' && p.file !== 'bytes') throw new BadParameterError(`part ${p.part} names an unknown file ${JSON.stringify(p.file)}: expected log or bytes`);
    if (!Number.isInteger(p.size) || p.size < 0 || p.size > MAX_PART_BYTES) throw new BadParameterError(`part ${p.part} has an invalid size ${p.size}`);
    if (typeof p.sha256 !== 'string' || !SHA256_RE.test(p.sha256)) throw new BadParameterError(`part ${p.part} needs a hex SHA-256`);
  }
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** An events query's first index (default 0) and page size (default and at most MAX_EVENTS_PAGE). */
export function checkEventsQuery(query: EventsQuery): { after: number; limit: number } {
  const after = query.after ?? 0;
  const limit = Math.min(query.limit ?? MAX_EVENTS_PAGE, MAX_EVENTS_PAGE);
  if (!Number.isSafeInteger(after) || after < 0) throw new BadParameterError(`after must be a non-negative integer, got ${after}`);
  if (!Number.isInteger(limit) || limit < 1) throw new BadParameterError(`limit must be a positive integer, got ${limit}`);
  return { after, limit };
}

export function checkStreamRange(offset: number, bytes: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) throw new BadParameterError(`offset must be a non-negative integer, got ${offset}`);
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > MAX_CHUNK_BYTES) throw new BadParameterError(`bytes must be from 1 to ${MAX_CHUNK_BYTES}, got ${bytes}`);
}

/** Serialises the work on each recording within this process. */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const result = prev.then(fn);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    try {
      return await result;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

export async function writeFileDurably(file: string, data: Buffer): Promise<void> {
  const fh = await fs.promises.open(file, 'w', 0o600);
  try {
    await fh.writeFile(data);
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

/** Recordings as files under `<data_dir>/log/sessions`: `<namespace>/<sid>.session.{bytes,log}`. */
export class FileRecordingStore implements RecordingStore {
  private readonly lock = new KeyedLock();

  /** @param dir `<data_dir>/log/sessions`; made 0700 if missing. */
  constructor(readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  private paths(sid: string, namespace = DEFAULT_NAMESPACE) {
    const s = checkSessionId(sid);
    const ns = checkNamespace(namespace);
    const nsDir = path.join(this.dir, ns);
    return {
      sid: s,
      ns,
      nsDir,
      bytes: path.join(nsDir, `${s}.session.bytes`),
      log: path.join(nsDir, `${s}.session.log`),
      staging: path.join(this.dir, '.staging', ns, s),
    };
  }

  async has(sid: string, namespace?: string): Promise<boolean> {
    return exists(this.paths(sid, namespace).log);
  }

  async putPart(sid: string, part: number, data: Buffer, namespace?: string): Promise<void> {
    const p = this.paths(sid, namespace);
    checkPartNumber(part);
    if (data.length > MAX_PART_BYTES) throw new LimitExceededError(`part ${part} of session ${p.sid} is ${data.length} bytes; the limit is ${MAX_PART_BYTES}`);
    await this.lock.run(p.sid, async () => {
      if (await exists(p.log)) throw new AlreadyExistsError(`the recording of session ${p.sid} is already complete`);
      await fs.promises.mkdir(p.staging, { recursive: true, mode: 0o700 });
      const tmp = path.join(p.staging, `.${randomBytes(6).toString('hex')}.tmp`);
      await writeFileDurably(tmp, data);
      await fs.promises.rename(tmp, path.join(p.staging, partName(part)));
    });
  }

  async complete(sid: string, parts: PartRef[], namespace?: string): Promise<CompleteResult> {
    const p = this.paths(sid, namespace);
    checkPartList(parts);
    const url = 'file://' + path.join(path.resolve(p.nsDir), p.sid);
    return this.lock.run(p.sid, async () => {
      if (await exists(p.log)) {
        await fs.promises.rm(p.staging, { recursive: true, force: true });
        return { url, created: false };
      }
      const sorted = [...parts].sort((a, b) => a.part - b.part);
      for (const ref of sorted) {
        let data: Buffer;
        try {
          data = await fs.promises.readFile(path.join(p.staging, partName(ref.part)));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BadParameterError(`part ${ref.part} of session ${p.sid} was never uploaded`);
          throw err;
        }
        if (data.length !== ref.size || sha256Hex(data) !== ref.sha256) {
          throw new BadParameterError(`part ${ref.part} of session ${p.sid} does not match its size or SHA-256 in the part list; upload it again`);
        }
      }
      await fs.promises.mkdir(p.nsDir, { recursive: true, mode: 0o700 });
      const assemble = async (file: RecordingFile): Promise<string> => {
        const tmp = path.join(p.staging, `assembled.${file}`);
        const fh = await fs.promises.open(tmp, 'w', 0o600);
        try {
          for (const ref of sorted.filter((r) => r.file === file)) await fh.writeFile(await fs.promises.readFile(path.join(p.staging, partName(ref.part))));
          await fh.datasync();
        } finally {
          await fh.close();
        }
        return tmp;
      };
      const bytesTmp = await assemble('bytes');
      const logTmp = await assemble('log');
      await fs.promises.rename(bytesTmp, p.bytes);
      await fs.promises.rename(logTmp, p.log);
      syncDir(p.nsDir);
      await fs.promises.rm(p.staging, { recursive: true, force: true });
      return { url, created: true };
    });
  }

  async events(sid: string, query: EventsQuery = {}): Promise<EventFields[]> {
    const p = this.paths(sid, query.namespace);
    const { after, limit } = checkEventsQuery(query);
    let input: fs.ReadStream;
    try {
      const fh = await fs.promises.open(p.log, 'r');
      input = fh.createReadStream({ encoding: 'utf8' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`no recording of session ${p.sid} in namespace ${p.ns}`);
      throw err;
    }
    const out: EventFields[] = [];
    const lines = readline.createInterface({ input, crlfDelay: Infinity });
    try {
      for await (const line of lines) {
        if (!line) continue;
        let e: EventFields;
        try {
          e = JSON.parse(line) as EventFields;
        } catch {
          continue; // a line torn by a crash of the node that recorded it
        }
        if (typeof e.ei !== 'number' || e.ei < after) continue;
        if (query.print === false && e.event === 'print') continue;
        out.push(e);
        if (out.length >= limit) break;
      }
    } finally {
      lines.close();
      input.destroy();
    }
    return out;
  }

  async stream(sid: string, offset: number, bytes: number, namespace?: string): Promise<Buffer> {
    const p = this.paths(sid, namespace);
    checkStreamRange(offset, bytes);
    if (!(await exists(p.log))) throw new NotFoundError(`no recording of session ${p.sid} in namespace ${p.ns}`);
    const fh = await fs.promises.open(p.bytes, 'r');
    try {
      const buf = Buffer.alloc(bytes);
      let got = 0;
      while (got < bytes) {
        const { bytesRead } = await fh.read(buf, got, bytes - got, offset + got);
        if (!bytesRead) break;
        got += bytesRead;
      }
      return buf.subarray(0, got);
    } finally {
      await fh.close();
    }
  }
}

function partName(part: number): string {
  return `part-${String(part).padStart(5, '0')}`;
}
