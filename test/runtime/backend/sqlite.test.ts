import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { EVENTS_TTL_MS, SqliteBackend } from '../../../runtime/backend/sqlite';
import { Backend, Event, OpType } from '../../../runtime/backend/types';
import { AlreadyExistsError, BadParameterError, CompareFailedError, ConnectionProblemError } from '../../../runtime/utils/errors';
import { describeEvent, FakeClock, removeDir, tempDir, watchUntil } from './helpers';
import { SqlitePeer } from './peer/sqlite-peer-client';
import { runBackendSuite } from './suite';

const POLL_MS = 100;
const val = (s: string) => Buffer.from(s);

runBackendSuite('sqlite', async () => {
  const dir = tempDir('suite');
  const backend = await SqliteBackend.open({ path: path.join(dir, 'state.db'), pollPeriodMs: POLL_MS });
  return {
    backend,
    cleanup: async () => {
      await backend.close();
      removeDir(dir);
    },
  };
});

describe('SqliteBackend: two instances on one file', () => {
  let dir: string;
  let a: SqliteBackend;
  let b: SqliteBackend;

  beforeEach(async () => {
    dir = tempDir('pair');
    const file = path.join(dir, 'state.db');
    a = await SqliteBackend.open({ path: file, pollPeriodMs: POLL_MS });
    b = await SqliteBackend.open({ path: file, pollPeriodMs: POLL_MS });
  });

  afterEach(async () => {
    await a.close();
    await b.close();
    removeDir(dir);
  });

  it("delivers a write made through A to B's watcher and B's reads", async () => {
    // GIVEN a watcher on B
    const w = await b.newWatcher({ prefixes: ['/nodes/'] });
    // WHEN A writes
    await a.put({ key: '/nodes/default/n1', value: val('node one') });
    // THEN B's watcher gets the Put (through the poller) and B reads the value
    const seen = await watchUntil(w, (e) => e.type === OpType.Put, "the Put on B's watcher");
    expect(seen.map(describeEvent)).toEqual(['Init ', 'Put /nodes/default/n1']);
    expect(seen[1].item.value.toString()).toBe('node one');
    expect((await b.get('/nodes/default/n1')).value.toString()).toBe('node one');
  });

  it("starts B's new watcher after the writes A made before it, even if B had not polled them yet", async () => {
    // GIVEN an instance whose poller is effectively idle, and a write by A it has not picked up
    const idle = await SqliteBackend.open({ path: a.path, pollPeriodMs: 60_000 });
    try {
      await a.put({ key: '/w/before', value: val('v') });
      // WHEN it opens a watcher, A writes again, and it polls
      const w = await idle.newWatcher({ prefixes: ['/w/'] });
      await a.put({ key: '/w/after', value: val('v') });
      idle.poll();
      // THEN the watcher reports only the later write
      const seen = await watchUntil(w, (e) => e.type !== OpType.Init, 'the first change');
      expect(seen.map(describeEvent)).toEqual(['Init ', 'Put /w/after']);
    } finally {
      await idle.close();
    }
  });

  it('lets exactly one of 20 concurrent creates of a key win', async () => {
    // WHEN 20 creates of one key are started, alternating between A and B
    const attempts = Array.from({ length: 20 }, (_, i) =>
      (i % 2 ? a : b).create({ key: '/authorities/host/example', value: val(`candidate ${i}`) }),
    );
    const results = await Promise.allSettled(attempts);
    // THEN one succeeds, the other 19 fail with AlreadyExistsError, and the stored value is the winner's
    const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    const losers = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(winners).toHaveLength(1);
    expect(losers.every((r) => r.reason instanceof AlreadyExistsError)).toBe(true);
    expect((await a.get('/authorities/host/example')).value.toString()).toBe(`candidate ${winners[0]}`);
  });

  it("fails B's compareAndSwap when A changed the value first", async () => {
    await a.put({ key: '/k', value: val('v1') });
    const seenByB = await b.get('/k');
    await a.put({ key: '/k', value: val('v2') });
    await expect(b.compareAndSwap(seenByB, { key: '/k', value: val('v3') })).rejects.toBeInstanceOf(CompareFailedError);
    expect((await a.get('/k')).value.toString()).toBe('v2');
  });

  it('records the expiry of an item once, however many instances poll', async () => {
    // GIVEN watchers on both instances
    const wa = await a.newWatcher({ prefixes: ['/t/'] });
    const wb = await b.newWatcher({ prefixes: ['/t/'] });
    // WHEN an item expires and a later write follows its Delete
    await a.put({ key: '/t/short', value: val('v'), expires: new Date(Date.now() + 1_000) });
    const untilDelete = await watchUntil(wa, (e) => e.type === OpType.Delete, "the Delete on A's watcher");
    await a.put({ key: '/t/after', value: val('v') });
    // THEN each watcher saw exactly one Delete for it, before the later write
    const expected = ['Init ', 'Put /t/short', 'Delete /t/short', 'Put /t/after'];
    const rest = await watchUntil(wa, (e) => e.item.key === '/t/after', 'the later write on A');
    const fromA = [...untilDelete, ...rest].map(describeEvent);
    const fromB = (await watchUntil(wb, (e) => e.item.key === '/t/after', 'the later write on B')).map(describeEvent);
    expect(fromA).toEqual(expected);
    expect(fromB).toEqual(expected);
  });
});

