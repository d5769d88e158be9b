import { MemoryBackend } from '../../../runtime/backend/memory';
import { OpType } from '../../../runtime/backend/types';
import { ConnectionProblemError, NotFoundError } from '../../../runtime/utils/errors';
import { describeEvent, FakeClock, within } from './helpers';
import { runBackendSuite } from './suite';

runBackendSuite('memory', async () => {
  const backend = new MemoryBackend({ sweepPeriodMs: 100 });
  return { backend, cleanup: () => backend.close() };
});

describe('MemoryBackend with a fake clock', () => {
  let clock: FakeClock;
  let backend: MemoryBackend;

  beforeEach(() => {
    clock = new FakeClock();
    backend = new MemoryBackend({ clock, sweepPeriodMs: 0 });
  });

  afterEach(() => backend.close());

  it('hides an item from the instant it expires', async () => {
    // GIVEN an item expiring in 10 s
    await backend.put({ key: '/k', value: Buffer.from('v'), expires: new Date(clock.now().getTime() + 10_000) });
    // WHEN the clock reaches 1 ms before, then exactly the expiry
    clock.advance(9_999);
    const before = await backend.get('/k');
    clock.advance(1);
    // THEN it is visible just before and gone at the expiry instant
    expect(before.value.toString()).toBe('v');
    await expect(backend.get('/k')).rejects.toBeInstanceOf(NotFoundError);
    expect(await backend.getRange('/', '/\uffff')).toEqual([]);
  });

  it('removes expired items on sweep, emitting a Delete event for each', async () => {
    // GIVEN two items with TTLs and one without, and a watcher
    const at = new Date(clock.now().getTime() + 1_000);
    await backend.put({ key: '/a', value: Buffer.from('a'), expires: at });
    await backend.put({ key: '/b', value: Buffer.from('b'), expires: at });
    await backend.put({ key: '/c', value: Buffer.from('c') });
    const w = await backend.newWatcher({ prefixes: ['/'] });
    await w.next();
    // WHEN the clock passes their expiry and a sweep runs
    clock.advance(1_000);
    const removed = backend.sweep();
    // THEN both are removed with Delete events, and a second sweep finds nothing
    expect(removed).toBe(2);
    const events = [await within(w.next(), 'first delete'), await within(w.next(), 'second delete')];
    expect(events.map((e) => describeEvent(e!))).toEqual(['Delete /a', 'Delete /b']);
    expect(backend.sweep()).toBe(0);
    expect((await backend.getRange('/', '/\uffff')).map((i) => i.key)).toEqual(['/c']);
  });

  it('removes an expired item it meets on a read, with a Delete event', async () => {
    await backend.put({ key: '/k', value: Buffer.from('v'), expires: new Date(clock.now().getTime() + 1) });
    const w = await backend.newWatcher({ prefixes: ['/'] });
    await w.next();
    clock.advance(1);
    await expect(backend.get('/k')).rejects.toBeInstanceOf(NotFoundError);
    const event = await within(w.next(), 'the Delete event');
    expect(event?.type).toBe(OpType.Delete);
    expect(backend.sweep()).toBe(0);
  });

  it('rejects calls after close with ConnectionProblemError', async () => {
    await backend.close();
    await expect(backend.get('/k')).rejects.toBeInstanceOf(ConnectionProblemError);
    await expect(backend.put({ key: '/k', value: Buffer.from('v') })).rejects.toBeInstanceOf(ConnectionProblemError);
  });
});
