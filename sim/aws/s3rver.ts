/**
 * s3rver (3.7.1) with what S3 does and s3rver lacks, implemented on s3rver's own upload directory
 * (`<bucket>/._S3rver_uploads/<uploadId>/{key,<n>,<n>.md5}`):
 *
 * - ListMultipartUploads, ListParts and AbortMultipartUpload;
 * - UploadPart to an unknown upload fails with NoSuchUpload, and is answered once the part is stored;
 * - CompleteMultipartUpload checks its part list as S3 does: ascending (InvalidPartOrder), each
 *   part uploaded with that ETag (InvalidPart), and every part but the last at least 5 MiB
 *   (EntityTooSmall).
 *
 * Runs in the calling process. Requests without an `Authorization` header are served as s3rver's
 * anonymous caller (the local deployment's gateway authorizes callers before it forwards).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';

const S3rverServer = require('s3rver');
const S3Error = require('s3rver/lib/models/error');
const authentication = require('s3rver/lib/middleware/authentication');

/** The part of s3rver's Koa context the additions use. */
export type S3rverContext = {
  method: string;
  path: string;
  query: Record<string, string>;
  params: Record<string, string>;
  req: NodeJS.ReadableStream & { headers?: unknown };
  body: unknown;
  status: number;
  set(name: string, value: string): void;
};
export type S3rverMiddleware = (ctx: S3rverContext, next: () => Promise<void>) => Promise<void>;

/** An s3rver server (a Koa application). */
export interface S3rver {
  /** Koa's middleware list: the router last, the S3 additions just before it. */
  readonly middleware: S3rverMiddleware[];
  run(): Promise<unknown>;
  close(): Promise<void>;
  readonly httpServer?: { closeAllConnections(): void };
}

/** s3rver's S3-shaped errors (`new S3Error(code, message)`; `status` settable). */
export const S3rverError: new (code: string, message: string) => Error & { status: number } = S3Error;

export const S3_MIN_PART = 5 * 1024 * 1024;

export interface S3rverOptions {
  host: string;
  port: number;
  /** Where the buckets' files are kept. */
  dir: string;
  /** Buckets created at start (existing ones are kept). */
  buckets: readonly string[];
}

/** An s3rver with the additions installed, not yet running (`run()`); stop it with `stopS3rver`. */
export function createS3rver(opts: S3rverOptions): S3rver {
  const server: S3rver = new S3rverServer({
    port: opts.port,
    address: opts.host,
    directory: opts.dir,
    silent: true,
    configureBuckets: opts.buckets.map((name) => ({ name })),
  });
  // Before s3rver's router, after its logger, XML encoder and vhost handling.
  server.middleware.splice(server.middleware.length - 1, 0, s3Additions(opts.dir));
  return server;
}

/** Closes the server and its open connections. */
export async function stopS3rver(server: S3rver): Promise<void> {
  const closed = server.close();
  server.httpServer?.closeAllConnections();
  await closed;
}