describe('SqliteBackend: changes from another connection without the poller', () => {
  let dir: string;
  let a: SqliteBackend;
  let b: SqliteBackend;

  beforeEach(async () => {
    dir = tempDir('change-check');
    const file = path.join(dir, 'state.db');
    a = await SqliteBackend.open({ path: file, pollPeriodMs: POLL_MS });
    // B's poller would run only after an hour: only the change check can deliver A's writes.
    b = await SqliteBackend.open({ path: file, pollPeriodMs: 3_600_000 });
  });

  afterEach(async () => {
    await a.close();
    await b.close();
    removeDir(dir);
  });

  it("delivers every write of A to B's watcher, in order, none missing", async () => {
    // GIVEN keys written before a watcher on B opened
    for (let i = 0; i < 5; i++) await a.put({ key: `/c/old/${i}`, value: val('v') });
    const w = await b.newWatcher({ prefixes: ['/c/'] });
    // WHEN A makes 55 writes of every kind, some awaited one by one and some in one burst
    const expected = ['Init '];
    for (let i = 0; i < 20; i++) {
      await a.create({ key: `/c/${i}`, value: val('v') });
      expected.push(`Put /c/${i}`);
      if (i % 4 === 3) {
        await a.delete(`/c/old/${i >> 2}`);
        expected.push(`Delete /c/old/${i >> 2}`);
      }
    }
    await Promise.all(Array.from({ length: 30 }, (_, i) => a.put({ key: `/c/burst/${i}`, value: val('v') })));
    expected.push(...Array.from({ length: 30 }, (_, i) => `Put /c/burst/${i}`));
    // THEN B's watcher sees them all, in the order A made them (the poller, an hour away, had no part)
    const seen = await watchUntil(w, (e) => e.item.key === '/c/burst/29', "A's last write on B's watcher");
    expect(seen.map(describeEvent)).toEqual(expected);
  });
});

