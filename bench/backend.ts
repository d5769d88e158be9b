/**
 * Backend and audit log figures on this machine: get, put and range latency
 * (p50, p99), watch propagation delay from a write on one instance to a
 * watcher on another (for SQLite, in another process: a child that writes
 * when told, the time counted from the parent's order), and sustained audit events per second, on SQLite (the
 * embedded default) and on DynamoDB Local (the jar the tests use).
 *
 *   npx tsc -p . && node dist/bench/backend.js
 *   BENCH_OPS=200 BENCH_EVENTS=500 node dist/bench/backend.js   # quicker
 *
 * Reports the goal row `watch-sqlite` (bench/goals.ts): SQLite's p50 across
 * processes, against DynamoDB Local's in the same run.
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fork } from 'node:child_process';
import { Backend } from '../runtime/backend';
import { DynamoBackend } from '../runtime/backend/dynamodb';
import { SqliteBackend } from '../runtime/backend/sqlite';
import { DynamoAuditLog } from '../runtime/events/dynamodb';
import { AuditLog, FileAuditLog } from '../runtime/events/filelog';
import { DynamoDbLocal } from '../test/helpers/dynamodb';
import { tempDir } from '../test/helpers/proc';
import { envNumber, fmt, formatTable, quantile } from './common';
import { reportGoal } from './goals';

const OPS = envNumber('BENCH_OPS', 1000);
const EVENTS = envNumber('BENCH_EVENTS', 2000);
const RANGE_ITEMS = 100;
/** Set in the child that writes for the cross-process watch measurement: the SQLite file. */
const WRITER_FILE = process.env.BENCH_BACKEND_WRITER;
const WATCH_GOAL_MS = 50;

interface Figures {
  [measure: string]: { p50: number; p99: number } | number;
}

async function timed(n: number, op: (i: number) => Promise<unknown>): Promise<{ p50: number; p99: number }> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await op(i);
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return { p50: quantile(ms, 0.5), p99: quantile(ms, 0.99) };
}

/** Write on `a`, time until `b`'s watcher sees it. */
async function propagation(a: Backend, b: Backend, n: number): Promise<{ p50: number; p99: number }> {
  const prefix = `/bench-watch/${randomUUID()}/`;
  const w = await b.newWatcher({ prefixes: [prefix] });
  await w.next(); // Init
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await a.put({ key: `${prefix}${i}`, value: Buffer.from('x') });
    for (;;) {
      const e = await w.next();
      if (!e) throw new Error('the watcher closed');
      if (e.item.key === `${prefix}${i}`) break;
    }
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  w.close();
  return { p50: quantile(ms, 0.5), p99: quantile(ms, 0.99) };
}

/** The child process: opens the SQLite file, puts each key it is sent, answers when the put returned. */
async function writerChild(file: string): Promise<void> {
  const backend = await SqliteBackend.open({ path: file });
  process.on('message', (key: string) => void backend.put({ key, value: Buffer.from('x') }).then(() => process.send!('done')));
  process.on('disconnect', () => void backend.close().then(() => process.exit(0)));
  process.send!('ready');
}

