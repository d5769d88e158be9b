/**
 * The node's recording uploader, against a real FileRecordingStore: what it
 * uploads (completed and interrupted recordings, never one still being
 * written), in parts, byte-exact; local files go only after the store has
 * the recording; failures are retried.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { recordingFiles, SessionRecorder } from '../../../runtime/recordings/recorder';
import { FileRecordingStore, PartRef } from '../../../runtime/recordings/store';
import { RecordingTarget, RecordingUploader } from '../../../runtime/recordings/uploader';
import { recordingUploadsPending, registry } from '../../../runtime/service/metrics';
import { BadParameterError, ConnectionProblemError } from '../../../runtime/utils/errors';
import { setLogLevel } from '../../../runtime/utils/logger';
import { tempDir } from '../../helpers/proc';

/** The store as a target, counting the parts it was sent. */
class CountingTarget implements RecordingTarget {
  parts: number[] = [];
  failuresLeft = 0;
  constructor(readonly store: FileRecordingStore) {}
  async putPart(sid: string, part: number, data: Buffer, ns?: string) {
    if (this.failuresLeft > 0) {
      this.failuresLeft--;
      throw new ConnectionProblemError('auth server unreachable');
    }
    this.parts.push(part);
    return this.store.putPart(sid, part, data, ns);
  }
  complete(sid: string, parts: PartRef[], ns?: string) {
    return this.store.complete(sid, parts, ns);
  }
}

describe('RecordingUploader', () => {
  let root: string;
  let dir: string;
  let store: FileRecordingStore;
  let target: CountingTarget;
  const uploaders: RecordingUploader[] = [];
  const uploader = async (opts: Partial<ConstructorParameters<typeof RecordingUploader>[0]> = {}) => {
    const u = new RecordingUploader({ dir, target, backoff: { initialMs: 2, maxMs: 10 }, ...opts });
    uploaders.push(u);
    await u.start();
    return u;
  };
  beforeAll(() => setLogLevel('error'));
  beforeEach(() => {
    root = tempDir('upl-');
    dir = path.join(root, 'node', 'log', 'upload', 'sessions', 'default');
    store = new FileRecordingStore(path.join(root, 'auth', 'log', 'sessions'));
    target = new CountingTarget(store);
  });
  afterEach(async () => {
    for (const u of uploaders.splice(0)) await u.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  const record = async (sid: string, chunks: Buffer[], close = true) => {
    const rec = new SessionRecorder({ dir, sid, serverId: 'node-1' });
    rec.event({ event: 'session.start' });
    for (const c of chunks) rec.output(c);
    if (close) {
      rec.event({ event: 'session.end' });
      await rec.close();
    }
    return rec;
  };

  it('GIVEN a completed recording WHEN the uploader runs THEN the store has it byte-exact, sent in parts, and the local files are gone', async () => {
    const sid = randomUUID();
    const chunks = Array.from({ length: 20 }, () => randomBytes(500));
    await record(sid, chunks);
    const u = await uploader({ partSize: 1024 });
    await u.flush();

    expect(await store.stream(sid, 0, 1 << 20)).toEqual(Buffer.concat(chunks));
    const events = await store.events(sid);
    expect(events.map((e) => e.event)).toEqual(['session.start', ...chunks.map(() => 'print'), 'session.end']);
    expect(target.parts.length).toBeGreaterThanOrEqual(10 + 1);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('GIVEN a recording left behind by a crashed node (no .completed, no live recorder) THEN it is uploaded with everything that was written', async () => {
    const sid = randomUUID();
    const elsewhere = path.join(root, 'crashed');
    const rec = new SessionRecorder({ dir: elsewhere, sid, serverId: 'node-1' });
    rec.event({ event: 'session.start' });
    rec.output(Buffer.from('written before the crash'));
    // What the crash leaves in the upload directory: the two files as they were, no marker.
    fs.mkdirSync(dir, { recursive: true });
    const from = recordingFiles(elsewhere, sid);
    const to = recordingFiles(dir, sid);
    fs.copyFileSync(from.bytes, to.bytes);
    fs.copyFileSync(from.log, to.log);

    const u = await uploader();
    await u.flush();

    expect(await store.stream(sid, 0, 1000)).toEqual(Buffer.from('written before the crash'));
    expect((await store.events(sid)).map((e) => e.event)).toEqual(['session.start', 'print']);
    expect(fs.readdirSync(dir)).toEqual([]);
    await rec.close();
  });

  it('GIVEN a session still being recorded THEN it is left alone until its recorder closes', async () => {
    const sid = randomUUID();
    const rec = await record(sid, [Buffer.from('part one ')], false);
    const u = await uploader();
    await u.flush();
    expect(await store.has(sid)).toBe(false);
    expect(fs.readdirSync(dir).sort()).toEqual([`${sid}.session.bytes`, `${sid}.session.log`]);

    rec.output(Buffer.from('part two'));
    await rec.close();
    u.notify();
    await u.flush();
    expect(await store.stream(sid, 0, 1000)).toEqual(Buffer.from('part one part two'));
  });

  it('GIVEN an unreachable auth side THEN the upload is retried until it succeeds, and local files stay until then', async () => {
    const sid = randomUUID();
    const data = randomBytes(3000);
    await record(sid, [data]);
    target.failuresLeft = 4;
    const u = await uploader({ partSize: 1000 });
    await u.flush();

    expect(target.failuresLeft).toBe(0);
    expect(await store.stream(sid, 0, 10_000)).toEqual(data);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('GIVEN an unreachable auth side THEN recording_uploads_pending counts the recording until it is uploaded, and not one still being written', async () => {
    // GIVEN a finished recording, one still being written, and an auth side that refuses the first tries
    const pending = async () => (await registry.getSingleMetric('recording_uploads_pending')!.get()).values[0].value;
    await record(randomUUID(), [randomBytes(100)]);
    const live = await record(randomUUID(), [randomBytes(100)], false);
    target.failuresLeft = 1_000_000;
    const u = await uploader();
    const untrack = recordingUploadsPending.track(() => u.pending());
    try {
      // THEN
      expect(await pending()).toBe(1);
      // WHEN the auth side answers again
      target.failuresLeft = 0;
      await u.flush();
      // THEN
      expect(await pending()).toBe(0);
    } finally {
      untrack();
      await live.close();
    }
  });

  it('GIVEN a recording the auth side already has THEN the local copy is removed without a second upload', async () => {
    const sid = randomUUID();
    await record(sid, [Buffer.from('once')]);
    const first = await uploader();
    await first.flush();
    await first.close();
    await record(sid, [Buffer.from('again')]); // same session ID left on disk again, e.g. after a lost acknowledgement

    const u = await uploader();
    await u.flush();

    expect(fs.readdirSync(dir)).toEqual([]);
    expect(await store.stream(sid, 0, 100)).toEqual(Buffer.from('once'));
  });

  it('GIVEN only a completion marker left by a crash during removal THEN it is cleaned up and nothing is uploaded', async () => {
    const sid = randomUUID();
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(recordingFiles(dir, sid).completed, '{}');
    const u = await uploader();
    await u.flush();
    expect(fs.readdirSync(dir)).toEqual([]);
    expect(await store.has(sid)).toBe(false);
  });

  it('GIVEN invalid options THEN the uploader refuses to start', () => {
    expect(() => new RecordingUploader({ dir })).toThrow(BadParameterError);
    expect(() => new RecordingUploader({ dir, target, partSize: 6 * 1024 * 1024 })).toThrow(/partSize/);
    expect(() => new RecordingUploader({ dir, target, namespace: '../x' })).toThrow(/namespace/);
  });
});
