/** Several audit logs at once: each event reaches every log with one uid and time; search reads the first. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AuditLog, FileAuditLog } from '../../../runtime/events/filelog';
import { MultiAuditLog } from '../../../runtime/events/multi';

describe('MultiAuditLog', () => {
  const dirs: string[] = [];
  const dir = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'multi-audit-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  it('GIVEN two file logs WHEN an event is emitted THEN both hold the same event, and search reads the first', async () => {
    const [first, second] = [new FileAuditLog(dir()), new FileAuditLog(dir())];
    const multi = new MultiAuditLog([first, second]);
    const sent = await multi.emit({ event: 'user.create', name: 'joe', user: 'admin' });
    const range = { from: new Date(Date.now() - 60_000), to: new Date(Date.now() + 60_000) };
    const [a] = await first.search(range);
    const [b] = await second.search(range);
    expect(a).toEqual(sent);
    expect(b).toEqual(sent);
    expect(sent.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(await multi.search(range)).toEqual([sent]);
    await multi.close();
  });

  it('GIVEN a log that fails (a stub whose writes fail) THEN the event is not acknowledged', async () => {
    const broken: AuditLog = { emit: () => Promise.reject(new Error('disk full')), search: async () => [], close: async () => undefined };
    const multi = new MultiAuditLog([new FileAuditLog(dir()), broken]);
    await expect(multi.emit({ event: 'user.create', name: 'x' })).rejects.toThrow('disk full');
  });
});
