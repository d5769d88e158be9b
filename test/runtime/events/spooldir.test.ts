/** claimSpoolDir: one process per audit spool directory, a successor beside its live predecessor, leftovers of gone processes found. */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { claimSpoolDir } from '../../../runtime/events/spooldir';
import { tempDir } from '../../helpers/proc';

/** The pid of a process that has ended. */
const gonePid = () => spawnSync('true').pid!;

describe('claimSpoolDir', () => {
  let root: string;
  let base: string;
  beforeEach(() => {
    root = tempDir('spooldir-');
    base = path.join(root, 'events');
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  const owner = (dir: string) => fs.readFileSync(path.join(dir, 'owner.pid'), 'utf8').trim();
  const ownedBy = (dir: string, pid: number) => {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'owner.pid'), `${pid}\n`);
  };

  test('GIVEN no owner, or one that is gone THEN this process takes the directory; release gives it up', () => {
    const first = claimSpoolDir(base);
    expect(first.dir).toBe(base);
    expect(owner(base)).toBe(String(process.pid));
    first.release();
    expect(fs.existsSync(path.join(base, 'owner.pid'))).toBe(false);
    ownedBy(base, gonePid());
    expect(claimSpoolDir(base).dir).toBe(base);
    expect(owner(base)).toBe(String(process.pid));
  });

  test('GIVEN the directory owned by another live process THEN this one spools beside it, in <dir>.<pid>, and adopts nothing', () => {
    ownedBy(base, process.ppid);
    ownedBy(`${base}.${gonePid()}`, gonePid());
    const claimed = claimSpoolDir(base);
    expect(claimed.dir).toBe(`${base}.${process.pid}`);
    expect(owner(claimed.dir)).toBe(String(process.pid));
    expect(owner(base)).toBe(String(process.ppid));
    expect(claimed.orphans).toEqual([]);
  });

  test('GIVEN leftovers beside the directory THEN its owner gets those of gone processes, not those of live ones', () => {
    const gone = `${base}.${gonePid()}`;
    ownedBy(gone, gonePid());
    const unowned = `${base}.123456789`;
    fs.mkdirSync(unowned);
    ownedBy(`${base}.${process.ppid}`, process.ppid);
    fs.mkdirSync(`${base}.old`);
    expect(claimSpoolDir(base).orphans.sort()).toEqual([gone, unowned].sort());
  });
});
