/**
 * The auth-side recording store: parts staged by number, a recording that
 * appears only when completed with a matching part list, completing twice,
 * playback bounds, and inputs that could escape the directory.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MAX_CHUNK_BYTES, MAX_PART_BYTES, MAX_PARTS } from '../../../runtime/recordings/limits';
import { FileRecordingStore, PartRef, RecordingFile, sha256Hex } from '../../../runtime/recordings/store';
import { AlreadyExistsError, BadParameterError, LimitExceededError, NotFoundError } from '../../../runtime/utils/errors';
import { tempDir } from '../../helpers/proc';
import { recordingStoreSuite } from './suite';

const ref = (part: number, file: RecordingFile, data: Buffer): PartRef => ({ part, file, size: data.length, sha256: sha256Hex(data) });
const logOf = (...events: object[]) => Buffer.from(events.map((e) => JSON.stringify(e) + '\n').join(''));

describe('FileRecordingStore', () => {
  let root: string;
  let store: FileRecordingStore;
  beforeEach(() => {
    root = tempDir('store-');
    store = new FileRecordingStore(path.join(root, 'log', 'sessions'));
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  it('GIVEN parts uploaded out of order, one twice THEN the recording appears only on complete, assembled in part order from the latest copy of each part', async () => {
    const sid = randomUUID();
    const log = logOf({ event: 'session.start', ei: 0 }, { event: 'print', ei: 1, offset: 0, bytes: 12 }, { event: 'session.end', ei: 2 });
    const b1 = randomBytes(7);
    const b2 = Buffer.from('final');
    await store.putPart(sid, 3, b2);
    await store.putPart(sid, 2, Buffer.from('stale copy'));
    await store.putPart(sid, 1, log);
    await store.putPart(sid, 2, b1);

    expect(await store.has(sid)).toBe(false);
    await expect(store.events(sid)).rejects.toThrow(NotFoundError);
    await expect(store.stream(sid, 0, 10)).rejects.toThrow(NotFoundError);

    const res = await store.complete(sid, [ref(3, 'bytes', b2), ref(1, 'log', log), ref(2, 'bytes', b1)]);
    expect(res).toEqual({ created: true, url: `file://${path.join(root, 'log', 'sessions', 'default', sid)}` });

    const dir = path.join(root, 'log', 'sessions', 'default');
    expect(fs.readFileSync(path.join(dir, `${sid}.session.bytes`))).toEqual(Buffer.concat([b1, b2]));
    expect(fs.readFileSync(path.join(dir, `${sid}.session.log`))).toEqual(log);
    expect(fs.readdirSync(dir).sort()).toEqual([`${sid}.session.bytes`, `${sid}.session.log`]);
    expect(fs.readdirSync(path.join(root, 'log', 'sessions', '.staging', 'default'))).toEqual([]);
    expect(fs.statSync(path.join(dir, `${sid}.session.bytes`)).mode & 0o777).toBe(0o600);
    expect(await store.stream(sid, 0, MAX_CHUNK_BYTES)).toEqual(Buffer.concat([b1, b2]));
  });

  it('GIVEN a complete recording THEN completing again is harmless and parts are refused', async () => {
    const sid = randomUUID();
    const log = logOf({ event: 'session.start', ei: 0 });
    const bytes = Buffer.from('output');
    await store.putPart(sid, 1, log);
    await store.putPart(sid, 2, bytes);
    const parts = [ref(1, 'log', log), ref(2, 'bytes', bytes)];
    expect((await store.complete(sid, parts)).created).toBe(true);

    expect((await store.complete(sid, parts)).created).toBe(false);
    await expect(store.putPart(sid, 2, Buffer.from('tampered'))).rejects.toThrow(AlreadyExistsError);
    expect(await store.stream(sid, 0, 100)).toEqual(bytes);
  });

  it('GIVEN a part list that does not match what was uploaded THEN complete fails, nothing appears, and re-sending the part completes it', async () => {
    const sid = randomUUID();
    const log = logOf({ event: 'session.start', ei: 0 });
    const bytes = randomBytes(100);
    await store.putPart(sid, 1, log);
    await store.putPart(sid, 2, bytes.subarray(0, 50)); // an upload cut short
    const parts = [ref(1, 'log', log), ref(2, 'bytes', bytes)];

    await expect(store.complete(sid, parts)).rejects.toThrow(/part 2 .* does not match/);
    await expect(store.complete(sid, [ref(1, 'log', log), ref(2, 'bytes', bytes.subarray(0, 50)), ref(3, 'bytes', bytes)])).rejects.toThrow(/part 3 .* never uploaded/);
    expect(await store.has(sid)).toBe(false);

    await store.putPart(sid, 2, bytes);
    expect((await store.complete(sid, parts)).created).toBe(true);
    expect(await store.stream(sid, 0, 1000)).toEqual(bytes);
  });

  it('GIVEN concurrent completes of one recording THEN exactly one creates it', async () => {
    const sid = randomUUID();
    const log = logOf({ event: 'session.start', ei: 0 });
    await store.putPart(sid, 1, log);
    const results = await Promise.all([1, 2, 3].map(() => store.complete(sid, [ref(1, 'log', log)])));
    expect(results.filter((r) => r.created)).toHaveLength(1);
  });

  it('GIVEN a recording THEN events filter by index and kind, skip a torn line, and stream stays within bounds', async () => {
    const sid = randomUUID();
    const events = [{ event: 'session.start', ei: 0 }, ...Array.from({ length: 5 }, (_, i) => ({ event: 'print', ei: i + 1, offset: i, bytes: 1 })), { event: 'session.end', ei: 6 }];
    const log = Buffer.concat([logOf(...events), Buffer.from('{"event":"pri')]);
    const bytes = Buffer.from('abcde');
    await store.putPart(sid, 1, log);
    await store.putPart(sid, 2, bytes);
    await store.complete(sid, [ref(1, 'log', log), ref(2, 'bytes', bytes)]);

    expect((await store.events(sid)).map((e) => e.ei)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect((await store.events(sid, { after: 4 })).map((e) => e.ei)).toEqual([4, 5, 6]);
    expect((await store.events(sid, { after: 1, limit: 2 })).map((e) => e.ei)).toEqual([1, 2]);
    expect((await store.events(sid, { print: false })).map((e) => e.event)).toEqual(['session.start', 'session.end']);

    expect(await store.stream(sid, 1, 3)).toEqual(Buffer.from('bcd'));
    expect(await store.stream(sid, 3, 100)).toEqual(Buffer.from('de'));
    expect(await store.stream(sid, 5, 100)).toEqual(Buffer.alloc(0));
    expect(await store.stream(sid, 1e12, 1)).toEqual(Buffer.alloc(0));
    await expect(store.stream(sid, 0, MAX_CHUNK_BYTES + 1)).rejects.toThrow(BadParameterError);
    await expect(store.stream(sid, 0, 0)).rejects.toThrow(BadParameterError);
    await expect(store.stream(sid, -1, 10)).rejects.toThrow(BadParameterError);
    await expect(store.events(sid, { after: -1 })).rejects.toThrow(BadParameterError);
  });

  it('GIVEN hostile names, part numbers or sizes THEN they are refused and nothing is written outside the store', async () => {
    const sid = randomUUID();
    for (const bad of ['../../../../tmp/x', 'a/b', '..', `${sid}/..`, `${sid}\0`]) {
      await expect(store.putPart(bad, 1, Buffer.from('x'))).rejects.toThrow(BadParameterError);
      await expect(store.events(bad)).rejects.toThrow(BadParameterError);
    }
    for (const ns of ['..', '../x', 'a/b', '', 'UPPER']) await expect(store.putPart(sid, 1, Buffer.from('x'), ns)).rejects.toThrow(BadParameterError);
    for (const part of [0, -1, 1.5, MAX_PARTS + 1]) await expect(store.putPart(sid, part, Buffer.from('x'))).rejects.toThrow(BadParameterError);
    await expect(store.putPart(sid, 1, Buffer.alloc(MAX_PART_BYTES + 1))).rejects.toThrow(LimitExceededError);
    const x = Buffer.from('x');
    await expect(store.complete(sid, [ref(1, 'log', x), ref(1, 'bytes', x)])).rejects.toThrow(/listed twice/);
    await expect(store.complete(sid, [{ ...ref(1, 'log', x), file: 'passwd' as RecordingFile }])).rejects.toThrow(/unknown file/);
    await expect(store.complete(sid, [{ ...ref(1, 'log', x), sha256: 'zz' }])).rejects.toThrow(/SHA-256/);
    expect(fs.readdirSync(root)).toEqual(['log']);
    expect(fs.readdirSync(path.join(root, 'log'))).toEqual(['sessions']);
    expect(fs.readdirSync(path.join(root, 'log', 'sessions'))).toEqual([]);
  });
});

describe('FileRecordingStore: the behaviour every recording store shares (suite.ts)', () => {
  recordingStoreSuite(async () => {
    const root = tempDir('store-suite-');
    const dir = path.join(root, 'log', 'sessions');
    return {
      store: new FileRecordingStore(dir),
      url: (sid, ns = 'default') => `file://${path.join(dir, ns, sid)}`,
      reopen: async () => new FileRecordingStore(dir),
      destroy: async () => fs.rmSync(root, { recursive: true, force: true }),
    };
  });
});
