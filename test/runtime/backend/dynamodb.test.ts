/**
 * The DynamoDB backend against a real DynamoDB Local (one JVM for the file, its data in a temp
 * directory so that the last block can restart it): the shared suite, two instances on one table,
 * expiry, existing tables, and the stream poller's recovery after a restart.
 */

import {
  CreateTableCommand,
  CreateTableCommandInput,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import { randomUUID } from 'node:crypto';
import { DynamoBackendOptions, openBackend, OpType } from '../../../runtime/backend';
import { DynamoBackend } from '../../../runtime/backend/dynamodb';
import {
  AlreadyExistsError,
  BadParameterError,
  CompareFailedError,
  ConnectionProblemError,
  NotFoundError,
} from '../../../runtime/utils/errors';
import { DynamoDbLocal, LOCAL_CREDENTIALS } from '../../helpers/dynamodb';
import { describeEvent, FakeClock, removeDir, tempDir, waitFor, watchUntil, within } from './helpers';
import { runBackendSuite } from './suite';

const POLL_MS = 100;
const val = (s: string) => Buffer.from(s);

let local: DynamoDbLocal;
let raw: DynamoDBClient;
let dataDir: string;

beforeAll(async () => {
  dataDir = tempDir('dynamodb');
  local = await DynamoDbLocal.start({ dbPath: dataDir });
  raw = local.client();
}, 90_000);

afterAll(async () => {
  raw?.destroy();
  await local?.stop();
  if (dataDir) removeDir(dataDir);
});

function open(tableName: string, extra: Partial<DynamoBackendOptions> = {}): Promise<DynamoBackend> {
  return DynamoBackend.open({
    tableName,
    endpoint: local.endpoint,
    accessKey: LOCAL_CREDENTIALS.accessKeyId,
    secretKey: LOCAL_CREDENTIALS.secretAccessKey,
    pollPeriodMs: POLL_MS,
    ...extra,
  });
}

const uniqueTable = (label: string) => `${label}-${randomUUID().slice(0, 8)}`;

/** A table in the layout the backend expects, made by hand (as an operator or Terraform would). */
async function createTableByHand(name: string, changes: Partial<CreateTableCommandInput> = {}): Promise<void> {
  await raw.send(
    new CreateTableCommand({
      TableName: name,
      AttributeDefinitions: [
        { AttributeName: 'HashKey', AttributeType: 'S' },
        { AttributeName: 'FullPath', AttributeType: 'S' },
      ],
      KeySchema: [
        { AttributeName: 'HashKey', KeyType: 'HASH' },
        { AttributeName: 'FullPath', KeyType: 'RANGE' },
      ],
      BillingMode: 'PROVISIONED',
      ProvisionedThroughput: { ReadCapacityUnits: 5, WriteCapacityUnits: 5 },
      StreamSpecification: { StreamEnabled: true, StreamViewType: 'NEW_AND_OLD_IMAGES' },
      ...changes,
    }),
  );
}

async function rawItem(table: string, key: string) {
  const out = await raw.send(
    new GetItemCommand({ TableName: table, Key: { HashKey: { S: 'teleport' }, FullPath: { S: `teleport${key}` } }, ConsistentRead: true }),
  );
  return out.Item;
}

const SUITE_TABLE = 'suite';
runBackendSuite('dynamodb', async () => {
  const backend = await open(SUITE_TABLE);
  return { backend, cleanup: () => backend.close() };
});

describe('DynamoBackend: the table it creates', () => {
  it('has the Teleport layout, on-demand billing, a NEW_IMAGE stream and TTL on Expires', async () => {
    // GIVEN no table
    const table = uniqueTable('created');
    // WHEN the backend opens it and writes an item with a TTL
    const backend = await open(table);
    const expires = new Date(Math.ceil(Date.now() / 1000) * 1000 + 3_600_000);
    try {
      await backend.put({ key: '/nodes/default/n1', value: val('node'), expires });
    } finally {
      await backend.close();
    }
    // THEN the table and the stored item are what Teleport expects
    const desc = (await raw.send(new DescribeTableCommand({ TableName: table }))).Table!;
    expect(desc.KeySchema).toEqual([
      { AttributeName: 'HashKey', KeyType: 'HASH' },
      { AttributeName: 'FullPath', KeyType: 'RANGE' },
    ]);
    expect(desc.BillingModeSummary?.BillingMode).toBe('PAY_PER_REQUEST');
    expect(desc.StreamSpecification).toEqual({ StreamEnabled: true, StreamViewType: 'NEW_IMAGE' });
    const ttl = (await raw.send(new DescribeTimeToLiveCommand({ TableName: table }))).TimeToLiveDescription;
    expect(ttl?.AttributeName).toBe('Expires');
    expect(ttl?.TimeToLiveStatus).toMatch(/^ENABL/);
    const item = await rawItem(table, '/nodes/default/n1');
    expect(Buffer.from(item!.Value.B!).toString()).toBe('node');
    expect(item!.Expires.N).toBe(String(expires.getTime() / 1000));
    expect(item!.ID.N).toMatch(/^\d{19}$/); // Unix nanoseconds
    expect(Math.abs(Number(item!.Timestamp.N) - Date.now() / 1000)).toBeLessThan(600);
  });

  it('is opened through openBackend with storage settings', async () => {
    const table = uniqueTable('via-config');
    const backend = await openBackend({
      type: 'dynamodb',
      tableName: table,
      endpoint: local.endpoint,
      accessKey: LOCAL_CREDENTIALS.accessKeyId,
      secretKey: LOCAL_CREDENTIALS.secretAccessKey,
      pollPeriodMs: POLL_MS,
    });
    try {
      expect(backend).toBeInstanceOf(DynamoBackend);
      await backend.put({ key: '/k', value: val('v') });
      expect((await rawItem(table, '/k'))?.Value.B).toBeDefined();
    } finally {
      await backend.close();
    }
    await expect(openBackend({ type: 'dynamodb' })).rejects.toBeInstanceOf(BadParameterError);
  });

  it('rejects bad options with BadParameterError', async () => {
    await expect(open('x')).rejects.toBeInstanceOf(BadParameterError);
    await expect(open('good-name', { accessKey: 'only-the-key', secretKey: undefined })).rejects.toThrow(/go together/);
  });
});

describe('DynamoBackend on a table that already exists', () => {
  it('uses it as it is, reading items Teleport wrote, and watches through its NEW_AND_OLD_IMAGES stream', async () => {
    // GIVEN a provisioned table made by hand, holding an item in Teleport's format
    const table = uniqueTable('existing');
    await createTableByHand(table);
    await raw.send(
      new PutItemCommand({
        TableName: table,
        Item: {
          HashKey: { S: 'teleport' },
          FullPath: { S: 'teleport/authorities/host/example' },
          Value: { B: val('ca') },
          Timestamp: { N: '1700000000' },
          ID: { N: '1700000000123456789' },
        },
      }),
    );
    // WHEN the backend opens it
    const backend = await open(table);
    try {
      // THEN it reads the item (the nanosecond ID as microseconds), and its watchers work
      const item = await backend.get('/authorities/host/example');
      expect(item.value.toString()).toBe('ca');
      expect(item.id).toBe(1700000000123456);
      expect(item.expires).toBeUndefined();
      const w = await backend.newWatcher({ prefixes: ['/authorities/'] });
      await backend.put({ key: '/authorities/user/example', value: val('user ca') });
      const seen = await watchUntil(w, (e) => e.type === OpType.Put, 'the Put on the existing table');
      expect(seen.map(describeEvent)).toEqual(['Init ', 'Put /authorities/user/example']);
      expect(seen[1].item.value.toString()).toBe('user ca');
    } finally {
      await backend.close();
    }
    // AND the table was not replaced or reconfigured
    const desc = (await raw.send(new DescribeTableCommand({ TableName: table }))).Table!;
    expect(desc.BillingModeSummary?.BillingMode ?? 'PROVISIONED').toBe('PROVISIONED');
    expect(desc.ProvisionedThroughput?.ReadCapacityUnits).toBe(5);
    expect(desc.StreamSpecification?.StreamViewType).toBe('NEW_AND_OLD_IMAGES');
  });

  it('rejects a table with other keys, the old schema, or a stream without new images', async () => {
    // GIVEN tables the backend cannot work with
    const otherKeys = uniqueTable('other-keys');
    await createTableByHand(otherKeys, {
      AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
    });
    const oldSchema = uniqueTable('old-schema');
    await createTableByHand(oldSchema, {
      AttributeDefinitions: [
        { AttributeName: 'HashKey', AttributeType: 'S' },
        { AttributeName: 'Key', AttributeType: 'S' },
      ],
      KeySchema: [
        { AttributeName: 'HashKey', KeyType: 'HASH' },
        { AttributeName: 'Key', KeyType: 'RANGE' },
      ],
    });
    const keysOnly = uniqueTable('keys-only');
    await createTableByHand(keysOnly, { StreamSpecification: { StreamEnabled: true, StreamViewType: 'KEYS_ONLY' } });
    // THEN opening each fails with BadParameterError naming the problem
    await expect(open(otherKeys)).rejects.toThrow(/needs hash key HashKey and range key FullPath/);
    await expect(open(oldSchema)).rejects.toThrow(/old schema/);
    await expect(open(keysOnly)).rejects.toThrow(/KEYS_ONLY stream/);
    await expect(open(keysOnly)).rejects.toBeInstanceOf(BadParameterError);
  });

  it('turns on the stream of a table that has none', async () => {
    const table = uniqueTable('no-stream');
    await createTableByHand(table, { StreamSpecification: { StreamEnabled: false } });
    const backend = await open(table);
    try {
      const w = await backend.newWatcher({ prefixes: [] });
      await backend.put({ key: '/k', value: val('v') });
      expect((await watchUntil(w, (e) => e.type === OpType.Put, 'the Put')).map(describeEvent)).toEqual(['Init ', 'Put /k']);
    } finally {
      await backend.close();
    }
  });
});

describe('DynamoBackend: two instances on one table', () => {
  const table = 'shared';
  let a: DynamoBackend;
  let b: DynamoBackend;

  beforeEach(async () => {
    a = await open(table);
    b = await open(table);
  });

  afterEach(async () => {
    await a.close();
    await b.close();
  });

  it("delivers A's writes to B's watchers and B's to A's, with values and ids", async () => {
    // GIVEN a watcher on each instance
    const p = `/x-${randomUUID()}/`;
    const wa = await a.newWatcher({ prefixes: [p] });
    const wb = await b.newWatcher({ prefixes: [p] });
    // WHEN A writes, then B writes, then A deletes
    await a.put({ key: `${p}from-a`, value: val('hello from A') });
    await b.put({ key: `${p}from-b`, value: val('hello from B') });
    await a.delete(`${p}from-b`);
    // THEN both watchers see all three changes, in order
    const expected = ['Init ', `Put ${p}from-a`, `Put ${p}from-b`, `Delete ${p}from-b`];
    const onB = await watchUntil(wb, (e) => e.type === OpType.Delete, "A's delete on B");
    const onA = await watchUntil(wa, (e) => e.type === OpType.Delete, "A's delete on A");
    expect(onB.map(describeEvent)).toEqual(expected);
    expect(onA.map(describeEvent)).toEqual(expected);
    expect(onB[1].item.value.toString()).toBe('hello from A');
    expect(onA[2].item.value.toString()).toBe('hello from B');
    expect(onB[2].item.id).toBeGreaterThan(onB[1].item.id!);
  });

  it('lets exactly one of 20 concurrent creates of a key win', async () => {
    const key = `/race-${randomUUID()}`;
    // WHEN 20 creates of one key are started, alternating between A and B
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).create({ key, value: val(`candidate ${i}`) })),
    );
    // THEN one succeeds, the others fail with AlreadyExistsError, and the stored value is the winner's
    const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    const losers = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(winners).toHaveLength(1);
    expect(losers.every((r) => r.reason instanceof AlreadyExistsError)).toBe(true);
    expect((await b.get(key)).value.toString()).toBe(`candidate ${winners[0]}`);
  });

  it('deletes an expired item once, however many instances sweep, and both watchers see one Delete', async () => {
    // GIVEN watchers on both instances
    const p = `/t-${randomUUID()}/`;
    const wa = await a.newWatcher({ prefixes: [p] });
    const wb = await b.newWatcher({ prefixes: [p] });
    // WHEN an item expires, and a later write follows its Delete
    await a.put({ key: `${p}short`, value: val('v'), expires: new Date(Date.now() + 1_000) });
    const untilDelete = await watchUntil(wa, (e) => e.type === OpType.Delete, "the Delete on A's watcher");
    await b.put({ key: `${p}after`, value: val('v') });
    // THEN each watcher saw exactly one Delete for it, before the later write, and it is gone from the table
    const expected = ['Init ', `Put ${p}short`, `Delete ${p}short`, `Put ${p}after`];
    const rest = await watchUntil(wa, (e) => e.item.key === `${p}after`, 'the later write on A');
    const fromB = await watchUntil(wb, (e) => e.item.key === `${p}after`, 'the later write on B');
    expect([...untilDelete, ...rest].map(describeEvent)).toEqual(expected);
    expect(fromB.map(describeEvent)).toEqual(expected);
    expect(await rawItem(table, `${p}short`)).toBeUndefined();
  });
});

