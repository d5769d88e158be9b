/**
 * The node-side session recorder: the bytes file, the JSON-lines event log
 * with `print` events pointing into it, the completion marker, and the
 * file modes.
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isRecording, recordingFiles, SessionRecorder } from '../../../runtime/recordings/recorder';
import { AlreadyExistsError, BadParameterError } from '../../../runtime/utils/errors';
import { tempDir } from '../../helpers/proc';

const readLog = (file: string) =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));

describe('SessionRecorder', () => {
  let root: string;
  let dir: string;
  beforeEach(() => {
    root = tempDir('rec-');
    dir = path.join(root, 'log', 'upload', 'sessions', 'default');
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  it('GIVEN a session WHEN output and events are recorded THEN the bytes file holds the output and the log holds print events pointing into it, in ei order', async () => {
    const sid = randomUUID();
    const rec = new SessionRecorder({ dir, sid, serverId: 'node-1' });
    const start = rec.event({ event: 'session.start', user: 'alice', login: 'root', size: '80:25' });
    rec.output(Buffer.from('hello '));
    rec.event({ event: 'resize', size: '120:40' });
    rec.output(Buffer.from('world\r\n'));
    rec.output(Buffer.alloc(0));
    rec.event({ event: 'session.end' });
    const files = recordingFiles(dir, sid);

    // Written as it happens, before close.
    expect(fs.readFileSync(files.bytes, 'utf8')).toBe('hello world\r\n');
    expect(fs.existsSync(files.completed)).toBe(false);
    await rec.close();

    const log = readLog(files.log);
    expect(log.map((e) => [e.event, e.ei])).toEqual([
      ['session.start', 0],
      ['print', 1],
      ['resize', 2],
      ['print', 3],
      ['session.end', 4],
    ]);
    expect(log[1]).toEqual({ event: 'print', bytes: 6, offset: 0, ei: 1, ms: expect.any(Number), time: expect.any(String) });
    expect(log[3]).toMatchObject({ event: 'print', bytes: 7, offset: 6 });
    expect(log[3].ms).toBeGreaterThanOrEqual(log[1].ms);
    expect(start).toMatchObject({ event: 'session.start', code: 'T2000I', sid, ei: 0, server_id: 'node-1', namespace: 'default', uid: expect.any(String) });
    expect(log[0]).toEqual(start);
    expect(log[2]).toMatchObject({ event: 'resize', code: 'T2002I', size: '120:40', sid });
    expect(JSON.parse(fs.readFileSync(files.completed, 'utf8'))).toMatchObject({ sid, bytes: 13, events: 5 });
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    for (const f of [files.bytes, files.log, files.completed]) expect(fs.statSync(f).mode & 0o777).toBe(0o600);
  });

  it('GIVEN a recorder THEN it is live until closed, its session cannot be recorded twice, and it takes nothing once closed', async () => {
    const sid = randomUUID();
    const rec = new SessionRecorder({ dir, sid, serverId: 'node-1' });
    expect(isRecording(dir, sid)).toBe(true);
    expect(() => new SessionRecorder({ dir, sid, serverId: 'node-1' })).toThrow(AlreadyExistsError);
    await Promise.all([rec.close(), rec.close()]);
    expect(isRecording(dir, sid)).toBe(false);
    expect(() => new SessionRecorder({ dir, sid, serverId: 'node-1' })).toThrow(AlreadyExistsError);
    expect(() => rec.output(Buffer.from('x'))).toThrow(/closed/);
    expect(() => rec.event({ event: 'resize' })).toThrow(/closed/);
  });

  it('GIVEN a session ID that is not a UUID THEN nothing is created outside the directory', () => {
    for (const sid of ['../../etc/passwd', 'a/b', '', 'not-a-uuid']) {
      expect(() => new SessionRecorder({ dir, sid, serverId: 'node-1' })).toThrow(BadParameterError);
    }
    expect(fs.readdirSync(root)).toEqual([]);
  });
});
