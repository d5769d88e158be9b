/**
 * The node's spawn server (runtime/node/spawnserver.ts) on its own: programs start in its process
 * with exactly the request's arguments, environment and directory, their pipes arrive here, signals
 * reach them, and every way of not starting fails the request with a typed error.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SpawnedProgram, SpawnError, SpawnServer } from '../../../runtime/node/spawnserver';
import { tempDir, waitFor } from '../../helpers/proc';

let work: string;
const servers: SpawnServer[] = [];
const programs: SpawnedProgram[] = [];

function server(timeoutMs?: number, script?: string): SpawnServer {
  const s = new SpawnServer(undefined, timeoutMs, script);
  servers.push(s);
  return s;
}

/** Collects a program's stdout and stderr to their ends and its exit. */
function outcome(p: SpawnedProgram): Promise<{ out: string; err: string; code: number | null; signal: NodeJS.Signals | null }> {
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (err += d));
  const ended = (s: NodeJS.ReadableStream & { readableEnded: boolean }) => new Promise<void>((r) => (s.readableEnded ? r() : s.once('end', r)));
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((r) => (p.done ? r([p.exitCode, p.signalCode]) : p.once('exit', (c, s) => r([c, s]))));
  return Promise.all([ended(p.stdout), ended(p.stderr), exited]).then(([, , [code, signal]]) => ({ out, err, code, signal }));
}

async function start(s: SpawnServer, file: string, args: string[], env: Record<string, string> = { PATH: '/usr/bin:/bin' }, cwd = '/'): Promise<SpawnedProgram> {
  const p = await s.spawn({ file, args, env, cwd });
  programs.push(p);
  return p;
}

/** Running (not gone, not a zombie waiting for its parent). */
function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

beforeAll(() => {
  work = tempDir('spawnserver-');
});
afterEach(() => {
  for (const p of programs.splice(0)) if (!p.done) p.kill('SIGKILL');
  for (const s of servers.splice(0)) s.close();
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe('SpawnServer', () => {
  it('GIVEN a request WHEN the program runs THEN it gets exactly those arguments, environment and directory, in the spawn server, and its output and exit status come back', async () => {
    const s = server();
    const p = await start(s, '/bin/sh', ['-c', 'echo "$1|$FOO|$(pwd)|$PPID|${HOME-unset}"; echo e >&2; exit 4', 'sh', 'a b'], { FOO: 'bar', PATH: '/usr/bin:/bin' }, work);
    p.stdin.end();
    const r = await outcome(p);
    expect(r).toEqual({ out: `a b|bar|${work}|${s.pid}|unset\n`, err: 'e\n', code: 4, signal: null });
    expect(s.pid).not.toBe(process.pid);
  });

  it('GIVEN a program reading stdin WHEN the input ends THEN it sees EOF after all of it', async () => {
    const p = await start(server(), '/bin/sh', ['-c', 'wc -c']);
    p.stdin.end(Buffer.alloc(3 * 1024 * 1024, 1));
    expect((await outcome(p)).out.trim()).toBe(String(3 * 1024 * 1024));
  });

  it('GIVEN a running program WHEN it is signalled THEN it exits by that signal', async () => {
    const p = await start(server(), '/bin/sleep', ['300']);
    p.kill('SIGTERM');
    const r = await outcome(p);
    expect([r.code, r.signal]).toEqual([null, 'SIGTERM']);
  });

  it('GIVEN a program that does not exist WHEN it is requested THEN the request fails as a start failure', async () => {
    await expect(server().spawn({ file: path.join(work, 'missing'), args: [], env: {}, cwd: '/' })).rejects.toMatchObject({ name: 'SpawnError', reason: 'start' });
  });

  it('GIVEN an environment value with a NUL byte WHEN it is requested THEN nothing starts and the request fails before it ran', async () => {
    const err = await server()
      .spawn({ file: '/bin/true', args: [], env: { BAD: 'a\0b' }, cwd: '/' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpawnError);
    expect((err as SpawnError).reason).toBe('sync');
  });

  it('GIVEN a spawn server that never answers WHEN the timeout passes THEN the request fails as unavailable and the next request gets a new spawn server', async () => {
    const silent = path.join(work, 'silent.js');
    fs.writeFileSync(silent, "process.on('message', () => undefined);\n");
    const s = server(200, silent);
    const first = s.pid!;
    await expect(s.spawn({ file: '/bin/true', args: [], env: {}, cwd: '/' })).rejects.toMatchObject({ reason: 'unavailable' });
    await waitFor('the silent spawn server to be replaced', () => s.pid !== first);
    expect(s.pid).toBeDefined();
  });

  it('GIVEN a running program WHEN its spawn server dies THEN the program is lost, gets SIGHUP and the next request starts a new spawn server', async () => {
    const s = server();
    const p = await start(s, '/bin/sleep', ['300']);
    const lost = new Promise<Error>((r) => p.once('lost', r));
    const first = s.pid!;
    process.kill(first, 'SIGKILL');
    expect((await lost).message).toContain("spawn server stopped");
    await waitFor('the lost program to end', () => !alive(p.pid));
    const next = await start(s, '/bin/sh', ['-c', 'echo $PPID']);
    next.stdin.end();
    const r = await outcome(next);
    expect(Number(r.out.trim())).not.toBe(first);
    expect(Number(r.out.trim())).toBe(s.pid);
  });
});
