/**
 * The behavioural suite every backend implementation must pass (memory, sqlite, and later
 * dynamodb and etcd). It uses only the Backend contract: no implementation internals and no fake
 * clock. TTL cases use short real TTLs and wait on the condition (item gone, Delete event seen)
 * with a bounded deadline. Each test works under its own random key prefix, so an implementation
 * may hand every test the same store.
 */

import { randomUUID } from 'node:crypto';
import { rangeEnd } from '../../../runtime/contract/keys';
import { Backend, Event, Item, OpType } from '../../../runtime/backend/types';
import {
  AlreadyExistsError,
  BadParameterError,
  CompareFailedError,
  NotFoundError,
} from '../../../runtime/utils/errors';
import { describeEvent, waitFor, watchUntil, within } from './helpers';

export interface BackendFixture {
  backend: Backend;
  /** Releases what `make` created; must tolerate a backend that the test already closed. */
  cleanup(): Promise<void>;
}

const SHORT_TTL_MS = 1_000;

const val = (s: string) => Buffer.from(s);
const str = (item: Item) => item.value.toString();
/** Whole seconds, so that stores that keep expiry in seconds (DynamoDB) round-trip it exactly. */
const inSeconds = (ms: number) => new Date(Math.ceil((Date.now() + ms) / 1000) * 1000);

async function gone(backend: Backend, key: string): Promise<boolean> {
  try {
    await backend.get(key);
    return false;
  } catch (err) {
    if (err instanceof NotFoundError) return true;
    throw err;
  }
}

