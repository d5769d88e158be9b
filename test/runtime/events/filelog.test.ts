/** The file audit log: whole lines only, rolled back on a failed write, idempotent by event identity, and a reader that survives damage. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EventFields, FileAuditLog, FileLogIo } from '../../../runtime/events/filelog';
import { setLogWriter } from '../../../runtime/utils/logger';

const DAY = '2026-03-04';
const at = (s: number) => `${DAY}T10:00:${String(s).padStart(2, '0')}Z`;
const range = { from: new Date(`${DAY}T00:00:00Z`), to: new Date(`${DAY}T23:59:59Z`) };

describe('FileAuditLog', () => {
  const dirs: string[] = [];
  const dir = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'filelog-'));
    dirs.push(d);
    return d;
  };
  const fileOf = (d: string) => path.join(d, `${DAY}.00:00:00.log`);
  const linesOf = (d: string) => fs.readFileSync(fileOf(d), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as EventFields);
  afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  /** Captures log lines while `fn` runs. */
  async function captureLog(fn: () => Promise<void>): Promise<string[]> {
    const lines: string[] = [];
    setLogWriter((line) => lines.push(line));
    try {
      await fn();
    } finally {
      setLogWriter((line) => process.stderr.write(line + '\n'), !process.stderr.isTTY);
    }
    return lines;
  }

  it('GIVEN a write that stops half way (disk full) WHEN emitting THEN it rejects, the file is cut back to the last whole record, the next event is whole, and the outage is logged once', async () => {
    // GIVEN a log whose second write writes 10 bytes and then fails with ENOSPC, and whose next write fails too
    const d = dir();
    let writes = 0;
    const io: FileLogIo = {
      write(fd, data, offset, length, position) {
        if (++writes === 2) return fs.writeSync(fd, data, offset, 10, position);
        if (writes === 3 || writes === 4) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        return fs.writeSync(fd, data, offset, length, position);
      },
    };
    const audit = new FileAuditLog(d, io);
    const first = await audit.emit({ event: 'user.login', user: 'alice', time: at(1) });
    const sizeAfterFirst = fs.statSync(fileOf(d)).size;
    let second: EventFields | undefined;
    const lines = await captureLog(async () => {
      // WHEN the second event fails part way, and its retry fails too
      for (let i = 0; i < 2; i++) await expect(audit.emit({ event: 'user.login', user: 'bob', time: at(2) })).rejects.toThrow(/cannot write the audit log in .*: disk full/);
      // THEN nothing of it is left in the file
      expect(fs.statSync(fileOf(d)).size).toBe(sizeAfterFirst);
      // AND WHEN the disk has space again THEN the retried event follows as a whole line
      second = await audit.emit({ event: 'user.login', user: 'bob', time: at(2) });
    });
    expect(linesOf(d)).toEqual([first, second]);
    // AND the operator got one line for the outage and one for the recovery
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['cannot write the audit log; events are refused until it can be written', 'the audit log is written again']);
    await audit.close();
  });

  it('GIVEN an event already stored WHEN the same event (same uid and server) is emitted again, even by a new process THEN it is stored once', async () => {
    // GIVEN a stored event
    const d = dir();
    const audit = new FileAuditLog(d);
    const event = { event: 'exec', uid: 'aaaaaaaa-1111-2222-3333-444444444444', server_id: 'node-a', command: 'true', time: at(1) };
    await audit.emit(event);
    // WHEN it is delivered again, to this log and to a log opened afresh on the same directory
    await audit.emit(event);
    await audit.close();
    const reopened = new FileAuditLog(d);
    await reopened.emit(event);
    // AND another host sends an event with the same uid
    await reopened.emit({ ...event, server_id: 'node-b' });
    await reopened.close();
    // THEN the first is stored once, and the other host's event is kept too
    expect(linesOf(d).map((e) => e.server_id)).toEqual(['node-a', 'node-b']);
  });

  it('GIVEN the events of several users over two days WHEN searching by user, type and limit THEN only that user\'s matching events come back, oldest first', async () => {
    // GIVEN alice's and bob's events on two days, and one without a user
    const d = dir();
    const audit = new FileAuditLog(d);
    const next = (s: number) => `2026-03-05T09:00:${String(s).padStart(2, '0')}Z`;
    await audit.emit({ event: 'user.login', user: 'alice', time: at(1) });
    await audit.emit({ event: 'user.login', user: 'bob', time: at(2) });
    await audit.emit({ event: 'session.start', user: 'alice', sid: 's1', time: at(3) });
    await audit.emit({ event: 'session.upload', sid: 's1', time: at(4) });
    await audit.emit({ event: 'session.end', user: 'alice', sid: 's1', time: next(1) });
    await audit.emit({ event: 'session.start', user: 'bob', sid: 's2', time: next(2) });
    await audit.close();
    const twoDays = { from: range.from, to: new Date('2026-03-05T23:59:59Z') };
    // WHEN searching by user, by user and type, by user with a limit, and for a user with no events
    const alice = await audit.search({ ...twoDays, user: 'alice' });
    const bobSessions = await audit.search({ ...twoDays, user: 'bob', eventTypes: ['session.start'] });
    const first = await audit.search({ ...twoDays, user: 'alice', limit: 2 });
    // THEN only their events come back, in time order across the days
    expect(alice.map((e) => [e.event, e.time])).toEqual([
      ['user.login', at(1)],
      ['session.start', at(3)],
      ['session.end', next(1)],
    ]);
    expect(bobSessions.map((e) => [e.user, e.sid])).toEqual([['bob', 's2']]);
    expect(first.map((e) => e.time)).toEqual([at(1), at(3)]);
    expect(await audit.search({ ...twoDays, user: 'mallory' })).toEqual([]);
    expect(await audit.search(twoDays)).toHaveLength(6);
  });

  it('GIVEN a day file with a damaged line in the middle and a torn last line WHEN searching and writing THEN the good events are read, the damage is reported once, and the torn line is cut off', async () => {
    // GIVEN a file: good, damaged (two records glued), good, torn
    const d = dir();
    const good = (n: number) => JSON.stringify({ event: 'user.login', uid: `uid-good-${n}`, time: at(n) });
    fs.writeFileSync(fileOf(d), `${good(1)}\n{"event":"exec","ti${good(2)}\n${good(3)}\n{"event":"user.lo`);
    const audit = new FileAuditLog(d);
    // WHEN it is searched twice
    let found: EventFields[] = [];
    const lines = await captureLog(async () => {
      found = await audit.search(range);
      found = await audit.search(range);
    });
    // THEN the good events are there and the damage is one warning
    expect(found.map((e) => e.uid)).toEqual(['uid-good-1', 'uid-good-3']);
    expect(lines.filter((l) => l.includes('skipping damaged lines'))).toHaveLength(1);
    expect(lines[0]).toContain(fileOf(d));
    // AND WHEN an event is written THEN it starts on a line of its own, after the torn line was cut
    const e = await audit.emit({ event: 'user.login', user: 'carol', time: at(4) });
    await audit.close();
    expect(fs.readFileSync(fileOf(d), 'utf8').endsWith(`${good(3)}\n${JSON.stringify(e)}\n`)).toBe(true);
  });
});