/** Write from another process, time until `b`'s watcher here sees it (counted from the order sent to the child). */
async function propagationFromChild(file: string, b: Backend, n: number): Promise<{ p50: number; p99: number }> {
  const child = fork(__filename, [], { env: { ...process.env, BENCH_BACKEND_WRITER: file }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const messages: string[] = [];
  let wake: (() => void) | undefined;
  child.on('message', (m: string) => {
    messages.push(m);
    wake?.();
  });
  const nextMessage = async (): Promise<string> => {
    while (!messages.length) {
      if (child.exitCode !== null) throw new Error(`the writer process exited ${child.exitCode}`);
      await new Promise<void>((r) => (wake = r));
    }
    return messages.shift()!;
  };
  try {
    if ((await nextMessage()) !== 'ready') throw new Error('the writer process did not start');
    const prefix = `/bench-watch-proc/${randomUUID()}/`;
    const w = await b.newWatcher({ prefixes: [prefix] });
    await w.next(); // Init
    const ms: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = process.hrtime.bigint();
      child.send(`${prefix}${i}`);
      for (;;) {
        const e = await w.next();
        if (!e) throw new Error('the watcher closed');
        if (e.item.key === `${prefix}${i}`) break;
      }
      ms.push(Number(process.hrtime.bigint() - t) / 1e6);
      await nextMessage(); // the child's put returned: the next one starts from a quiet file
    }
    w.close();
    return { p50: quantile(ms, 0.5), p99: quantile(ms, 0.99) };
  } finally {
    child.disconnect();
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
  }
}

async function measureBackend(a: Backend, b: Backend): Promise<Figures> {
  const prefix = `/bench/${randomUUID()}/`;
  const value = Buffer.alloc(512, 7);
  const put = await timed(OPS, (i) => a.put({ key: `${prefix}${i % RANGE_ITEMS}`, value }));
  const get = await timed(OPS, (i) => a.get(`${prefix}${i % RANGE_ITEMS}`));
  const range = await timed(Math.ceil(OPS / 10), () => a.getRange(prefix, prefix + '\uffff'));
  const watch = await propagation(a, b, Math.min(OPS, 100));
  return { put, get, [`range of ${RANGE_ITEMS}`]: range, 'watch a→b': watch };
}

async function eventsPerSecond(log: AuditLog): Promise<number> {
  const start = Date.now();
  for (let i = 0; i < EVENTS; i++) await log.emit({ event: 'user.login', user: `u${i}`, method: 'local', success: true });
  return EVENTS / ((Date.now() - start) / 1000);
}

async function main(): Promise<void> {
  const dir = tempDir('bench-backend-');
  const ddb = await DynamoDbLocal.start();
  const results: Record<string, Figures> = {};
  try {
    process.stderr.write('sqlite...\n');
    const file = path.join(dir, 'sqlite.db');
    const [s1, s2] = [await SqliteBackend.open({ path: file }), await SqliteBackend.open({ path: file })];
    results.sqlite = await measureBackend(s1, s2);
    results.sqlite['watch other process→b'] = await propagationFromChild(file, s2, Math.min(OPS, 100));
    await Promise.all([s1.close(), s2.close()]);

    process.stderr.write('dynamodb local...\n');
    const opts = { tableName: `bench-${randomUUID()}`, endpoint: ddb.endpoint, region: 'us-east-1', accessKey: 'local', secretKey: 'local', pollPeriodMs: 100 };
    const d1 = await DynamoBackend.open(opts);
    const d2 = await DynamoBackend.open(opts);
    results.dynamodb = await measureBackend(d1, d2);
    await Promise.all([d1.close(), d2.close()]);

    process.stderr.write('audit logs...\n');
    const fileLog = new FileAuditLog(path.join(dir, 'log'));
    results.sqlite['audit events/s (file log, fsync each)'] = await eventsPerSecond(fileLog);
    await fileLog.close();
    const ddbLog = await DynamoAuditLog.open({ tableName: `bench-events-${randomUUID()}`, endpoint: ddb.endpoint, region: 'us-east-1', accessKey: 'local', secretKey: 'local' });
    results.dynamodb['audit events/s (dynamodb)'] = await eventsPerSecond(ddbLog);
    await ddbLog.close();
  } finally {
    await ddb.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }

  const rows = [['measure (ms, p50 / p99)', 'sqlite', 'dynamodb local']];
  const cell = (f: Figures[string] | undefined) => (f === undefined ? '-' : typeof f === 'number' ? fmt(f, 0) : `${fmt(f.p50, 2)} / ${fmt(f.p99, 2)}`);
  for (const m of ['put', 'get', `range of ${RANGE_ITEMS}`, 'watch a→b', 'watch other process→b']) rows.push([m, cell(results.sqlite[m]), cell(results.dynamodb[m])]);
  rows.push(['audit events/s', cell(results.sqlite['audit events/s (file log, fsync each)']) + ' (file)', cell(results.dynamodb['audit events/s (dynamodb)'])]);
  process.stdout.write(formatTable(rows) + '\n');
  process.stdout.write(JSON.stringify({ bench: 'backend', ops: OPS, events: EVENTS, results }) + '\n');
  const sqliteWatch = results.sqlite['watch other process→b'] as { p50: number };
  const ddbWatch = results.dynamodb['watch a→b'] as { p50: number };
  reportGoal({
    id: 'watch-sqlite',
    value: `${fmt(sqliteWatch.p50, 1)} ms p50`,
    anchor: `DynamoDB Local ${fmt(ddbWatch.p50, 1)} ms p50`,
    ratio: sqliteWatch.p50 / ddbWatch.p50,
    met: sqliteWatch.p50 <= WATCH_GOAL_MS,
  });
}

(WRITER_FILE ? writerChild(WRITER_FILE) : main()).catch((err) => {
  console.error(err);
  process.exit(1);
});