describe('SqliteBackend: group commit of puts', () => {
  let dir: string;
  let file: string;
  let backend: SqliteBackend;

  beforeEach(async () => {
    dir = tempDir('group');
    file = path.join(dir, 'state.db');
    backend = await SqliteBackend.open({ path: file, pollPeriodMs: POLL_MS });
  });

  afterEach(async () => {
    await backend.close();
    removeDir(dir);
  });

  /** Frames in the write-ahead log since it was last emptied: each commit adds at least one per page it changed. */
  function walFrames(): number {
    const raw = new Database(file);
    try {
      return (raw.pragma('wal_checkpoint(PASSIVE)') as { log: number }[])[0].log;
    } finally {
      raw.close();
    }
  }

  function emptyWal(): void {
    const raw = new Database(file);
    try {
      raw.pragma('wal_checkpoint(TRUNCATE)');
    } finally {
      raw.close();
    }
  }

  it('commits the puts of one turn in one transaction, each on disk when it resolves', async () => {
    // GIVEN an empty write-ahead log
    await backend.put({ key: '/g/warm', value: val('v') });
    emptyWal();
    // WHEN 50 puts are made in the same turn
    await Promise.all(Array.from({ length: 50 }, (_, i) => backend.put({ key: `/g/${i}`, value: val(`v${i}`) })));
    // THEN the log grew by fewer frames than puts (one commit each would write at least 50 × 2 pages)
    expect(walFrames()).toBeLessThan(50);
    // AND another connection reads every one of them once the puts resolved
    const raw = new Database(file, { readonly: true });
    try {
      expect((raw.prepare("SELECT COUNT(*) AS n FROM kv WHERE key LIKE '/g/%' AND key != '/g/warm'").get() as { n: number }).n).toBe(50);
    } finally {
      raw.close();
    }
  });

  it('applies operations in the order they were called: a delete right after a put removes it', async () => {
    // GIVEN a watcher
    const w = await backend.newWatcher({ prefixes: ['/o/'] });
    // WHEN a put is not awaited before a delete of the same key and a get of another
    const put = backend.put({ key: '/o/k', value: val('v') });
    const other = backend.put({ key: '/o/other', value: val('w') });
    await backend.delete('/o/k');
    // THEN the put happened first, the delete after, and the other put is readable
    await put;
    await other;
    await expect(backend.get('/o/k')).rejects.toThrow(/not found/);
    expect((await backend.get('/o/other')).value.toString()).toBe('w');
    const seen = await watchUntil(w, (e) => e.type === OpType.Delete, 'the Delete');
    expect(seen.map(describeEvent)).toEqual(['Init ', 'Put /o/k', 'Put /o/other', 'Delete /o/k']);
  });

  it('rejects every put of a transaction that fails, and writes none of them', async () => {
    // GIVEN another connection holding the write lock, and a backend that does not wait for it
    const impatient = await SqliteBackend.open({ path: file, pollPeriodMs: POLL_MS, busyTimeoutMs: 0 });
    const raw = new Database(file);
    try {
      raw.prepare('BEGIN IMMEDIATE').run();
      // WHEN two puts are made in one turn
      const results = await Promise.allSettled([impatient.put({ key: '/f/1', value: val('v') }), impatient.put({ key: '/f/2', value: val('v') })]);
      // THEN both fail as connection problems
      expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
      for (const r of results) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(ConnectionProblemError);
      raw.prepare('ROLLBACK').run();
      // AND neither was written, while a put after the lock is gone succeeds
      await expect(impatient.get('/f/1')).rejects.toThrow(/not found/);
      await impatient.put({ key: '/f/3', value: val('v') });
      expect((await backend.get('/f/3')).value.toString()).toBe('v');
    } finally {
      if (raw.inTransaction) raw.prepare('ROLLBACK').run();
      raw.close();
      await impatient.close();
    }
  });
});

describe('SqliteBackend: a second process on the same file', () => {
  let dir: string;
  let file: string;
  let backend: SqliteBackend;
  let peer: SqlitePeer;

  beforeEach(async () => {
    dir = tempDir('proc');
    file = path.join(dir, 'state.db');
    backend = await SqliteBackend.open({ path: file, pollPeriodMs: POLL_MS });
    peer = await SqlitePeer.start(file);
  });

  afterEach(async () => {
    await peer.stop();
    await backend.close();
    removeDir(dir);
  });

  it("sees the other process's writes on its watchers, and the other process sees ours", async () => {
    // GIVEN a watcher here and one in the peer process
    const here = await backend.newWatcher({ prefixes: ['/shared/'] });
    await peer.call({ op: 'watch', prefix: '/shared/' });
    // WHEN the peer writes, and then this process writes
    await peer.call({ op: 'put', key: '/shared/from-peer', value: 'hello from the peer' });
    const seenHere = await watchUntil(here, (e) => e.type === OpType.Put, "the peer's write on our watcher");
    await backend.put({ key: '/shared/from-test', value: val('hello from the test') });
    // THEN each side's watcher reports both writes, in order, with their values
    expect(seenHere.map(describeEvent)).toEqual(['Init ', 'Put /shared/from-peer']);
    expect(seenHere[1].item.value.toString()).toBe('hello from the peer');
    expect(await peer.nextEvent('our own write echoed on the peer')).toEqual({
      type: 'Put',
      key: '/shared/from-peer',
      value: 'hello from the peer',
    });
    expect(await peer.nextEvent('our write on the peer')).toEqual({
      type: 'Put',
      key: '/shared/from-test',
      value: 'hello from the test',
    });
    expect(await peer.call({ op: 'get', key: '/shared/from-test' })).toBe('hello from the test');
  });

  it('gives every key to exactly one process when both race to create the same keys', async () => {
    // GIVEN 300 keys both processes will try to create from the same moment, the peer from the
    // first key up and this process from the last key down, so that they meet and contend
    const keys = Array.from({ length: 300 }, (_, i) => `/race/${String(i).padStart(3, '0')}`);
    const startAt = Date.now() + 300;
    // WHEN both run their creates concurrently
    const peerWon = peer.call({ op: 'race', keys, startAt }) as Promise<string[]>;
    const ours: string[] = [];
    // (a shared start time is the barrier: both loops begin at startAt)
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, startAt - Date.now())));
    for (const key of [...keys].reverse()) {
      try {
        await backend.create({ key, value: val(`test ${process.pid}`) });
        ours.push(key);
      } catch (err) {
        if (!(err instanceof AlreadyExistsError)) throw err;
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    const theirs = await peerWon;
    // THEN the two sets of winners partition the keys, and each stored value names its winner
    expect([...ours, ...theirs].sort()).toEqual(keys);
    const stored = await backend.getRange('/race/', '/race/\uffff');
    const byKey = new Map(stored.map((i) => [i.key, i.value.toString()]));
    for (const key of ours) expect(byKey.get(key)).toBe(`test ${process.pid}`);
    for (const key of theirs) expect(byKey.get(key)).toMatch(/^peer \d+$/);
  });
});