describe('DynamoBackend: expired items still in the table', () => {
  const table = 'expiry';
  const HOUR = 3_600_000;
  let clock: FakeClock;
  let backend: DynamoBackend;

  beforeEach(async () => {
    // The backend's clock runs two hours ahead: items that expire in one hour are expired for it,
    // while DynamoDB Local's own TTL (on the real clock) leaves them alone. A long expiry check period
    // keeps its sweeper from deleting them during the test (it only deletes at start).
    clock = new FakeClock(Date.now() + 2 * HOUR);
    backend = await open(table, { clock, expiryCheckPeriodMs: 600_000 });
  });

  afterEach(() => backend.close());

  it('hides them from reads and conditional writes before anything deletes them', async () => {
    // GIVEN an item whose expiry has passed for the backend, next to a live one
    const p = `/e-${randomUUID()}/`;
    const inOneHour = new Date(Math.ceil((Date.now() + HOUR) / 1000) * 1000);
    await backend.put({ key: `${p}live`, value: val('live') });
    await backend.put({ key: `${p}dead`, value: val('dead'), expires: inOneHour });
    // WHEN it is read and written conditionally
    // THEN it counts as absent everywhere
    expect((await backend.getRange(p, `${p}\uffff`)).map((i) => i.key)).toEqual([`${p}live`]);
    await expect(backend.update({ key: `${p}dead`, value: val('x') })).rejects.toBeInstanceOf(NotFoundError);
    await expect(
      backend.compareAndSwap({ key: `${p}dead`, value: val('dead') }, { key: `${p}dead`, value: val('x') }),
    ).rejects.toBeInstanceOf(CompareFailedError);
    await expect(backend.delete(`${p}dead`)).rejects.toBeInstanceOf(NotFoundError);
    await expect(backend.keepAlive({ key: `${p}dead` }, new Date(clock.now().getTime() + HOUR))).rejects.toBeInstanceOf(
      NotFoundError,
    );
    // AND it is still stored: reads filtered it out, nothing deleted it
    expect(Buffer.from((await rawItem(table, `${p}dead`))!.Value.B!).toString()).toBe('dead');
    // AND create takes the key over
    await backend.create({ key: `${p}dead`, value: val('reborn') });
    expect((await backend.get(`${p}dead`)).value.toString()).toBe('reborn');
  });

  it('deletes an expired item that get meets, so watchers learn of it', async () => {
    // GIVEN an expired item and a watcher
    const p = `/g-${randomUUID()}/`;
    await backend.put({ key: `${p}dead`, value: val('dead'), expires: new Date(Math.ceil((Date.now() + HOUR) / 1000) * 1000) });
    const w = await backend.newWatcher({ prefixes: [p] });
    // WHEN get reads it
    await expect(backend.get(`${p}dead`)).rejects.toBeInstanceOf(NotFoundError);
    // THEN it is removed from the table, with a Delete event
    expect(await rawItem(table, `${p}dead`)).toBeUndefined();
    const seen = await watchUntil(w, (e) => e.type === OpType.Delete, 'the Delete of the expired item');
    expect(seen.map(describeEvent)).toEqual(['Init ', `Delete ${p}dead`]);
  });
});

