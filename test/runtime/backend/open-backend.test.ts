import * as fs from 'node:fs';
import * as path from 'node:path';
import { MemoryBackend, openBackend, SqliteBackend, SQLITE_FILE_NAME } from '../../../runtime/backend';
import { BadParameterError } from '../../../runtime/utils/errors';
import { removeDir, tempDir } from './helpers';

describe('openBackend', () => {
  let dir: string;

  beforeEach(() => {
    dir = tempDir('open');
  });

  afterEach(() => removeDir(dir));

  it('opens a memory backend', async () => {
    const backend = await openBackend({ type: 'memory' });
    expect(backend).toBeInstanceOf(MemoryBackend);
    await backend.close();
  });

  it('opens the sqlite file named by path', async () => {
    // WHEN a sqlite backend is opened on a file path and written to
    const file = path.join(dir, 'custom.db');
    const backend = await openBackend({ type: 'sqlite', path: file, pollPeriodMs: 50 });
    await backend.put({ key: '/k', value: Buffer.from('v') });
    await backend.close();
    // THEN the data is in that very file
    const again = await SqliteBackend.open({ path: file });
    expect((await again.get('/k')).value.toString()).toBe('v');
    await again.close();
  });

  it('puts the database in <path>/sqlite.db for type dir, as Teleport does', async () => {
    const backendDir = path.join(dir, 'backend');
    const backend = await openBackend({ type: 'dir', path: backendDir });
    await backend.close();
    expect(SQLITE_FILE_NAME).toBe('sqlite.db');
    expect(fs.statSync(path.join(backendDir, 'sqlite.db')).isFile()).toBe(true);
  });

  it('uses <path>/sqlite.db for type sqlite when path is an existing directory', async () => {
    const backend = await openBackend({ type: 'sqlite', path: dir });
    await backend.close();
    expect(fs.statSync(path.join(dir, 'sqlite.db')).isFile()).toBe(true);
  });

  it('rejects a file backend without a path and an unknown type', async () => {
    await expect(openBackend({ type: 'sqlite' })).rejects.toBeInstanceOf(BadParameterError);
    await expect(openBackend({ type: 'bolt' } as never)).rejects.toThrow(/storage type "bolt" is not supported/);
  });
});