describe('SqliteBackend: the database file', () => {
  let dir: string;

  beforeEach(() => {
    dir = tempDir('file');
  });

  afterEach(() => removeDir(dir));

  it('creates missing parent directories 0700 and the file 0600, in WAL mode', async () => {
    // GIVEN a path whose parent directories do not exist
    const file = path.join(dir, 'var', 'lib', 'teleport', 'state.db');
    // WHEN the backend opens it and writes
    const backend = await SqliteBackend.open({ path: file });
    await backend.put({ key: '/k', value: val('v') });
    // THEN the directories, the database and its WAL are private to the owner
    try {
      expect(fs.statSync(path.join(dir, 'var')).mode & 0o777).toBe(0o700);
      expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      expect(fs.statSync(`${file}-wal`).mode & 0o777).toBe(0o600);
      const raw = new Database(file, { readonly: true });
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      raw.close();
    } finally {
      await backend.close();
    }
  });

  it('tightens an existing database file to 0600', async () => {
    const file = path.join(dir, 'state.db');
    fs.writeFileSync(file, '', { mode: 0o644 });
    fs.chmodSync(file, 0o644);
    const backend = await SqliteBackend.open({ path: file });
    await backend.close();
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  });

  it('keeps data, expiries and growing ids across a reopen', async () => {
    // GIVEN items written by a backend that is then closed
    const file = path.join(dir, 'state.db');
    const first = await SqliteBackend.open({ path: file });
    const expires = new Date(Date.now() + 3_600_000);
    await first.put({ key: '/a', value: val('plain') });
    await first.put({ key: '/b', value: val('with ttl'), expires });
    const lastId = (await first.get('/b')).id!;
    await first.close();
    // WHEN the file is opened again and written to
    const second = await SqliteBackend.open({ path: file });
    try {
      await second.put({ key: '/c', value: val('new') });
      // THEN the old items are there with their expiry, and new ids are larger than old ones
      const items = await second.getRange('/', '/\uffff');
      expect(items.map((i) => [i.key, i.value.toString()])).toEqual([
        ['/a', 'plain'],
        ['/b', 'with ttl'],
        ['/c', 'new'],
      ]);
      expect(items[1].expires?.getTime()).toBe(expires.getTime());
      expect(items[2].id).toBeGreaterThan(lastId);
    } finally {
      await second.close();
    }
  });

  it('rejects a missing path and an in-memory path with BadParameterError', async () => {
    await expect(SqliteBackend.open({ path: '' })).rejects.toBeInstanceOf(BadParameterError);
    await expect(SqliteBackend.open({ path: ':memory:' })).rejects.toBeInstanceOf(BadParameterError);
  });

  it('fails with ConnectionProblemError naming the file when it cannot be opened', async () => {
    const notADb = path.join(dir, 'garbage.db');
    fs.writeFileSync(notADb, 'this is not a database, just some text that is long enough '.repeat(20));
    const attempt = SqliteBackend.open({ path: notADb });
    await expect(attempt).rejects.toBeInstanceOf(ConnectionProblemError);
    await expect(attempt).rejects.toThrow(notADb);
  });
});

