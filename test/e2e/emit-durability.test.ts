/**
 * `emit` resolves only once the event is on disk, for the node's event spool
 * (runtime/events/spool.ts) and the auth server's file log
 * (runtime/events/filelog.ts). A child process runs the compiled module,
 * emits, reports the acknowledged events on stdout and then blocks its own
 * event loop, so nothing it might still have queued (a deferred write, a
 * buffered flush) can run; the test SIGKILLs it on that report and then
 * finds every acknowledged event in the files.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, tempDir } from '../helpers/proc';

const DIST_EVENTS = path.join(ROOT, 'dist', 'runtime', 'events');

/**
 * The child's code, after `log` (something with `emit`) is ready: three
 * events one after the other, then three at once (one group commit), then
 * the acknowledged uids on stdout and a block that only SIGKILL ends.
 */
const EMIT_THEN_BLOCK = `
  const acked = [];
  for (let i = 0; i < 3; i++) acked.push((await log.emit({ event: 'test.durable', n: i })).uid);
  for (const e of await Promise.all([3, 4, 5].map((n) => log.emit({ event: 'test.durable', n })))) acked.push(e.uid);
  require('node:fs').writeSync(1, JSON.stringify(acked) + '\\n');
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
`;

/** Runs `setup` + EMIT_THEN_BLOCK in a child, SIGKILLs it as soon as it reports, and returns the uids it reported. */
async function emitThenKill(setup: string): Promise<string[]> {
  const script = `(async () => { ${setup}\n${EMIT_THEN_BLOCK} })().catch((err) => { console.error(err); process.exit(3); });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code)));
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d;
        if (!out.includes('\n')) return;
        child.kill('SIGKILL');
        resolve();
      });
      void exited.then((how) => reject(new Error(`the child ended (${String(how)}) before reporting\n${err}`)));
    });
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
  expect(await exited).toBe('SIGKILL');
  return JSON.parse(out.slice(0, out.indexOf('\n'))) as string[];
}

/** The `uid` of every complete JSON line in the files of `dir` whose names match `re`. */
function uidsOnDisk(dir: string, re: RegExp): string[] {
  const uids: string[] = [];
  for (const f of fs.readdirSync(dir).filter((n) => re.test(n))) {
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n').slice(0, -1)) uids.push((JSON.parse(line) as { uid: string }).uid);
  }
  return uids;
}

describe('emit durability under SIGKILL', () => {
  const work = tempDir('emit-durable-');
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  it('GIVEN the node event spool WHEN the process is SIGKILLed right after emit resolved THEN every acknowledged event is in a segment', async () => {
    const dir = path.join(work, 'spool');
    // GIVEN a spool whose auth server never answers, so nothing is shipped or removed
    const setup = `
      const { EventSpool } = require(${JSON.stringify(path.join(DIST_EVENTS, 'spool.js'))});
      const log = new EventSpool({ dir: ${JSON.stringify(dir)}, send: () => new Promise(() => undefined) });
      await log.start();`;
    // WHEN the child emits and is killed as soon as emit has resolved
    const acked = await emitThenKill(setup);
    // THEN the segment files hold every acknowledged event
    expect(acked).toHaveLength(6);
    expect(uidsOnDisk(dir, /^\d{16}\.events$/)).toEqual(acked);
  });

  it('GIVEN the file audit log WHEN the process is SIGKILLed right after emit resolved THEN every acknowledged event is in the day file', async () => {
    const dir = path.join(work, 'log');
    // GIVEN the auth server's file log
    const setup = `
      const { FileAuditLog } = require(${JSON.stringify(path.join(DIST_EVENTS, 'filelog.js'))});
      const log = new FileAuditLog(${JSON.stringify(dir)});`;
    // WHEN the child emits and is killed as soon as emit has resolved
    const acked = await emitThenKill(setup);
    // THEN the day file holds every acknowledged event
    expect(acked).toHaveLength(6);
    expect(uidsOnDisk(dir, /\.log$/)).toEqual(acked);
  });
});
