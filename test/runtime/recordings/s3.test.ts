/**
 * Session recordings in S3, against s3rver in its own process (with the
 * multipart calls and part-size checks it lacks added by
 * test/helpers/s3rver-main.ts): the shared store suite; a 200 MiB recording
 * uploaded in parts across a simulated crash of the auth server, played back
 * byte-exact; playback by ranged reads; the completer of abandoned uploads;
 * server-side encryption on the requests; retries; and `audit_sessions_uri`.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { buildConfig, parseSessionsUri } from '../../../runtime/config/config';
import { parseConfig } from '../../../runtime/config';
import { MAX_CHUNK_BYTES, MAX_PART_BYTES } from '../../../runtime/recordings/limits';
import { RecordingIndex, S3RecordingStore, S3RecordingStoreOptions, TAIL_FIRST_PART } from '../../../runtime/recordings/s3';
import { ConnectionProblemError } from '../../../runtime/utils/errors';
import { setLogLevel } from '../../../runtime/utils/logger';
import { S3rverProcess, S3RVER_CREDENTIALS, S3RVER_REGION } from '../../helpers/s3';
import { tempDir } from '../../helpers/proc';
import { logOf, recordingStoreSuite, ref, split } from './suite';

jest.setTimeout(120_000);

interface Seen {
  command: string;
  headers: Record<string, string>;
}

/** Records every request the client sends: its command and HTTP headers as they go on the wire. */
function capture(client: S3Client): Seen[] {
  const seen: Seen[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const headers = (args.request as { headers?: Record<string, string> }).headers ?? {};
      seen.push({ command: String(context.commandName), headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v])) });
      return next(args);
    },
    { step: 'finalizeRequest', name: 'testCapture' },
  );
  return seen;
}

