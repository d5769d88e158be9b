/**
 * Keystroke echo latency over many interactive sessions at once: open N PTY
 * shells on ssh2 clients from a caller's dialer, then, for a fixed time, let
 * every session type one key at random intervals (alternating a letter and a
 * backspace, so the command line never grows) and time each key from the
 * write to the echo of that key in the shell's output.
 */
import { performance } from 'node:perf_hooks';
import type { Client, ClientChannel } from 'ssh2';

/** A logged-in ssh2 client and how to hang it up (including any hop in front of it). */
export interface Dialed {
  client: Client;
  close(): void;
}

export interface EchoLoadOptions {
  sessions: number;
  /** Dials opened at once while setting up. */
  openConcurrency: number;
  /** How long every session keeps typing once all are open. */
  seconds: number;
  /** Mean pause between one session's keys; each pause is uniform in [0.5, 1.5] × this. */
  intervalMs: number;
  /** A key whose echo takes longer counts as a timeout (and the session stops typing). */
  timeoutMs?: number;
}

export interface EchoLoadResult {
  opened: number;
  failedToOpen: number;
  firstOpenError?: string;
  /** Wall time to open all sessions, ms. */
  openMs: number;
  /** Echo times of every key, ms. */
  samples: number[];
  timeouts: number;
}

const KEY = 'x';
const BACKSPACE = '\x7f';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One PTY shell and the keys typed into it. */
class EchoSession {
  private seen = '';
  private waiter?: { expect: string; resolve: () => void };

  private constructor(
    private readonly dialed: Dialed,
    private readonly channel: ClientChannel,
  ) {
    channel.on('data', (d: Buffer) => {
      this.seen += d.toString('latin1');
      if (this.waiter && this.seen.includes(this.waiter.expect)) {
        const w = this.waiter;
        this.waiter = undefined;
        w.resolve();
      }
    });
    channel.stderr.on('data', () => undefined);
  }

  static async open(dialed: Dialed): Promise<EchoSession> {
    const channel = await new Promise<ClientChannel>((resolve, reject) =>
      dialed.client.shell({ term: 'xterm', rows: 24, cols: 80 }, (err, ch) => (err ? reject(err) : resolve(ch))),
    );
    const s = new EchoSession(dialed, channel);
    // The prompt may come in pieces and could hold the letter: two rounds of
    // letter + backspace leave the shell idle on an empty line (a backspace's
    // echo, "\b", is in no prompt).
    for (let i = 0; i < 2; i++) {
      await s.type(KEY, KEY, 15_000);
      await s.type(BACKSPACE, '\b', 15_000);
    }
    return s;
  }

  /** Writes `key` and resolves with the ms until `expect` shows in the output; rejects after `timeoutMs`. */
  type(key: string, expect: string, timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.seen = '';
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`no echo of ${JSON.stringify(key)} in ${timeoutMs} ms`));
      }, timeoutMs);
      const t0 = performance.now();
      this.waiter = {
        expect,
        resolve: () => {
          clearTimeout(timer);
          resolve(performance.now() - t0);
        },
      };
      this.channel.write(key);
    });
  }

  /** Types until `deadline` (performance.now()), a pause before each key; pushes each echo time. */
  async typeUntil(deadline: number, intervalMs: number, timeoutMs: number, samples: number[]): Promise<number> {
    let timeouts = 0;
    for (let i = 0; ; i++) {
      await sleep(intervalMs * (0.5 + Math.random()));
      if (performance.now() >= deadline) return timeouts;
      const [key, expect] = i % 2 === 0 ? [KEY, KEY] : [BACKSPACE, '\b'];
      try {
        samples.push(await this.type(key, expect, timeoutMs));
      } catch {
        return timeouts + 1;
      }
    }
  }

  /** Hangs up; resolves once the connection is closed (or after 10 s), so that the next measurement starts on a quiet machine. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, 10_000);
      this.dialed.client.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.channel.close();
      this.dialed.close();
    });
  }
}

/** Opens `count` sessions with `open`, `concurrency` at a time; those that fail are counted, the first error kept. */
export async function openMany<T>(count: number, concurrency: number, open: () => Promise<T>): Promise<{ opened: T[]; failedToOpen: number; firstOpenError?: string; openMs: number }> {
  const opened: T[] = [];
  let failedToOpen = 0;
  let firstOpenError: string | undefined;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) {
        next++;
        try {
          opened.push(await open());
        } catch (err) {
          failedToOpen++;
          firstOpenError ??= (err as Error).message;
        }
      }
    }),
  );
  return { opened, failedToOpen, firstOpenError, openMs: performance.now() - t0 };
}

/** Opens `sessions` shells with `dial`, types into all of them for `seconds`, closes them, and returns the echo times. */
export async function runEchoLoad(dial: () => Promise<Dialed>, o: EchoLoadOptions): Promise<EchoLoadResult> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const { opened: open, failedToOpen, firstOpenError, openMs } = await openMany(o.sessions, o.openConcurrency, async () => {
    const dialed = await dial();
    try {
      return await EchoSession.open(dialed);
    } catch (err) {
      dialed.close();
      throw err;
    }
  });
  const samples: number[] = [];
  const deadline = performance.now() + o.seconds * 1000;
  const timeouts = (await Promise.all(open.map((s) => s.typeUntil(deadline, o.intervalMs, timeoutMs, samples)))).reduce((a, b) => a + b, 0);
  await Promise.all(open.map((s) => s.close()));
  return { opened: open.length, failedToOpen, firstOpenError, openMs, samples, timeouts };
}
