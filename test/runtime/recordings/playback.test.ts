/** Replaying a recording: print bytes in event order, the recorded delays scaled by speed, and stopping. */
import { EventFields } from '../../../runtime/events/filelog';
import { replay } from '../../../runtime/recordings/playback';

const bytes = Buffer.from('hello world!');
const events: EventFields[] = [
  { event: 'session.start', ei: 0, ms: 0 },
  { event: 'print', ei: 1, ms: 0, offset: 0, bytes: 6 },
  { event: 'resize', ei: 2, ms: 50, size: '100:30' },
  { event: 'print', ei: 3, ms: 100, offset: 6, bytes: 5 },
  { event: 'print', ei: 4, ms: 300, offset: 11, bytes: 1 },
  { event: 'session.end', ei: 5, ms: 300 },
];

describe('replay', () => {
  it('GIVEN events out of order THEN the print bytes are written in ei order and other events are reported between them', async () => {
    const out: string[] = [];
    const seen: string[] = [];
    const n = await replay([...events].reverse(), bytes, (b) => out.push(b.toString()), { onEvent: (e) => seen.push(`${e.event}@${out.length}`) });
    expect(out).toEqual(['hello ', 'world', '!']);
    expect(n).toBe(bytes.length);
    expect(seen).toEqual(['session.start@0', 'resize@1', 'session.end@3']);
  });

  it('GIVEN real time at double speed THEN it waits the recorded gaps, halved, before each print', async () => {
    const waits: number[] = [];
    const out: string[] = [];
    await replay(events, bytes, (b) => out.push(b.toString()), { realtime: true, speed: 2, sleep: async (ms) => void waits.push(ms) });
    expect(waits).toEqual([50, 100]);
    expect(out.join('')).toBe('hello world!');
  });

  it('GIVEN a print event past the end of the bytes (a crash mid-write) THEN only the bytes present are written', async () => {
    const out: Buffer[] = [];
    await replay([{ event: 'print', ei: 0, ms: 0, offset: 6, bytes: 100 }], bytes, (b) => out.push(b));
    expect(Buffer.concat(out).toString()).toBe('world!');
  });

  it('GIVEN an abort THEN the replay stops', async () => {
    const ac = new AbortController();
    const out: string[] = [];
    await replay(events, bytes, (b) => {
      out.push(b.toString());
      ac.abort();
    }, { signal: ac.signal });
    expect(out).toEqual(['hello ']);
    await expect(replay(events, bytes, () => undefined, { speed: 0 })).rejects.toThrow(/speed/);
  });
});