describe('SqliteBackend: the poller, with a fake clock', () => {
  let dir: string;
  let file: string;
  let clock: FakeClock;
  let backend: SqliteBackend;

  beforeEach(async () => {
    dir = tempDir('poll');
    file = path.join(dir, 'state.db');
    clock = new FakeClock();
    backend = await SqliteBackend.open({ path: file, clock, pollPeriodMs: 60_000 });
  });

  afterEach(async () => {
    await backend.close();
    removeDir(dir);
  });

  const countEvents = () => {
    const raw = new Database(file, { readonly: true });
    try {
      return (raw.prepare('SELECT COUNT(*) AS n FROM events').get() as { n: number }).n;
    } finally {
      raw.close();
    }
  };

  it('deletes expired rows with one Delete event each', async () => {
    // GIVEN an item that expires in one second, and a watcher
    await backend.put({ key: '/k', value: val('v'), expires: new Date(clock.now().getTime() + 1_000) });
    const w = await backend.newWatcher({ prefixes: ['/'] });
    // WHEN the clock passes the expiry and the poller runs twice
    clock.advance(1_000);
    backend.poll();
    backend.poll();
    await backend.put({ key: '/after', value: val('v') });
    // THEN exactly one Delete was emitted
    const seen: Event[] = await watchUntil(w, (e) => e.item.key === '/after', 'the write after the expiry');
    expect(seen.map(describeEvent)).toEqual(['Init ', 'Delete /k', 'Put /after']);
  });

  it('prunes events older than ten minutes and keeps newer ones', async () => {
    // GIVEN three old writes
    for (const k of ['/1', '/2', '/3']) await backend.put({ key: k, value: val(k) });
    expect(countEvents()).toBe(3);
    // WHEN more than ten minutes pass, one more write happens, and the poller runs
    clock.advance(EVENTS_TTL_MS + 1);
    await backend.put({ key: '/4', value: val('/4') });
    backend.poll();
    // THEN only the recent event is left, and the data is untouched
    expect(countEvents()).toBe(1);
    expect((await backend.getRange('/', '/\uffff')).length).toBe(4);
  });
});

describe('SqliteBackend after close', () => {
  it('rejects calls with ConnectionProblemError', async () => {
    const dir = tempDir('closed');
    const backend: Backend = await SqliteBackend.open({ path: path.join(dir, 'state.db') });
    await backend.close();
    await backend.close();
    await expect(backend.get('/k')).rejects.toBeInstanceOf(ConnectionProblemError);
    await expect(backend.put({ key: '/k', value: val('v') })).rejects.toBeInstanceOf(ConnectionProblemError);
    removeDir(dir);
  });
});

