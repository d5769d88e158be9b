/**
 * `teleport.log.output`: the log goes to stderr, stdout or a file (appended,
 * 0600, reopened on every call so rotation works); a file that cannot be
 * opened is an error naming it, and the previous output stays.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setLogOutput } from '../../../runtime/service/logoutput';
import { logger } from '../../../runtime/utils/logger';
import { tempDir } from '../../helpers/proc';

describe('log output', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir('logout-');
  });
  afterEach(() => {
    setLogOutput('stderr');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const lines = (file: string) =>
    fs
      .readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  it('GIVEN a file WHEN lines are logged THEN they are appended to it as JSON, and the file is 0600', () => {
    const file = path.join(dir, 'teleport.log');
    fs.writeFileSync(file, '{"msg":"from before"}\n', { mode: 0o600 });
    setLogOutput(file);
    logger('test').info('hello', { n: 1 });
    expect(lines(file).map((l) => [l.component, l.msg])).toEqual([
      [undefined, 'from before'],
      ['test', 'hello'],
    ]);
    const fresh = path.join(dir, 'fresh.log');
    setLogOutput(fresh);
    logger('test').warn('in the new file');
    expect(fs.statSync(fresh).mode & 0o777).toBe(0o600);
    expect(lines(fresh).map((l) => l.msg)).toEqual(['in the new file']);
  });

  it('GIVEN the file was rotated away WHEN the output is set again (SIGHUP) THEN a new file is written', () => {
    const file = path.join(dir, 'teleport.log');
    setLogOutput(file);
    logger('test').info('before rotation');
    fs.renameSync(file, `${file}.1`);
    setLogOutput(file);
    logger('test').info('after rotation');
    expect(lines(`${file}.1`).map((l) => l.msg)).toEqual(['before rotation']);
    expect(lines(file).map((l) => l.msg)).toEqual(['after rotation']);
  });

  it('GIVEN stdout WHEN a line is logged THEN it goes to stdout, not stderr', () => {
    const out = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const err = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    let written: { out: string[]; err: string[] };
    try {
      setLogOutput('stdout');
      logger('test').info('to stdout');
      written = { out: out.mock.calls.map((c) => String(c[0])), err: err.mock.calls.map((c) => String(c[0])) };
    } finally {
      out.mockRestore();
      err.mockRestore();
    }
    expect(written).toEqual({ out: [expect.stringContaining('to stdout')], err: [] });
  });

  it('GIVEN a file that cannot be opened WHEN set THEN the error names it and the log keeps going where it went', () => {
    const file = path.join(dir, 'teleport.log');
    setLogOutput(file);
    const bad = path.join(dir, 'no-such-dir', 'teleport.log');
    expect(() => setLogOutput(bad)).toThrow(`teleport.log.output: cannot open "${bad}" to append the log to: ENOENT`);
    logger('test').info('still here');
    expect(lines(file).map((l) => l.msg)).toEqual(['still here']);
  });
});
