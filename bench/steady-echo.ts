/**
 * Keystroke echo at a steady typing rate over any interactive byte stream (a
 * browser terminal's WebSocket, a `tsh ssh -t` or `ssh -tt` process's pipes):
 * every session types one key every `intervalMs` whether or not the last echo
 * came back (as a person typing does), alternating a letter and a backspace so
 * that the shell's line never grows. Each letter is the next of a-z in turn: a
 * marker that no backspace echo (`\b`, `\x1b[K`) contains, and echoes come
 * back in order, so each echo is matched to its key by looking for the oldest
 * unanswered key's marker in what arrived since the last match; the time from
 * the write to that echo is one sample.
 */
import { performance } from 'node:perf_hooks';
import { EchoLoadResult, openMany } from './echo';

/** An interactive shell's terminal as a byte stream. */
export interface TermStream {
  write(data: string): void;
  /** Registers the one consumer of the shell's output. */
  onData(cb: (chunk: string) => void): void;
  /** Ends the shell and resolves once the stream is closed. */
  close(): Promise<void>;
}

export interface SteadyEchoOptions {
  sessions: number;
  /** Streams opened at once while setting up. */
  openConcurrency: number;
  /** How long every session keeps typing once all are open. */
  seconds: number;
  /** One key per session every this many ms. */
  intervalMs: number;
  /** An echo that takes longer counts as a timeout, and that session stops typing. */
  timeoutMs?: number;
}

/** As the other echo bench's: sessions opened and failed, the time to open them, the echo times and the timeouts. */
export type SteadyEchoResult = EchoLoadResult;

const LETTERS = 'abcdefghijklmnopqrstuvwxyz';
const BACKSPACE = '\x7f';

class EchoSession {
  private unread = '';
  private readonly waiting: { expect: string; t0: number; done: (ms: number) => void }[] = [];

  constructor(private readonly stream: TermStream) {
    stream.onData((chunk) => {
      if (!this.waiting.length) return;
      this.unread += chunk;
      while (this.waiting.length) {
        const at = this.unread.indexOf(this.waiting[0].expect);
        if (at < 0) break;
        this.unread = this.unread.slice(at + this.waiting[0].expect.length);
        const w = this.waiting.shift()!;
        w.done(performance.now() - w.t0);
      }
      if (!this.waiting.length) this.unread = '';
    });
  }

  /** Types key number `i` (a letter or a backspace); `done` gets its echo time. */
  private key(i: number, done: (ms: number) => void): void {
    const letter = LETTERS[Math.floor(i / 2) % LETTERS.length];
    const [key, expect] = i % 2 === 0 ? [letter, letter] : [BACKSPACE, '\b'];
    this.waiting.push({ expect, t0: performance.now(), done });
    this.stream.write(key);
  }

  /** The age of the oldest unanswered key, ms (0 when none). */
  private oldest(): number {
    return this.waiting.length ? performance.now() - this.waiting[0].t0 : 0;
  }

  /** Waits for the shell: two rounds of letter and backspace, each answered before the next (the prompt may come in pieces). */
  async settle(timeoutMs: number): Promise<void> {
    for (let i = 0; i < 4; i++) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no echo in ${timeoutMs} ms: is the shell up?`)), timeoutMs);
        this.key(i, () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Types a key every `intervalMs` (starting after `phaseMs`) until `deadline`; pushes echo times; resolves with 1 on a timeout, else 0. */
  type(deadline: number, intervalMs: number, phaseMs: number, timeoutMs: number, samples: number[]): Promise<number> {
    return new Promise((resolve) => {
      let i = 4;
      let typed = 0;
      let answered = 0;
      const finish = (timedOut: number) => {
        clearInterval(ticker);
        resolve(timedOut);
      };
      const tick = () => {
        if (this.oldest() > timeoutMs) return finish(1);
        if (performance.now() >= deadline) {
          // The last keys' echoes are still sampled: wait for them (or the timeout).
          if (answered === typed) finish(0);
          return;
        }
        typed++;
        this.key(i++, (ms) => {
          answered++;
          samples.push(ms);
        });
      };
      let ticker: NodeJS.Timeout | undefined;
      setTimeout(() => {
        ticker = setInterval(tick, intervalMs);
        tick();
      }, phaseMs);
    });
  }

  close(): Promise<void> {
    return this.stream.close();
  }
}

/** Opens `sessions` shells with `open`, types into all of them for `seconds`, closes them, and returns the echo times. */
export async function runSteadyEcho(open: () => Promise<TermStream>, o: SteadyEchoOptions): Promise<SteadyEchoResult> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const { opened: sessions, failedToOpen, firstOpenError, openMs } = await openMany(o.sessions, o.openConcurrency, async () => {
    const stream = await open();
    try {
      const s = new EchoSession(stream);
      await s.settle(30_000);
      return s;
    } catch (err) {
      await stream.close();
      throw err;
    }
  });
  const samples: number[] = [];
  const deadline = performance.now() + o.seconds * 1000;
  // Each session starts at its own moment within the first interval, so that the keys are spread evenly.
  const timeouts = (await Promise.all(sessions.map((s, n) => s.type(deadline, o.intervalMs, (n * o.intervalMs) / sessions.length, timeoutMs, samples)))).reduce(
    (a, b) => a + b,
    0,
  );
  await Promise.all(sessions.map((s) => s.close()));
  return { opened: sessions.length, failedToOpen, firstOpenError, openMs, samples, timeouts };
}
