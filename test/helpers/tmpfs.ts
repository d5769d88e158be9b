/**
 * A small tmpfs mounted on a directory (the tests run as root), to fill up and free again:
 * a full disk on demand. Always `unmount()` in afterAll/finally.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from './proc';

export class SmallDisk {
  private constructor(readonly dir: string) {}

  /** Mounts a tmpfs of `size` (e.g. "32m") on `dir`, made if missing. */
  static async mount(dir: string, size: string): Promise<SmallDisk> {
    fs.mkdirSync(dir, { recursive: true });
    const r = await run('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir]);
    if (r.code !== 0) throw new Error(`mount tmpfs on ${dir}: ${r.stderr}`);
    return new SmallDisk(dir);
  }

  private get filler(): string {
    return path.join(this.dir, 'filler');
  }

  /** Fills the disk to the last byte with one file. */
  fill(): void {
    const fd = fs.openSync(this.filler, 'a');
    try {
      for (const size of [1 << 20, 4096, 1]) {
        const chunk = Buffer.alloc(size);
        try {
          for (;;) fs.writeSync(fd, chunk);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
        }
      }
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Deletes the filler: the space is back. */
  free(): void {
    fs.rmSync(this.filler, { force: true });
  }

  /** Unmounts (lazily, so a process still holding a file cannot keep it mounted). */
  async unmount(): Promise<void> {
    const r = await run('umount', ['-l', this.dir]);
    if (r.code !== 0 && !/not mounted/.test(r.stderr)) throw new Error(`umount ${this.dir}: ${r.stderr}`);
  }
}
