/**
 * Which directory a process spools its audit events in. A spool directory belongs to one process
 * at a time (its segment ids and cursor are that process's): `owner.pid` in it names the owner.
 * A process that finds the directory owned by another live process (its predecessor, during a
 * USR2 handover) spools in `<dir>.<pid>` instead. Such directories whose owner is gone are
 * leftovers: the next owner of the main directory delivers their events and removes them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

const OWNER = 'owner.pid';

export interface SpoolDir {
  /** Where this process spools. */
  readonly dir: string;
  /** Leftover spool directories of processes that are gone, for this process to deliver (only the main directory's owner gets them). */
  readonly orphans: string[];
  /** Gives the directory up (at close). */
  release(): void;
}

function alive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ownerOf(dir: string): number | undefined {
  try {
    return Number(fs.readFileSync(path.join(dir, OWNER), 'utf8').trim());
  } catch {
    return undefined;
  }
}

/** Takes `dir` for this process unless another live process owns it. */
function claim(dir: string): boolean {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const owner = ownerOf(dir);
  if (owner !== undefined && owner !== process.pid && alive(owner)) return false;
  // Written aside and renamed, so a reader never sees a partial pid.
  const tmp = path.join(dir, `${OWNER}.${process.pid}`);
  fs.writeFileSync(tmp, `${process.pid}\n`, { mode: 0o600 });
  fs.renameSync(tmp, path.join(dir, OWNER));
  return true;
}

export function claimSpoolDir(base: string): SpoolDir {
  const main = claim(base);
  const dir = main ? base : `${base}.${process.pid}`;
  if (!main && !claim(dir)) throw new Error(`the audit spool ${dir} is owned by another process`);
  const parent = path.dirname(base);
  const prefix = `${path.basename(base)}.`;
  const orphans = main
    ? fs
        .readdirSync(parent)
        .filter((name) => name.startsWith(prefix) && /^\d+$/.test(name.slice(prefix.length)))
        .map((name) => path.join(parent, name))
        .filter((d) => {
          const owner = ownerOf(d);
          return owner === undefined || !alive(owner);
        })
    : [];
  return {
    dir,
    orphans,
    release: () => {
      if (ownerOf(dir) === process.pid) fs.rmSync(path.join(dir, OWNER), { force: true });
    },
  };
}
