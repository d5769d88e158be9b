/**
 * The data directory: created 0700 (and tightened if it is wider), the
 * `host_uuid` file made once (safe when two processes start together), and
 * the process-local storage `proc/sqlite.db` that holds this host's identities.
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BadParameterError } from '../utils/errors';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Makes the data dir ready and returns the host UUID; a data dir this user
 * cannot create, write or tighten is a BadParameterError naming it and the
 * way out, before anything else is opened.
 */
export function prepareDataDir(dir: string): string {
  try {
    ensureDataDir(dir);
    return hostUUID(dir);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (!e.code || !e.syscall) throw err;
    const what =
      e.code === 'EACCES' || e.code === 'EPERM'
        ? `permission denied (${e.syscall} ${e.path ?? dir})`
        : e.code === 'ENOTDIR'
          ? 'a part of the path is a file, not a directory'
          : e.code === 'EROFS'
            ? 'the file system is read-only'
            : e.message;
    throw new BadParameterError(
      `cannot use the data directory ${dir}: ${what}; run teleport as the user who owns it, or choose another directory with --data-dir or teleport.data_dir`,
    );
  }
}

function ensureDataDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.statSync(dir);
  if (!st.isDirectory()) throw new BadParameterError(`data_dir ${dir} is not a directory`);
  if ((st.mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
}

/** Reads `<dir>/host_uuid`, creating it with a new UUID the first time. */
function hostUUID(dir: string): string {
  const file = path.join(dir, 'host_uuid');
  try {
    fs.writeFileSync(file, randomUUID(), { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const id = fs.readFileSync(file, 'utf8').trim();
  if (!UUID_RE.test(id)) throw new BadParameterError(`${file} does not hold a UUID; remove it to get a new one`);
  return id;
}

export function procStoragePath(dir: string): string {
  return path.join(dir, 'proc', 'sqlite.db');
}
