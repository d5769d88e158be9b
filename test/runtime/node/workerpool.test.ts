/**
 * The node's worker pool (runtime/node/workerpool.ts) with stand-in workers (a small script that
 * speaks the pool's protocol): when workers start, where connections go, what a worker's
 * requests count against the node, what its death releases, and idle workers retiring.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { once } from 'node:events';
import { WorkerPool, type WorkerPoolOptions } from '../../../runtime/node/workerpool';
import type { NodeServer } from '../../../runtime/node/server';
import { SessionDirectory } from '../../../runtime/node/shared';
import { logger } from '../../../runtime/utils/logger';
import { tempDir, waitFor } from '../../helpers/proc';
import { alive } from '../../helpers/procfs';

/** A stand-in worker: ready at init, holds the sockets it is handed, reports them closed; on `count-user` asks the pool to count a user. */
const STAND_IN = `
const conns = new Map();
process.on('message', (m, sock) => {
  if (m.t === 'init') process.send({ t: 'ready' });
  else if (m.t === 'conn') {
    conns.set(m.id, sock);
    sock.on('data', (d) => { if (String(d).startsWith('count-user ')) process.send({ t: 'req', rid: 1, op: 'addUser', user: String(d).slice(11).trim() }); else sock.write('worker ' + process.pid + '\\n'); });
    sock.once('close', () => { conns.delete(m.id); process.send({ t: 'closed', id: m.id }); });
  } else if (m.t === 'destroy') conns.get(m.id)?.destroy();
  else if (m.t === 'reply') process.send({ t: 'log', path: [], level: 'info', msg: 'counted ' + m.value });
});
process.on('error', () => undefined);
process.on('message', (m) => { if (m.t === 'stop') process.exit(0); });
process.on('disconnect', () => process.exit(0));
`;

describe('WorkerPool', () => {
  let dir: string;
  let script: string;
  let listener: net.Server;
  let port: number;
  let pool: WorkerPool | undefined;
  let pending: number;
  let users: string[];
  let lines: string[];
  const clients: net.Socket[] = [];

  const log = {
    ...logger('test'),
    info: (msg: string) => lines.push(msg),
    warn: (msg: string) => lines.push(msg),
    child: () => log,
  } as unknown as ReturnType<typeof logger>;

  function makePool(over: Partial<WorkerPoolOptions> = {}): WorkerPool {
    const server = {
      get pendingConnections() {
        return pending;
      },
      addUser: async (u: string) => (users.push(u), true),
      removeUser: (u: string) => users.splice(users.indexOf(u), 1),
      authenticated: () => undefined,
      believeHello: () => undefined,
    } as unknown as NodeServer;
    pool = new WorkerPool({
      count: 2,
      server: () => server,
      init: () => ({}) as never,
      sessions: new SessionDirectory(undefined, log),
      publish: { put: async () => undefined, delete: async () => undefined },
      sink: { audit: {} as never, recorded: () => undefined, sessionsDir: dir },
      sessionRecording: async () => 'node',
      serverId: 'node-1',
      serviceLog: log,
      log,
      script,
      ...over,
    });
    const p = pool;
    listener.removeAllListeners('connection');
    listener.on('connection', (sock: net.Socket) => {
      if (!p.handOff(sock)) sock.resume().end('primary\n');
    });
    return p;
  }

  /** Connects and resolves with the first line the server side answers with, and the socket. */
  async function connect(say = 'hello'): Promise<{ sock: net.Socket; line: string }> {
    const sock = net.connect(port, '127.0.0.1');
    clients.push(sock);
    sock.on('error', () => undefined);
    await once(sock, 'connect');
    sock.write(`${say}\n`);
    const [d] = (await once(sock, 'data')) as [Buffer];
    return { sock, line: d.toString().trim() };
  }

  beforeAll(() => {
    dir = tempDir('workerpool-');
    script = path.join(dir, 'stand-in.js');
    fs.writeFileSync(script, STAND_IN);
  });
  beforeEach(async () => {
    pending = 0;
    users = [];
    lines = [];
    listener = net.createServer({ pauseOnConnect: true });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    port = (listener.address() as net.AddressInfo).port;
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    const pids = pool?.pids ?? [];
    await pool?.close();
    pool = undefined;
    await waitFor('the stand-in workers to exit', () => pids.every((p) => !alive(p)));
    await new Promise((resolve) => listener.close(resolve));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('GIVEN a node that is not busy THEN no worker starts; WHEN it is THEN two start and new connections go to the one with fewer', async () => {
    const p = makePool();
    expect((await connect()).line).toBe('primary');
    expect(p.pids).toEqual([]);
    // WHEN busy (three connections setting up)
    pending = 3;
    await connect();
    await waitFor('two workers ready', () => lines.filter((l) => l === 'connection worker ready').length === 2);
    // THEN connections alternate between the two while each keeps one open
    const a = await connect();
    const b = await connect();
    expect([a.line, b.line].sort()).toEqual(p.pids.map((pid) => `worker ${pid}`).sort());
  });

  it('GIVEN a worker that counted a user WHEN it dies THEN the user is released and its connections close', async () => {
    makePool();
    pending = 3;
    await connect();
    await waitFor('two workers ready', () => lines.filter((l) => l === 'connection worker ready').length === 2);
    const c = await connect();
    const pid = Number(/worker (\d+)/.exec(c.line)![1]);
    c.sock.write('count-user alice\n');
    await waitFor('alice counted', () => users.includes('alice') && lines.includes('counted true'));
    const closed = once(c.sock, 'close');
    process.kill(pid, 'SIGKILL');
    await closed;
    await waitFor('alice released', () => !users.includes('alice'));
    expect(lines).toContain('a connection worker stopped; its connections are closed');
  });

  it('GIVEN workers without a connection for idleMs THEN they stop (quietly), and the next busy moment starts them again', async () => {
    const p = makePool({ idleMs: 200 });
    pending = 3;
    await connect();
    await waitFor('two workers ready', () => lines.filter((l) => l === 'connection worker ready').length === 2);
    const first = p.pids;
    const c = await connect();
    c.sock.destroy();
    await waitFor('the workers to retire', () => p.pids.length === 0 && first.every((pid) => !alive(pid)));
    expect(lines.filter((l) => l === 'a connection worker had no connection for a while and stopped')).toHaveLength(2);
    expect(lines).not.toContain('a connection worker stopped; its connections are closed');
    await connect();
    await waitFor('two new workers', () => p.pids.length === 2);
    expect(p.pids.some((pid) => first.includes(pid))).toBe(false);
  });
});
