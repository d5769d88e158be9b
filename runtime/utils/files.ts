/** Small file-system helpers shared by modules that keep state on disk. */
import * as fs from 'node:fs';

/** Why a file operation failed, in words: `no such file`, `permission denied`, else the error's message. */
export function fileErrorText(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.promises.access(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * Writes a file atomically (a temporary file beside it, then a rename) with `mode`, and the
 * group `gid` when given. A failure leaves no temporary file behind.
 */
export function writeFileAtomic(file: string, data: string | Buffer, mode = 0o600, opts: { gid?: number } = {}): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, data, { mode });
    fs.chmodSync(tmp, mode);
    if (opts.gid !== undefined) fs.chownSync(tmp, process.getuid?.() ?? -1, opts.gid);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}