export function runBackendSuite(name: string, make: () => Promise<BackendFixture>): void {
  describe(`${name} backend: shared behaviour`, () => {
    let fixture: BackendFixture;
    let b: Backend;
    let p: string;

    beforeEach(async () => {
      fixture = await make();
      b = fixture.backend;
      p = `/suite-${randomUUID()}/`;
    });

    afterEach(async () => {
      await fixture.cleanup();
    });

    describe('get and put', () => {
      it('returns what was put, and a later write has a larger id', async () => {
        // GIVEN an item that was put
        await b.put({ key: `${p}k`, value: val('one') });
        const first = await b.get(`${p}k`);
        // WHEN it is put again with another value
        await b.put({ key: `${p}k`, value: val('two') });
        const second = await b.get(`${p}k`);
        // THEN get returns the latest value, no expiry, and a newer id
        expect(first.key).toBe(`${p}k`);
        expect(str(first)).toBe('one');
        expect(str(second)).toBe('two');
        expect(second.expires).toBeUndefined();
        expect(second.id).toBeGreaterThan(first.id!);
      });

      it('fails with NotFoundError for a missing key', async () => {
        await expect(b.get(`${p}missing`)).rejects.toBeInstanceOf(NotFoundError);
      });

      it('stores binary and empty values byte for byte and keeps its own copy', async () => {
        // GIVEN every byte value, and an empty value
        const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
        const mine = Buffer.from(bytes);
        await b.put({ key: `${p}bin`, value: mine });
        await b.put({ key: `${p}empty`, value: Buffer.alloc(0) });
        // WHEN the caller reuses its buffer afterwards
        mine.fill(7);
        // THEN the stored values are unchanged
        expect((await b.get(`${p}bin`)).value.equals(bytes)).toBe(true);
        expect((await b.get(`${p}empty`)).value.length).toBe(0);
      });

      it('keeps the expiry of an item with a TTL', async () => {
        const expires = inSeconds(3_600_000);
        await b.put({ key: `${p}ttl`, value: val('v'), expires });
        expect((await b.get(`${p}ttl`)).expires?.getTime()).toBe(expires.getTime());
      });

      it('rejects keys it could not order consistently, with BadParameterError', async () => {
        await expect(b.put({ key: `${p}smile-\u{1F600}`, value: val('v') })).rejects.toBeInstanceOf(BadParameterError);
        await expect(b.put({ key: `${p}max-\uffff`, value: val('v') })).rejects.toBeInstanceOf(BadParameterError);
        await expect(b.put({ key: '', value: val('v') })).rejects.toBeInstanceOf(BadParameterError);
      });
    });

    describe('create', () => {
      it('creates a new item', async () => {
        const lease = await b.create({ key: `${p}new`, value: val('v') });
        expect(lease.key).toBe(`${p}new`);
        expect(str(await b.get(`${p}new`))).toBe('v');
      });

      it('fails with AlreadyExistsError for a live item and leaves it unchanged', async () => {
        // GIVEN an existing item
        await b.put({ key: `${p}taken`, value: val('first') });
        // WHEN create is called for the same key
        const attempt = b.create({ key: `${p}taken`, value: val('second') });
        // THEN it fails and the value is the original one
        await expect(attempt).rejects.toBeInstanceOf(AlreadyExistsError);
        expect(str(await b.get(`${p}taken`))).toBe('first');
      });
    });

    describe('update', () => {
      it('replaces an existing item', async () => {
        await b.put({ key: `${p}u`, value: val('old') });
        await b.update({ key: `${p}u`, value: val('new') });
        expect(str(await b.get(`${p}u`))).toBe('new');
      });

      it('fails with NotFoundError for a missing key and creates nothing', async () => {
        await expect(b.update({ key: `${p}nope`, value: val('v') })).rejects.toBeInstanceOf(NotFoundError);
        expect(await gone(b, `${p}nope`)).toBe(true);
      });
    });

    describe('compareAndSwap', () => {
      it('swaps when the current value bytes equal the expected ones', async () => {
        await b.put({ key: `${p}c`, value: val('v1') });
        await b.compareAndSwap({ key: `${p}c`, value: val('v1') }, { key: `${p}c`, value: val('v2') });
        expect(str(await b.get(`${p}c`))).toBe('v2');
      });

      it('fails with CompareFailedError when the value differs, leaving it unchanged', async () => {
        await b.put({ key: `${p}c`, value: val('actual') });
        const attempt = b.compareAndSwap({ key: `${p}c`, value: val('stale') }, { key: `${p}c`, value: val('v2') });
        await expect(attempt).rejects.toBeInstanceOf(CompareFailedError);
        expect(str(await b.get(`${p}c`))).toBe('actual');
      });

      it('fails with CompareFailedError when the item is missing', async () => {
        const attempt = b.compareAndSwap({ key: `${p}c`, value: val('v1') }, { key: `${p}c`, value: val('v2') });
        await expect(attempt).rejects.toBeInstanceOf(CompareFailedError);
        expect(await gone(b, `${p}c`)).toBe(true);
      });

      it('fails with BadParameterError when the keys differ', async () => {
        await b.put({ key: `${p}c`, value: val('v1') });
        const attempt = b.compareAndSwap({ key: `${p}c`, value: val('v1') }, { key: `${p}d`, value: val('v2') });
        await expect(attempt).rejects.toBeInstanceOf(BadParameterError);
        expect(str(await b.get(`${p}c`))).toBe('v1');
      });
    });

    describe('delete', () => {
      it('removes an item', async () => {
        await b.put({ key: `${p}d`, value: val('v') });
        await b.delete(`${p}d`);
        expect(await gone(b, `${p}d`)).toBe(true);
      });

      it('fails with NotFoundError for a missing key', async () => {
        await expect(b.delete(`${p}d`)).rejects.toBeInstanceOf(NotFoundError);
      });
    });

    describe('getRange', () => {
      it('returns keys in code-unit order, whatever characters they hold', async () => {
        // GIVEN keys with separators, punctuation, digits, both cases and non-ASCII letters, put out of order
        const names = ['b', 'a/b', 'a-b', 'a.b', 'a', 'A', 'Z', '0', '9', '10', 'a0', '_x', '~x', 'é', '中', 'ﬀ', 'a b'];
        for (const n of [...names].reverse()) await b.put({ key: `${p}${n}`, value: val(n) });
        // WHEN the prefix is scanned
        const items = await b.getRange(p, rangeEnd(p));
        // THEN they come back sorted the way JS compares strings, values intact
        expect(items.map((i) => i.key)).toEqual(names.map((n) => `${p}${n}`).sort());
        expect(items.map((i) => `${p}${str(i)}`)).toEqual(items.map((i) => i.key));
      });

      it('includes the start and excludes the end', async () => {
        for (const n of ['a', 'b', 'c']) await b.put({ key: `${p}${n}`, value: val(n) });
        const items = await b.getRange(`${p}a`, `${p}c`);
        expect(items.map(str)).toEqual(['a', 'b']);
      });

      it('returns at most limit items, the first ones in order', async () => {
        for (const n of ['e', 'd', 'c', 'b', 'a']) await b.put({ key: `${p}${n}`, value: val(n) });
        expect((await b.getRange(p, rangeEnd(p), 3)).map(str)).toEqual(['a', 'b', 'c']);
        expect((await b.getRange(p, rangeEnd(p))).length).toBe(5);
      });

      it('keeps /a/ apart from /ab and /a', async () => {
        // GIVEN keys under /a/ and neighbours sharing its first letters
        for (const k of ['a', 'a/1', 'a/2', 'ab', 'a0', 'b/1']) await b.put({ key: `${p}${k}`, value: val(k) });
        // WHEN the /a/ prefix is scanned
        const items = await b.getRange(`${p}a/`, rangeEnd(`${p}a/`));
        // THEN only its children come back
        expect(items.map(str)).toEqual(['a/1', 'a/2']);
      });

      it('returns nothing for an empty range', async () => {
        await b.put({ key: `${p}x`, value: val('x') });
        expect(await b.getRange(`${p}y/`, rangeEnd(`${p}y/`))).toEqual([]);
      });
    });

    describe('deleteRange', () => {
      it('deletes start <= key < end and nothing else', async () => {
        for (const k of ['a', 'a/1', 'a/2', 'ab', 'b']) await b.put({ key: `${p}${k}`, value: val(k) });
        await b.deleteRange(`${p}a/`, rangeEnd(`${p}a/`));
        expect((await b.getRange(p, rangeEnd(p))).map(str)).toEqual(['a', 'ab', 'b']);
        await b.deleteRange(`${p}a`, `${p}b`);
        expect((await b.getRange(p, rangeEnd(p))).map(str)).toEqual(['b']);
      });
    });

    describe('TTL', () => {
      it('hides an expired item from get and getRange; update fails and create succeeds over it', async () => {
        // GIVEN an item with a short TTL next to one without
        await b.put({ key: `${p}stays`, value: val('stays') });
        await b.put({ key: `${p}goes`, value: val('goes'), expires: new Date(Date.now() + SHORT_TTL_MS) });
        // WHEN its TTL passes
        await waitFor(() => gone(b, `${p}goes`), 'the item with a TTL to expire');
        // THEN a range read no longer sees it, update treats it as missing, and create may take the key
        expect((await b.getRange(p, rangeEnd(p))).map(str)).toEqual(['stays']);
        await expect(b.update({ key: `${p}goes`, value: val('x') })).rejects.toBeInstanceOf(NotFoundError);
        await b.create({ key: `${p}goes`, value: val('again') });
        expect(str(await b.get(`${p}goes`))).toBe('again');
      });

      it('keeps an item past its original expiry after keepAlive, value unchanged', async () => {
        // GIVEN two items with the same short expiry
        const original = new Date(Date.now() + 2 * SHORT_TTL_MS);
        const lease = await b.put({ key: `${p}kept`, value: val('kept'), expires: original });
        await b.put({ key: `${p}sentinel`, value: val('s'), expires: original });
        // WHEN one of them is kept alive, and the other one's expiry passes
        const extended = inSeconds(3_600_000);
        await b.keepAlive(lease, extended);
        await waitFor(() => gone(b, `${p}sentinel`), 'the sentinel to expire');
        // THEN the kept item is still there, with its value and the new expiry
        const kept = await b.get(`${p}kept`);
        expect(str(kept)).toBe('kept');
        expect(kept.expires?.getTime()).toBe(extended.getTime());
      });

      it('fails keepAlive with NotFoundError for a missing key', async () => {
        await expect(b.keepAlive({ key: `${p}never` }, inSeconds(60_000))).rejects.toBeInstanceOf(NotFoundError);
      });

      it('emits a Delete event when an item expires', async () => {
        // GIVEN a watcher on a prefix
        const w = await b.newWatcher({ prefixes: [p] });
        await watchUntil(w, (e) => e.type === OpType.Init, 'Init');
        // WHEN an item under it expires
        await b.put({ key: `${p}short`, value: val('v'), expires: new Date(Date.now() + SHORT_TTL_MS) });
        // THEN a Delete event for it arrives, carrying only the key
        const seen = await watchUntil(w, (e) => e.type === OpType.Delete, 'the Delete event of the expired item');
        const del = seen[seen.length - 1];
        expect(del.item.key).toBe(`${p}short`);
        expect(del.item.value.length).toBe(0);
        expect(seen.slice(0, -1).map(describeEvent)).toEqual([`Put ${p}short`]);
        w.close();
      });
    });

    describe('watch', () => {
      it('sends Init first, then only changes made after the watcher was created', async () => {
        // GIVEN an item written before the watcher exists
        await b.put({ key: `${p}before`, value: val('v') });
        // WHEN a watcher is created and another item is written
        const w = await b.newWatcher({ prefixes: [p] });
        const init = await within(w.next(), 'Init');
        await b.put({ key: `${p}after`, value: val('v') });
        // THEN the watcher sees Init and then only the later write
        expect(init?.type).toBe(OpType.Init);
        expect((await within(w.next(), 'the Put'))?.item.key).toBe(`${p}after`);
        w.close();
      });

      it('delivers Put and Delete events in write order, Puts with their values', async () => {
        const w = await b.newWatcher({ prefixes: [p] });
        // WHEN a sequence of writes is made
        await b.put({ key: `${p}a`, value: val('a1') });
        await b.create({ key: `${p}b`, value: val('b1') });
        await b.update({ key: `${p}a`, value: val('a2') });
        await b.compareAndSwap({ key: `${p}b`, value: val('b1') }, { key: `${p}b`, value: val('b2') });
        await b.delete(`${p}a`);
        await b.put({ key: `${p}c/1`, value: val('c') });
        await b.deleteRange(`${p}b`, `${p}c`);
        await b.put({ key: `${p}z`, value: val('end') });
        // THEN the watcher reports each one, in order
        const seen = await watchUntil(w, (e) => e.item.key === `${p}z`, 'the last write');
        expect(seen.map(describeEvent)).toEqual([
          'Init ',
          `Put ${p}a`,
          `Put ${p}b`,
          `Put ${p}a`,
          `Put ${p}b`,
          `Delete ${p}a`,
          `Put ${p}c/1`,
          `Delete ${p}b`,
          `Put ${p}z`,
        ]);
        const puts = seen.filter((e) => e.type === OpType.Put).map((e) => str(e.item));
        expect(puts).toEqual(['a1', 'b1', 'a2', 'b2', 'c', 'end']);
        w.close();
      });

      it('reports only keys under its prefixes', async () => {
        // GIVEN a watcher on /a/
        const w = await b.newWatcher({ prefixes: [`${p}a/`] });
        // WHEN keys inside and outside the prefix change
        for (const k of ['ab', 'a/x', 'b/y', 'a', 'a/zz']) await b.put({ key: `${p}${k}`, value: val(k) });
        // THEN only the keys under /a/ are reported
        const seen = await watchUntil(w, (e) => e.item.key === `${p}a/zz`, 'the last write under the prefix');
        expect(seen.map(describeEvent)).toEqual(['Init ', `Put ${p}a/x`, `Put ${p}a/zz`]);
        w.close();
      });

      it('feeds several watchers independently, each by its own prefixes', async () => {
        // GIVEN a watcher on /a/, one on /b/, and one on both
        const wa = await b.newWatcher({ prefixes: [`${p}a/`], name: 'a' });
        const wb = await b.newWatcher({ prefixes: [`${p}b/`], name: 'b' });
        const wab = await b.newWatcher({ prefixes: [`${p}a/`, `${p}b/`], name: 'ab' });
        // WHEN keys under each prefix change
        await b.put({ key: `${p}a/1`, value: val('v') });
        await b.put({ key: `${p}b/1`, value: val('v') });
        await b.delete(`${p}a/1`);
        await b.put({ key: `${p}a/end`, value: val('v') });
        await b.put({ key: `${p}b/end`, value: val('v') });
        // THEN each watcher sees exactly its share
        const a = await watchUntil(wa, (e) => e.item.key === `${p}a/end`, 'end of a');
        const bb = await watchUntil(wb, (e) => e.item.key === `${p}b/end`, 'end of b');
        const ab = await watchUntil(wab, (e) => e.item.key === `${p}b/end`, 'end of ab');
        expect(a.map(describeEvent)).toEqual(['Init ', `Put ${p}a/1`, `Delete ${p}a/1`, `Put ${p}a/end`]);
        expect(bb.map(describeEvent)).toEqual(['Init ', `Put ${p}b/1`, `Put ${p}b/end`]);
        expect(ab.map(describeEvent)).toEqual([
          'Init ',
          `Put ${p}a/1`,
          `Put ${p}b/1`,
          `Delete ${p}a/1`,
          `Put ${p}a/end`,
          `Put ${p}b/end`,
        ]);
        for (const w of [wa, wb, wab]) w.close();
      });

      it('reports keepAlive as a Put with the value and the new expiry', async () => {
        const lease = await b.put({ key: `${p}k`, value: val('v'), expires: inSeconds(60_000) });
        const w = await b.newWatcher({ prefixes: [p] });
        const extended = inSeconds(3_600_000);
        await b.keepAlive(lease, extended);
        const seen = await watchUntil(w, (e) => e.type === OpType.Put, 'the keepAlive Put');
        const put = seen[seen.length - 1];
        expect(put.item.key).toBe(`${p}k`);
        expect(str(put.item)).toBe('v');
        expect(put.item.expires?.getTime()).toBe(extended.getTime());
        w.close();
      });

      it('ends a closed watcher without disturbing the others', async () => {
        // GIVEN two watchers, one of them iterated with for-await
        const closing = await b.newWatcher({ prefixes: [p] });
        const other = await b.newWatcher({ prefixes: [p] });
        const received: Event[] = [];
        const loop = (async () => {
          for await (const e of closing) received.push(e);
        })();
        // WHEN one is closed and a write follows
        closing.close();
        await within(closing.done, 'done of the closed watcher');
        await within(loop, 'the for-await loop to end');
        await b.put({ key: `${p}after`, value: val('v') });
        // THEN the closed one yields nothing more and the other one still gets the write
        expect(await closing.next()).toBeUndefined();
        expect(received.every((e) => e.type === OpType.Init)).toBe(true);
        const seen = await watchUntil(other, (e) => e.item.key === `${p}after`, 'the write on the open watcher');
        expect(seen.map(describeEvent)).toEqual(['Init ', `Put ${p}after`]);
        other.close();
      });

      it('closes a watcher that falls behind, while a reading watcher keeps every event', async () => {
        // GIVEN a watcher with a small queue that nobody reads, and one that is read
        const slow = await b.newWatcher({ prefixes: [p], queueSize: 3, name: 'slow' });
        const reader = await b.newWatcher({ prefixes: [p], name: 'reader' });
        // WHEN more events arrive than the small queue holds
        for (let i = 0; i < 8; i++) await b.put({ key: `${p}${i}`, value: val(String(i)) });
        // THEN the slow watcher is closed, and the other sees all eight writes
        await within(slow.done, 'the slow watcher to be closed');
        expect(await slow.next()).toBeUndefined();
        const seen = await watchUntil(reader, (e) => e.item.key === `${p}7`, 'the eighth write');
        expect(seen.filter((e) => e.type === OpType.Put).length).toBe(8);
        reader.close();
      });

      it('closes every watcher when the backend closes', async () => {
        const w1 = await b.newWatcher({ prefixes: [p] });
        const w2 = await b.newWatcher({ prefixes: [] });
        await b.close();
        await within(Promise.all([w1.done, w2.done]), 'watchers to close with the backend');
        expect(await w1.next()).toBeUndefined();
      });
    });
  });
}
