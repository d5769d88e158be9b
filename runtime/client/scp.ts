/**
 * `tsh scp [-r] [-P port] source... destination`: copies files to or from a
 * node through the proxy, over the node's SFTP subsystem. One side is remote,
 * written `[login@]host:path` (a relative path is relative to the login's
 * home); copying into an existing directory keeps the file's name, as scp
 * does; `-r` copies directories; file modes are kept.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { SFTPWrapper, Stats } from 'ssh2';
import { BadParameterError, ConnectionProblemError, NotFoundError } from '../utils/errors';
import { currentLogin } from './cluster';
import { connectNode } from './ssh';

export interface ScpOptions {
  sources: string[];
  destination: string;
  recursive?: boolean;
  port?: number;
  proxy?: string;
  /** A leaf cluster of the login's cluster (`--cluster`). */
  cluster?: string;
  home?: string;
  /** `-A`: forward the agent to the proxy, which a recording proxy (`session_recording: proxy`) needs. */
  forwardAgent?: boolean;
}

export interface RemotePath {
  /** `[login@]host` */
  target: string;
  path: string;
}

/** `[login@]host:path` → remote; anything else (incl. `./a:b` and absolute paths) → undefined, a local path. */
export function parseRemote(arg: string): RemotePath | undefined {
  if (arg.startsWith('/') || arg.startsWith('./') || arg.startsWith('../')) return undefined;
  const m = /^((?:[^@/:]+@)?(?:\[[^\]]+\]|[^@/:[\]]+)):(.*)$/.exec(arg);
  if (!m) return undefined;
  return { target: m[1].replace(/\[|\]/g, ''), path: m[2] || '.' };
}

const MODE_MASK = 0o7777;

function sftpCall<T>(fn: (cb: (err: Error | null | undefined, v?: T) => void) => void, what: string): Promise<T> {
  return new Promise((resolve, reject) =>
    fn((err, v) => {
      if (!err) return resolve(v as T);
      const code = (err as { code?: number }).code;
      reject(code === 2 ? new NotFoundError(`${what}: no such file or directory`) : new ConnectionProblemError(`${what}: ${err.message}`));
    }),
  );
}

class Remote {
  constructor(private readonly sftp: SFTPWrapper) {}

  stat(p: string): Promise<Stats | undefined> {
    return sftpCall<Stats>((cb) => this.sftp.stat(p, cb), p).catch((err) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
  }
  mkdir(p: string, mode: number): Promise<void> {
    return sftpCall<void>((cb) => this.sftp.mkdir(p, { mode }, cb), p).catch(async (err) => {
      if (!(await this.stat(p))?.isDirectory()) throw err;
    });
  }
  readdir(p: string) {
    return sftpCall<{ filename: string }[]>((cb) => this.sftp.readdir(p, cb), p);
  }
  put(local: string, remote: string, mode: number): Promise<void> {
    return sftpCall<void>((cb) => this.sftp.fastPut(local, remote, { mode }, cb), remote);
  }
  get(remote: string, local: string): Promise<void> {
    return sftpCall<void>((cb) => this.sftp.fastGet(remote, local, cb), remote);
  }
}

async function upload(remote: Remote, local: string, dest: string, recursive: boolean): Promise<void> {
  const st = fs.statSync(local);
  if (st.isDirectory()) {
    if (!recursive) throw new BadParameterError(`${local}: is a directory (use -r to copy directories)`);
    await remote.mkdir(dest, st.mode & MODE_MASK);
    for (const name of fs.readdirSync(local)) await upload(remote, path.join(local, name), path.posix.join(dest, name), recursive);
    return;
  }
  if (!st.isFile()) throw new BadParameterError(`${local}: not a regular file`);
  await remote.put(local, dest, st.mode & MODE_MASK);
}

async function download(remote: Remote, src: string, dest: string, recursive: boolean): Promise<void> {
  const st = await remote.stat(src);
  if (!st) throw new NotFoundError(`${src}: no such file or directory on the node`);
  if (st.isDirectory()) {
    if (!recursive) throw new BadParameterError(`${src}: is a directory (use -r to copy directories)`);
    fs.mkdirSync(dest, { recursive: true, mode: st.mode & MODE_MASK });
    for (const { filename } of await remote.readdir(src)) {
      if (filename === '.' || filename === '..') continue;
      await download(remote, path.posix.join(src, filename), path.join(dest, filename), recursive);
    }
    return;
  }
  await remote.get(src, dest);
  fs.chmodSync(dest, st.mode & MODE_MASK);
}

export async function scpCommand(opts: ScpOptions): Promise<void> {
  if (!opts.sources.length) throw new BadParameterError('tsh scp: give at least one source and a destination');
  const dest = parseRemote(opts.destination);
  const remoteSources = opts.sources.map(parseRemote);
  const uploading = dest !== undefined;
  if (uploading && remoteSources.some((s) => s)) throw new BadParameterError('tsh scp: copying between two remote hosts is not supported');
  if (!uploading && remoteSources.some((s) => !s)) throw new BadParameterError('tsh scp: one side must be remote ([user@]host:path)');
  const targets = new Set(uploading ? [dest.target] : remoteSources.map((s) => s!.target));
  if (targets.size !== 1) throw new BadParameterError('tsh scp: all remote sources must be on one host');

  const me = currentLogin({ proxy: opts.proxy, home: opts.home, cluster: opts.cluster });
  const conn = await connectNode(me, [...targets][0], { port: opts.port, forwardAgent: opts.forwardAgent });
  try {
    const sftp = await new Promise<SFTPWrapper>((resolve, reject) =>
      conn.node.sftp((err, s) => (err ? reject(new ConnectionProblemError(`cannot start SFTP on the node: ${err.message}`)) : resolve(s))),
    );
    const remote = new Remote(sftp);
    const recursive = !!opts.recursive;
    if (uploading) {
      const intoDir = (await remote.stat(dest.path))?.isDirectory() ?? false;
      if (opts.sources.length > 1 && !intoDir) throw new BadParameterError(`${dest.path}: not a directory on the node`);
      for (const src of opts.sources) await upload(remote, src, intoDir ? path.posix.join(dest.path, path.basename(src)) : dest.path, recursive);
    } else {
      const local = opts.destination;
      const intoDir = fs.existsSync(local) && fs.statSync(local).isDirectory();
      if (remoteSources.length > 1 && !intoDir) throw new BadParameterError(`${local}: not a directory`);
      for (const src of remoteSources) await download(remote, src!.path, intoDir ? path.join(local, path.posix.basename(src!.path)) : local, recursive);
    }
    sftp.end();
  } finally {
    conn.close();
  }
}
