/**
 * The auth service's read cache: the shared backend suite through it, then
 * what makes it a cache — warm reads never reach the store, other writers'
 * changes arrive through the watch, a writer reads its own writes, and a
 * broken watch sends reads back to the store until it is re-read.
 */
import { CachedBackend } from '../../../runtime/backend/cache';
import { MemoryBackend } from '../../../runtime/backend/memory';
import { Backend, Item, Watcher, WatchOptions } from '../../../runtime/backend/types';
import { NotFoundError } from '../../../runtime/utils/errors';
import { FakeClock, waitFor } from './helpers';
import { runBackendSuite } from './suite';

runBackendSuite('cached memory', async () => {
  const backend = await CachedBackend.open(new MemoryBackend({ sweepPeriodMs: 100 }), { prefixes: ['/'] });
  return { backend, cleanup: () => backend.close() };
});

/** A MemoryBackend that counts reads and can break its watchers. */
class CountingBackend extends MemoryBackend {
  reads = 0;
  private readonly watchers: Watcher[] = [];

  override async get(key: string): Promise<Item> {
    this.reads++;
    return super.get(key);
  }
  override async getRange(start: string, end: string, limit?: number): Promise<Item[]> {
    this.reads++;
    return super.getRange(start, end, limit);
  }
  override async newWatcher(opts: WatchOptions): Promise<Watcher> {
    const w = await super.newWatcher(opts);
    this.watchers.push(w);
    return w;
  }
  breakWatchers(): void {
    for (const w of this.watchers.splice(0)) w.close();
  }
}

const val = (s: string) => Buffer.from(s);