export function readBody(req: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Resolves once `file` holds `size` bytes (when the size is known) and its `.md5` exists. */
async function untilStored(file: string, size: number): Promise<void> {
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
    try {
      if ((Number.isNaN(size) || fs.statSync(file).size === size) && fs.existsSync(`${file}.md5`)) return;
    } catch {
      // not created yet
    }
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  throw new Error(`part file ${file} did not reach ${size} bytes`);
}

function s3Additions(root: string): S3rverMiddleware {
  const auth = authentication();
  const uploadDir = (bucket: string, uploadId: string) => path.join(root, bucket, '._S3rver_uploads', uploadId);
  const uploadKey = (bucket: string, uploadId: string): string | undefined => {
    if (!/^[0-9a-f]{32}$/.test(uploadId)) return undefined;
    try {
      return fs.readFileSync(path.join(uploadDir(bucket, uploadId), 'key'), 'utf8');
    } catch {
      return undefined;
    }
  };
  const noSuchUpload = () => new S3Error('NoSuchUpload', 'The specified upload does not exist.');
  const parts = (bucket: string, uploadId: string) =>
    fs
      .readdirSync(uploadDir(bucket, uploadId))
      .filter((f) => /^\d+$/.test(f))
      .map((f) => {
        const file = path.join(uploadDir(bucket, uploadId), f);
        const st = fs.statSync(file);
        return { PartNumber: Number(f), ETag: JSON.stringify(fs.readFileSync(`${file}.md5`, 'utf8')), Size: st.size, LastModified: st.mtime.toISOString() };
      })
      .sort((a, b) => a.PartNumber - b.PartNumber);

  return async function s3Compat(ctx, next) {
    const [bucket, ...rest] = ctx.path.replace(/^\//, '').split('/');
    const key = decodeURIComponent(rest.join('/'));
    const q = ctx.query;
    const authed = (fn: () => Promise<void> | void) => {
      ctx.params = { ...(ctx.params ?? {}), bucket, ...(key ? { key } : {}) };
      return auth(ctx, async () => fn());
    };

    if (ctx.method === 'GET' && bucket && !key && 'uploads' in q) {
      return authed(() => {
        const base = path.join(root, bucket, '._S3rver_uploads');
        const prefix = q.prefix ?? '';
        const uploads = (fs.existsSync(base) ? fs.readdirSync(base) : [])
          .map((id) => ({ id, key: uploadKey(bucket, id) }))
          .filter((u): u is { id: string; key: string } => u.key !== undefined && u.key.startsWith(prefix))
          .map((u) => ({ Key: u.key, UploadId: u.id, Initiated: fs.statSync(path.join(base, u.id, 'key')).mtime.toISOString() }))
          .sort((a, b) => a.Key.localeCompare(b.Key) || a.UploadId.localeCompare(b.UploadId));
        ctx.body = { ListMultipartUploadsResult: { Bucket: bucket, Prefix: prefix, MaxUploads: 1000, IsTruncated: false, ...(uploads.length ? { Upload: uploads } : {}) } };
      });
    }
    if (bucket && key && 'uploadId' in q) {
      const uploadId = q.uploadId;
      const known = uploadKey(bucket, uploadId) === key;
      if (ctx.method === 'GET') {
        return authed(() => {
          if (!known) throw noSuchUpload();
          const list = parts(bucket, uploadId);
          ctx.body = { ListPartsResult: { Bucket: bucket, Key: key, UploadId: uploadId, IsTruncated: false, ...(list.length ? { Part: list } : {}) } };
        });
      }
      if (ctx.method === 'DELETE') {
        return authed(() => {
          if (!known) throw noSuchUpload();
          fs.rmSync(uploadDir(bucket, uploadId), { recursive: true, force: true });
          ctx.status = 204;
        });
      }
      if (ctx.method === 'PUT' && !known) {
        await readBody(ctx.req);
        throw noSuchUpload();
      }
      if (ctx.method === 'PUT' && 'partNumber' in q) {
        // s3rver answers an UploadPart when it has hashed the body, which can be before its file is
        // written (the write stream opens late on a busy machine): S3 answers once the part is stored.
        await next();
        const file = path.join(uploadDir(bucket, uploadId), String(Number(q.partNumber)));
        const size = Number((ctx.req as { headers?: Record<string, string | undefined> }).headers?.['content-length']);
        await untilStored(file, size);
        return;
      }
      if (ctx.method === 'POST') {
        if (!known) throw noSuchUpload();
        const xml = (await readBody(ctx.req)).toString('utf8');
        const listed = [...xml.matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map((m) => ({
          number: Number(/<PartNumber>(\d+)<\/PartNumber>/.exec(m[1])?.[1]),
          etag: (/<ETag>([\s\S]*?)<\/ETag>/.exec(m[1])?.[1] ?? '').replace(/&quot;|"/g, ''),
        }));
        const have = new Map(parts(bucket, uploadId).map((p) => [p.PartNumber, p]));
        listed.forEach((p, i) => {
          if (i > 0 && p.number <= listed[i - 1].number) throw new S3Error('InvalidPartOrder', 'The list of parts was not in ascending order.');
          const got = have.get(p.number);
          if (!got || got.ETag.replace(/"/g, '') !== p.etag) throw new S3Error('InvalidPart', `Part ${p.number} could not be found or its ETag does not match.`);
          if (i < listed.length - 1 && got.Size < S3_MIN_PART) throw new S3Error('EntityTooSmall', `Part ${p.number} is ${got.Size} bytes, smaller than the minimum allowed object size.`);
        });
        ctx.req = Readable.from([Buffer.from(xml)]);
      }
    }
    return next();
  };
}