describe('SqliteBackend: secrets in the change log and the file', () => {
  let dir: string;
  let file: string;

  beforeEach(() => {
    dir = tempDir('secrets');
    file = path.join(dir, 'state.db');
  });
  afterEach(() => removeDir(dir));

  /** Every byte SQLite keeps for the database: the file, its WAL and its shared-memory index. */
  const fileBytes = () => Buffer.concat(['', '-wal', '-shm'].filter((s) => fs.existsSync(file + s)).map((s) => fs.readFileSync(file + s)));
  const rawEvents = () => {
    const raw = new Database(file, { readonly: true });
    try {
      return raw.prepare('SELECT * FROM events').all() as Record<string, unknown>[];
    } finally {
      raw.close();
    }
  };

  it("keeps only keys in the change log, while another instance's watcher still gets the values", async () => {
    // GIVEN two instances on one file, a watcher on the second
    const a = await SqliteBackend.open({ path: file, pollPeriodMs: POLL_MS });
    const b = await SqliteBackend.open({ path: file, pollPeriodMs: POLL_MS });
    try {
      const w = await b.newWatcher({ prefixes: ['/authorities/'] });
      // WHEN the first writes a CA private key, and keeps it alive
      const secret = 'PRIVATE-KEY-b61c0a7e-the-ca-signing-key';
      await a.put({ key: '/authorities/host/example.com', value: val(secret), expires: new Date(Date.now() + 3_600_000) });
      await a.keepAlive({ key: '/authorities/host/example.com' }, new Date(Date.now() + 7_200_000));
      // THEN the watcher gets the value
      const seen = await watchUntil(w, (e) => e.type === OpType.Put, 'the Put of the CA');
      expect(seen[1].item.value.toString()).toBe(secret);
      // and the change log has the events, without any value
      const events = rawEvents();
      expect(events.map((e) => [e.type, e.kv_key])).toEqual([
        [OpType.Put, '/authorities/host/example.com'],
        [OpType.Put, '/authorities/host/example.com'],
      ]);
      expect(Object.keys(events[0]).sort()).toEqual(['created', 'id', 'kv_key', 'type']);
      expect(JSON.stringify(events)).not.toContain('PRIVATE-KEY');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('delivers to another instance a value overwritten before it polled as its latest value, once', async () => {
    // GIVEN another instance with a watcher
    const a = await SqliteBackend.open({ path: file, pollPeriodMs: POLL_MS });
    const idle = await SqliteBackend.open({ path: file, pollPeriodMs: 60_000 });
    try {
      const w = await idle.newWatcher({ prefixes: ['/k/'] });
      // WHEN the key is written twice and then another key once, in one commit (puts of one turn),
      // so that the watcher's instance cannot read between them
      await Promise.all([a.put({ key: '/k/1', value: val('first') }), a.put({ key: '/k/1', value: val('second') }), a.put({ key: '/k/2', value: val('other') })]);
      idle.poll();
      // THEN the watcher sees the key once, with the value and id it has now, then the other key
      const seen = await watchUntil(w, (e) => e.item.key === '/k/2', 'the later key');
      expect(seen.map((e) => `${describeEvent(e)}=${e.item.value.toString()}`)).toEqual(['Init =', 'Put /k/1=second', 'Put /k/2=other']);
      expect(seen[1].item.id).toBe((await a.get('/k/1')).id);
    } finally {
      await a.close();
      await idle.close();
    }
  });

  it('leaves no trace of a deleted secret in the database file (secure_delete)', async () => {
    // GIVEN a secret written among other data, then deleted
    const backend = await SqliteBackend.open({ path: file });
    const secret = 'OTP-SECRET-5d1f0c9a-of-a-pending-sign-up';
    for (let i = 0; i < 20; i++) await backend.put({ key: `/web/users/u${i}/params`, value: val(`user ${i} `.repeat(20)) });
    await backend.put({ key: '/usertokens/abc', value: val(secret) });
    await backend.delete('/usertokens/abc');
    // WHEN the backend closes (SQLite checkpoints the WAL into the file)
    await backend.close();
    // THEN the file holds the other data but not the secret
    const bytes = fileBytes();
    expect(bytes.includes('user 19 ')).toBe(true);
    expect(bytes.includes(secret)).toBe(false);
  });

  it('migrates a version 1 database: the values in its change log are dropped, data and revisions kept', async () => {
    // GIVEN a version 1 database whose change log holds an old value of a key
    const v1 = new Database(file);
    v1.exec(`
      CREATE TABLE kv (key TEXT COLLATE BINARY PRIMARY KEY, modified INTEGER NOT NULL, expires INTEGER, value BLOB NOT NULL);
      CREATE INDEX kv_expires ON kv (expires);
      CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, type INTEGER NOT NULL, created INTEGER NOT NULL,
        kv_key TEXT NOT NULL, kv_expires INTEGER, kv_value BLOB);
      CREATE INDEX events_created ON events (created);
      CREATE TABLE meta (version INTEGER NOT NULL);
      INSERT INTO meta (version) VALUES (1);
    `);
    const now = Date.now();
    const ins = v1.prepare('INSERT INTO events (type, created, kv_key, kv_value) VALUES (?, ?, ?, ?)');
    ins.run(OpType.Put, now, '/tokens/k', val('OLD-CLEAR-TOKEN-4f2a9b'));
    ins.run(OpType.Put, now, '/tokens/k', val('current value'));
    v1.prepare('INSERT INTO kv (key, modified, expires, value) VALUES (?, 2, NULL, ?)').run('/tokens/k', val('current value'));
    v1.close();
    // WHEN the backend opens it and writes
    const backend = await SqliteBackend.open({ path: file });
    try {
      await backend.put({ key: '/other', value: val('v') });
      // THEN the data is there, revisions keep growing, and the change log has no values
      expect((await backend.get('/tokens/k')).value.toString()).toBe('current value');
      expect((await backend.get('/other')).id).toBe(3);
      const events = rawEvents();
      expect(Object.keys(events[0]).sort()).toEqual(['created', 'id', 'kv_key', 'type']);
      expect(events.map((e) => e.id)).toEqual([1, 2, 3]);
    } finally {
      await backend.close();
    }
    const raw = new Database(file, { readonly: true });
    expect(raw.prepare('SELECT version FROM meta').get()).toEqual({ version: 2 });
    raw.close();
    expect(fileBytes().includes('OLD-CLEAR-TOKEN')).toBe(false);
  });

  it('refuses a database of an unknown schema version', async () => {
    const raw = new Database(file);
    raw.exec('CREATE TABLE meta (version INTEGER NOT NULL); INSERT INTO meta (version) VALUES (3);');
    raw.close();
    await expect(SqliteBackend.open({ path: file })).rejects.toThrow(/schema version 3 is not supported \(want 2\)/);
  });
});
