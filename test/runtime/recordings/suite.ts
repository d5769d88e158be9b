/**
 * What every RecordingStore must do, whatever keeps the recordings (files,
 * S3): parts staged by number and assembled in part order when `complete`
 * names them, a recording that appears only then, completing twice, part
 * lists that do not match, concurrent completes, playback by events and
 * byte ranges across part boundaries, parts of every size, an upload
 * continued by a new store object (a restarted auth server), and hostile
 * input. A store's test file calls `recordingStoreSuite` inside a describe.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { MAX_CHUNK_BYTES, MAX_PART_BYTES, MAX_PARTS } from '../../../runtime/recordings/limits';
import { PartRef, RecordingFile, RecordingStore, sha256Hex } from '../../../runtime/recordings/store';
import { AlreadyExistsError, BadParameterError, LimitExceededError, NotFoundError } from '../../../runtime/utils/errors';

export const ref = (part: number, file: RecordingFile, data: Buffer): PartRef => ({ part, file, size: data.length, sha256: sha256Hex(data) });
export const logOf = (...events: object[]) => Buffer.from(events.map((e) => JSON.stringify(e) + '\n').join(''));

/** Splits `data` into parts of `size` bytes (the last shorter), numbered from `first`. */
export function split(data: Buffer, size: number, first: number, file: RecordingFile): { part: number; data: Buffer; ref: PartRef }[] {
  const out: { part: number; data: Buffer; ref: PartRef }[] = [];
  for (let off = 0, n = first; off < data.length; off += size, n++) {
    const d = data.subarray(off, Math.min(off + size, data.length));
    out.push({ part: n, data: d, ref: ref(n, file, d) });
  }
  return out;
}

/** Reads a recording's bytes back in MAX_CHUNK_BYTES calls, as `tsh play` does. */
export async function streamAll(store: RecordingStore, sid: string, namespace?: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for (let off = 0; ; ) {
    const c = await store.stream(sid, off, MAX_CHUNK_BYTES, namespace);
    if (c.length === 0) return Buffer.concat(chunks);
    chunks.push(c);
    off += c.length;
  }
}

export interface StoreUnderTest {
  store: RecordingStore;
  /** What `complete` answers as the recording's url. */
  url(sid: string, namespace?: string): string;
  /** A new store object over the same storage, as after a restart of the auth server. */
  reopen(): Promise<RecordingStore>;
  destroy(): Promise<void>;
}

