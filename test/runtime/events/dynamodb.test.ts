/**
 * The DynamoDB audit log against a real DynamoDB Local (one in-memory JVM for the file).
 */

import {
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  DynamoDBClient,
  GetItemCommand,
  QueryCommand,
} from '@aws-sdk/client-dynamodb';
import { randomUUID } from 'node:crypto';
import { auditLogOptionsFromUri, DynamoAuditLog, TIME_SEARCH_INDEX } from '../../../runtime/events/dynamodb';
import { BadParameterError } from '../../../runtime/utils/errors';
import { DynamoDbLocal, LOCAL_CREDENTIALS } from '../../helpers/dynamodb';

let local: DynamoDbLocal;
let raw: DynamoDBClient;

beforeAll(async () => {
  local = await DynamoDbLocal.start();
  raw = local.client();
}, 90_000);

afterAll(async () => {
  raw?.destroy();
  await local?.stop();
});

const open = (tableName: string) =>
  DynamoAuditLog.open(
    auditLogOptionsFromUri(`dynamodb://${tableName}?endpoint=${encodeURIComponent(local.endpoint)}`, {
      accessKey: LOCAL_CREDENTIALS.accessKeyId,
      secretKey: LOCAL_CREDENTIALS.secretAccessKey,
    }),
  );

const at = (s: number) => `2020-03-01T10:00:${String(s).padStart(2, '0')}Z`;
const T = (s: number) => new Date(at(s));

