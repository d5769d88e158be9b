/**
 * The auth-side file recording store: the shared recording-store suite
 * (suite.ts: parts, completion, playback bounds, restarts), and inputs that
 * could escape the directory.
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MAX_PART_BYTES, MAX_PARTS } from '../../../runtime/recordings/limits';
import { FileRecordingStore, PartRef, RecordingFile, sha256Hex } from '../../../runtime/recordings/store';
import { BadParameterError, LimitExceededError } from '../../../runtime/utils/errors';
import { tempDir } from '../../helpers/proc';
import { recordingStoreSuite } from './suite';

const ref = (part: number, file: RecordingFile, data: Buffer): PartRef => ({ part, file, size: data.length, sha256: sha256Hex(data) });

describe('FileRecordingStore: hostile input', () => {
  let root: string;
  let store: FileRecordingStore;
  beforeEach(() => {
    root = tempDir('store-');
    store = new FileRecordingStore(path.join(root, 'log', 'sessions'));
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

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