export function recordingStoreSuite(create: () => Promise<StoreUnderTest>): void {
  let t: StoreUnderTest;
  let store: RecordingStore;
  beforeEach(async () => {
    t = await create();
    store = t.store;
  });
  afterEach(async () => {
    await t?.destroy();
  });

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
    expect(res).toEqual({ created: true, url: t.url(sid) });
    expect(await store.has(sid)).toBe(true);
    expect(await store.stream(sid, 0, MAX_CHUNK_BYTES)).toEqual(Buffer.concat([b1, b2]));
    expect((await store.events(sid)).map((e) => e.event)).toEqual(['session.start', 'print', 'session.end']);
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
    const other = await t.reopen();
    expect((await other.complete(sid, parts)).created).toBe(false);
    await expect(other.putPart(sid, 2, Buffer.from('tampered'))).rejects.toThrow(AlreadyExistsError);
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

  it('GIVEN a log and bytes of several full 5 MiB parts and a short tail each THEN events page across the parts and byte ranges across part boundaries read back exactly', async () => {
    const sid = randomUUID();
    // About 6.4 MiB of log: 60 000 events, each ei once, every third one a print.
    const events = Array.from({ length: 60_000 }, (_, i) => (i % 3 ? { event: 'print', ei: i, offset: i, bytes: 1, pad: 'x'.repeat(60) } : { event: 'resize', ei: i, size: '80:25' }));
    const log = logOf(...events);
    const bytes = randomBytes(2 * MAX_PART_BYTES + 1000);
    const logParts = split(log, MAX_PART_BYTES, 1, 'log');
    const byteParts = split(bytes, MAX_PART_BYTES, logParts.length + 1, 'bytes');
    expect(logParts.map((p) => p.data.length)).toEqual([MAX_PART_BYTES, log.length - MAX_PART_BYTES]);
    expect(byteParts.map((p) => p.data.length)).toEqual([MAX_PART_BYTES, MAX_PART_BYTES, 1000]);
    for (const p of [...logParts, ...byteParts]) await store.putPart(sid, p.part, p.data);
    await store.complete(sid, [...logParts, ...byteParts].map((p) => p.ref));

    const page = await store.events(sid, { after: 0, limit: 10_000 });
    expect(page.map((e) => e.ei)).toEqual(Array.from({ length: 10_000 }, (_, i) => i));
    // The event whose line crosses from log part 1 into part 2 is whole.
    const crossing = log.subarray(0, MAX_PART_BYTES).toString('utf8').split('\n').length - 1;
    expect((await store.events(sid, { after: crossing, limit: 2 })).map((e) => e.ei)).toEqual([crossing, crossing + 1]);
    expect((await store.events(sid, { after: 59_998 })).map((e) => e.ei)).toEqual([59_998, 59_999]);
    expect((await store.events(sid, { after: 40_000, limit: 3, print: false })).map((e) => e.ei)).toEqual([40_002, 40_005, 40_008]);
    expect(await store.events(sid, { after: 60_000 })).toEqual([]);

    for (const at of [0, MAX_PART_BYTES - 10, 2 * MAX_PART_BYTES - 3, 2 * MAX_PART_BYTES + 990]) {
      expect((await store.stream(sid, at, 20)).equals(bytes.subarray(at, at + 20))).toBe(true);
    }
    expect(sha256Hex(await streamAll(store, sid))).toBe(sha256Hex(bytes));
  });

  it('GIVEN parts of mixed sizes, most far below 5 MiB, one full part among them THEN the recording plays back byte-exact', async () => {
    const sid = randomUUID();
    const log = logOf({ event: 'session.start', ei: 0 }, { event: 'session.end', ei: 1 });
    const sizes = [...Array(7).fill(1024 * 1024), MAX_PART_BYTES, ...Array(12).fill(1024 * 1024 + 7), 123];
    const pieces = sizes.map((n) => randomBytes(n));
    await store.putPart(sid, 1, log);
    const refs = [ref(1, 'log', log)];
    for (const [i, p] of pieces.entries()) {
      await store.putPart(sid, i + 2, p);
      refs.push(ref(i + 2, 'bytes', p));
    }
    await store.complete(sid, refs);
    const bytes = Buffer.concat(pieces);
    expect(sha256Hex(await streamAll(store, sid))).toBe(sha256Hex(bytes));
    const fullAt = 7 * 1024 * 1024;
    expect((await store.stream(sid, fullAt - 5, 10)).equals(bytes.subarray(fullAt - 5, fullAt + 5))).toBe(true);
    expect((await store.stream(sid, fullAt + MAX_PART_BYTES - 5, 10)).equals(bytes.subarray(fullAt + MAX_PART_BYTES - 5, fullAt + MAX_PART_BYTES + 5))).toBe(true);
    expect((await store.events(sid)).map((e) => e.event)).toEqual(['session.start', 'session.end']);
  });

  it('GIVEN an upload interrupted by a restart THEN a new store object takes the rest of the parts, a re-sent part included, and completes it', async () => {
    const sid = randomUUID();
    const log = logOf({ event: 'session.start', ei: 0 });
    const bytes = randomBytes(MAX_PART_BYTES + 5000);
    const parts = [{ part: 1, data: log, ref: ref(1, 'log', log) }, ...split(bytes, MAX_PART_BYTES, 2, 'bytes')];
    await store.putPart(sid, 1, log);
    await store.putPart(sid, 2, parts[1].data);

    const restarted = await t.reopen();
    await restarted.putPart(sid, 2, parts[1].data); // the part in flight at the crash, sent again
    await restarted.putPart(sid, 3, parts[2].data);
    expect(await restarted.complete(sid, parts.map((p) => p.ref))).toEqual({ created: true, url: t.url(sid) });
    expect(sha256Hex(await streamAll(restarted, sid))).toBe(sha256Hex(bytes));
    expect(await store.has(sid)).toBe(true);
  });

  it('GIVEN the same session ID in two namespaces THEN they are separate recordings', async () => {
    const sid = randomUUID();
    const a = Buffer.from('in default');
    const b = Buffer.from('in other');
    await store.putPart(sid, 1, a);
    await store.putPart(sid, 1, b, 'other');
    expect((await store.complete(sid, [ref(1, 'bytes', a)])).url).toBe(t.url(sid));
    expect(await store.has(sid, 'other')).toBe(false);
    expect((await store.complete(sid, [ref(1, 'bytes', b)], 'other')).url).toBe(t.url(sid, 'other'));
    expect(await store.stream(sid, 0, 100)).toEqual(a);
    expect(await store.stream(sid, 0, 100, 'other')).toEqual(b);
  });

  it('GIVEN hostile names, part numbers or sizes THEN they are refused', async () => {
    const sid = randomUUID();
    for (const bad of ['../../../../tmp/x', 'a/b', '..', `${sid}/..`, `${sid}\0`]) {
      await expect(store.putPart(bad, 1, Buffer.from('x'))).rejects.toThrow(BadParameterError);
      await expect(store.events(bad)).rejects.toThrow(BadParameterError);
      await expect(store.stream(bad, 0, 1)).rejects.toThrow(BadParameterError);
    }
    for (const ns of ['..', '../x', 'a/b', '', 'UPPER']) await expect(store.putPart(sid, 1, Buffer.from('x'), ns)).rejects.toThrow(BadParameterError);
    for (const part of [0, -1, 1.5, MAX_PARTS + 1]) await expect(store.putPart(sid, part, Buffer.from('x'))).rejects.toThrow(BadParameterError);
    await expect(store.putPart(sid, 1, Buffer.alloc(MAX_PART_BYTES + 1))).rejects.toThrow(LimitExceededError);
    const x = Buffer.from('x');
    await expect(store.complete(sid, [ref(1, 'log', x), ref(1, 'bytes', x)])).rejects.toThrow(/listed twice/);
    await expect(store.complete(sid, [{ ...ref(1, 'log', x), file: 'passwd' as RecordingFile }])).rejects.toThrow(/unknown file/);
    await expect(store.complete(sid, [{ ...ref(1, 'log', x), sha256: 'zz' }])).rejects.toThrow(/SHA-256/);
    expect(await store.has(sid)).toBe(false);
  });
}