describe('DynamoBackend after close', () => {
  it('rejects calls with ConnectionProblemError', async () => {
    const backend = await open(SUITE_TABLE);
    await backend.close();
    await backend.close();
    await expect(backend.get('/k')).rejects.toBeInstanceOf(ConnectionProblemError);
    await expect(backend.put({ key: '/k', value: val('v') })).rejects.toBeInstanceOf(ConnectionProblemError);
    await expect(backend.newWatcher({ prefixes: [] })).rejects.toBeInstanceOf(ConnectionProblemError);
  });
});

// Last: it restarts the emulator.
describe('DynamoBackend across a DynamoDB Local restart', () => {
  it('closes its watchers when the stream is lost, and a re-opened watcher gets the writes made after', async () => {
    // GIVEN a backend with a watcher that has seen a write
    const backend = await open('restart');
    try {
      const before = await backend.newWatcher({ prefixes: ['/r/'] });
      await backend.put({ key: '/r/before', value: val('1') });
      await watchUntil(before, (e) => e.item.key === '/r/before', 'the write before the restart');
      // WHEN DynamoDB Local restarts (keeping its data)
      await local.restart();
      // THEN the old watcher is closed, so its consumer knows to re-read
      await within(before.done, 'the watcher to close after the stream was lost', 30_000);
      // AND a new watcher opens once the stream is readable again and sees later writes; old data is there
      const after = await within(backend.newWatcher({ prefixes: ['/r/'] }), 'a new watcher', 40_000);
      await backend.put({ key: '/r/after', value: val('2') });
      const seen = await watchUntil(after, (e) => e.item.key === '/r/after', 'the write after the restart', 20_000);
      expect(seen.map(describeEvent)).toEqual(['Init ', 'Put /r/after']);
      expect((await backend.get('/r/before')).value.toString()).toBe('1');
      await waitFor(async () => (await backend.getRange('/r/', '/r/\uffff')).length === 2, 'both items to be listed');
    } finally {
      await backend.close();
    }
  }, 120_000);
});

describe('DynamoBackend opened without background work (the control plane Lambdas)', () => {
  it('GIVEN background: false THEN items are read and written, and a watch is refused', async () => {
    const table = uniqueTable('nobg');
    const full = await open(table);
    const light = await open(table, { background: false });
    try {
      await light.put({ key: '/tokens/t1', value: val('token') });
      expect((await full.get('/tokens/t1')).value.toString()).toBe('token');
      await expect(light.newWatcher({ prefixes: ['/'] })).rejects.toThrow(/opened without watches/);
    } finally {
      await light.close();
      await full.close();
    }
  });
});
