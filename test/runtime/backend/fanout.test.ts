import { Fanout } from '../../../runtime/backend/fanout';
import { Event, OpType, Watcher } from '../../../runtime/backend/types';
import { BadParameterError } from '../../../runtime/utils/errors';
import { setLogWriter } from '../../../runtime/utils/logger';
import { describeEvent, within } from './helpers';

const put = (key: string): Event => ({ type: OpType.Put, item: { key, value: Buffer.from(key) } });

async function read(w: Watcher, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(describeEvent((await within(w.next(), `event ${i + 1} of ${n}`))!));
  return out;
}

describe('Fanout', () => {
  it('gives each watcher Init first, then the events under its prefixes, in order', async () => {
    // GIVEN a watcher on /a/ and one with no prefixes (everything)
    const fanout = new Fanout();
    const a = fanout.newWatcher({ prefixes: ['/a/'] });
    const all = fanout.newWatcher({ prefixes: [] });
    // WHEN events for several keys are emitted
    for (const k of ['/a/1', '/ab', '/b/1', '/a/2']) fanout.emit(put(k));
    // THEN each watcher holds its share
    expect(await read(a, 3)).toEqual(['Init ', 'Put /a/1', 'Put /a/2']);
    expect(await read(all, 5)).toEqual(['Init ', 'Put /a/1', 'Put /ab', 'Put /b/1', 'Put /a/2']);
    fanout.closeAll();
  });

  it('drops queued events when a watcher is closed', async () => {
    const fanout = new Fanout();
    const w = fanout.newWatcher({ prefixes: ['/'] });
    fanout.emit(put('/x'));
    w.close();
    expect(await w.next()).toBeUndefined();
  });

  it('wakes a reader that is already waiting', async () => {
    const fanout = new Fanout();
    const w = fanout.newWatcher({ prefixes: ['/'] });
    await w.next();
    const pending = w.next();
    fanout.emit(put('/x'));
    expect((await within(pending, 'the pending next()'))?.item.key).toBe('/x');
    fanout.closeAll();
  });

  it('closes a watcher whose queue overflows, logs a warning, and keeps serving the others', async () => {
    // GIVEN a watcher with room for two events that nobody reads, and a reader
    const lines: string[] = [];
    setLogWriter((line) => lines.push(line));
    try {
      const fanout = new Fanout();
      const slow = fanout.newWatcher({ prefixes: ['/'], queueSize: 2, name: 'slow-one' });
      const reader = fanout.newWatcher({ prefixes: ['/'] });
      // WHEN a third event arrives (Init is the first)
      fanout.emit(put('/1'));
      fanout.emit(put('/2'));
      // THEN the slow watcher is closed and forgotten, a warning names it, and the reader has everything
      await within(slow.done, 'the slow watcher to close');
      expect(await slow.next()).toBeUndefined();
      expect(fanout.size).toBe(1);
      const warning = lines.map((l) => JSON.parse(l)).find((l) => l.level === 'warn');
      expect(warning).toMatchObject({ component: 'backend:fanout', watcher: 'slow-one', queueSize: 2 });
      expect(await read(reader, 3)).toEqual(['Init ', 'Put /1', 'Put /2']);
      fanout.closeAll();
    } finally {
      setLogWriter((line) => process.stderr.write(line + '\n'), !process.stderr.isTTY);
    }
  });

  it('closeAll ends pending reads and resolves done', async () => {
    const fanout = new Fanout();
    const w = fanout.newWatcher({ prefixes: ['/'] });
    await w.next();
    const pending = w.next();
    fanout.closeAll();
    expect(await within(pending, 'the pending next()')).toBeUndefined();
    await within(w.done, 'done');
    expect(fanout.size).toBe(0);
  });

  it('closes the watcher when a for-await loop is left early', async () => {
    const fanout = new Fanout();
    const w = fanout.newWatcher({ prefixes: ['/'] });
    for await (const e of w) {
      expect(e.type).toBe(OpType.Init);
      break;
    }
    await within(w.done, 'done after break');
    expect(fanout.size).toBe(0);
  });

  it('rejects a queue size below one', () => {
    expect(() => new Fanout().newWatcher({ prefixes: [], queueSize: 0 })).toThrow(BadParameterError);
  });
});