describe('DynamoAuditLog', () => {
  it('creates its table with the timesearch index and TTL, and keeps events a year', async () => {
    // GIVEN no table
    const table = `events-${randomUUID().slice(0, 8)}`;
    // WHEN the log opens it and a session event is emitted
    const audit = await open(table);
    const sid = randomUUID();
    try {
      await audit.emit({ event: 'session.start', sid, ei: 0, user: 'alice', login: 'root', time: at(1) });
    } finally {
      await audit.close();
    }
    // THEN the table has Teleport's layout, and the event sits under its session and index
    const desc = (await raw.send(new DescribeTableCommand({ TableName: table }))).Table!;
    expect(desc.KeySchema).toEqual([
      { AttributeName: 'SessionID', KeyType: 'HASH' },
      { AttributeName: 'EventIndex', KeyType: 'RANGE' },
    ]);
    const index = desc.GlobalSecondaryIndexes?.find((i) => i.IndexName === TIME_SEARCH_INDEX);
    expect(index?.KeySchema).toEqual([
      { AttributeName: 'EventNamespace', KeyType: 'HASH' },
      { AttributeName: 'CreatedAt', KeyType: 'RANGE' },
    ]);
    const ttl = (await raw.send(new DescribeTimeToLiveCommand({ TableName: table }))).TimeToLiveDescription;
    expect(ttl?.AttributeName).toBe('Expires');
    const item = (
      await raw.send(new GetItemCommand({ TableName: table, Key: { SessionID: { S: sid }, EventIndex: { N: '0' } } }))
    ).Item!;
    expect(item.EventType.S).toBe('session.start');
    expect(item.EventNamespace.S).toBe('default');
    expect(item.CreatedAt.N).toBe(String(T(1).getTime() / 1000));
    const fields = JSON.parse(item.Fields.S!);
    expect(fields).toMatchObject({ event: 'session.start', sid, user: 'alice', code: 'T2000I', time: at(1) });
    expect(fields.uid).toMatch(/^[0-9a-f-]{36}$/);
    const yearFromNow = Date.now() / 1000 + 365 * 86_400;
    expect(Math.abs(Number(item.Expires.N) - yearFromNow)).toBeLessThan(600);
  });

  it('finds events by time range and type, oldest first, up to a limit, whichever auth server wrote them', async () => {
    // GIVEN two auth servers logging to one table: logins, a session, and an event outside the range
    const table = `events-${randomUUID().slice(0, 8)}`;
    const one = await open(table);
    const two = await open(table);
    try {
      const sid = randomUUID();
      await one.emit({ event: 'user.login', user: 'alice', method: 'local', success: true, time: at(10) });
      await two.emit({ event: 'session.start', sid, ei: 0, time: at(11) });
      await one.emit({ event: 'user.login', user: 'bob', method: 'local', success: false, time: at(12) });
      await two.emit({ event: 'session.end', sid, ei: 5, time: at(13) });
      await one.emit({ event: 'user.login', user: 'carol', method: 'local', success: true, time: at(30) });
      // WHEN one of them searches
      const all = await two.search({ from: T(10), to: T(20) });
      const logins = await one.search({ from: T(10), to: T(20), eventTypes: ['user.login'] });
      const sessions = await one.search({ from: T(0), to: T(59), eventTypes: ['session.start', 'session.end'] });
      const first = await one.search({ from: T(0), to: T(59), limit: 2 });
      // THEN each search returns exactly the matching events, in time order
      expect(all.map((e) => `${e.event} ${e.time}`)).toEqual([
        `user.login ${at(10)}`,
        `session.start ${at(11)}`,
        `user.login ${at(12)}`,
        `session.end ${at(13)}`,
      ]);
      expect(logins.map((e) => [e.user, e.code])).toEqual([
        ['alice', 'T1000I'],
        ['bob', 'T1000W'],
      ]);
      expect(sessions.map((e) => [e.event, e.sid, e.ei])).toEqual([
        ['session.start', sid, 0],
        ['session.end', sid, 5],
      ]);
      expect(first.map((e) => e.time)).toEqual([at(10), at(11)]);
      expect(await one.search({ from: T(20), to: T(10) })).toEqual([]);
      // AND the session's events are under its SessionID, in index order
      const inSession = await raw.send(
        new QueryCommand({
          TableName: table,
          KeyConditionExpression: 'SessionID = :sid',
          ExpressionAttributeValues: { ':sid': { S: sid } },
        }),
      );
      expect(inSession.Items?.map((i) => [i.EventIndex.N, i.EventType.S])).toEqual([
        ['0', 'session.start'],
        ['5', 'session.end'],
      ]);
    } finally {
      await one.close();
      await two.close();
    }
  });

  it('GIVEN the events of several users WHEN searching by user (with a type, a range and a limit) THEN only that user\'s events come back, oldest first', async () => {
    // GIVEN alice's and bob's logins and sessions, and an event without a user
    const table = `events-${randomUUID().slice(0, 8)}`;
    const audit = await open(table);
    try {
      const sid = randomUUID();
      await audit.emit({ event: 'user.login', user: 'alice', method: 'local', success: true, time: at(1) });
      await audit.emit({ event: 'user.login', user: 'bob', method: 'local', success: true, time: at(2) });
      await audit.emit({ event: 'session.start', sid, ei: 0, user: 'alice', login: 'root', time: at(3) });
      await audit.emit({ event: 'session.start', sid: randomUUID(), ei: 0, user: 'bob', login: 'root', time: at(4) });
      await audit.emit({ event: 'session.upload', sid, ei: 2147483647, time: at(5) });
      await audit.emit({ event: 'session.end', sid, ei: 7, user: 'alice', time: at(6) });
      await audit.emit({ event: 'user.login', user: 'alice', method: 'local', success: false, time: at(40) });
      // WHEN searching for alice's events, her session events, the first two of hers, bob's in a range without them, and a user with none
      const alices = await audit.search({ from: T(0), to: T(30), user: 'alice' });
      const sessions = await audit.search({ from: T(0), to: T(59), user: 'alice', eventTypes: ['session.start', 'session.end'] });
      const firstTwo = await audit.search({ from: T(0), to: T(59), user: 'alice', limit: 2 });
      const bobLater = await audit.search({ from: T(5), to: T(59), user: 'bob' });
      const nobody = await audit.search({ from: T(0), to: T(59), user: 'mallory' });
      // THEN each holds exactly alice's (or bob's) events matching the rest of the query
      expect(alices.map((e) => [e.event, e.user, e.time])).toEqual([
        ['user.login', 'alice', at(1)],
        ['session.start', 'alice', at(3)],
        ['session.end', 'alice', at(6)],
      ]);
      expect(sessions.map((e) => e.event)).toEqual(['session.start', 'session.end']);
      expect(firstTwo.map((e) => e.time)).toEqual([at(1), at(3)]);
      expect(bobLater).toEqual([]);
      expect(nobody).toEqual([]);
      // AND without the user filter everyone's are there
      expect((await audit.search({ from: T(0), to: T(59) })).map((e) => e.user ?? '-')).toEqual(['alice', 'bob', 'alice', 'bob', '-', 'alice', 'alice']);
    } finally {
      await audit.close();
    }
  });

  it('GIVEN events delivered more than once (a node retrying) THEN each is stored once; another event on a taken session index is kept', async () => {
    // GIVEN a log, a non-session event and a session event, each emitted twice with the same uid
    const table = `events-${randomUUID().slice(0, 8)}`;
    const audit = await open(table);
    try {
      const sid = randomUUID();
      const exec = { event: 'exec', uid: randomUUID(), server_id: 'node-a', command: 'true', time: at(1) };
      const start = { event: 'session.start', uid: randomUUID(), sid, ei: 0, time: at(2) };
      // WHEN they are emitted again, and another host's event carries the first uid, and another event claims the session index
      for (const e of [exec, exec, start, start, { ...exec, server_id: 'node-b' }]) await audit.emit(e);
      const other = await audit.emit({ event: 'session.start', uid: randomUUID(), sid, ei: 0, time: at(3) });
      // THEN each distinct event is stored exactly once
      const all = await audit.search({ from: T(0), to: T(59) });
      expect(all.map((e) => [e.event, e.uid, e.server_id]).sort((a, b) => `${a[0]}${a[2]}`.localeCompare(`${b[0]}${b[2]}`)).slice(0, 2)).toEqual([
        ['exec', exec.uid, 'node-a'],
        ['exec', exec.uid, 'node-b'],
      ]);
      expect(all.slice(2).map((e) => [e.event, e.uid, e.server_id])).toEqual([
        ['session.start', start.uid, undefined],
        ['session.start', other.uid, undefined],
      ]);
    } finally {
      await audit.close();
    }
  });

  it('reads its table, region and endpoint from the URI', () => {
    expect(auditLogOptionsFromUri('dynamodb://audit-events?region=eu-west-1', { region: 'us-east-1' })).toEqual({
      tableName: 'audit-events',
      region: 'eu-west-1',
    });
    expect(auditLogOptionsFromUri('dynamodb://audit?endpoint=http%3A%2F%2F127.0.0.1%3A8000', { region: 'us-east-2' })).toEqual({
      tableName: 'audit',
      region: 'us-east-2',
      endpoint: 'http://127.0.0.1:8000',
    });
    expect(() => auditLogOptionsFromUri('file:///var/lib/teleport/log')).toThrow(BadParameterError);
    expect(() => auditLogOptionsFromUri('dynamodb://')).toThrow(BadParameterError);
  });
});