describe('S3RecordingStore', () => {
  let s3: S3rverProcess;
  let admin: S3Client;
  let work: string;
  const opened: S3RecordingStore[] = [];

  beforeAll(async () => {
    setLogLevel('error');
    s3 = await S3rverProcess.start('recordings');
    admin = s3.client();
    work = tempDir('s3-store-');
  }, 60_000);

  afterAll(async () => {
    for (const s of opened) await s.close();
    admin?.destroy();
    await s3?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  /** A store on the test bucket; `dir` is its data dir's staging directory. */
  function open(prefix: string, dir: string, extra: Partial<S3RecordingStoreOptions> = {}): S3RecordingStore {
    const store = new S3RecordingStore({
      bucket: s3.bucket,
      prefix,
      endpoint: s3.endpoint,
      region: S3RVER_REGION,
      credentials: S3RVER_CREDENTIALS,
      stagingDir: dir,
      maxAttempts: 3,
      ...extra,
    });
    opened.push(store);
    return store;
  }

  const newPrefix = () => `t-${randomUUID().slice(0, 8)}/records`;
  const keysUnder = async (prefix: string) =>
    ((await admin.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }))).Contents ?? []).map((o) => o.Key!).sort();
  const uploadsUnder = async (prefix: string) =>
    ((await admin.send(new ListMultipartUploadsCommand({ Bucket: s3.bucket, Prefix: prefix }))).Uploads ?? []).map((u) => ({ key: u.Key!, uploadId: u.UploadId! }));

  describe('the behaviour every recording store shares (suite.ts)', () => {
    recordingStoreSuite(async () => {
      const prefix = newPrefix();
      const dir = path.join(tempDir('s3-suite-'), 'log', 's3-staging');
      const make = () => open(prefix, dir, { checkpointBytes: 64 * 1024 });
      return {
        store: make(),
        url: (sid, ns = 'default') => `s3://${s3.bucket}/${prefix}/${ns}/${sid}.recording`,
        reopen: async () => make(),
        destroy: async () => fs.rmSync(path.dirname(path.dirname(dir)), { recursive: true, force: true }),
      };
    });
  });

  it('GIVEN the test S3 server THEN it refuses a multipart upload whose parts before the last are under 5 MiB, as S3 does (so the suite proves the store never sends one)', async () => {
    const Key = `${newPrefix()}/probe`;
    const { UploadId } = await admin.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key }));
    const parts = [];
    for (const n of [1, 2]) parts.push({ PartNumber: n, ETag: (await admin.send(new UploadPartCommand({ Bucket: s3.bucket, Key, UploadId, PartNumber: n, Body: randomBytes(1024) }))).ETag });
    await expect(admin.send(new CompleteMultipartUploadCommand({ Bucket: s3.bucket, Key, UploadId, MultipartUpload: { Parts: parts } }))).rejects.toMatchObject({
      name: 'EntityTooSmall',
    });
    await expect(admin.send(new UploadPartCommand({ Bucket: s3.bucket, Key, UploadId: 'f'.repeat(32), PartNumber: 1, Body: Buffer.from('x') }))).rejects.toMatchObject({
      name: 'NoSuchUpload',
    });
  });

  it('GIVEN a 200 MiB recording uploaded in 5 MiB parts WHEN the auth server crashes mid-upload and a new store continues, re-sending the part in flight THEN it completes and streams back byte-exact', async () => {
    const prefix = newPrefix();
    const dir = path.join(work, 'crash', 'log', 's3-staging');
    const sid = randomUUID();
    const bytes = randomBytes(200 * 1024 * 1024 + 12_345);
    const want = createHash('sha256').update(bytes).digest('hex');
    const printCount = Math.ceil(bytes.length / (64 * 1024));
    const log = logOf(
      { event: 'session.start', ei: 0, user: 'alice' },
      ...Array.from({ length: printCount }, (_, i) => ({ event: 'print', ei: i + 1, offset: i * 64 * 1024, bytes: Math.min(64 * 1024, bytes.length - i * 64 * 1024), ms: i })),
      { event: 'session.end', ei: printCount + 1 },
    );
    // As the uploader sends them: the log's parts first, then the bytes'.
    const parts = [...split(log, MAX_PART_BYTES, 1, 'log'), ...split(bytes, MAX_PART_BYTES, 2, 'bytes')];
    expect(parts).toHaveLength(42);

    // GIVEN the first half of the parts reached S3 (and the small log part the local staging)
    const first = open(prefix, dir);
    for (const p of parts.slice(0, 21)) await first.putPart(sid, p.part, p.data);
    expect(await uploadsUnder(prefix)).toEqual([{ key: `${prefix}/default/${sid}.recording`, uploadId: expect.any(String) }]);
    // WHEN the process dies: its store object and connections are gone, the data dir stays
    first.client.destroy();

    const second = open(prefix, dir);
    for (const p of parts.slice(20)) await second.putPart(sid, p.part, p.data);
    expect(await second.complete(sid, parts.map((p) => p.ref))).toEqual({ created: true, url: `s3://${s3.bucket}/${prefix}/default/${sid}.recording` });

    // THEN the recording is two objects, nothing is left half-uploaded or staged
    expect(await keysUnder(prefix)).toEqual([`${prefix}/default/${sid}.index.json`, `${prefix}/default/${sid}.recording`]);
    expect(await uploadsUnder(prefix)).toEqual([]);
    expect(fs.readdirSync(path.join(dir, 'default'))).toEqual([]);
    const head = await admin.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: `${prefix}/default/${sid}.recording` }));
    expect(head.ContentLength).toBe(log.length + bytes.length);

    // AND a third store (another restart) streams it back in MAX_CHUNK_BYTES reads, byte-exact
    const reader = open(prefix, path.join(work, 'crash-reader'));
    const hash = createHash('sha256');
    let got = 0;
    for (;;) {
      const chunk = await reader.stream(sid, got, MAX_CHUNK_BYTES);
      if (chunk.length === 0) break;
      hash.update(chunk);
      got += chunk.length;
    }
    expect(got).toBe(bytes.length);
    expect(hash.digest('hex')).toBe(want);
    const events = await reader.events(sid, { after: printCount - 1 });
    expect(events.map((e) => e.ei)).toEqual([printCount - 1, printCount, printCount + 1]);
  });

  it('GIVEN a complete recording THEN stream is one ranged GetObject per segment and events after N read from the checkpoint before N, not the whole log', async () => {
    const prefix = newPrefix();
    const store = open(prefix, path.join(work, 'ranges'), { checkpointBytes: 16 * 1024 });
    const sid = randomUUID();
    const log = logOf(...Array.from({ length: 20_000 }, (_, i) => ({ event: 'print', ei: i, offset: i, bytes: 1, ms: i })));
    const bytes = randomBytes(MAX_PART_BYTES + 4096);
    const parts = [...split(log, MAX_PART_BYTES, 1, 'log'), ...split(bytes, MAX_PART_BYTES, 2, 'bytes')];
    for (const p of parts) await store.putPart(sid, p.part, p.data);
    await store.complete(sid, parts.map((p) => p.ref));

    const index = JSON.parse(
      await (await admin.send(new GetObjectCommand({ Bucket: s3.bucket, Key: `${prefix}/default/${sid}.index.json` }))).Body!.transformToString(),
    ) as RecordingIndex;
    // The full bytes part is S3 part 2, first in the object; the small log part and bytes tail follow it.
    expect(index.bytes).toEqual({ size: bytes.length, segments: [[0, MAX_PART_BYTES], [MAX_PART_BYTES + log.length, 4096]] });
    expect(index.log).toEqual({ size: log.length, segments: [[MAX_PART_BYTES, log.length]] });
    expect(index.checkpoints.length).toBeGreaterThan(log.length / (32 * 1024));

    const seen = capture(store.client);
    const got = await store.stream(sid, MAX_PART_BYTES - 10, 20);
    expect(got.equals(bytes.subarray(MAX_PART_BYTES - 10, MAX_PART_BYTES + 10))).toBe(true);
    expect(seen.filter((s) => s.command === 'GetObjectCommand').map((s) => s.headers.range)).toEqual([
      `bytes=${MAX_PART_BYTES - 10}-${MAX_PART_BYTES - 1}`,
      `bytes=${MAX_PART_BYTES + log.length}-${MAX_PART_BYTES + log.length + 9}`,
    ]);

    seen.length = 0;
    expect((await store.events(sid, { after: 19_990, limit: 3 })).map((e) => e.ei)).toEqual([19_990, 19_991, 19_992]);
    const ranges = seen.filter((s) => s.command === 'GetObjectCommand').map((s) => /bytes=(\d+)-(\d+)/.exec(s.headers.range)!.slice(1).map(Number));
    expect(ranges).toHaveLength(1);
    const [from, to] = ranges[0];
    expect(from).toBeGreaterThan(MAX_PART_BYTES + log.length - 64 * 1024); // within a few checkpoints of the end of the log
    expect(to).toBe(MAX_PART_BYTES + log.length - 1);
  });

  it('GIVEN abandoned multipart uploads WHEN the completer runs THEN those older than the grace period are aborted and their staging removed, other keys are left alone, and a node re-sending the recording still completes it', async () => {
    const prefix = newPrefix();
    const dir = path.join(work, 'completer');
    const store = open(prefix, dir);
    const abandoned = randomUUID();
    const resumed = randomUUID();
    const full = randomBytes(MAX_PART_BYTES);
    const tail = Buffer.from('tail');
    for (const sid of [abandoned, resumed]) {
      await store.putPart(sid, 1, full);
      await store.putPart(sid, 2, tail);
    }
    // An upload started by another auth server (no local journal here), and one outside the recordings layout.
    const otherServer = `${prefix}/default/${randomUUID()}.recording`;
    const notOurs = `${prefix}/default/notes.txt`;
    for (const Key of [otherServer, notOurs]) await admin.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key }));
    expect(await uploadsUnder(prefix)).toHaveLength(4);

    // WHEN it runs with the default grace (24 h): everything is too young
    expect(await store.completeAbandoned()).toEqual({ aborted: [], removedStaging: [] });
    expect(await uploadsUnder(prefix)).toHaveLength(4);

    // WHEN it runs with no grace at all
    const report = await store.completeAbandoned({ graceMs: 0 });
    expect(report.aborted.map((a) => a.key).sort()).toEqual([abandoned, resumed].map((sid) => `${prefix}/default/${sid}.recording`).concat(otherServer).sort());
    expect(report.removedStaging.sort()).toEqual([`default/${abandoned}`, `default/${resumed}`].sort());
    expect(await uploadsUnder(prefix)).toEqual([{ key: notOurs, uploadId: expect.any(String) }]);
    expect(fs.readdirSync(path.join(dir, 'default'))).toEqual([]);

    // THEN a node still holding one of them fails to complete what is gone, sends everything again, and completes it
    const refs = [ref(1, 'bytes', full), ref(2, 'bytes', tail)];
    await expect(store.complete(resumed, refs)).rejects.toThrow(/part 1 .* never uploaded/);
    await store.putPart(resumed, 1, full);
    await store.putPart(resumed, 2, tail);
    expect((await store.complete(resumed, refs)).created).toBe(true);
    expect(await store.stream(resumed, MAX_PART_BYTES - 2, 10)).toEqual(Buffer.concat([full.subarray(MAX_PART_BYTES - 2), tail]));
  });

  it('GIVEN an upload aborted behind the store\'s back WHEN a part or complete uses it THEN the store starts a new upload or asks for the parts again', async () => {
    const prefix = newPrefix();
    const store = open(prefix, path.join(work, 'aborted'));
    const sid = randomUUID();
    const parts = split(randomBytes(2 * MAX_PART_BYTES + 10), MAX_PART_BYTES, 1, 'bytes');
    await store.putPart(sid, 1, parts[0].data);
    const [{ uploadId }] = await uploadsUnder(prefix);
    // Another auth server's completer, with no journal of this upload.
    expect((await open(prefix, path.join(work, 'aborted-other')).completeAbandoned({ graceMs: 0 })).aborted).toEqual([{ key: `${prefix}/default/${sid}.recording`, uploadId }]);

    await store.putPart(sid, 2, parts[1].data); // NoSuchUpload: a new upload
    await store.putPart(sid, 3, parts[2].data);
    await expect(store.complete(sid, parts.map((p) => p.ref))).rejects.toThrow(/part 1 .* never uploaded/);
    await store.putPart(sid, 1, parts[0].data);
    expect((await store.complete(sid, parts.map((p) => p.ref))).created).toBe(true);
  });

  it('GIVEN each server-side encryption setting THEN the object-creating requests carry its headers and the recording plays back (request headers checked; s3rver does not encrypt)', async () => {
    const cases = [
      { sse: undefined, kmsKeyId: 'alias/teleport-recordings', want: { 'x-amz-server-side-encryption': 'aws:kms', 'x-amz-server-side-encryption-aws-kms-key-id': 'alias/teleport-recordings' } },
      { sse: 'aws:kms' as const, kmsKeyId: undefined, want: { 'x-amz-server-side-encryption': 'aws:kms' } },
      { sse: 'AES256' as const, kmsKeyId: undefined, want: { 'x-amz-server-side-encryption': 'AES256' } },
      { sse: 'off' as const, kmsKeyId: undefined, want: {} },
    ];
    for (const c of cases) {
      const store = open(newPrefix(), path.join(work, `sse-${c.sse}-${c.kmsKeyId ? 'key' : 'nokey'}`), { sse: c.sse, kmsKeyId: c.kmsKeyId });
      const seen = capture(store.client);
      const sid = randomUUID();
      const log = logOf({ event: 'session.start', ei: 0 });
      const bytes = randomBytes(MAX_PART_BYTES + 100);
      const parts = [{ part: 1, data: log, ref: ref(1, 'log', log) }, ...split(bytes, MAX_PART_BYTES, 2, 'bytes')];
      for (const p of parts) await store.putPart(sid, p.part, p.data);
      await store.complete(sid, parts.map((p) => p.ref));
      // A small recording goes in one PutObject.
      const small = randomUUID();
      await store.putPart(small, 1, log);
      await store.complete(small, [ref(1, 'log', log)]);

      const sse = (s: Seen) => Object.fromEntries(Object.entries(s.headers).filter(([k]) => k.startsWith('x-amz-server-side-encryption')));
      const creating = seen.filter((s) => ['CreateMultipartUploadCommand', 'PutObjectCommand'].includes(s.command));
      expect(creating.map((s) => s.command).sort()).toEqual(['CreateMultipartUploadCommand', 'PutObjectCommand', 'PutObjectCommand', 'PutObjectCommand']);
      for (const s of creating) expect(sse(s)).toEqual(c.want);
      for (const s of seen.filter((x) => x.command === 'UploadPartCommand')) expect(sse(s)).toEqual({}); // S3 takes SSE-KMS on the upload, not on parts
      expect((await store.stream(sid, MAX_PART_BYTES, 100)).equals(bytes.subarray(MAX_PART_BYTES))).toBe(true);
    }
  });

  it('GIVEN S3 throttling WHEN fewer failures than maxAttempts THEN the request is retried and succeeds; WHEN more THEN a ConnectionProblemError, and the next request works', async () => {
    const store = open(newPrefix(), path.join(work, 'retry'), { maxAttempts: 3 });
    const sid = randomUUID();
    const bytes = randomBytes(1000);
    await store.putPart(sid, 1, bytes);
    await store.complete(sid, [ref(1, 'bytes', bytes)]);

    await s3.injectFaults(2);
    expect(await store.stream(sid, 0, 1000)).toEqual(bytes);
    expect(await s3.faultState()).toEqual({ remaining: 0, injected: 2 });

    await s3.injectFaults(3, 500, 'InternalError');
    await expect(store.stream(sid, 0, 1000)).rejects.toThrow(ConnectionProblemError);
    expect(await s3.faultState()).toEqual({ remaining: 0, injected: 3 });
    expect(await store.stream(sid, 0, 1000)).toEqual(bytes);
  });

  it('GIVEN the tail of small parts is bigger than one S3 part THEN it goes in several parts after the node\'s part numbers', async () => {
    const store = open(newPrefix(), path.join(work, 'tail'));
    const seen = capture(store.client);
    const sid = randomUUID();
    const parts = split(randomBytes(20 * 1024 * 1024), 1024 * 1024, 1, 'bytes');
    for (const p of parts) await store.putPart(sid, p.part, p.data);
    await store.complete(sid, parts.map((p) => p.ref));
    expect(seen.filter((s) => s.command === 'UploadPartCommand')).toHaveLength(2); // 16 MiB and 4 MiB
    expect(TAIL_FIRST_PART).toBe(8193);
    expect((await store.stream(sid, 16 * 1024 * 1024 - 3, 6)).equals(Buffer.concat(parts.map((p) => p.data)).subarray(16 * 1024 * 1024 - 3, 16 * 1024 * 1024 + 3))).toBe(true);
  });
});