describe('CachedBackend', () => {
  let store: CountingBackend;
  let cache: CachedBackend;

  beforeEach(async () => {
    store = new CountingBackend();
    await store.put({ key: '/roles/admin', value: val('v1') });
    await store.put({ key: '/nodes/default/n1', value: val('node-1') });
    await store.put({ key: '/other/x', value: val('not cached') });
    cache = await CachedBackend.open(store, { prefixes: ['/roles/', '/nodes/'], retryMs: 10 });
  });
  afterEach(() => cache.close());

  it('GIVEN a loaded cache WHEN cached items are read THEN the store is not asked; other keys still are', async () => {
    const before = store.reads;
    expect((await cache.get('/roles/admin')).value.toString()).toBe('v1');
    expect((await cache.getRange('/nodes/default/', '/nodes/default/\uffff')).map((i) => i.key)).toEqual(['/nodes/default/n1']);
    expect(store.reads).toBe(before);
    expect((await cache.get('/other/x')).value.toString()).toBe('not cached');
    expect(store.reads).toBe(before + 1);
  });

  it('GIVEN another writer (straight to the store) WHEN it changes a cached item THEN the cache shows it without a read', async () => {
    await store.put({ key: '/roles/admin', value: val('v2') });
    await store.delete('/nodes/default/n1');
    const before = store.reads;
    await waitFor(async () => (await cache.get('/roles/admin')).value.toString() === 'v2', 'the change to reach the cache');
    await waitFor(async () => (await cache.getRange('/nodes/', '/nodes/\uffff')).length === 0, 'the delete to reach the cache');
    expect(store.reads).toBe(before);
  });

  it('GIVEN a write through the cache THEN the writer reads it back at once, with its id', async () => {
    await cache.put({ key: '/roles/admin', value: val('mine') });
    const got = await cache.get('/roles/admin');
    expect(got.value.toString()).toBe('mine');
    expect(got.id).toBe((await store.get('/roles/admin')).id);
    await cache.delete('/roles/admin');
    await expect(cache.get('/roles/admin')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('GIVEN the watch breaks THEN reads go to the store until the cache has re-read everything', async () => {
    store.breakWatchers();
    await store.put({ key: '/roles/admin', value: val('during-outage') });
    // Whether served by the store (watch down) or the re-read cache, the read is current.
    expect((await cache.get('/roles/admin')).value.toString()).toBe('during-outage');
    await waitFor(() => cache.isReady, 'the cache to be re-read');
    const before = store.reads;
    expect((await cache.get('/roles/admin')).value.toString()).toBe('during-outage');
    expect(store.reads).toBe(before);
  });
});

describe('CachedBackend range reads', () => {
  let store: CountingBackend;
  let cache: CachedBackend;
  beforeEach(async () => {
    store = new CountingBackend();
    cache = await CachedBackend.open(store, { prefixes: ['/authorities/', '/nodes/', '/roles/'], retryMs: 10 });
  });
  afterEach(() => cache.close());

  it('GIVEN many changes to many prefixes by another writer THEN every range read from memory is exactly the store\'s, in order', async () => {
    // GIVEN a few CAs among many node records, written, rewritten and deleted in a scrambled order
    const keys = [
      ...['host', 'user'].map((t) => `/authorities/${t}/example.com`),
      ...Array.from({ length: 300 }, (_, i) => `/nodes/default/${((i * 7919) % 300).toString(16).padStart(4, '0')}`),
      ...['access', 'admin', 'editor'].map((r) => `/roles/${r}/params`),
    ];
    for (const k of keys) await store.put({ key: k, value: val('1') });
    for (const k of keys.filter((_, i) => i % 3 === 0)) await store.delete(k);
    for (const k of keys.filter((_, i) => i % 5 === 0)) await store.put({ key: k, value: val('2') });
    await waitFor(async () => {
      const before = store.reads;
      const n = (await cache.getRange('/nodes/', '/nodes/\uffff')).length;
      return store.reads === before && n === (await store.getRange('/nodes/', '/nodes/\uffff')).length;
    }, 'the changes to reach the cache');
    // WHEN ranges inside and across prefixes are read, with and without a limit
    const ranges: [string, string, number?][] = [
      ['/authorities/user/', '/authorities/user/\uffff'],
      ['/authorities/', '/authorities/\uffff'],
      ['/nodes/default/', '/nodes/default/\uffff'],
      ['/nodes/default/0040', '/nodes/default/0080'],
      ['/nodes/default/', '/nodes/default/\uffff', 7],
      ['/roles/', '/roles/\uffff'],
      ['/roles/b', '/roles/c'],
    ];
    const before = store.reads;
    const fromCache = await Promise.all(ranges.map(([a, b, l]) => cache.getRange(a, b, l)));
    // THEN the cache answered them all from memory
    expect(store.reads).toBe(before);
    // AND each is the store's answer: same keys, same values, same order
    const fromStore = await Promise.all(ranges.map(([a, b, l]) => store.getRange(a, b, l)));
    const view = (items: Item[]) => items.map((i) => `${i.key}=${i.value.toString()}`);
    expect(fromCache.map(view)).toEqual(fromStore.map(view));
    expect(fromCache[2].length).toBeGreaterThan(100);
  });
});

describe('CachedBackend expiry', () => {
  let clock: FakeClock;
  let store: CountingBackend;
  let cache: CachedBackend;
  const expires = new Date(Date.UTC(2020, 0, 1, 0, 1));

  beforeEach(async () => {
    clock = new FakeClock(expires.getTime() - 60_000);
    store = new CountingBackend({ clock, sweepPeriodMs: 0 }); // no sweeper: only the cache's own check can hide the item
    await store.put({ key: '/roles/short', value: val('s'), expires });
    await store.put({ key: '/roles/stays', value: val('l') });
    cache = await CachedBackend.open(store, { prefixes: ['/roles/'], clock, retryMs: 10 });
  });
  afterEach(() => cache.close());

  const rangeKeys = async () => (await cache.getRange('/roles/', '/roles/\uffff')).map((i) => i.key);

  it('GIVEN a cached item with an expiry WHEN read 1 ms before it THEN the cache serves it from memory', async () => {
    // GIVEN the clock 1 ms before the expiry
    clock.advance(60_000 - 1);
    const before = store.reads;
    // WHEN it is read THEN it is there, and the store was not asked
    expect((await cache.get('/roles/short')).value.toString()).toBe('s');
    expect(await rangeKeys()).toEqual(['/roles/short', '/roles/stays']);
    expect(store.reads).toBe(before);
  });

  it('GIVEN a cached item with an expiry WHEN read at the instant it expires THEN it is gone, though no event removed it', async () => {
    // GIVEN the clock exactly at the expiry; no sweep ran, so the cache still holds the item
    clock.advance(60_000);
    // WHEN a range is read THEN it leaves the item out, answered from memory (the cache itself dropped it)
    const before = store.reads;
    expect(await rangeKeys()).toEqual(['/roles/stays']);
    expect(store.reads).toBe(before);
    // AND get says not found
    await expect(cache.get('/roles/short')).rejects.toBeInstanceOf(NotFoundError);
  });
});

/** The type check the cache relies on: it is a Backend. */
const _typecheck: (b: CachedBackend) => Backend = (b) => b;
void _typecheck;
