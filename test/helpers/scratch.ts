/**
 * Temp directories that go when the test file is done, whatever its tests did: importing this
 * module registers the file's afterAll that removes them. It runs before the afterAll hooks the
 * test file declares itself, so these are for files, not for directories a daemon still uses.
 */
import * as fs from 'node:fs';
import { tempDir } from './proc';

const made: string[] = [];

afterAll(() => {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh temp directory, removed after the test file. */
export function scratchDir(prefix: string): string {
  const dir = tempDir(prefix);
  made.push(dir);
  return dir;
}