describe('audit_sessions_uri', () => {
  it('GIVEN the S3 forms Teleport documents THEN bucket, prefix, region, endpoint and encryption are parsed', () => {
    expect(parseSessionsUri('s3://teleport-recordings/records', 'us-west-2')).toEqual({ type: 's3', bucket: 'teleport-recordings', prefix: 'records', region: 'us-west-2', sse: 'aws:kms' });
    expect(parseSessionsUri('s3://b.example/a/b/?region=eu-west-1&sse=aws:kms&sse_kms_key=arn:aws:kms:eu-west-1:1:key/k')).toEqual({
      type: 's3',
      bucket: 'b.example',
      prefix: 'a/b',
      region: 'eu-west-1',
      sse: 'aws:kms',
      kmsKeyId: 'arn:aws:kms:eu-west-1:1:key/k',
    });
    expect(parseSessionsUri('s3://bucket?endpoint=127.0.0.1:9000&insecure=true&disable_server_side_encryption=true')).toEqual({
      type: 's3',
      bucket: 'bucket',
      prefix: '',
      region: undefined,
      endpoint: 'http://127.0.0.1:9000',
      sse: 'off',
    });
    expect(parseSessionsUri('s3://bucket/p?endpoint=minio.internal:9000&sse=AES256')).toMatchObject({ endpoint: 'https://minio.internal:9000', sse: 'AES256' });
    expect(parseSessionsUri('s3://bucket/p?disablesse=true')).toMatchObject({ sse: 'off' });
    expect(parseSessionsUri('file:///var/lib/teleport/recordings')).toEqual({ type: 'file', dir: '/var/lib/teleport/recordings' });
  });

  it('GIVEN a wrong URI THEN it is refused, naming the problem', () => {
    expect(() => parseSessionsUri('s3://Bad_Bucket/x')).toThrow(/not a valid S3 bucket name/);
    expect(() => parseSessionsUri('s3://bucket/x?regoin=us-east-1')).toThrow(/unknown parameter "regoin"/);
    expect(() => parseSessionsUri('s3://bucket/x?sse=AES256&sse_kms_key=k')).toThrow(/sse_kms_key needs server-side encryption aws:kms/);
    expect(() => parseSessionsUri('s3://bucket/x?sse=aws:kms&disablesse=true')).toThrow(/contradict/);
    expect(() => parseSessionsUri('s3://bucket/a//b')).toThrow(/not a valid key prefix/);
    expect(() => parseSessionsUri('s3://bucket/a/..%2Fx')).toThrow(/not a valid key prefix/);
    expect(() => parseSessionsUri('file://host/x')).toThrow(/names a host/);
  });

  it('GIVEN teleport.yaml THEN storage.auditSessions is the S3 bucket (region from storage.region), files by default, and a bad URI is reported at its line', () => {
    const cfg = (text: string) => buildConfig(parseConfig(text, 'teleport.yaml'), { dataDir: '/data' }, {});
    expect(cfg('teleport:\n  storage:\n    region: us-east-2\n    audit_sessions_uri: s3://rec/records\n').storage.auditSessions).toEqual({
      type: 's3',
      bucket: 'rec',
      prefix: 'records',
      region: 'us-east-2',
      sse: 'aws:kms',
    });
    expect(cfg('').storage.auditSessions).toEqual({ type: 'file', dir: '/data/log/sessions' });
    expect(() => cfg('teleport:\n  storage:\n    audit_sessions_uri: s3://rec/x?bogus=1\n')).toThrow(/teleport.storage.audit_sessions_uri: unknown parameter "bogus"/);
  });
});
